#include "eval/out_of_fold.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <sstream>

#include "eval/calibration.h"
#include "eval/metrics.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

namespace fs = std::filesystem;
using json = nlohmann::json;

OutOfFold read_out_of_fold(const std::string& cv_dir, bool raw_weights) {
  OutOfFold oof;
  const std::string file = raw_weights ? "test_predictions_raw.csv" : "test_predictions.csv";
  for (int k = 1; fs::exists(cv_dir + "/fold-" + std::to_string(k) + "/" + file); ++k) {
    const std::string path = cv_dir + "/fold-" + std::to_string(k) + "/" + file;
    std::istringstream in(read_text(path));
    std::string line;
    std::getline(in, line);
    const auto header = parse_csv_line(line);
    const auto logit_column = std::find(header.begin(), header.end(), "logit") - header.begin();
    if (logit_column >= static_cast<long>(header.size()))
      throw std::runtime_error(path + " has no logit column (written by an older malaria)");
    std::vector<OutOfFoldCell> fold;
    while (std::getline(in, line)) {
      if (line.empty()) continue;
      const auto f = parse_csv_line(line);
      if (f.size() != header.size()) throw std::runtime_error(path + ": malformed line: " + line);
      OutOfFoldCell c;
      c.sample = {f[0], f[2] == kClassNames[kParasitized] ? kParasitized : kUninfected, f[1]};
      c.logit = std::stof(f[logit_column]);
      fold.push_back(std::move(c));
    }
    oof.push_back(std::move(fold));
  }
  if (oof.size() < 2)
    throw std::runtime_error(cv_dir + " holds no finished cross-validation (no fold-K/" + file +
                             ")");
  // A run stopped part-way would otherwise be cross-fitted on its first folds without a word.
  const std::string config = cv_dir + "/cv_config.json";
  if (fs::exists(config)) {
    const auto folds = json::parse(read_text(config)).value("cv_folds", 0);
    if (folds > 0 && static_cast<int>(oof.size()) != folds)
      throw std::runtime_error(cv_dir + " is unfinished: fold-" + std::to_string(oof.size() + 1) +
                               "/" + file + " is missing (" + std::to_string(folds) + " folds)");
  }
  return oof;
}

OutOfFold average_runs(const std::vector<OutOfFold>& runs) {
  if (runs.empty()) throw std::invalid_argument("no runs to average");
  OutOfFold out = runs[0];
  for (size_t r = 1; r < runs.size(); ++r) {
    if (runs[r].size() != out.size())
      throw std::runtime_error("the runs have different numbers of folds");
    for (size_t k = 0; k < out.size(); ++k) {
      std::map<std::string, float> logit_of;
      for (const auto& c : runs[r][k]) logit_of[c.sample.path] = c.logit;
      // A cell one run Rejected (or an older run scored) is left out; another fold's cells
      // would leave out many.
      std::vector<OutOfFoldCell> shared;
      for (auto c : out[k]) {
        const auto found = logit_of.find(c.sample.path);
        if (found == logit_of.end()) continue;
        c.logit += found->second;
        shared.push_back(std::move(c));
      }
      const size_t larger = std::max(out[k].size(), runs[r][k].size());
      if (shared.size() + larger / 100 < larger)
        throw std::runtime_error("fold " + std::to_string(k + 1) +
                                 " holds other cells in another run (another --fold-seed?)");
      out[k] = std::move(shared);
    }
  }
  for (auto& fold : out)
    for (auto& c : fold) c.logit /= static_cast<float>(runs.size());
  return out;
}

json mean_sd(const std::vector<double>& v) {
  double mean = 0, sd = 0;
  for (double x : v) mean += x;
  mean /= std::max<size_t>(1, v.size());
  for (double x : v) sd += (x - mean) * (x - mean);
  sd = v.size() > 1 ? std::sqrt(sd / (v.size() - 1)) : 0.0;
  return {{"mean", mean}, {"sd", sd}, {"per_fold", v}};
}

