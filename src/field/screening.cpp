#include "field/screening.h"

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <opencv2/imgproc.hpp>

#include "data/dataset.h"
#include "data/image.h"
#include "detect/detector.h"
#include "model/classifier.h"
#include "util/text.h"

namespace malaria {
namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

std::string field_operating_point(const Classifier& classifier) {
  const auto& points = classifier.info().operating_points;
  return points.count("parasitemia") ? "parasitemia" : classifier.info().operating_point;
}

CellScorer direct_scorer(const Classifier& classifier) {
  return [&classifier](std::vector<float> pixels, size_t n) {
    return classifier.predict(pixels.data(), n);
  };
}

FieldSegmenter classic_segmenter(const SegmentationOptions& options) {
  return {"classic", [options](const cv::Mat& bgr) { return segment_cells(bgr, options); }};
}

FieldSegmenter detector_segmenter(const CellDetector& detector, DetectorRunner runner) {
  return {"detector", [&detector, runner](const cv::Mat& bgr) {
            if (std::min(bgr.cols, bgr.rows) < kMinFieldSide) return FieldSegmentation{};
            cv::Size size;
            std::vector<float> input = detector.prepare(bgr, size);
            const std::vector<float> maps =
                runner ? runner(std::move(input), size) : detector.forward(input.data(), 1, size);
            return regions_from_detections(bgr, detector.decode(maps.data(), size, bgr.size()));
          }};
}

ScreenedField screen_field(const Classifier& classifier, const OperatingPoint& point,
                           const FieldSegmenter& segmenter, const cv::Mat& bgr,
                           const std::string& name, const CellScorer& scorer) {
  const auto start = std::chrono::steady_clock::now();
  const FieldSegmentation segmentation = segmenter.segment(bgr);
  FieldQuality quality = assess_field_quality(bgr, segmentation);
  const double segment_seconds = seconds_since(start);
  ScreenedField field;
  if (quality.failed()) {  // nothing is classified or counted
    field.file = name;
    field.width = bgr.cols;
    field.height = bgr.rows;
  } else {
    field = classify_regions(classifier, point, bgr, name, segmentation, scorer);
  }
  field.quality = std::move(quality);
  field.segment_seconds = segment_seconds;
  field.segmenter = segmenter.name;
  return field;
}

ScreenedField classify_regions(const Classifier& classifier, const OperatingPoint& point,
                               const cv::Mat& bgr, const std::string& name,
                               const FieldSegmentation& segmentation, const CellScorer& scorer) {
  ScreenedField field;
  field.file = name;
  field.width = bgr.cols;
  field.height = bgr.rows;
  const auto start = std::chrono::steady_clock::now();
  std::vector<size_t> counted;
  for (size_t r = 0; r < segmentation.cells.size(); ++r) {
    if (segmentation.cells[r].cut_by_edge)
      field.excluded.push_back(segmentation.cells[r].box);
    else
      counted.push_back(r);
  }
  const CellScorer score = scorer ? scorer : direct_scorer(classifier);
  const int side = classifier.image_size();
  const size_t plane = 3ull * side * side;
  std::vector<float> probabilities;
  probabilities.reserve(counted.size());
  for (size_t first = 0; first < counted.size(); first += kScreenBatch) {
    const size_t n = std::min(kScreenBatch, counted.size() - first);
    std::vector<float> pixels(n * plane);
    for (size_t i = 0; i < n; ++i)
      to_chw_float(resize_rgb(masked_crop(bgr, segmentation.cells[counted[first + i]]), side),
                   pixels.data() + i * plane);
    const std::vector<float> chunk = score(std::move(pixels), n);
    probabilities.insert(probabilities.end(), chunk.begin(), chunk.end());
  }
  field.classify_seconds = seconds_since(start);

  field.summary.excluded = field.excluded.size();
  int number = 0;
  for (size_t i = 0; i < counted.size(); ++i) {
    const CellRegion& region = segmentation.cells[counted[i]];
    ScreenedCell cell{region.box, probabilities[i], decide(probabilities[i], point), 0, counted[i]};
    const bool parasitized = cell.decision.label == kClassNames[kParasitized];
    if (parasitized) cell.number = ++number;
    if (region.detected) {
      cell.detected = true;
      cell.detector_score = region.score;
      cell.class_probabilities = region.class_probabilities;
      field.summary.staged = true;
      // The stage of a cell the classifier calls Parasitized: the detector's likeliest stage.
      if (parasitized) {
        const auto& p = region.class_probabilities;
        cell.stage = int(std::max_element(p.begin() + 1, p.end()) - p.begin()) - 1;
        ++field.summary.stages[cell.stage];
      }
    }
    field.summary.cells++;
    field.summary.parasitized += parasitized;
    field.summary.inconclusive += cell.decision.decision == kInconclusive;
    field.cells.push_back(cell);
  }
  return field;
}

nlohmann::json ScreenedField::to_json() const {
  nlohmann::json list = nlohmann::json::array();
  for (const auto& c : cells) {
    nlohmann::json cell = {{"x", c.box.x},
                           {"y", c.box.y},
                           {"w", c.box.width},
                           {"h", c.box.height},
                           {"probability_parasitized", c.probability},
                           {"label", c.decision.label},
                           {"decision", c.decision.decision}};
    if (c.number) cell["number"] = c.number;
    if (c.detected) {
      auto round3 = [](float v) { return std::round(v * 1000.0) / 1000.0; };
      cell["detector_score"] = round3(c.detector_score);
      cell["stage"] = c.stage >= 0 ? nlohmann::json(kStageNames[c.stage]) : nlohmann::json();
      // P(stage) among the stages, and the detector's own P(uninfected) beside them.
      const auto& p = c.class_probabilities;
      const double infected = std::max(1e-6, 1.0 - p[0]);
      nlohmann::json stages = nlohmann::json::object();
      for (int k = 0; k < 4; ++k) stages[kStageNames[k]] = round3(float(p[k + 1] / infected));
      cell["stage_probabilities"] = stages;
      cell["detector_p_uninfected"] = round3(p[0]);
    }
    list.push_back(cell);
  }
  nlohmann::json excluded_list = nlohmann::json::array();
  for (const auto& b : excluded)
    excluded_list.push_back({{"x", b.x}, {"y", b.y}, {"w", b.width}, {"h", b.height}});
  nlohmann::json counts = summary.to_json();
  if (quality.failed())
    for (const char* key : {"parasitemia_percent", "ci_low", "ci_high"}) counts[key] = nullptr;
  return {{"file", file},
          {"width", width},
          {"height", height},
          {"segmenter", segmenter},
          {"quality", quality.to_json()},
          {"cells", list},
          {"excluded_cells", excluded_list},
          {"summary", counts},
          {"seconds", {{"segmentation", segment_seconds}, {"classification", classify_seconds}}}};
}

cv::Mat draw_screening_overlay(const cv::Mat& bgr, const ScreenedField& field) {
  cv::Mat out = bgr.clone();
  const int thick = std::max(1, std::min(bgr.cols, bgr.rows) / 480);
  const double font = std::max(0.5, std::min(bgr.cols, bgr.rows) / 1200.0);
  for (const cv::Rect& box : field.excluded)
    cv::rectangle(out, box, {150, 150, 150}, thick, cv::LINE_AA);
  // Uninfected first, so that the calls a person must check are drawn on top.
  for (int pass = 0; pass < 2; ++pass)
    for (const ScreenedCell& cell : field.cells) {
      const bool uninfected = cell.decision.decision == kClassNames[kUninfected];
      if (uninfected != (pass == 0)) continue;
      const cv::Scalar colour = uninfected                                ? cv::Scalar(60, 170, 60)
                                : cell.decision.decision == kInconclusive ? cv::Scalar(0, 170, 255)
                                                                          : cv::Scalar(40, 40, 220);
      cv::rectangle(out, cell.box, colour, uninfected ? thick : 2 * thick, cv::LINE_AA);
      if (!cell.number) continue;
      // The number, and the stage's initial when the detector told it (R, T, S, G).
      std::string text = std::to_string(cell.number);
      if (cell.stage >= 0) text += std::string(1, char(std::toupper(kStageNames[cell.stage][0])));
      const cv::Point at(cell.box.x, std::max(14, cell.box.y - 4));
      cv::putText(out, text, at, cv::FONT_HERSHEY_SIMPLEX, font, {255, 255, 255}, 3 * thick,
                  cv::LINE_AA);
      cv::putText(out, text, at, cv::FONT_HERSHEY_SIMPLEX, font, colour, thick, cv::LINE_AA);
    }
  const ParasitemiaSummary& s = field.summary;
  char banner[200];
  if (field.quality.failed())
    std::snprintf(
        banner, sizeof banner, "not counted: %s",
        field.quality.reasons.empty() ? "failed quality" : field.quality.reasons.front().c_str());
  else
    std::snprintf(banner, sizeof banner, "%zu cells, %zu parasitized (%.2f%%), %zu inconclusive%s",
                  s.cells, s.parasitized, s.percent(), s.inconclusive,
                  s.stages[kGametocyte] ? ", gametocytes" : "");
  int base = 0;
  const cv::Size size = cv::getTextSize(banner, cv::FONT_HERSHEY_SIMPLEX, font, thick, &base);
  cv::rectangle(out, {0, 0, size.width + 16, size.height + base + 12}, {255, 255, 255}, cv::FILLED);
  cv::putText(out, banner, {8, size.height + 6}, cv::FONT_HERSHEY_SIMPLEX, font, {0, 0, 0}, thick,
              cv::LINE_AA);
  return out;
}

nlohmann::json screening_json(const std::vector<ScreenedField>& fields, const std::string& slide,
                              const SlideOptions& options) {
  nlohmann::json list = nlohmann::json::array(), failed = nlohmann::json::array();
  ParasitemiaSummary total;
  for (const auto& field : fields) {
    list.push_back(field.to_json());
    if (field.quality.failed())
      failed.push_back({{"file", field.file}, {"reasons", field.quality.reasons}});
    else
      total += field.summary;
  }
  nlohmann::json summary = total.to_json();
  summary["name"] = slide;
  summary["fields"] = fields.size();
  summary["fields_used"] = fields.size() - failed.size();
  summary["fields_failed"] = failed;
  nlohmann::json warnings = nlohmann::json::array();
  if (total.cells == 0) {
    for (const char* key : {"parasitemia_percent", "ci_low", "ci_high"}) summary[key] = nullptr;
    warnings.push_back("No usable field: no parasitemia can be given.");
  } else if (total.cells < kSlideMinimumCells) {
    warnings.push_back("Only " + std::to_string(total.cells) +
                       " cells in usable fields: the interval is wide; screen more fields (about "
                       "1,000 cells)");
  }
  const bool rates_apply = options.error_rates &&
                           options.error_rates->segmenter == options.segmenter &&
                           options.error_rates->operating_point == options.operating_point;
  if (options.error_rates && !rates_apply && total.cells > 0)
    warnings.push_back(
        "No corrected figure: the field model's error rates were measured with the " +
        options.error_rates->segmenter + " segmenter at its " +
        options.error_rates->operating_point + " point, not as screened here.");
  if (total.cells > 0 && rates_apply) {
    summary["corrected"] =
        corrected_parasitemia(total, *options.error_rates, options.rbc_per_ul, options.rbc_assumed);
    summary["parasites_per_ul"] = summary["corrected"]["parasites_per_ul"];
  } else {
    summary["corrected"] = nullptr;
    if (total.cells > 0) {
      const Interval ci = total.interval();
      summary["parasites_per_ul"] = {{"value", total.percent() / 100 * options.rbc_per_ul},
                                     {"ci_low", ci.low * options.rbc_per_ul},
                                     {"ci_high", ci.high * options.rbc_per_ul},
                                     {"rbc_per_ul", options.rbc_per_ul},
                                     {"rbc_per_ul_assumed", options.rbc_assumed}};
    } else {
      summary["parasites_per_ul"] = nullptr;
    }
  }
  summary["warnings"] = warnings;
  return {{"fields", list}, {"slide", summary}};
}

FieldInput field_record(const ScreenedField& field, const std::string& image_bytes,
                        const std::string& image_format, const std::string& model_id) {
  FieldInput record;
  // The file's name only: a folder's path may name a patient.
  record.filename = printable(std::filesystem::path(field.file).filename().string(), 200);
  record.image_format = image_format;
  record.image = image_bytes;
  record.width = field.width;
  record.height = field.height;
  record.quality_verdict = field.quality.verdict;
  record.result = field.to_json();
  record.result.erase("cells");
  record.result["file"] = record.filename;
  record.model_id = model_id;
  for (const ScreenedCell& c : field.cells) {
    StoredCell cell;
    cell.x = c.box.x;
    cell.y = c.box.y;
    cell.width = c.box.width;
    cell.height = c.box.height;
    cell.probability = c.probability;
    cell.label = c.decision.label;
    cell.decision = c.decision.decision;
    if (c.stage >= 0) cell.stage = kStageNames[size_t(c.stage)];
    record.cells.push_back(std::move(cell));
  }
  return record;
}

}  // namespace malaria
