#include "serve/prometheus.h"

#include <spdlog/fmt/fmt.h>

#include <sstream>

namespace malaria {

void MetricsRegistry::describe(const std::string& name, const std::string& help,
                               const std::string& type, std::vector<double> buckets) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& f = families_[name];
  f.help = help;
  f.type = type;
  f.buckets = std::move(buckets);
}

void MetricsRegistry::count(const std::string& name, const std::string& labels, double by) {
  std::lock_guard<std::mutex> lock(mutex_);
  families_[name].counters[labels] += by;
}

void MetricsRegistry::set(const std::string& name, const std::string& labels, double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  families_[name].counters[labels] = value;
}

void MetricsRegistry::observe(const std::string& name, const std::string& labels, double value) {
  std::lock_guard<std::mutex> lock(mutex_);
  auto& f = families_[name];
  auto& h = f.histograms[labels];
  if (h.counts.empty()) h.counts.assign(f.buckets.size(), 0);
  for (size_t i = 0; i < f.buckets.size(); ++i)
    if (value <= f.buckets[i]) {
      h.counts[i] += 1;
      break;
    }
  h.sum += value;
  h.count += 1;
}

namespace {
std::string with_label(const std::string& labels, const std::string& extra) {
  if (labels.empty()) return "{" + extra + "}";
  return "{" + labels + "," + extra + "}";
}
// Shortest text that reads back as the same double: counters stay exact past a million.
std::string number(double v) { return fmt::format("{}", v); }

std::string braces(const std::string& labels) { return labels.empty() ? "" : "{" + labels + "}"; }
}  // namespace

std::string MetricsRegistry::render() const {
  std::lock_guard<std::mutex> lock(mutex_);
  std::ostringstream out;
  for (const auto& [name, f] : families_) {
    // A family used without describe() still renders as valid text: no HELP, type untyped.
    if (!f.help.empty()) out << "# HELP " << name << ' ' << f.help << '\n';
    out << "# TYPE " << name << ' ' << (f.type.empty() ? "untyped" : f.type) << '\n';
    for (const auto& [labels, v] : f.counters)
      out << name << braces(labels) << ' ' << number(v) << '\n';
    for (const auto& [labels, h] : f.histograms) {
      double cumulative = 0;
      for (size_t i = 0; i < f.buckets.size(); ++i) {
        cumulative += h.counts[i];
        out << name << "_bucket" << with_label(labels, "le=\"" + number(f.buckets[i]) + "\"") << ' '
            << number(cumulative) << '\n';
      }
      out << name << "_bucket" << with_label(labels, "le=\"+Inf\"") << ' ' << number(h.count)
          << '\n';
      out << name << "_sum" << braces(labels) << ' ' << number(h.sum) << '\n';
      out << name << "_count" << braces(labels) << ' ' << number(h.count) << '\n';
    }
  }
  return out.str();
}

}  // namespace malaria
