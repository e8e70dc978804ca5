#include "train/cross_validation.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <sstream>

#include "eval/calibration.h"
#include "eval/metrics.h"
#include "eval/out_of_fold.h"
#include "field/field_cells.h"
#include "model/model.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

std::string fold_dir(const std::string& out, int fold) {
  return out + "/fold-" + std::to_string(fold + 1);
}

bool fold_finished(const std::string& dir) {
  return fs::exists(dir + "/evaluation.json") && fs::exists(dir + "/model.pt") &&
         !fs::exists(dir + "/checkpoint/state.json");
}

// The options that decide the result: everything but where it goes and how fast.
json comparable(const TrainOptions& o) {
  json j = o.to_json();
  for (const char* key : {"out_dir", "threads", "workers", "quiet", "cache", "cv_fold"})
    j.erase(key);
  return j;
}

// A number at a JSON path such as {"calibration", "ece"}; NaN when absent.
double at_path(const json& j, const std::vector<const char*>& path) {
  const json* node = &j;
  for (const char* key : path) {
    if (!node->is_object() || !node->contains(key)) return NAN;
    node = &(*node)[key];
  }
  return node->is_number() ? node->get<double>() : NAN;
}

FoldResult read_fold(const std::string& dir) {
  FoldResult r;
  r.evaluation = json::parse(read_text(dir + "/evaluation.json"));
  std::istringstream in(read_text(dir + "/test_predictions.csv"));
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto f = parse_csv_line(line);
    if (f.size() < 4) continue;
    r.labels.push_back(f[2] == kClassNames[kParasitized] ? 1 : 0);
    r.probabilities.push_back(std::stof(f[3]));
  }
  return r;
}

std::string pm(const json& m, int digits = 4, double scale = 1) {
  char s[64];
  std::snprintf(s, sizeof s, "%.*f ± %.*f", digits, scale * m.value("mean", 0.0), digits,
                scale * m.value("sd", 0.0));
  return s;
}

}  // namespace

namespace {

// Mean ± sd of a number at `path` in every fold's evaluation; null unless every fold has it.
json over_folds(const std::vector<FoldResult>& folds, const std::vector<const char*>& path) {
  std::vector<double> values;
  for (const auto& f : folds) {
    const double v = at_path(f.evaluation, path);
    if (std::isfinite(v)) values.push_back(v);
  }
  return values.size() == folds.size() ? mean_sd(values) : json();
}

json metrics_over_folds(const std::vector<FoldResult>& folds) {
  const std::vector<std::pair<std::string, std::vector<const char*>>> keys = {
      {"accuracy", {"accuracy"}},
      {"sensitivity", {"sensitivity"}},
      {"specificity", {"specificity"}},
      {"precision", {"precision"}},
      {"f1", {"f1"}},
      {"roc_auc", {"roc_auc"}},
      {"loss", {"loss"}},
      {"ece", {"calibration", "ece"}},
      {"ece_uncalibrated", {"calibration", "ece_uncalibrated"}},
      {"temperature", {"calibration", "temperature"}}};
  json metrics = json::object();
  for (const auto& [name, path] : keys)
    if (json m = over_folds(folds, path); !m.is_null()) metrics[name] = m;
  return metrics;
}

json operating_points_over_folds(const std::vector<FoldResult>& folds) {
  json points = json::object();
  for (const char* point : {"balanced", "screening"}) {
    json p = json::object();
    for (const char* key :
         {"threshold", "sensitivity", "specificity", "accuracy", "inconclusive_fraction"})
      if (json m = over_folds(folds, {"operating_points", point, key}); !m.is_null()) p[key] = m;
    std::vector<double> held;
    for (const auto& f : folds) {
      const double errors = at_path(f.evaluation, {"operating_points", point, "errors"});
      const double in_band = at_path(f.evaluation, {"operating_points", point, "errors_held"});
      if (errors > 0) held.push_back(in_band / errors);
    }
    if (held.size() == folds.size()) p["errors_held_share"] = mean_sd(held);
    if (!p.empty()) points[point] = p;
  }
  return points;
}

// The sum of the folds' confusion matrices (each at its own threshold), and the AUC of all
// out-of-fold probabilities together.
json pooled_over_folds(const std::vector<FoldResult>& folds) {
  ConfusionMatrix pooled;
  std::vector<float> prob;
  std::vector<int> labels;
  for (const auto& f : folds) {
    pooled.tp += static_cast<long>(at_path(f.evaluation, {"confusion_matrix", "tp"}));
    pooled.fn += static_cast<long>(at_path(f.evaluation, {"confusion_matrix", "fn"}));
    pooled.fp += static_cast<long>(at_path(f.evaluation, {"confusion_matrix", "fp"}));
    pooled.tn += static_cast<long>(at_path(f.evaluation, {"confusion_matrix", "tn"}));
    prob.insert(prob.end(), f.probabilities.begin(), f.probabilities.end());
    labels.insert(labels.end(), f.labels.begin(), f.labels.end());
  }
  const double n = static_cast<double>(pooled.total());
  json out = {
      {"cells", pooled.total()},
      {"confusion_matrix",
       {{"tp", pooled.tp}, {"fn", pooled.fn}, {"fp", pooled.fp}, {"tn", pooled.tn}}},
      {"accuracy", n > 0 ? (pooled.tp + pooled.tn) / n : 0.0},
      {"sensitivity", pooled.tp + pooled.fn ? double(pooled.tp) / (pooled.tp + pooled.fn) : 0.0},
      {"specificity", pooled.tn + pooled.fp ? double(pooled.tn) / (pooled.tn + pooled.fp) : 0.0}};
  const bool both = std::count(labels.begin(), labels.end(), 1) > 0 &&
                    std::count(labels.begin(), labels.end(), 0) > 0;
  if (both) out["roc_auc"] = roc_auc(prob, labels);
  return out;
}

// Every fold's patients with their fold number, least accurate first.
json patients_over_folds(const std::vector<FoldResult>& folds) {
  json patients = json::array();
  for (size_t k = 0; k < folds.size(); ++k) {
    const json fold_patients = folds[k].evaluation.value("patients", json::array());
    for (auto p : fold_patients) {
      p["fold"] = k + 1;
      patients.push_back(p);
    }
  }
  std::sort(patients.begin(), patients.end(), [](const json& a, const json& b) {
    return a.value("accuracy", 0.0) < b.value("accuracy", 0.0);
  });
  return patients;
}

}  // namespace

