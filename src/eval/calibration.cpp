#include "eval/calibration.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <stdexcept>

namespace malaria {

namespace {

void check_inputs(const std::vector<float>& values, const std::vector<int>& labels) {
  if (values.size() != labels.size())
    throw std::invalid_argument("calibration: values and labels differ in length");
  if (values.empty()) throw std::invalid_argument("calibration: no data");
  for (float v : values)
    if (!std::isfinite(v)) throw std::invalid_argument("calibration: a value is not finite");
}

long count_positives(const std::vector<int>& labels) {
  return std::count(labels.begin(), labels.end(), 1);
}

void require_both_classes(const std::vector<int>& labels) {
  const long pos = count_positives(labels);
  if (pos == 0 || pos == static_cast<long>(labels.size()))
    throw std::invalid_argument("calibration needs cells of both classes");
}

double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

// Mean binary cross-entropy of sigmoid(s * z), computed stably from the logits.
double mean_nll(const std::vector<float>& z, const std::vector<int>& y, double s) {
  double sum = 0;
  for (size_t i = 0; i < z.size(); ++i) {
    const double a = s * z[i];
    // -log sigmoid(a) for y=1, -log(1-sigmoid(a)) = -log sigmoid(-a) for y=0.
    const double m = y[i] ? -a : a;
    sum += std::max(m, 0.0) + std::log1p(std::exp(-std::abs(m)));
  }
  return sum / z.size();
}

}  // namespace

double fit_temperature(const std::vector<float>& logits, const std::vector<int>& labels) {
  check_inputs(logits, labels);
  require_both_classes(labels);
  // Newton's method on the inverse temperature s: the loss is convex in s.
  constexpr double kMin = 1e-3, kMax = 1e3;
  double s = 1.0, loss = mean_nll(logits, labels, s);
  for (int iter = 0; iter < 100; ++iter) {
    double grad = 0, hess = 0;
    for (size_t i = 0; i < logits.size(); ++i) {
      const double p = sigmoid(s * logits[i]);
      grad += (p - labels[i]) * logits[i];
      hess += p * (1 - p) * logits[i] * logits[i];
    }
    if (hess <= 0) break;
    double step = grad / hess, next = s, next_loss = loss;
    for (int halving = 0; halving < 30; ++halving, step /= 2) {  // keep every step downhill
      next = std::clamp(s - step, kMin, kMax);
      next_loss = mean_nll(logits, labels, next);
      if (next_loss <= loss) break;
    }
    if (next_loss > loss) break;
    const bool converged = std::abs(next - s) < 1e-9 * std::max(1.0, s);
    s = next, loss = next_loss;
    if (converged) break;
  }
  return 1.0 / s;
}

std::vector<float> apply_temperature(const std::vector<float>& logits, double temperature) {
  if (!(temperature > 0) || !std::isfinite(temperature))
    throw std::invalid_argument("temperature must be a positive number");
  std::vector<float> p(logits.size());
  for (size_t i = 0; i < logits.size(); ++i)
    p[i] = static_cast<float>(sigmoid(logits[i] / temperature));
  return p;
}

std::vector<ReliabilityBin> reliability_bins(const std::vector<float>& prob,
                                             const std::vector<int>& labels, int bins) {
  check_inputs(prob, labels);
  if (bins < 1) throw std::invalid_argument("calibration: bins must be at least 1");
  std::vector<ReliabilityBin> out(bins);
  std::vector<double> sum_p(bins, 0), sum_y(bins, 0);
  for (size_t i = 0; i < prob.size(); ++i) {
    const double p = std::clamp<double>(prob[i], 0, 1);
    const int b = std::min(bins - 1, static_cast<int>(p * bins));
    out[b].count++;
    sum_p[b] += p;
    sum_y[b] += labels[i] == 1;
  }
  for (int b = 0; b < bins; ++b) {
    out[b].low = double(b) / bins;
    out[b].high = double(b + 1) / bins;
    if (out[b].count) {
      out[b].mean_probability = sum_p[b] / out[b].count;
      out[b].positive_rate = sum_y[b] / out[b].count;
    }
  }
  return out;
}

double expected_calibration_error(const std::vector<float>& prob, const std::vector<int>& labels,
                                  int bins) {
  double ece = 0;
  for (const auto& b : reliability_bins(prob, labels, bins))
    ece += double(b.count) / prob.size() * std::abs(b.positive_rate - b.mean_probability);
  return ece;
}

double threshold_for_sensitivity(const std::vector<float>& prob, const std::vector<int>& labels,
                                 double sensitivity) {
  check_inputs(prob, labels);
  if (!(sensitivity > 0 && sensitivity <= 1))
    throw std::invalid_argument("sensitivity must be in (0, 1]");
  std::vector<float> positives;
  for (size_t i = 0; i < prob.size(); ++i)
    if (labels[i] == 1) positives.push_back(prob[i]);
  if (positives.empty()) throw std::invalid_argument("calibration needs Parasitized cells");
  std::sort(positives.begin(), positives.end(), std::greater<>());
  const auto k = static_cast<size_t>(std::ceil(sensitivity * positives.size() - 1e-9));
  return positives[std::max<size_t>(k, 1) - 1];
}

double youden_threshold(const std::vector<float>& prob, const std::vector<int>& labels) {
  check_inputs(prob, labels);
  require_both_classes(labels);
  std::vector<size_t> order(prob.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prob[a] > prob[b]; });
  const double pos = count_positives(labels), neg = prob.size() - pos;
  double tp = 0, fp = 0, best_j = -2, best_t = 0.5;
  for (size_t k = 0; k < order.size(); ++k) {
    (labels[order[k]] == 1 ? tp : fp) += 1;
    const bool boundary = k + 1 == order.size() || prob[order[k + 1]] < prob[order[k]];
    if (!boundary) continue;  // thresholds sit at distinct values
    const double j = tp / pos - fp / neg;
    if (j > best_j) best_j = j, best_t = prob[order[k]];
  }
  return best_t;
}

