#pragma once

// What both bench programs report with: a figure over its runs, and numbers as the table shows them.

#include <algorithm>
#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

namespace bench {

struct figure {
  std::string workload, name, unit, target;
  std::vector<double> runs;
  std::string note;  // beside it: a reference, a ratio, what it is taken from
  double median() const {
    auto v = runs;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  }
};

inline std::string fmt(double v) {
  char s[64];
  if (v >= 1000) std::snprintf(s, sizeof s, "%.0f", v);
  else if (v >= 10) std::snprintf(s, sizeof s, "%.1f", v);
  else std::snprintf(s, sizeof s, "%.2f", v);
  if (v < 1000) return s;
  const std::string digits = s;  // "%.0f": digits only
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {  // thousands separators
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

// A markdown table of the figures; note_title heads their notes' column.
inline void print_table(const std::vector<figure>& figs, const char* note_title) {
  std::printf("| workload | figure | median | min | max | target | %s |\n|---|---|---|---|---|---|---|\n", note_title);
  for (const auto& f : figs) {
    const auto [lo, hi] = std::minmax_element(f.runs.begin(), f.runs.end());
    std::printf("| %s | %s | %s %s | %s | %s | %s | %s |\n", f.workload.c_str(), f.name.c_str(), fmt(f.median()).c_str(),
                f.unit.c_str(), fmt(*lo).c_str(), fmt(*hi).c_str(), f.target.c_str(), f.note.c_str());
  }
}

// "runs":N,"figures":[...] of a JSON object the caller opens and closes.
inline void write_figures(std::ostream& out, int runs, const std::vector<figure>& figs) {
  out << "\"runs\":" << runs << ",\"figures\":[";
  for (std::size_t i = 0; i < figs.size(); ++i) {
    const auto& f = figs[i];
    out << (i ? "," : "") << "{\"workload\":\"" << f.workload << "\",\"figure\":\"" << f.name << "\",\"unit\":\""
        << f.unit << "\",\"median\":" << f.median() << ",\"runs\":[";
    for (std::size_t k = 0; k < f.runs.size(); ++k) out << (k ? "," : "") << f.runs[k];
    out << "]}";
  }
  out << "]";
}

}  // namespace bench
