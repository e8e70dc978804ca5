#include "field/field_evaluation.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <map>
#include <opencv2/imgproc.hpp>
#include <optional>
#include <set>
#include <sstream>

#include "data/dataset.h"
#include "data/image.h"
#include "eval/metrics.h"
#include "explain/explanation.h"
#include "field/annotations.h"
#include "field/field_cells.h"
#include "field/quality.h"
#include "field/screening.h"
#include "model/classifier.h"
#include "report/figures.h"
#include "util/files.h"
#include "util/progress.h"
#include "util/text.h"

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace malaria {
namespace {

struct FieldOutcome {
  std::string name, group;
  size_t annotated[2] = {0, 0}, found[2] = {0, 0};
  size_t detections = 0, merged = 0, false_positive_calls = 0;
  ParasitemiaSummary measured;
  double annotated_percent = 0;
  double seconds = 0;
  std::vector<float> probabilities;  // matched, counted cells
  std::vector<int> labels;
  std::string verdict;     // the quality verdict screening would give
  FieldErrorRates errors;  // this field's share of the error-rate counts
  // Annotated stage (rows) against the detector's likeliest stage (columns), over matched
  // annotated infected cells.
  std::array<std::array<size_t, 4>, 4> stages{};
  double recall() const {
    const size_t a = annotated[0] + annotated[1];
    return a ? double(found[0] + found[1]) / a : 1.0;
  }
};

// The highest sensitivity among thresholds whose specificity is at least `specificity`.
double sensitivity_at_specificity(const std::vector<float>& prob, const std::vector<int>& labels,
                                  double specificity) {
  std::vector<float> negatives;
  for (size_t i = 0; i < prob.size(); ++i)
    if (labels[i] == kUninfected) negatives.push_back(prob[i]);
  if (negatives.empty()) return 0;
  std::sort(negatives.begin(), negatives.end());
  // Calls are p > t: t is the negative at the specificity quantile.
  const size_t k = std::min(negatives.size() - 1,
                            static_cast<size_t>(std::ceil(specificity * negatives.size())) - 1);
  const float t = negatives[k];
  long tp = 0, pos = 0;
  for (size_t i = 0; i < prob.size(); ++i)
    if (labels[i] == kParasitized) ++pos, tp += prob[i] > t;
  return pos ? double(tp) / pos : 0;
}

double pearson(const std::vector<double>& a, const std::vector<double>& b) {
  const size_t n = a.size();
  if (n < 2) return NAN;
  double ma = 0, mb = 0;
  for (size_t i = 0; i < n; ++i) ma += a[i] / n, mb += b[i] / n;
  double sab = 0, saa = 0, sbb = 0;
  for (size_t i = 0; i < n; ++i)
    sab += (a[i] - ma) * (b[i] - mb), saa += (a[i] - ma) * (a[i] - ma),
        sbb += (b[i] - mb) * (b[i] - mb);
  return saa > 0 && sbb > 0 ? sab / std::sqrt(saa * sbb) : NAN;
}

FieldOutcome evaluate_one(const Classifier& classifier, const OperatingPoint& point,
                          const FieldSegmenter& segmenter, const AnnotatedField& field,
                          cv::Mat* overlay) {
  FieldOutcome out;
  out.name = field.name;
  out.group = field.group;
  const cv::Mat bgr = read_image(field.path, kFieldImageLimits);
  const auto start = std::chrono::steady_clock::now();
  const FieldSegmentation seg = segmenter.segment(bgr);
  out.verdict = assess_field_quality(bgr, seg).verdict;
  ScreenedField screened = classify_regions(classifier, point, bgr, field.name, seg);
  out.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  out.detections = seg.cells.size();
  out.measured = screened.summary;

  std::vector<cv::Rect> boxes;
  for (const auto& c : seg.cells) boxes.push_back(c.box);
  std::vector<int> screened_index(seg.cells.size(), -1);
  for (size_t i = 0; i < screened.cells.size(); ++i)
    screened_index[screened.cells[i].region] = static_cast<int>(i);
  const std::vector<int> match = match_annotations(boxes, field.cells);
  std::vector<int> centres_in(seg.cells.size(), 0);
  std::vector<bool> matched_infected(seg.cells.size(), false);
  size_t annotated_all = 0;
  for (size_t a = 0; a < field.cells.size(); ++a) {
    const AnnotatedCell& cell = field.cells[a];
    if (cell.label < 0) continue;
    ++annotated_all;
    out.annotated[cell.label]++;
    const cv::Point centre(cell.box.x + cell.box.width / 2, cell.box.y + cell.box.height / 2);
    for (size_t d = 0; d < seg.cells.size(); ++d) {
      const CellRegion& r = seg.cells[d];
      if (r.box.contains(centre) && r.mask.at<uint8_t>(centre - r.box.tl())) ++centres_in[d];
    }
    if (match[a] < 0) {
      out.errors.infected_cells += cell.label == kParasitized;  // missed: never called
      continue;
    }
    out.found[cell.label]++;
    if (cell.label == kParasitized) matched_infected[match[a]] = true;
    const int annotated_stage = detector_class_of(cell.type) - 1;
    const CellRegion& region = seg.cells[match[a]];
    if (annotated_stage >= 0 && region.detected) {
      const auto& p = region.class_probabilities;
      ++out.stages[annotated_stage][std::max_element(p.begin() + 1, p.end()) - p.begin() - 1];
    }
    const int k = screened_index[match[a]];
    if (k >= 0) {
      out.probabilities.push_back(screened.cells[k].probability);
      out.labels.push_back(cell.label);
    }
    if (cell.label == kParasitized && k >= 0) {
      ++out.errors.infected_cells;
      out.errors.true_calls += screened.cells[k].number > 0;
    }
  }
  for (int n : centres_in) out.merged += n >= 2;
  out.annotated_percent = annotated_all ? 100.0 * out.annotated[kParasitized] / annotated_all : 0;
  for (const ScreenedCell& c : screened.cells) {
    out.false_positive_calls += c.number > 0 && !matched_infected[c.region];
    if (!matched_infected[c.region]) {
      ++out.errors.uninfected_cells;
      out.errors.false_calls += c.number > 0;
    }
  }
  if (overlay) {
    screened.quality.verdict = out.verdict;
    *overlay = draw_screening_overlay(bgr, screened);
    for (const AnnotatedCell& cell : field.cells)  // the annotation, in blue, for comparison
      if (cell.label == kParasitized)
        cv::rectangle(*overlay, cell.box + cv::Size(8, 8) - cv::Point(4, 4), {255, 120, 0}, 2);
  }
  return out;
}

std::set<std::string> groups_of_part(const std::string& split_csv, const std::string& part) {
  std::set<std::string> groups;
  const Split split = read_split_csv(split_csv);
  for (const auto& s : part == "val" ? split.val : part == "train" ? split.train : split.test)
    if (is_field_group(s.patient)) groups.insert(s.patient);
  if (groups.empty())
    throw std::runtime_error(split_csv + " has no field groups in its " + part +
                             " part (was the run trained with --fields?)");
  return groups;
}

json group_json(const std::vector<FieldOutcome>& fields,
                const std::optional<FieldErrorRates>& rates, std::vector<double>& annotated,
                std::vector<double>& measured, std::vector<double>& corrected) {
  std::map<std::string, std::array<size_t, 4>> groups;  // annotated all, infected; cells, calls
  for (const auto& f : fields) {
    if (f.verdict == "fail") continue;  // screening leaves failed fields out of the figure
    auto& g = groups[f.group];
    g[0] += f.annotated[0] + f.annotated[1];
    g[1] += f.annotated[1];
    g[2] += f.measured.cells;
    g[3] += f.measured.parasitized;
  }
  json list = json::array();
  for (const auto& [name, g] : groups) {
    const double a = g[0] ? 100.0 * g[1] / g[0] : 0, m = g[2] ? 100.0 * g[3] / g[2] : 0;
    annotated.push_back(a);
    measured.push_back(m);
    const Interval ci = wilson_interval(g[3], g[2]);
    ParasitemiaSummary counted;
    counted.cells = g[2];
    counted.parasitized = g[3];
    if (rates && g[2])
      corrected.push_back(corrected_parasitemia(counted, *rates, kDefaultRbcPerMicrolitre,
                                                true)["parasitemia_percent"]);
    list.push_back({{"group", name},
                    {"annotated_cells", g[0]},
                    {"annotated_infected", g[1]},
                    {"annotated_percent", a},
                    {"cells", g[2]},
                    {"parasitized", g[3]},
                    {"measured_percent", m},
                    {"ci_low", 100 * ci.low},
                    {"ci_high", 100 * ci.high},
                    {"error", m - a},
                    {"corrected_percent", rates && g[2] ? json(corrected.back()) : json()}});
  }
  return list;
}

void write_report(const json& r, const std::string& dir) {
  std::ostringstream html;
  html << "<!doctype html><meta charset=utf-8><title>Field evaluation</title>"
       << "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px "
          "8px;text-align:right}img{max-width:100%}</style><h1>Smear-field evaluation</h1><pre>"
       << html_escape(r.value("text", "")) << "</pre><h2>Parasitemia per group</h2>"
       << "<img src='figures/parasitemia.png' width=560><table><tr><th>group<th>cells"
          "<th>annotated %<th>measured %<th>95% CI<th>error</tr>";
  char row[256];
  for (const auto& g : r["groups"]) {
    std::snprintf(row, sizeof row, "<td>%zu<td>%.3f<td>%.3f<td>%.2f-%.2f<td>%+.3f</tr>",
                  g.value("cells", size_t{0}), g.value("annotated_percent", 0.0),
                  g.value("measured_percent", 0.0), g.value("ci_low", 0.0), g.value("ci_high", 0.0),
                  g.value("error", 0.0));
    html << "<tr><td>" << html_escape(g.value("group", "")) << row;
  }
  html << "</table><h2>Fields with the largest error</h2><p>Red: Parasitized calls (numbered); "
          "amber: Inconclusive; green: Uninfected; grey: cut by the edge, not counted; blue: "
          "annotated infected cells.</p>";
  for (const auto& f : r["worst_fields"])
    html << "<h3>" << html_escape(f.value("file", "")) << "</h3><img src='"
         << html_escape(f.value("overlay", "")) << "'>";
  html << "<h2>Fields with the lowest cell recall</h2>";
  for (const auto& f : r["lowest_recall_fields"])
    html << "<h3>" << html_escape(f.value("file", "")) << "</h3><img src='"
         << html_escape(f.value("overlay", "")) << "'>";
  write_text_atomic(dir + "/report.html", html.str());
}

// Recall per field: its minimum and 5th percentile, the worst fields, usable ones below 90%.
json field_recall_spread(const std::vector<FieldOutcome>& outcomes) {
  std::vector<std::pair<double, const FieldOutcome*>> recalls;
  for (const auto& f : outcomes) recalls.emplace_back(f.recall(), &f);
  std::sort(recalls.begin(), recalls.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });
  json worst_recall = json::array();
  size_t below_90_usable = 0;
  for (const auto& [r, f] : recalls) {
    if (r < 0.9 && f->verdict != "fail") ++below_90_usable;
    if (worst_recall.size() < 5)
      worst_recall.push_back({{"file", f->name}, {"recall", r}, {"quality", f->verdict}});
  }
  return {{"field_recall_min", recalls.empty() ? 0.0 : recalls.front().first},
          {"field_recall_p5",
           recalls.empty() ? 0.0 : recalls[size_t(0.05 * (recalls.size() - 1))].first},
          {"worst_recall_fields", worst_recall},
          {"usable_fields_below_90_recall", below_90_usable}};
}

// The stage confusion and the accuracy over ring, trophozoite and gametocyte (schizonts are
// too few to judge).
json stage_summary(const std::vector<FieldOutcome>& outcomes) {
  std::array<std::array<size_t, 4>, 4> stages{};
  for (const auto& f : outcomes)
    for (int a = 0; a < 4; ++a)
      for (int b = 0; b < 4; ++b) stages[a][b] += f.stages[a][b];
  size_t stage_right = 0, stage_total = 0;
  for (int a : {0, 1, 3})
    for (int b = 0; b < 4; ++b)
      stage_total += stages[a][b], stage_right += a == b ? stages[a][b] : 0;
  return {{"names", kStageNames},
          {"confusion", stages},
          {"matched_infected_with_stage", stage_total},
          {"accuracy_ring_trophozoite_gametocyte",
           stage_total ? double(stage_right) / stage_total : NAN}};
}

FieldErrorRates summed_error_rates(const std::vector<FieldOutcome>& outcomes) {
  FieldErrorRates rates;
  for (const auto& f : outcomes) {
    if (f.verdict == "fail") continue;  // screening counts no cell of a failed field
    rates.uninfected_cells += f.errors.uninfected_cells;
    rates.false_calls += f.errors.false_calls;
    rates.infected_cells += f.errors.infected_cells;
    rates.true_calls += f.errors.true_calls;
  }
  return rates;
}

// Mean absolute error (points) and the groups within +-25% of the annotation.
json group_agreement(const std::vector<double>& measured, const std::vector<double>& annotated) {
  double mae = 0;
  size_t within = 0;
  for (size_t i = 0; i < measured.size(); ++i) {
    mae += std::abs(measured[i] - annotated[i]) / measured.size();
    within += std::abs(measured[i] - annotated[i]) <= 0.25 * annotated[i];
  }
  return {{"group_mean_absolute_error_points", mae},
          {"groups_within_25_percent", within},
          {"groups_within_25_percent_share",
           annotated.empty() ? 0.0 : double(within) / annotated.size()}};
}

json field_row(const FieldOutcome& f) {
  json j = f.measured.to_json();
  j["file"] = f.name;
  j["group"] = f.group;
  j["annotated_percent"] = f.annotated_percent;
  j["error"] = f.measured.percent() - f.annotated_percent;
  j["seconds"] = f.seconds;
  j["recall"] = f.recall();
  j["quality"] = f.verdict;
  return j;
}

// Every figure of the evaluation from the per-field outcomes (see FieldEvaluation).
json summarize_outcomes(const std::string& point_name, const OperatingPoint& point,
                        const std::optional<FieldErrorRates>& rates,
                        const std::vector<FieldOutcome>& outcomes,
                        std::vector<double>& group_annotated, std::vector<double>& group_measured) {
  std::vector<float> prob;
  std::vector<int> labels;
  size_t annotated[2] = {0, 0}, found[2] = {0, 0}, detections = 0, merged = 0, fp_calls = 0,
         calls = 0;
  double seconds = 0;
  json per_field = json::array();
  std::map<std::string, size_t> verdicts;
  for (const auto& f : outcomes) {
    ++verdicts[f.verdict];
    prob.insert(prob.end(), f.probabilities.begin(), f.probabilities.end());
    labels.insert(labels.end(), f.labels.begin(), f.labels.end());
    for (int l : {0, 1}) annotated[l] += f.annotated[l], found[l] += f.found[l];
    detections += f.detections;
    merged += f.merged;
    fp_calls += f.false_positive_calls;
    calls += f.measured.parasitized;
    seconds += f.seconds;
    per_field.push_back(field_row(f));
  }
  std::vector<double> group_corrected;
  json groups = group_json(outcomes, rates, group_annotated, group_measured, group_corrected);

  json r;
  r["fields"] = outcomes.size();
  r["operating_point"] = point_name;
  r["threshold"] = point.threshold;
  r["detection"] = {{"annotated_uninfected", annotated[0]},
                    {"annotated_infected", annotated[1]},
                    {"recall_uninfected", annotated[0] ? double(found[0]) / annotated[0] : 0.0},
                    {"recall_infected", annotated[1] ? double(found[1]) / annotated[1] : 0.0},
                    {"detections", detections},
                    {"merged", merged},
                    {"merged_fraction", detections ? double(merged) / detections : 0.0}};
  r["detection"].update(field_recall_spread(outcomes));
  r["quality"] = verdicts;
  r["stages"] = stage_summary(outcomes);
  const bool both = std::count(labels.begin(), labels.end(), 1) > 0 &&
                    std::count(labels.begin(), labels.end(), 0) > 0;
  r["cells"] = {
      {"matched", prob.size()},
      {"auc", both ? roc_auc(prob, labels) : NAN},
      {"sensitivity_at_99_specificity", sensitivity_at_specificity(prob, labels, 0.99)},
      {"sensitivity_at_99_5_specificity", sensitivity_at_specificity(prob, labels, 0.995)}};
  if (both) {
    const Metrics m = compute_metrics(prob, labels, point.threshold);
    r["cells"]["at_operating_point"] = {
        {"sensitivity", m.recall}, {"specificity", m.specificity}, {"precision", m.precision}};
  }
  r["parasitemia"] = {{"calls", calls},
                      {"calls_not_on_an_annotated_infected_cell", fp_calls},
                      {"group_correlation", pearson(group_annotated, group_measured)},
                      {"groups", group_annotated.size()}};
  r["parasitemia"].update(group_agreement(group_measured, group_annotated));
  r["error_rates"] = summed_error_rates(outcomes).to_json();
  if (rates && group_corrected.size() == group_annotated.size()) {
    r["parasitemia"]["corrected"] = group_agreement(group_corrected, group_annotated);
    r["parasitemia"]["corrected"]["model_error_rates"] = rates->to_json();
  }
  r["seconds_per_field"] = seconds / outcomes.size();
  r["groups"] = groups;
  r["per_field"] = per_field;
  return r;
}

// Overlays of the worst fields by `badness` (largest first), as figures/PREFIX-K.png.
json write_worst_overlays(const Classifier& classifier, const OperatingPoint& point,
                          const FieldSegmenter& segmenter,
                          const std::vector<AnnotatedField>& fields,
                          const std::vector<FieldOutcome>& outcomes, int count,
                          const std::string& dir, const std::string& prefix,
                          const std::function<double(const FieldOutcome&)>& badness) {
  std::vector<size_t> order(outcomes.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return badness(outcomes[a]) > badness(outcomes[b]); });
  json worst = json::array();
  for (size_t k = 0; k < std::min<size_t>(count, order.size()); ++k) {
    cv::Mat overlay;
    evaluate_one(classifier, point, segmenter, fields[order[k]], &overlay);
    const std::string png = "figures/" + prefix + "-" + std::to_string(k + 1) + ".png";
    write_text_atomic(dir + "/" + png, encode_png(overlay));
    worst.push_back({{"file", outcomes[order[k]].name}, {"overlay", png}});
  }
  return worst;
}

}  // namespace