json summarize_folds(const std::vector<FoldResult>& folds) {
  return {{"folds", folds.size()},
          {"metrics", metrics_over_folds(folds)},
          {"operating_points", operating_points_over_folds(folds)},
          {"pooled", pooled_over_folds(folds)},
          {"patients", patients_over_folds(folds)}};
}

std::string format_cv_summary(const json& s) {
  std::ostringstream out;
  char line[256];
  const int k = s.value("folds", 0);
  out << k << "-fold patient cross-validation: mean ± sd over folds\n\n";
  std::snprintf(line, sizeof line, "%-18s %-20s %s\n", "metric", "mean ± sd", "per fold");
  out << line;
  const json metrics = s.value("metrics", json::object());
  for (const auto& [name, m] : metrics.items()) {
    std::string folds;
    const json per_fold = m.value("per_fold", json::array());
    for (const auto& v : per_fold) {
      char f[16];
      std::snprintf(f, sizeof f, " %.4f", v.get<double>());
      folds += f;
    }
    std::snprintf(line, sizeof line, "%-18s %-20s%s\n", name.c_str(), pm(m).c_str(), folds.c_str());
    out << line;
  }
  out << "\nOperating points (chosen on each fold's validation patients)\n";
  std::snprintf(line, sizeof line, "%-10s %-18s %-18s %-18s %-18s %s\n", "point", "threshold",
                "sensitivity", "specificity", "accuracy", "Inconclusive: cells / errors held");
  out << line;
  const json points = s.value("operating_points", json::object());
  for (const auto& [name, p] : points.items()) {
    std::snprintf(line, sizeof line, "%-10s %-18s %-18s %-18s %-18s %s / %s\n", name.c_str(),
                  pm(p.value("threshold", json::object())).c_str(),
                  pm(p.value("sensitivity", json::object())).c_str(),
                  pm(p.value("specificity", json::object())).c_str(),
                  pm(p.value("accuracy", json::object())).c_str(),
                  pm(p.value("inconclusive_fraction", json::object()), 3).c_str(),
                  pm(p.value("errors_held_share", json::object()), 3).c_str());
    out << line;
  }
  const auto& pooled = s.value("pooled", json::object());
  const auto& c = pooled.value("confusion_matrix", json::object());
  std::snprintf(line, sizeof line,
                "\nPooled over %ld cells: accuracy %.4f, sensitivity %.4f, specificity %.4f, "
                "ROC AUC %.4f\nConfusion (rows true, columns predicted): Uninfected %ld %ld, "
                "Parasitized %ld %ld\n",
                pooled.value("cells", 0L), pooled.value("accuracy", 0.0),
                pooled.value("sensitivity", 0.0), pooled.value("specificity", 0.0),
                pooled.value("roc_auc", 0.0), c.value("tn", 0L), c.value("fp", 0L),
                c.value("fn", 0L), c.value("tp", 0L));
  out << line;
  const auto& patients = s.value("patients", json::array());
  out << "\nLeast accurate patients (of " << patients.size() << ")\n";
  out << format_weakest_patients(patients);
  return out.str();
}

