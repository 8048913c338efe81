#include <iostream>
#include <string>

#include <parallelcode/parallelcode.hpp>

struct greeting {
  std::string text;
  template <class A>
  void serialize(A& a) {
    a(text);
  }
};

int main() {
  parallelcode::pool pool;
  pool.start({.workers = 4});
  auto job = pool.job([](const greeting& g) { return "Hello " + g.text + "!"; }, greeting{"world"});
  parallelcode::worker_info w = job.worker();
  std::cerr << "picked up by worker " << w.id << " (pid " << w.pid << ")\n";
  std::cout << job.result() << "\n";
  pool.free();
}