FieldEvaluation evaluate_fields(const Classifier& classifier, const FieldSegmenter& segmenter,
                                const std::string& fields_dir,
                                const FieldEvaluationOptions& options) {
  std::vector<AnnotatedField> fields = read_field_annotations(fields_dir);
  if (!options.split_csv.empty()) {
    const auto groups = groups_of_part(options.split_csv, options.split_part);
    fields.erase(std::remove_if(fields.begin(), fields.end(),
                                [&](const auto& f) { return !groups.count(f.group); }),
                 fields.end());
  }
  if (fields.empty()) throw std::runtime_error("no annotated fields to evaluate in " + fields_dir);
  const std::string point_name =
      options.operating_point.empty() ? field_operating_point(classifier) : options.operating_point;
  const OperatingPoint& point = classifier.operating_point(point_name);
  std::vector<FieldOutcome> outcomes;
  std::optional<ProgressBar> bar;
  if (options.progress) bar.emplace(fields.size(), "fields", "field");
  for (const auto& field : fields) {
    outcomes.push_back(evaluate_one(classifier, point, segmenter, field, nullptr));
    if (bar) bar->update(outcomes.size());
  }
  if (bar) bar->finish();

  std::vector<double> group_annotated, group_measured;
  // The model's error rates correct the groups only when measured the way this run screens.
  std::optional<FieldErrorRates> matching_rates = FieldErrorRates::from_json(classifier.metadata());
  if (matching_rates && (matching_rates->segmenter != segmenter.name ||
                         matching_rates->operating_point != point_name))
    matching_rates.reset();
  FieldEvaluation ev{summarize_outcomes(point_name, point,
                                        FieldErrorRates::from_json(classifier.metadata()), outcomes,
                                        group_annotated, group_measured)};
  ev.result["fields_dir"] = fields_dir;
  ev.result["segmenter"] = segmenter.name;
  ev.result["split_part"] = options.split_csv.empty() ? "all" : options.split_part;
  if (!options.write_model.empty()) {
    // The error rates measured here go into a copy of the field model, for screening to correct
    // its counts with. Only validation fields may choose them.
    json rates = ev.result["error_rates"];
    rates["segmenter"] = segmenter.name;
    rates["operating_point"] = point_name;
    rates["measured_on"] = std::to_string(fields.size()) + " " +
                           ev.result["split_part"].get<std::string>() + " fields of " + fields_dir +
                           ", segmenter " + segmenter.name + ", operating point " + point_name;
    write_model_copy(options.model_path, options.write_model, {{"field_error_rates", rates}});
  }
  ev.result["text"] = ev.to_text();
  if (!options.out_dir.empty()) {
    fs::create_directories(options.out_dir + "/figures");
    plot_parasitemia(group_annotated, group_measured, 0.3,
                     options.out_dir + "/figures/parasitemia.png");
    ev.result["worst_fields"] = write_worst_overlays(
        classifier, point, segmenter, fields, outcomes, options.worst_fields, options.out_dir,
        "worst",
        [](const FieldOutcome& f) { return std::abs(f.measured.percent() - f.annotated_percent); });
    ev.result["lowest_recall_fields"] = write_worst_overlays(
        classifier, point, segmenter, fields, outcomes, options.worst_fields, options.out_dir,
        "lowest-recall", [](const FieldOutcome& f) { return -f.recall(); });
    write_text_atomic(options.out_dir + "/evaluation.json", ev.result.dump(2));
    write_text_atomic(options.out_dir + "/evaluation.txt", ev.to_text());
    write_report(ev.result, options.out_dir);
  }
  return ev;
}

