// A task plugin: build it as a shared module, then
//   parallelcode-supervisor --plugin build/examples/libparallelcode-example-plugin.so
//   parallelcode submit reverse '{"text":"stressed"}'     # "desserts"
//   parallelcode submit sum '{"values":[1,2,3.5]}'        # 6.5

#include <algorithm>
#include <numeric>
#include <string>
#include <vector>

#include <parallelcode/task.hpp>

namespace {

struct text_args {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(text));
  }
};

struct numbers {
  std::vector<double> values;
  template <class A>
  void serialize(A& a) {
    a(CEREAL_NVP(values));
  }
};

}  // namespace

PARALLELCODE_TASK("reverse", [](const text_args& a) { return std::string(a.text.rbegin(), a.text.rend()); });
PARALLELCODE_TASK("sum", [](const numbers& n) { return std::accumulate(n.values.begin(), n.values.end(), 0.0); });
