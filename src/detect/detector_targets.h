// The torch-free half of the cell detector: its classes, the training targets drawn from
// annotated boxes, the field augmentation, and the decoding of its output maps into boxes.
//
// The detector is a CenterNet-style dense network on a shrunk field: at every output pixel
// (kDetectorStride input pixels) it predicts whether a red cell's centre lies there (one
// class-agnostic heat map: every red cell, infected or not, is found by the same map), the
// cell's class (uninfected or a parasite stage), its box size and the centre's sub-pixel offset.
#pragma once

#include <array>
#include <opencv2/core.hpp>
#include <random>
#include <string>
#include <vector>

namespace malaria {

inline constexpr int kDetectorStride = 4;  // output pixel = this many input pixels
// Inputs are padded to a multiple of this (the network halves the size four times).
inline constexpr int kDetectorAlign = 16;
inline constexpr int kDetectorClasses = 5;
inline const std::array<std::string, kDetectorClasses> kDetectorClassNames = {
    "uninfected", "ring", "trophozoite", "schizont", "gametocyte"};
// Output channels: heat logit, class logits, box width and height (output pixels), offset x, y.
inline constexpr int kDetectorOutputs = 1 + kDetectorClasses + 2 + 2;

// An infected cell annotated without its stage ("Parasitized" in a CSV): a cell for the heat
// map, size and offset, with no class target.
inline constexpr int kInfectedStageUnknown = -2;
// The class target of such a cell (cross-entropy's ignore index).
inline constexpr int64_t kIgnoredClass = -100;
// The class of an annotated type ("red blood cell" or "Uninfected", "ring", ...);
// kInfectedStageUnknown for "Parasitized"; -1 for "difficult" and unknown types (ignored).
int detector_class_of(const std::string& type);

// One training image at the detector's input scale: boxes in its pixels, their classes, and
// regions where the loss is not applied (unboxed cell-like regions, "difficult" boxes).
struct DetectorSample {
  cv::Mat bgr;
  std::vector<cv::Rect2f> boxes;
  std::vector<int> classes;
  std::vector<cv::Rect2f> ignore;
};

// Targets for one sample, on the output grid (rows x cols = input / kDetectorStride).
struct DetectorTargets {
  int rows = 0, cols = 0;
  std::vector<float> heat;    // rows x cols: Gaussian peaks at cell centres, 1 at the centre
  std::vector<float> weight;  // rows x cols: 0 inside ignored regions, else 1
  // Per cell whose centre falls on the grid: its grid index, class, size and offset targets.
  std::vector<int64_t> index, cls;
  std::vector<float> size, offset;  // 2 per cell
};
DetectorTargets build_detector_targets(const DetectorSample& sample);

// Geometric augmentation and cropping: a random window of `side` x `side` pixels at a random
// scale (1 +- scale_jitter around the nominal input scale already applied), random flips and
// transposition. Boxes follow; those whose centre leaves the window are dropped (ignore regions
// are clipped).
DetectorSample random_window(const DetectorSample& sample, int side, double scale_jitter,
                             std::mt19937& rng);

// Photometric damage of the kinds real fields show, at `strength` (0: none, 1: the training
// default): colour cast and gain, gamma, contrast, an uneven haze of a random tint, blur, noise
// and JPEG re-compression.
void augment_field_photometric(cv::Mat& bgr, double strength, std::mt19937& rng);

// A detected cell in the detector's input pixels.
struct RawDetection {
  cv::Rect2f box;
  float score = 0;  // heat-map peak (sigmoid)
  std::array<float, kDetectorClasses> class_probabilities{};
};
// Peaks of the heat map (sigmoid already applied, rows x cols) that are the largest in their
// 3 x 3 neighbourhood and at least `threshold`, strongest first, at most `max_detections`.
// `maps` holds the kDetectorOutputs - 1 other channels (class logits, size, offset), each
// rows x cols, in that order.
std::vector<RawDetection> decode_detections(const float* heat, const float* maps, int rows,
                                            int cols, float threshold, size_t max_detections);

// A red cell found in a field, in the field's pixels.
struct DetectedCell {
  cv::Rect box;
  float score = 0;  // the detector's confidence that a red cell's centre is there
  // P(class) over kDetectorClassNames: uninfected, ring, trophozoite, schizont, gametocyte.
  std::array<float, kDetectorClasses> class_probabilities{};
};

}  // namespace malaria
