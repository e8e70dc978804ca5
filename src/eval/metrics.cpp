#include "eval/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <map>
#include <numeric>
#include <sstream>
#include <stdexcept>

namespace malaria {

namespace {
double ratio(double a, double b) { return b > 0 ? a / b : 0.0; }
double harmonic(double p, double r) { return p + r > 0 ? 2 * p * r / (p + r) : 0.0; }

nlohmann::json report_json(const ClassReport& r) {
  return {{"precision", r.precision}, {"recall", r.recall}, {"f1", r.f1}, {"support", r.support}};
}
}  // namespace

nlohmann::json Metrics::to_json() const {
  nlohmann::json per_class = nlohmann::json::object();
  for (const auto& c : classes) per_class[c.name] = report_json(c);
  return {
      {"threshold", threshold},
      {"loss", loss},
      {"accuracy", accuracy},
      {"precision", precision},
      {"recall", recall},
      {"sensitivity", recall},
      {"specificity", specificity},
      {"f1", f1},
      {"roc_auc", roc_auc},
      {"confusion_matrix",
       {{"labels", {kClassNames[kUninfected], kClassNames[kParasitized]}},
        {"rows_true_cols_predicted", {{confusion.tn, confusion.fp}, {confusion.fn, confusion.tp}}},
        {"tp", confusion.tp},
        {"fn", confusion.fn},
        {"fp", confusion.fp},
        {"tn", confusion.tn}}},
      {"classification_report",
       {{"classes", per_class},
        {"macro_avg", report_json(macro_avg)},
        {"weighted_avg", report_json(weighted_avg)},
        {"accuracy", accuracy},
        {"support", confusion.total()}}}};
}

Metrics compute_metrics(const std::vector<float>& probabilities, const std::vector<int>& labels,
                        double threshold) {
  if (probabilities.size() != labels.size())
    throw std::invalid_argument("metrics: probabilities and labels differ in length");
  for (float p : probabilities)
    if (!std::isfinite(p))
      throw std::invalid_argument(
          "metrics: the model produced a probability that is not a number; the model is broken "
          "(was it trained with a learning rate that diverged?)");
  Metrics m;
  m.threshold = threshold;
  double loss = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    const bool predicted = probabilities[i] >= threshold;
    const bool actual = labels[i] == kParasitized;
    auto& c = m.confusion;
    (actual ? (predicted ? c.tp : c.fn) : (predicted ? c.fp : c.tn))++;
    const double p = std::clamp(static_cast<double>(probabilities[i]), 1e-7, 1.0 - 1e-7);
    loss -= actual ? std::log(p) : std::log(1.0 - p);
  }
  const auto& c = m.confusion;
  const double n = static_cast<double>(c.total());
  m.loss = ratio(loss, n);
  m.accuracy = ratio(c.tp + c.tn, n);
  m.precision = ratio(c.tp, c.tp + c.fp);
  m.recall = ratio(c.tp, c.tp + c.fn);
  m.specificity = ratio(c.tn, c.tn + c.fp);
  m.f1 = harmonic(m.precision, m.recall);
  m.roc_auc = roc_auc(probabilities, labels);

  const double npv = ratio(c.tn, c.tn + c.fn);
  m.classes = {
      {kClassNames[kUninfected], npv, m.specificity, harmonic(npv, m.specificity), c.tn + c.fp},
      {kClassNames[kParasitized], m.precision, m.recall, m.f1, c.tp + c.fn}};
  m.macro_avg.name = "macro avg";
  m.weighted_avg.name = "weighted avg";
  for (const auto& r : m.classes) {
    m.macro_avg.precision += r.precision / 2;
    m.macro_avg.recall += r.recall / 2;
    m.macro_avg.f1 += r.f1 / 2;
    const double w = ratio(r.support, n);
    m.weighted_avg.precision += r.precision * w;
    m.weighted_avg.recall += r.recall * w;
    m.weighted_avg.f1 += r.f1 * w;
  }
  m.macro_avg.support = m.weighted_avg.support = c.total();
  return m;
}