std::string format_weakest_patients(const json& patients, size_t n) {
  std::ostringstream out;
  char line[256];
  std::snprintf(line, sizeof line, "%-26s %5s %6s %9s %12s %10s\n", "patient", "fold", "cells",
                "accuracy", "parasitemia", "predicted");
  out << line;
  for (size_t i = 0; i < std::min(n, patients.size()); ++i) {
    const auto& p = patients[i];
    std::snprintf(line, sizeof line, "%-26s %5d %6ld %9.4f %11.1f%% %9.1f%%\n",
                  printable(p.value("patient", ""), 26).c_str(), p.value("fold", 0),
                  p.value("cells", 0L), p.value("accuracy", 0.0),
                  100 * p.value("true_parasitemia", 0.0),
                  100 * p.value("predicted_parasitemia", 0.0));
    out << line;
  }
  return out.str();
}

namespace {

std::vector<float> logits_of(const std::vector<OutOfFoldCell>& cells) {
  std::vector<float> v;
  for (const auto& c : cells) v.push_back(c.logit);
  return v;
}
std::vector<int> labels_of(const std::vector<OutOfFoldCell>& cells) {
  std::vector<int> v;
  for (const auto& c : cells) v.push_back(c.sample.label);
  return v;
}

// One fold judged by rules fitted on the others.
struct FoldFigures {
  std::map<std::string, double> values;
  std::vector<PatientResult> patients;
  ConfusionMatrix confusion;
};

FoldFigures judge_fold(const OutOfFold& oof, size_t fold) {
  std::vector<OutOfFoldCell> others;
  for (size_t k = 0; k < oof.size(); ++k)
    if (k != fold) others.insert(others.end(), oof[k].begin(), oof[k].end());
  const Calibration fitted = calibrate(logits_of(others), labels_of(others));
  const auto& cells = oof[fold];
  const auto labels = labels_of(cells);
  const auto prob = apply_temperature(logits_of(cells), fitted.temperature);
  FoldFigures f;
  f.values["temperature"] = fitted.temperature;
  f.values["ece"] = expected_calibration_error(prob, labels);
  const auto uncalibrated = apply_temperature(logits_of(cells), 1.0);
  f.values["ece_uncalibrated"] = expected_calibration_error(uncalibrated, labels);
  f.values["loss_uncalibrated"] = compute_metrics(uncalibrated, labels, 0.5).loss;
  f.values["roc_auc"] = roc_auc(prob, labels);
  for (const char* name : {"balanced", "screening"}) {
    const OperatingPoint& p = fitted.operating_points.at(name);
    const Metrics m = compute_metrics(prob, labels, p.threshold);
    const InconclusiveBand band =
        count_inconclusive(prob, labels, p.threshold, p.inconclusive_low, p.inconclusive_high);
    const std::string prefix = std::string(name) + "_";
    f.values[prefix + "accuracy"] = m.accuracy;
    f.values[prefix + "sensitivity"] = m.recall;
    f.values[prefix + "specificity"] = m.specificity;
    f.values[prefix + "inconclusive"] = double(band.flagged) / std::max<size_t>(1, cells.size());
    if (std::string(name) == "balanced") {
      f.values["loss"] = m.loss;
      f.confusion = m.confusion;
      std::vector<Sample> samples;
      for (const auto& c : cells) samples.push_back(c.sample);
      f.patients = per_patient(samples, prob, p.threshold);
    }
  }
  return f;
}

}  // namespace

