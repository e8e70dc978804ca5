// A small Prometheus registry: labelled counters and histograms in the text exposition format.
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace malaria {

class MetricsRegistry {
 public:
  void count(const std::string& name, const std::string& labels, double by = 1);
  void set(const std::string& name, const std::string& labels, double value);  // a gauge
  void observe(const std::string& name, const std::string& labels, double value);
  // Declares a metric's help text, type and (for histograms) bucket bounds.
  void describe(const std::string& name, const std::string& help, const std::string& type,
                std::vector<double> buckets = {});
  std::string render() const;  // text/plain; version=0.0.4

 private:
  struct Histogram {
    std::vector<double> counts;  // per bucket (cumulative at render time)
    double sum = 0;
    double count = 0;
  };
  struct Family {
    std::string help, type;
    std::vector<double> buckets;
    std::map<std::string, double> counters;
    std::map<std::string, Histogram> histograms;
  };
  mutable std::mutex mutex_;
  std::map<std::string, Family> families_;
};

}  // namespace malaria
