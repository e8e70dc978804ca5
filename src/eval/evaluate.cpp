#include "eval/evaluate.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <sstream>

#include "data/image.h"
#include "data/loader.h"
#include "eval/calibration.h"
#include "eval/cell_check.h"
#include "eval/decision.h"
#include "util/progress.h"
#include "util/text.h"

namespace malaria {

namespace fs = std::filesystem;

nlohmann::json Evaluation::to_json() const {
  nlohmann::json j = metrics.to_json();
  j["images"] = samples.size();
  j["seconds"] = seconds;
  j["images_per_second"] = images_per_second;
  j["patients"] = malaria::to_json(patients);
  j["calibration"] = calibration;
  j["operating_points"] = operating_points;
  std::map<std::string, long> by_reason;
  for (const auto& r : rejected) by_reason[r.reason]++;
  const size_t all = samples.size() + rejected.size();
  j["rejected"] = {{"images", rejected.size()},
                   {"share", all ? double(rejected.size()) / all : 0.0},
                   {"by_reason", by_reason},
                   {"note", "counted, not scored: left out of every other figure"}};
  return j;
}

std::string Evaluation::to_text() const {
  std::ostringstream out;
  char line[200];
  const auto& m = metrics;
  std::snprintf(line, sizeof line,
                "images %zu   loss %.4f   accuracy %.4f   ROC AUC %.4f   threshold %.4f\n"
                "sensitivity (recall) %.4f   specificity %.4f   precision %.4f   F1 %.4f\n\n",
                samples.size(), m.loss, m.accuracy, m.roc_auc, m.threshold, m.recall, m.specificity,
                m.precision, m.f1);
  out << line;
  if (!rejected.empty()) {
    std::snprintf(line, sizeof line,
                  "Rejected (counted, not scored): %zu images (%.2f%%); first: %s\n\n",
                  rejected.size(), 100.0 * rejected.size() / (rejected.size() + samples.size()),
                  printable(rejected.front().reason, 90).c_str());
    out << line;
  }
  const auto& c = m.confusion;
  out << "Confusion matrix (rows: true, columns: predicted)\n";
  std::snprintf(line, sizeof line, "%14s %12s %12s\n%14s %12ld %12ld\n%14s %12ld %12ld\n\n", "",
                "Uninfected", "Parasitized", "Uninfected", c.tn, c.fp, "Parasitized", c.fn, c.tp);
  out << line;
  out << "Classification report\n" << classification_report(m) << '\n';
  if (calibration.is_object() && calibration.contains("ece")) {
    std::snprintf(line, sizeof line,
                  "Calibration: temperature %.3f   ECE (15 bins) %.4f   uncalibrated %.4f\n\n",
                  calibration.value("temperature", 1.0), calibration.value("ece", 0.0),
                  calibration.value("ece_uncalibrated", 0.0));
    out << line;
  }
  if (operating_points.is_object() && !operating_points.empty()) {
    std::snprintf(line, sizeof line, "%-12s %9s %11s %11s %9s %12s %14s\n", "point", "threshold",
                  "sensitivity", "specificity", "accuracy", "inconclusive", "errors held");
    out << "Operating points\n" << line;
    for (const auto& [name, p] : operating_points.items()) {
      std::snprintf(line, sizeof line, "%-12s %9.4f %11.4f %11.4f %9.4f %11.2f%% %8ld of %ld\n",
                    name.c_str(), p.value("threshold", 0.0), p.value("sensitivity", 0.0),
                    p.value("specificity", 0.0), p.value("accuracy", 0.0),
                    100 * p.value("inconclusive_fraction", 0.0), p.value("errors_held", 0L),
                    p.value("errors", 0L));
      out << line;
    }
    out << '\n';
  }

  // Worst patients first: where a reader should look.
  std::vector<PatientResult> sorted = patients;
  std::sort(sorted.begin(), sorted.end(),
            [](const auto& a, const auto& b) { return a.accuracy() < b.accuracy(); });
  const size_t shown = std::min<size_t>(sorted.size(), 15);
  out << "Per patient (" << patients.size() << " patients"
      << (shown < sorted.size() ? ", " + std::to_string(shown) + " least accurate shown"
                                : std::string())
      << ")\n";
  std::snprintf(line, sizeof line, "%-22s %7s %9s %12s %12s\n", "patient", "cells", "accuracy",
                "parasitemia", "predicted");
  out << line;
  for (size_t i = 0; i < shown; ++i) {
    const auto& p = sorted[i];
    std::snprintf(line, sizeof line, "%-22s %7ld %9.4f %11.1f%% %11.1f%%\n", p.patient.c_str(),
                  p.cells, p.accuracy(), 100 * p.true_parasitemia(),
                  100 * p.predicted_parasitemia());
    out << line;
  }
  std::snprintf(line, sizeof line, "\n%.1f s, %.0f images/s\n", seconds, images_per_second);
  out << line;
  return out.str();
}

std::string Evaluation::predictions_csv() const {
  std::ostringstream out;
  out << "path,patient,label,probability_parasitized,predicted,decision,logit\n";
  for (size_t i = 0; i < samples.size(); ++i) {
    const CellDecision d = decide(probabilities[i], point);
    out << csv_field(samples[i].path) << ',' << csv_field(samples[i].patient) << ','
        << kClassNames[samples[i].label] << ',' << probabilities[i] << ',' << d.label << ','
        << d.decision << ',' << (i < logits.size() ? logits[i] : 0.0f) << '\n';
  }
  return out.str();
}

Evaluation evaluate_model(const Classifier& model, const std::vector<Sample>& samples,
                          const EvaluateOptions& options) {
  LoaderOptions lo;
  lo.image_size = model.image_size();
  lo.batch_size = options.batch_size;
  lo.workers = options.workers;
  BatchLoader loader(samples, lo);
  loader.start_epoch(0);

  Evaluation ev;
  std::vector<float> logits(samples.size());
  std::vector<std::string> refusals(samples.size());  // why each image is Rejected, if it is
  ProgressBar bar(samples.size(), "evaluate");
  size_t done = 0;
  const auto start = std::chrono::steady_clock::now();
  while (auto batch = loader.next()) {
    const auto scores = model.score(batch->pixels.data(), batch->size());
    for (size_t i = 0; i < batch->size(); ++i) {
      const size_t item = batch->items[i];
      logits[item] = scores.logits[i];
      const CellCheck check = check_cell_image(read_image(samples[item].path));
      const float atypicality = scores.atypicality.empty() ? 0.0f : scores.atypicality[i];
      const CellDecision d = decide_cell(check, 0.5, atypicality, OperatingPoint{});
      if (d.rejected()) refusals[item] = d.reason;
    }
    done += batch->size();
    if (options.progress) bar.update(done);
  }
  ev.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ev.images_per_second = ev.seconds > 0 ? samples.size() / ev.seconds : 0;
  if (options.progress) bar.finish();
  std::vector<int> labels;
  for (size_t i = 0; i < samples.size(); ++i) {
    if (!refusals[i].empty()) {
      ev.rejected.push_back({samples[i], refusals[i]});
      continue;
    }
    ev.samples.push_back(samples[i]);
    ev.logits.push_back(logits[i]);
    labels.push_back(samples[i].label);
  }
  ev.probabilities = apply_temperature(ev.logits, model.info().temperature);
  ev.point = model.operating_point(options.operating_point);
  if (labels.empty()) return ev;  // every image Rejected: nothing to score
  ev.metrics = compute_metrics(ev.probabilities, labels, ev.point.threshold);
  ev.patients = per_patient(ev.samples, ev.probabilities, ev.point.threshold);
  add_calibration_report(ev, model.info());
  return ev;
}

void add_calibration_report(Evaluation& ev, const ModelInfo& info) {
  std::vector<int> labels;
  for (const auto& s : ev.samples) labels.push_back(s.label);
  ev.calibration = nlohmann::json::object();
  ev.operating_points = nlohmann::json::object();
  if (ev.samples.empty()) return;
  const auto raw = apply_temperature(ev.logits, 1.0);
  ev.calibration = {{"temperature", info.temperature},
                    {"bins", 15},
                    {"ece", expected_calibration_error(ev.probabilities, labels, 15)},
                    {"ece_uncalibrated", expected_calibration_error(raw, labels, 15)},
                    {"reliability", to_json(reliability_bins(ev.probabilities, labels, 15))}};
  for (const auto& [name, p] : info.operating_points) {
    const Metrics m = compute_metrics(ev.probabilities, labels, p.threshold);
    const InconclusiveBand band = count_inconclusive(ev.probabilities, labels, p.threshold,
                                                     p.inconclusive_low, p.inconclusive_high);
    ev.operating_points[name] = {
        {"threshold", p.threshold},
        {"sensitivity", m.recall},
        {"specificity", m.specificity},
        {"accuracy", m.accuracy},
        {"inconclusive_low", p.inconclusive_low},
        {"inconclusive_high", p.inconclusive_high},
        {"inconclusive", band.flagged},
        {"inconclusive_fraction", double(band.flagged) / ev.samples.size()},
        {"errors", band.errors},
        {"errors_held", band.errors_held},
        {"in_use", name == info.operating_point}};
  }
}

std::vector<AssessedCell> assess_cells(const Classifier& model, const std::vector<cv::Mat>& bgr,
                                       const OperatingPoint& point) {
  std::vector<AssessedCell> out(bgr.size());
  std::vector<CellCheck> checks;
  std::vector<cv::Mat> passed;
  std::vector<long> slot(bgr.size(), -1);  // each image's place among those the model sees
  for (size_t i = 0; i < bgr.size(); ++i) {
    checks.push_back(check_cell_image(bgr[i]));
    if (checks.back().ok) slot[i] = static_cast<long>(passed.size()), passed.push_back(bgr[i]);
  }
  const Classifier::Scores scores = model.score_images(passed);
  for (size_t i = 0; i < bgr.size(); ++i) {
    const long k = slot[i];
    const float atypicality = k >= 0 && !scores.atypicality.empty() ? scores.atypicality[k] : 0.0f;
    out[i].probability = k >= 0 ? scores.probability[k] : NAN;
    out[i].decision = decide_cell(checks[i], out[i].probability, atypicality, point);
    if (out[i].decision.rejected()) out[i].probability = NAN;
  }
  return out;
}

std::vector<FilePrediction> predict_files(const Classifier& model,
                                          const std::vector<std::string>& paths,
                                          const OperatingPoint& point, int batch_size) {
  std::vector<FilePrediction> out;
  for (const auto& p : paths) {
    std::error_code ec;
    if (!fs::is_directory(p, ec)) {  // files, links, loops, FIFOs: read_image says what is wrong
      out.push_back({p, "", 0, "", "", ""});
      continue;
    }
    std::vector<std::string> found;
    fs::recursive_directory_iterator it(p, fs::directory_options::skip_permission_denied, ec), end;
    for (; !ec && it != end; it.increment(ec))
      if (!it->is_directory(ec) && is_image_file(it->path())) found.push_back(it->path().string());
    if (ec) out.push_back({p, p + ": cannot list folder (" + ec.message() + ")", 0, "", "", ""});
    std::sort(found.begin(), found.end());
    for (auto& f : found) out.push_back({f, "", 0, "", "", ""});
  }
  std::vector<size_t> pending;
  std::vector<cv::Mat> images;
  auto flush = [&] {
    const auto assessed = assess_cells(model, images, point);
    for (size_t i = 0; i < pending.size(); ++i) {
      auto& r = out[pending[i]];
      const AssessedCell& a = assessed[i];
      r.probability = a.probability;
      if (a.decision.rejected()) {
        r.decision = a.decision.decision;
        r.reason = a.decision.reason;
      } else if (std::isfinite(a.probability)) {  // a NaN must never read as "Uninfected"
        r.label = a.decision.label;
        r.decision = a.decision.decision;
      } else {
        r.error = r.path + ": the model produced no valid probability (not a number)";
      }
    }
    pending.clear();
    images.clear();
  };
  for (size_t i = 0; i < out.size(); ++i) {
    if (!out[i].error.empty()) continue;
    try {
      images.push_back(read_image(out[i].path));
      pending.push_back(i);
    } catch (const ImageError& e) {
      out[i].error = e.what();
    }
    if (static_cast<int>(images.size()) >= batch_size) flush();
  }
  if (!images.empty()) flush();
  return out;
}

std::string format_predictions(const std::vector<FilePrediction>& results,
                               PredictionFormat format) {
  std::ostringstream out;
  if (format == PredictionFormat::Json) {
    nlohmann::json rows = nlohmann::json::array();
    for (const auto& r : results)
      rows.push_back(!r.error.empty() ? nlohmann::json{{"path", r.path}, {"error", r.error}}
                     : r.decision == kRejected
                         ? nlohmann::json{{"path", r.path},
                                          {"label", nullptr},
                                          {"probability_parasitized", nullptr},
                                          {"decision", r.decision},
                                          {"reason", r.reason}}
                         : nlohmann::json{{"path", r.path},
                                          {"label", r.label},
                                          {"probability_parasitized", r.probability},
                                          {"decision", r.decision}});
    return rows.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  }
  char line[64];
  if (format == PredictionFormat::Csv) {
    out << "path,label,probability_parasitized,decision,error,reason\n";
    for (const auto& r : results) {
      std::snprintf(line, sizeof line, "%.6f", r.probability);
      const bool scored = r.error.empty() && r.decision != kRejected;
      out << csv_field(r.path) << ',' << r.label << ',' << (scored ? line : "") << ',' << r.decision
          << ',' << csv_field(r.error) << ',' << csv_field(r.reason) << '\n';
    }
    return out.str();
  }
  std::snprintf(line, sizeof line, "%-12s %12s  %-13s ", "label", "P(parasit.)", "decision");
  out << line << "path\n";
  for (const auto& r : results) {
    if (!r.error.empty())
      std::snprintf(line, sizeof line, "%-12s %12s  %-13s ", "ERROR", "-", "-");
    else if (r.decision == kRejected)
      std::snprintf(line, sizeof line, "%-12s %12s  %-13s ", "-", "-", kRejected);
    else
      std::snprintf(line, sizeof line, "%-12s %12.4f  %-13s ", r.label.c_str(), r.probability,
                    r.decision.c_str());
    out << line << printable(r.error.empty() ? r.path : r.error, 4096);
    if (!r.reason.empty()) out << "  (" << printable(r.reason, 300) << ")";
    out << '\n';
  }
  return out.str();
}

}  // namespace malaria