std::string cv_report_html(const json& s) {
  std::ostringstream h;
  h << "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Cross-validation"
       "</title><style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2rem auto;"
       "padding:0 1rem;color:#1d2330}table{border-collapse:collapse;margin:.5rem 0 1.5rem}"
       "th,td{border:1px solid #e3e5ea;padding:.25rem .6rem;text-align:right;"
       "font-variant-numeric:tabular-nums}th:first-child,td:first-child{text-align:left}"
       "</style></head><body>\n";
  const int k = s.value("folds", 0);
  h << "<h1>" << k << "-fold patient cross-validation</h1>\n<p>Every patient is tested exactly "
    << "once, by a model that never saw any of their cells. Mean &plusmn; standard deviation over "
       "folds. Each fold's own report: ";
  for (int i = 1; i <= k; ++i)
    h << "<a href=\"fold-" << i << "/report.html\">fold " << i << "</a> ";
  h << "</p>\n<h2>Metrics</h2><table><tr><th>metric</th><th>mean &plusmn; sd</th>";
  for (int i = 1; i <= k; ++i) h << "<th>fold " << i << "</th>";
  h << "</tr>";
  const json metrics = s.value("metrics", json::object());
  for (const auto& [name, m] : metrics.items()) {
    h << "<tr><td>" << html_escape(name) << "</td><td>" << html_escape(pm(m)) << "</td>";
    const json per_fold = m.value("per_fold", json::array());
    for (const auto& v : per_fold) {
      char f[16];
      std::snprintf(f, sizeof f, "%.4f", v.get<double>());
      h << "<td>" << f << "</td>";
    }
    h << "</tr>";
  }
  h << "</table>\n<h2>Operating points</h2><table><tr><th>point</th><th>threshold</th>"
       "<th>sensitivity</th><th>specificity</th><th>accuracy</th><th>Inconclusive cells</th>"
       "<th>errors held</th></tr>";
  const json points = s.value("operating_points", json::object());
  for (const auto& [name, p] : points.items()) {
    h << "<tr><td>" << html_escape(name) << "</td>";
    for (const char* key : {"threshold", "sensitivity", "specificity", "accuracy",
                            "inconclusive_fraction", "errors_held_share"})
      h << "<td>" << html_escape(pm(p.value(key, json::object()))) << "</td>";
    h << "</tr>";
  }
  h << "</table>\n";
  const auto& pooled = s.value("pooled", json::object());
  const auto& c = pooled.value("confusion_matrix", json::object());
  h << "<h2>Pooled over all folds</h2><table><tr><th></th><th>predicted Uninfected</th>"
       "<th>predicted Parasitized</th></tr><tr><td>Uninfected</td><td>"
    << c.value("tn", 0L) << "</td><td>" << c.value("fp", 0L) << "</td></tr><tr><td>Parasitized"
    << "</td><td>" << c.value("fn", 0L) << "</td><td>" << c.value("tp", 0L) << "</td></tr></table>";
  char line[200];
  std::snprintf(line, sizeof line,
                "<p>%ld cells: accuracy %.4f, sensitivity %.4f, specificity %.4f, ROC AUC %.4f</p>",
                pooled.value("cells", 0L), pooled.value("accuracy", 0.0),
                pooled.value("sensitivity", 0.0), pooled.value("specificity", 0.0),
                pooled.value("roc_auc", 0.0));
  h << line << "\n<h2>Per patient (least accurate first)</h2><table><tr><th>patient</th>"
    << "<th>fold</th><th>cells</th><th>accuracy</th><th>parasitemia</th><th>predicted</th></tr>";
  const json patients = s.value("patients", json::array());
  for (const auto& p : patients) {
    std::snprintf(line, sizeof line,
                  "<td>%d</td><td>%ld</td><td>%.4f</td><td>%.1f%%</td><td>%.1f%%</td></tr>",
                  p.value("fold", 0), p.value("cells", 0L), p.value("accuracy", 0.0),
                  100 * p.value("true_parasitemia", 0.0),
                  100 * p.value("predicted_parasitemia", 0.0));
    h << "<tr><td>" << html_escape(p.value("patient", "")) << "</td>" << line;
  }
  h << "</table></body></html>\n";
  return h.str();
}