InconclusiveBand count_inconclusive(const std::vector<float>& prob, const std::vector<int>& labels,
                                    double threshold, double low, double high) {
  check_inputs(prob, labels);
  InconclusiveBand band{low, high, 0, 0, 0};
  for (size_t i = 0; i < prob.size(); ++i) {
    const bool wrong = (prob[i] >= threshold) != (labels[i] == 1);
    const bool inside = high > low && prob[i] >= low && prob[i] <= high;
    band.errors += wrong;
    band.flagged += inside;
    band.errors_held += inside && wrong;
  }
  return band;
}

InconclusiveBand choose_inconclusive_band(const std::vector<float>& prob,
                                          const std::vector<int>& labels, double threshold,
                                          double max_flagged) {
  check_inputs(prob, labels);
  if (!(max_flagged >= 0 && max_flagged < 1))
    throw std::invalid_argument("the flagged share must be in [0, 1)");
  const size_t n = prob.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return prob[a] < prob[b]; });
  std::vector<float> sorted(n);
  std::vector<long> wrong(n), errors_before(n + 1, 0);  // prefix sums of errors in sorted order
  for (size_t k = 0; k < n; ++k) {
    sorted[k] = prob[order[k]];
    wrong[k] = (sorted[k] >= threshold) != (labels[order[k]] == 1);
    errors_before[k + 1] = errors_before[k] + wrong[k];
  }
  // Cells [i, j) of the sorted order form the band; it must contain the threshold's position.
  const size_t at = std::lower_bound(sorted.begin(), sorted.end(), threshold) - sorted.begin();
  const auto m = static_cast<size_t>(std::floor(max_flagged * n));
  size_t best_i = at, best_j = at;
  long best = 0;
  for (size_t i = at >= m ? at - m : 0; i <= at; ++i) {
    const size_t j = std::min(n, i + m);
    if (j < at) continue;
    const long held = errors_before[j] - errors_before[i];
    if (held > best) best = held, best_i = i, best_j = j;
  }
  // Trim cells that are right anyway from both ends: the same errors in a narrower band.
  while (best_i < at && !wrong[best_i]) ++best_i;
  while (best_j > at && !wrong[best_j - 1]) --best_j;
  if (best == 0) best_i = best_j = at;
  const double low =
      best_i == at ? threshold : (best_i == 0 ? 0.0 : (sorted[best_i - 1] + sorted[best_i]) / 2.0);
  const double high =
      best_j == at ? threshold : (best_j == n ? 1.0 : (sorted[best_j - 1] + sorted[best_j]) / 2.0);
  return count_inconclusive(prob, labels, threshold, low, high);
}

