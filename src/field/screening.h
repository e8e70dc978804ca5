// Screening a smear field: segment the red cells, classify each masked crop, count, and draw the
// result for a microscopist to confirm. Torch-free header.
#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <vector>

#include "detect/detector_targets.h"
#include "eval/decision.h"
#include "field/parasitemia.h"
#include "field/quality.h"
#include "field/segmentation.h"
#include "store/slide_store.h"

namespace malaria {

class Classifier;
class CellDetector;

struct ScreenedCell {
  cv::Rect box;           // in pixels of the input image
  float probability = 0;  // calibrated P(Parasitized)
  CellDecision decision;
  int number = 0;     // 1, 2, ... for cells on the Parasitized side, as drawn on the overlay
  size_t region = 0;  // index into the segmentation's cells
  // From the detector: its confidence, its class probabilities (uninfected, then the stages),
  // and for a cell called Parasitized the most likely stage (index into kStageNames; -1: none).
  bool detected = false;
  float detector_score = 0;
  std::array<float, kDetectorClasses> class_probabilities{};
  int stage = -1;
};

struct ScreenedField {
  std::string file;
  int width = 0, height = 0;
  std::vector<ScreenedCell> cells;  // counted cells
  std::vector<cv::Rect> excluded;   // candidates cut by the image edge: drawn, not counted
  ParasitemiaSummary summary;
  FieldQuality quality;  // a failed field has no cells and no parasitemia
  double segment_seconds = 0, classify_seconds = 0;
  std::string segmenter;  // "detector" or "classic"
  // {"file", "width", "height", "segmenter", "quality": {...}, "cells": [{x, y, w, h,
  // probability_parasitized, label, decision, number, stage, stage_probabilities,
  // detector_score}], "excluded_cells": [{x, y, w, h}], "summary": {...},
  // "seconds": {...}}; the summary's parasitemia and interval are null for a failed field.
  nlohmann::json to_json() const;
};

// P(Parasitized) for n preprocessed crops (n x 3 x S x S). The CLI calls the model directly; the
// server sends them through its work queue.
using CellScorer = std::function<std::vector<float>(std::vector<float> pixels, size_t n)>;
CellScorer direct_scorer(const Classifier& classifier);

// Finds a field's red cells: the learned detector (its forward pass run directly or through
// the server's work queue) or the classical segmentation.
struct FieldSegmenter {
  std::string name;  // "detector" or "classic"
  std::function<FieldSegmentation(const cv::Mat& bgr)> segment;
};
FieldSegmenter classic_segmenter(const SegmentationOptions& options = SegmentationOptions());
// The detector's maps for one prepared input (CellDetector::prepare): the server sends them
// through its work queue; empty runs the network directly.
using DetectorRunner = std::function<std::vector<float>(std::vector<float> input, cv::Size size)>;
FieldSegmenter detector_segmenter(const CellDetector& detector, DetectorRunner runner = {});
// Crops per forward pass: a field's memory stays flat whatever its number of cells.
inline constexpr size_t kScreenBatch = 64;

// The model's operating point for fields: "parasitemia" when the file has it (chosen on
// validation field cells so that the count of Parasitized calls matches the true count), else
// the file's default.
std::string field_operating_point(const Classifier& classifier);

// Segments, judges the field's quality and, unless it fails, classifies every cell not cut by the
// edge (those are drawn but neither classified nor counted). `point` decides.
ScreenedField screen_field(const Classifier& classifier, const OperatingPoint& point,
                           const FieldSegmenter& segmenter, const cv::Mat& bgr,
                           const std::string& name, const CellScorer& scorer = {});

// The classification step for a field already segmented (evaluation matches the regions to
// annotations), kScreenBatch crops at a time.
ScreenedField classify_regions(const Classifier& classifier, const OperatingPoint& point,
                               const cv::Mat& bgr, const std::string& name,
                               const FieldSegmentation& segmentation,
                               const CellScorer& scorer = {});

// Boxes coloured by decision (red Parasitized, amber Inconclusive, green Uninfected, grey not
// counted), Parasitized cells numbered, and the field's count in a banner.
cv::Mat draw_screening_overlay(const cv::Mat& bgr, const ScreenedField& field);

// The largest field photo accepted, in bytes (server uploads and stored fields alike).
inline constexpr size_t kMaxFieldFileBytes = 20u << 20;

// A screened field as the records keep it: the uploaded bytes, its answer without the cells, and
// each counted cell's box, probability, decision and stage.
FieldInput field_record(const ScreenedField& field, const std::string& image_bytes,
                        const std::string& image_format, const std::string& model_id);

struct SlideOptions {
  std::optional<FieldErrorRates> error_rates;  // the field model's; none: no correction
  // How this screening ran: the rates correct it only when they were measured the same way.
  std::string segmenter, operating_point;
  double rbc_per_ul = kDefaultRbcPerMicrolitre;
  bool rbc_assumed = true;  // the default count, not the patient's
};

// {"fields": [...], "slide": {"name", "fields", "fields_used", "fields_failed": [{"file",
// "reasons"}], "warnings", ...summary over the usable fields, "corrected": {...} (see
// corrected_parasitemia; null without error rates), "parasites_per_ul": {...}}}
nlohmann::json screening_json(const std::vector<ScreenedField>& fields, const std::string& slide,
                              const SlideOptions& options = {});

}  // namespace malaria
