// Screening a smear field: segment the red cells, classify each masked crop, count, and draw the
// result for a microscopist to confirm. Torch-free header.
#pragma once

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "eval/decision.h"
#include "field/parasitemia.h"
#include "field/segmentation.h"

namespace malaria {

class Classifier;

struct ScreenedCell {
  cv::Rect box;           // in pixels of the input image
  float probability = 0;  // calibrated P(Parasitized)
  CellDecision decision;
  int number = 0;     // 1, 2, ... for cells on the Parasitized side, as drawn on the overlay
  size_t region = 0;  // index into the segmentation's cells
};

struct ScreenedField {
  std::string file;
  int width = 0, height = 0;
  std::vector<ScreenedCell> cells;  // counted cells
  std::vector<cv::Rect> excluded;   // candidates cut by the image edge: drawn, not counted
  ParasitemiaSummary summary;
  double segment_seconds = 0, classify_seconds = 0;
  // {"file", "width", "height", "cells": [{x, y, w, h, probability_parasitized, label, decision,
  // number}], "excluded_cells": [{x, y, w, h}], "summary": {...}, "seconds": {...}}
  nlohmann::json to_json() const;
};

// The model's operating point for fields: "parasitemia" when the file has it (chosen on
// validation field cells so that the count of Parasitized calls matches the true count), else
// the file's default.
std::string field_operating_point(const Classifier& classifier);

// Cells cut by the edge are drawn but neither classified nor counted. `point` decides.
ScreenedField screen_field(const Classifier& classifier, const OperatingPoint& point,
                           const cv::Mat& bgr, const std::string& name,
                           const SegmentationOptions& options = SegmentationOptions());

// The same for a field already segmented (evaluation matches the regions to annotations).
ScreenedField classify_regions(const Classifier& classifier, const OperatingPoint& point,
                               const cv::Mat& bgr, const std::string& name,
                               const FieldSegmentation& segmentation);

// Boxes coloured by decision (red Parasitized, amber Inconclusive, green Uninfected, grey not
// counted), Parasitized cells numbered, and the field's count in a banner.
cv::Mat draw_screening_overlay(const cv::Mat& bgr, const ScreenedField& field);

// {"fields": [...], "slide": {"name", "fields", ...summary}}
nlohmann::json screening_json(const std::vector<ScreenedField>& fields, const std::string& slide);

}  // namespace malaria