namespace {

// The figures a model file carries about the recipe that made it.
json compact_summary(const json& summary) {
  json metrics = json::object();
  const json all_metrics = summary.value("metrics", json::object());
  for (const auto& [name, m] : all_metrics.items())
    metrics[name] = {{"mean", m.value("mean", 0.0)}, {"sd", m.value("sd", 0.0)}};
  json points = json::object();
  const json all_points = summary.value("operating_points", json::object());
  for (const auto& [name, p] : all_points.items())
    for (const auto& [key, m] : p.items())
      points[name][key] = {{"mean", m.value("mean", 0.0)}, {"sd", m.value("sd", 0.0)}};
  return {{"folds", summary.value("folds", 0)},
          {"grouped_by", "patient"},
          {"metrics", metrics},
          {"operating_points", points},
          {"pooled", summary.value("pooled", json::object())}};
}

// A run in options.out_dir: continued from its checkpoint when it has one, else started.
TrainOutcome train_or_resume(const TrainOptions& options) {
  if (fs::exists(options.out_dir + "/checkpoint/state.json"))
    return resume_training(options.out_dir, options.threads);
  return run_training(options);
}

}  // namespace

void calibrate_from_out_of_fold(const std::vector<std::string>& cv_dirs, json& metadata) {
  std::vector<OutOfFold> runs;
  for (const auto& dir : cv_dirs) runs.push_back(read_out_of_fold(dir));
  const OutOfFold oof = average_runs(runs);
  const json cross_fitted = cross_fitted_summary(oof);
  const bool scale = cross_fitted.at("temperature_choice") == "temperature scaling";
  std::vector<float> logits;
  std::vector<int> labels;
  std::vector<bool> from_field;
  for (const auto& fold : oof)
    for (const auto& c : fold) {
      logits.push_back(c.logit);
      labels.push_back(c.sample.label);
      from_field.push_back(is_field_group(c.sample.patient));
    }
  const Calibration c = calibrate(logits, labels, from_field, scale);
  ModelInfo info = ModelInfo::from_metadata(metadata);
  info.temperature = c.temperature;
  info.operating_points = c.operating_points;
  info.operating_point = c.default_point;
  metadata.update(info.to_metadata());
  json summary = c.summary;
  summary["fitted_on"] =
      "out-of-fold predictions of every patient (" + std::to_string(logits.size()) + " cells)";
  summary["choice"] =
      "lower cross-validated ECE: " + cross_fitted.at("temperature_choice").get<std::string>();
  summary["cross_validated_ece"] = {{"with_temperature", cross_fitted["metrics"]["ece"]},
                                    {"without", cross_fitted["metrics"]["ece_uncalibrated"]}};
  metadata["calibration"] = summary;
  json figures = cross_fitted;
  figures.erase("patients");
  metadata["cross_validation"]["cross_fitted"] = figures;
  spdlog::info("calibrated on {} out-of-fold cells: temperature {:.3f} ({})", logits.size(),
               c.temperature, summary["choice"].get<std::string>());
}

void calibrate_from_out_of_fold(const std::string& cv_dir, json& metadata) {
  calibrate_from_out_of_fold(std::vector<std::string>{cv_dir}, metadata);
}

