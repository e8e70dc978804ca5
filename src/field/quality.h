// Whether a smear-field photo can be counted at all: a verdict from measured signals, so that a
// blank frame, a page of text, noise or a field too crowded to be a thin film is never turned
// into a parasitemia. Torch-free.
#pragma once

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "field/segmentation.h"

namespace malaria {

// More candidates than this in one photo is not a usable thin-film area (a 1280x960 IML field
// holds about 120 red cells; a 4000x3000 photo at that magnification about 1,200): the field
// fails and none of it is classified, which also bounds the work a single upload can ask for.
inline constexpr size_t kMaxCellsPerField = 3000;

struct QualitySignals {
  size_t candidates = 0;             // segmented regions, cut by the edge included
  double contrast = 0;               // background minus cell green level (0-255)
  double stain_contrast = 0;         // how much more green than red and blue the cells absorb
  double noise = 0;                  // robust pixel-noise level of the green channel (0-255)
  double solidity = 0;               // median region area / convex hull area
  double cell_diameter = 0;          // typical cell diameter in input pixels
  double brightness = 0;             // mean level of each pixel's brightest channel (0-255)
  double clipped = 0;                // share of pixels saturated (254+) in some channel
  double sharpness = 0;              // cell diameters per edge width (defocus lowers it)
  double background_unevenness = 0;  // spread of the background level across the field
  double colour_cast = 0;            // largest difference between the background's channels
  double coverage = 0;               // share of the field covered by stained objects (cells)
  double detector_confidence = -1;   // median detector score of the cells (-1: no detector)
  nlohmann::json to_json() const;
};

struct FieldQuality {
  std::string verdict = "ok";        // "ok", "warn" or "fail"
  std::vector<std::string> reasons;  // why it is not "ok", in words a technician can act on
  QualitySignals signals;
  bool failed() const { return verdict == "fail"; }
  nlohmann::json to_json() const;  // {"verdict", "reasons", "signals"}
};

FieldQuality assess_field_quality(const cv::Mat& bgr, const FieldSegmentation& segmentation);

}  // namespace malaria