nlohmann::json to_json(const std::vector<ReliabilityBin>& bins) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& b : bins)
    out.push_back({{"low", b.low},
                   {"high", b.high},
                   {"count", b.count},
                   {"mean_probability", b.mean_probability},
                   {"positive_rate", b.positive_rate}});
  return out;
}

namespace {

OperatingPoint make_point(const std::vector<float>& prob, const std::vector<int>& labels,
                          double threshold, const std::string& rule,
                          double max_flagged = kMaxInconclusive) {
  const InconclusiveBand band = choose_inconclusive_band(prob, labels, threshold, max_flagged);
  long tp = 0, pos = 0, tn = 0, neg = 0;
  for (size_t i = 0; i < prob.size(); ++i) {
    const bool called = prob[i] >= threshold;
    if (labels[i] == 1)
      ++pos, tp += called;
    else
      ++neg, tn += !called;
  }
  OperatingPoint p;
  p.threshold = threshold;
  p.inconclusive_low = band.low;
  p.inconclusive_high = band.high;
  p.validation = {{"rule", rule},
                  {"cells", prob.size()},
                  {"sensitivity", pos ? double(tp) / pos : 0.0},
                  {"specificity", neg ? double(tn) / neg : 0.0},
                  {"inconclusive_fraction", double(band.flagged) / prob.size()},
                  {"errors", band.errors},
                  {"errors_held", band.errors_held}};
  return p;
}

}  // namespace

double count_matching_threshold(const std::vector<float>& probabilities,
                                const std::vector<int>& labels) {
  const long positives = std::count(labels.begin(), labels.end(), 1);
  if (positives == 0) return 1.0;
  std::vector<float> sorted(probabilities);
  std::sort(sorted.begin(), sorted.end(), std::greater<>());
  return sorted[positives - 1];
}

Calibration calibrate(const std::vector<float>& logits, const std::vector<int>& labels,
                      const std::vector<bool>& from_field, bool temperature_scaling) {
  Calibration c;
  c.temperature = temperature_scaling ? fit_temperature(logits, labels) : 1.0;
  const auto prob = apply_temperature(logits, c.temperature);
  const double balanced = youden_threshold(prob, labels);
  c.operating_points["balanced"] = make_point(prob, labels, balanced, "largest Youden index");
  // Never less sensitive than balanced, where that one already finds 97%.
  c.operating_points["screening"] =
      make_point(prob, labels,
                 std::min(balanced, threshold_for_sensitivity(prob, labels, kScreeningSensitivity)),
                 "highest threshold with sensitivity >= 97%, at most the balanced one");
  std::vector<float> field_prob;
  std::vector<int> field_labels;
  for (size_t i = 0; i < from_field.size() && i < prob.size(); ++i)
    if (from_field[i]) field_prob.push_back(prob[i]), field_labels.push_back(labels[i]);
  if (std::count(field_labels.begin(), field_labels.end(), 1) > 0) {
    c.operating_points["parasitemia"] =
        make_point(field_prob, field_labels, count_matching_threshold(field_prob, field_labels),
                   "as many Parasitized calls as Parasitized cells among validation field cells",
                   kMaxInconclusiveInFields);
    c.operating_points["parasitemia"].validation["measured_on"] = "validation field cells";
  }
  c.summary = {{"method", temperature_scaling ? "temperature scaling" : "none"},
               {"fitted_on", "validation split"},
               {"cells", logits.size()},
               {"temperature", c.temperature},
               {"ece_before", expected_calibration_error(apply_temperature(logits, 1.0), labels)},
               {"ece_after", expected_calibration_error(prob, labels)}};
  return c;
}

}  // namespace malaria
