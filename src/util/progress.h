// A terminal progress bar with rate, ETA and live metrics. On a terminal it redraws one line;
// into a log or pipe it prints a line every 10% so CI output stays readable.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>

namespace malaria {

class ProgressBar {
 public:
  ProgressBar(size_t total, std::string label, std::string unit = "img", FILE* out = stderr);
  // `done` counts units; `status` is appended (e.g. "loss 0.231 acc 0.912").
  void update(size_t done, const std::string& status = "");
  void finish(const std::string& status = "");
  double elapsed_seconds() const;

 private:
  void draw(bool final);

  size_t total_, done_ = 0;
  std::string label_, unit_, status_;
  FILE* out_;
  bool tty_;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

std::string format_duration(double seconds);

}  // namespace malaria