json cross_fitted_summary(const OutOfFold& oof) {
  std::map<std::string, std::vector<double>> per_metric;
  ConfusionMatrix pooled;
  json patients = json::array();
  for (size_t k = 0; k < oof.size(); ++k) {
    const FoldFigures f = judge_fold(oof, k);
    for (const auto& [name, v] : f.values) per_metric[name].push_back(v);
    pooled.tp += f.confusion.tp, pooled.fn += f.confusion.fn;
    pooled.fp += f.confusion.fp, pooled.tn += f.confusion.tn;
    for (json p : to_json(f.patients)) {
      p["fold"] = k + 1;
      patients.push_back(p);
    }
  }
  std::sort(patients.begin(), patients.end(), [](const json& a, const json& b) {
    return a.value("accuracy", 0.0) < b.value("accuracy", 0.0);
  });
  json metrics = json::object();
  for (const auto& [name, v] : per_metric) metrics[name] = mean_sd(v);
  const double with = metrics["ece"]["mean"], without = metrics["ece_uncalibrated"]["mean"];
  std::vector<float> all_logits;
  std::vector<int> all_labels;
  for (const auto& fold : oof)
    for (const auto& c : fold) all_logits.push_back(c.logit), all_labels.push_back(c.sample.label);
  const double n = static_cast<double>(pooled.total());
  return {{"folds", oof.size()},
          {"method",
           "cross-fitted: each fold's temperature and operating points fitted on the other folds' "
           "out-of-fold predictions"},
          {"metrics", metrics},
          {"temperature_choice", with < without ? "temperature scaling" : "none"},
          {"pooled",
           {{"cells", pooled.total()},
            {"accuracy", n > 0 ? (pooled.tp + pooled.tn) / n : 0.0},
            {"roc_auc", roc_auc(apply_temperature(all_logits, 1.0), all_labels)},
            {"confusion_matrix",
             {{"tp", pooled.tp}, {"fn", pooled.fn}, {"fp", pooled.fp}, {"tn", pooled.tn}}}}},
          {"patients", patients}};
}

std::string format_cross_fitted(const json& s) {
  std::ostringstream out;
  char line[256];
  out << s.value("folds", 0) << " folds, " << s.value("method", "") << "\n\n";
  std::snprintf(line, sizeof line, "%-24s %-20s %s\n", "metric", "mean ± sd", "per fold");
  out << line;
  for (const auto& [name, m] : s.at("metrics").items()) {
    std::string folds;
    for (const auto& v : m.at("per_fold")) {
      char f[16];
      std::snprintf(f, sizeof f, " %.4f", v.get<double>());
      folds += f;
    }
    char mean[48];
    std::snprintf(mean, sizeof mean, "%.4f ± %.4f", m.value("mean", 0.0), m.value("sd", 0.0));
    std::snprintf(line, sizeof line, "%-24s %-20s%s\n", name.c_str(), mean, folds.c_str());
    out << line;
  }
  const auto& pooled = s.at("pooled");
  const auto& c = pooled.at("confusion_matrix");
  std::snprintf(line, sizeof line,
                "\nPooled over %ld cells at balanced: accuracy %.4f, ROC AUC %.4f; confusion "
                "(rows true): Uninfected %ld %ld, Parasitized %ld %ld\nLower cross-validated "
                "ECE: %s\n",
                pooled.value("cells", 0L), pooled.value("accuracy", 0.0),
                pooled.value("roc_auc", 0.0), c.value("tn", 0L), c.value("fp", 0L),
                c.value("fn", 0L), c.value("tp", 0L), s.value("temperature_choice", "").c_str());
  out << line << "\nLeast accurate patients\n" << format_weakest_patients(s.at("patients"));
  return out.str();
}

std::vector<Suspect> contradicted_labels(const OutOfFold& oof, double min_confidence) {
  std::vector<Suspect> out;
  for (size_t k = 0; k < oof.size(); ++k)
    for (const auto& c : oof[k]) {
      const double p = 1.0 / (1.0 + std::exp(-static_cast<double>(c.logit)));
      const double against = c.sample.label == kParasitized ? 1 - p : p;
      if (against >= min_confidence) out.push_back({c, static_cast<int>(k + 1), p});
    }
  std::sort(out.begin(), out.end(), [](const Suspect& a, const Suspect& b) {
    const double ca = a.cell.sample.label == kParasitized ? 1 - a.probability : a.probability;
    const double cb = b.cell.sample.label == kParasitized ? 1 - b.probability : b.probability;
    return ca > cb;
  });
  return out;
}

}  // namespace malaria