namespace {

// Returns false when interrupted.
bool train_final_model(const TrainOptions& recorded, const json& summary) {
  const std::string dir = recorded.out_dir + "/final";
  if (fs::exists(dir + "/model.pt") && !fs::exists(dir + "/checkpoint/state.json")) {
    spdlog::info("final model: finished earlier, kept");
  } else {
    TrainOptions o = recorded;
    o.out_dir = dir;
    o.cv_folds = 0;
    o.fractions = {o.fractions.train, o.fractions.val, 0.0};  // every patient trains or validates
    if (train_or_resume(o).interrupted) return false;
  }
  LoadedModel loaded = load_model_file(dir + "/model.pt");
  loaded.metadata["cross_validation"] = compact_summary(summary);
  if (recorded.fractions.val <= 0) calibrate_from_out_of_fold(recorded.out_dir, loaded.metadata);
  fs::path folder = fs::path(recorded.out_dir).lexically_normal();
  if (folder.filename().empty()) folder = folder.parent_path();  // "runs/cv/"
  loaded.metadata["name"] = folder.filename().string();          // the recipe's name, not "final"
  save_model_file(dir + "/model.pt", loaded.members, loaded.metadata);
  spdlog::info("final model with its cross-validated figures: {}/model.pt", dir);
  return true;
}

}  // namespace

CrossValidationOutcome run_cross_validation(const TrainOptions& base, int folds, bool final_model) {
  if (base.out_dir.empty()) throw std::invalid_argument("an output folder (--out) is required");
  if (folds < 2 || folds > 50) throw std::invalid_argument("--folds must be from 2 to 50");
  fs::create_directories(base.out_dir);
  TrainOptions recorded = base;
  recorded.cv_folds = folds;
  const std::string config = base.out_dir + "/cv_config.json";
  if (fs::exists(config)) {
    const TrainOptions before = TrainOptions::from_json(json::parse(read_text(config)));
    if (comparable(before) != comparable(recorded))
      throw std::runtime_error(base.out_dir +
                               " holds a cross-validation with other options; continue it with "
                               "the same options or choose another --out");
  } else {
    write_text_atomic(config, recorded.to_json().dump(2));
  }
  CrossValidationOutcome outcome;
  std::vector<FoldResult> results;
  for (int k = 0; k < folds; ++k) {
    const std::string dir = fold_dir(base.out_dir, k);
    if (fold_finished(dir)) {
      spdlog::info("fold {}/{}: finished earlier, kept", k + 1, folds);
    } else {
      spdlog::info("fold {}/{}: {}", k + 1, folds,
                   fs::exists(dir + "/checkpoint/state.json") ? "resuming" : "training");
      TrainOptions o = recorded;
      o.out_dir = dir;
      o.cv_fold = k;
      if (train_or_resume(o).interrupted) {
        spdlog::info("cross-validation interrupted in fold {}; the same command continues it",
                     k + 1);
        outcome.interrupted = true;
        return outcome;
      }
    }
    results.push_back(read_fold(dir));
  }
  outcome.summary = summarize_folds(results);
  outcome.summary["config"] = recorded.to_json();
  std::string text = format_cv_summary(outcome.summary);
  if (recorded.fractions.val <= 0) {
    // No fold had validation patients: its own figures are at P = 0.5 without a temperature.
    // The figures to quote fit both on the other folds' out-of-fold predictions.
    outcome.summary["metrics_note"] =
        "each fold at threshold 0.5 without a temperature (no validation patients); the "
        "cross_fitted figures are the ones to quote";
    outcome.summary["cross_fitted"] = cross_fitted_summary(read_out_of_fold(base.out_dir));
    text += "\nCross-fitted (quote these)\n" + format_cross_fitted(outcome.summary["cross_fitted"]);
  }
  write_text_atomic(base.out_dir + "/cv_summary.json", outcome.summary.dump(2));
  write_text_atomic(base.out_dir + "/cv_summary.txt", text);
  write_text_atomic(base.out_dir + "/cv_report.html", cv_report_html(outcome.summary));
  std::printf("%s\nreport: %s/cv_report.html\n", text.c_str(), base.out_dir.c_str());
  if (final_model && !train_final_model(recorded, outcome.summary)) {
    spdlog::info("final model interrupted; the same command continues it");
    outcome.interrupted = true;
  }
  return outcome;
}

}  // namespace malaria