std::string FieldEvaluation::to_text() const {
  const json& d = result["detection"];
  const json& c = result["cells"];
  const json& p = result["parasitemia"];
  const json& st = result["stages"];
  auto number = [](const json& v) { return v.is_number() ? v.get<double>() : NAN; };
  std::string verdicts;
  for (const auto& [verdict, n] : result["quality"].items())
    verdicts += (verdicts.empty() ? "" : ", ") + std::to_string(n.get<size_t>()) + " " + verdict;
  const double stage = number(st["accuracy_ring_trophozoite_gametocyte"]);
  char accuracy[32];
  std::snprintf(accuracy, sizeof accuracy, "%.1f%%", 100 * stage);
  const std::string stage_accuracy = std::isnan(stage) ? "n/a (no stages)" : accuracy;
  char text[2000];
  std::snprintf(
      text, sizeof text,
      "Fields: %zu (segmenter %s; operating point %s, threshold %.4f); quality: %s\n"
      "Detection recall: uninfected %.2f%% of %zu, infected %.2f%% of %zu; merged %.2f%% of "
      "%zu detections\n"
      "Recall per field: minimum %.1f%%, 5th percentile %.1f%%; usable fields below 90%%: %zu\n"
      "Cells (matched, not cut by the edge): %zu, AUC %.4f, sensitivity %.1f%% at 99%% and "
      "%.1f%% at 99.5%% specificity\n"
      "Stages: accuracy %s over %zu matched ring, trophozoite and gametocyte cells\n"
      "Parasitemia: %zu Parasitized calls (%zu not on an annotated infected cell); per group of "
      "fields (%zu): mean absolute error %.3f points, %zu within +-25%% of the annotation, "
      "correlation %.3f\n"
      "Time per field: %.3f s (segmentation and classification)\n",
      result.value("fields", size_t{0}), result.value("segmenter", "").c_str(),
      result.value("operating_point", "").c_str(), result.value("threshold", 0.0), verdicts.c_str(),
      100 * d.value("recall_uninfected", 0.0), d.value("annotated_uninfected", size_t{0}),
      100 * d.value("recall_infected", 0.0), d.value("annotated_infected", size_t{0}),
      100 * d.value("merged_fraction", 0.0), d.value("detections", size_t{0}),
      100 * d.value("field_recall_min", 0.0), 100 * d.value("field_recall_p5", 0.0),
      d.value("usable_fields_below_90_recall", size_t{0}), c.value("matched", size_t{0}),
      number(c["auc"]), 100 * c.value("sensitivity_at_99_specificity", 0.0),
      100 * c.value("sensitivity_at_99_5_specificity", 0.0), stage_accuracy.c_str(),
      st.value("matched_infected_with_stage", size_t{0}), p.value("calls", size_t{0}),
      p.value("calls_not_on_an_annotated_infected_cell", size_t{0}), p.value("groups", size_t{0}),
      p.value("group_mean_absolute_error_points", 0.0),
      p.value("groups_within_25_percent", size_t{0}), number(p["group_correlation"]),
      result.value("seconds_per_field", 0.0));
  return text;
}

}  // namespace malaria