double roc_auc(const std::vector<float>& probabilities, const std::vector<int>& labels) {
  // NaN never compares, which would break the sort's ordering and the tie loop below.
  for (float p : probabilities)
    if (!std::isfinite(p)) return std::nan("");
  std::vector<size_t> idx(labels.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(),
            [&](size_t a, size_t b) { return probabilities[a] < probabilities[b]; });
  // Mann-Whitney U: sum of positive ranks, with tied scores sharing their mean rank.
  double positive_rank_sum = 0;
  long positives = 0;
  for (size_t i = 0; i < idx.size();) {
    size_t j = i;
    while (j < idx.size() && probabilities[idx[j]] == probabilities[idx[i]]) ++j;
    const double mean_rank = (i + 1 + j) / 2.0;  // ranks i+1 .. j
    for (size_t k = i; k < j; ++k)
      if (labels[idx[k]] == kParasitized) positive_rank_sum += mean_rank, ++positives;
    i = j;
  }
  const long negatives = static_cast<long>(labels.size()) - positives;
  if (positives == 0 || negatives == 0) return std::nan("");
  return (positive_rank_sum - positives * (positives + 1) / 2.0) / (double(positives) * negatives);
}

namespace {
// Walks thresholds from high to low, emitting one point per distinct score.
template <typename Emit>
void sweep(const std::vector<float>& probabilities, const std::vector<int>& labels, Emit emit) {
  for (float p : probabilities)
    if (!std::isfinite(p)) throw std::invalid_argument("curve: a probability is not a number");
  std::vector<size_t> idx(labels.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(),
            [&](size_t a, size_t b) { return probabilities[a] > probabilities[b]; });
  long tp = 0, fp = 0;
  for (size_t i = 0; i < idx.size();) {
    const float t = probabilities[idx[i]];
    for (; i < idx.size() && probabilities[idx[i]] == t; ++i)
      (labels[idx[i]] == kParasitized ? tp : fp)++;
    emit(tp, fp, t);
  }
}
}  // namespace

std::vector<CurvePoint> roc_curve(const std::vector<float>& probabilities,
                                  const std::vector<int>& labels) {
  const long pos = std::count(labels.begin(), labels.end(), kParasitized);
  const long neg = static_cast<long>(labels.size()) - pos;
  std::vector<CurvePoint> out{{0, 0, 1.0}};
  sweep(probabilities, labels, [&](long tp, long fp, float t) {
    out.push_back({ratio(fp, neg), ratio(tp, pos), t});
  });
  return out;
}

std::vector<CurvePoint> pr_curve(const std::vector<float>& probabilities,
                                 const std::vector<int>& labels) {
  const long pos = std::count(labels.begin(), labels.end(), kParasitized);
  std::vector<CurvePoint> out;
  sweep(probabilities, labels, [&](long tp, long fp, float t) {
    out.push_back({ratio(tp, pos), ratio(tp, tp + fp), t});
  });
  return out;
}

std::string classification_report(const Metrics& m) {
  std::ostringstream out;
  char line[160];
  const int width = 12;
  std::snprintf(line, sizeof line, "%*s %9s %9s %9s %9s\n\n", width, "", "precision", "recall",
                "f1-score", "support");
  out << line;
  for (const auto& r : m.classes) {
    std::snprintf(line, sizeof line, "%*s %9.4f %9.4f %9.4f %9ld\n", width, r.name.c_str(),
                  r.precision, r.recall, r.f1, r.support);
    out << line;
  }
  out << '\n';
  std::snprintf(line, sizeof line, "%*s %9s %9s %9.4f %9ld\n", width, "accuracy", "", "",
                m.accuracy, m.confusion.total());
  out << line;
  for (const auto* r : {&m.macro_avg, &m.weighted_avg}) {
    std::snprintf(line, sizeof line, "%*s %9.4f %9.4f %9.4f %9ld\n", width, r->name.c_str(),
                  r->precision, r->recall, r->f1, r->support);
    out << line;
  }
  return out.str();
}

std::vector<PatientResult> per_patient(const std::vector<Sample>& samples,
                                       const std::vector<float>& probabilities, double threshold) {
  std::map<std::string, PatientResult> by_patient;
  for (size_t i = 0; i < samples.size(); ++i) {
    auto& r = by_patient[samples[i].patient];
    r.patient = samples[i].patient;
    const bool predicted = probabilities[i] >= threshold;
    const bool actual = samples[i].label == kParasitized;
    r.cells++;
    r.parasitized_true += actual;
    r.parasitized_predicted += predicted;
    r.correct += predicted == actual;
  }
  std::vector<PatientResult> out;
  for (auto& [_, r] : by_patient) out.push_back(r);
  return out;
}

nlohmann::json to_json(const std::vector<PatientResult>& patients) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& p : patients)
    out.push_back({{"patient", p.patient},
                   {"cells", p.cells},
                   {"accuracy", p.accuracy()},
                   {"parasitized_true", p.parasitized_true},
                   {"parasitized_predicted", p.parasitized_predicted},
                   {"true_parasitemia", p.true_parasitemia()},
                   {"predicted_parasitemia", p.predicted_parasitemia()}});
  return out;
}

}  // namespace malaria
