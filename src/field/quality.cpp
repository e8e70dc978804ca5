#include "field/quality.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

namespace malaria {
namespace {

// The thresholds sit far from every one of the 225 annotated IML fields (the README's "Smear
// fields" gives the measured ranges) and far from the damage they catch.
constexpr double kMinContrast = 12;      // grey levels between background and cells
constexpr double kMinStainContrast = 5;  // grey levels more of green absorbed than red, blue
constexpr double kMaxNoise = 10;         // grey levels of pixel-to-pixel noise
constexpr double kMinSolidity = 0.75;    // red cells are round, noise blobs are not
constexpr double kMinCellDiameter = 10;  // pixels: smaller "cells" cannot be classified
constexpr double kMaxClipped = 0.2;      // share of pixels saturated in some channel
constexpr double kMinBrightness = 60;    // mean level of the brightest channel
constexpr double kMinSharpness = 6;      // cell diameters per edge width: defocused (IML >= 8.5)
constexpr double kWarnSharpness = 10;    // soft (IML: 1 of 225 fields below)
constexpr double kWarnUnevenness = 30;   // grey levels of background spread (IML <= 27.4)
constexpr double kWarnColourCast = 70;   // grey levels between the background's channels (<= 31)
// Share of the field covered by cells: above it they overlap (the thick end of the film) and
// stacked cells are missed (held-out IML fields above it: recall 88-95%, below: 96-100%).
constexpr double kWarnCoverage = 0.55;
constexpr double kWarnDetectorConfidence = 0.45;  // median peak score (IML validation: >= 0.6)
constexpr size_t kFewCells = 20;                  // fewer counted cells: a sparse area, warn
constexpr size_t kSampledRegions = 400;           // signals per region come from at most this many

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  const auto mid = v.begin() + v.size() / 2;
  std::nth_element(v.begin(), mid, v.end());
  return *mid;
}

cv::Mat green_of(const cv::Mat& bgr) {
  cv::Mat green;
  cv::extractChannel(bgr, green, 1);
  return green;
}

// The field split once into background and stained objects: Otsu on the green channel of a copy
// at most 640 px a side. Every colour and background signal comes from this one split.
struct BackgroundSplit {
  cv::Mat green;                                // of the small copy
  cv::Mat background;                           // 255 where the small copy is background
  cv::Scalar background_mean, foreground_mean;  // BGR; both zero when the split is degenerate
};

BackgroundSplit split_background(const cv::Mat& bgr) {
  const double scale = std::min(1.0, 640.0 / std::max(bgr.cols, bgr.rows));
  cv::Mat small = bgr, foreground;
  if (scale < 1) cv::resize(bgr, small, {}, scale, scale, cv::INTER_AREA);
  BackgroundSplit split;
  split.green = green_of(small);
  cv::threshold(split.green, split.background, 0, 255, cv::THRESH_BINARY | cv::THRESH_OTSU);
  const size_t background = cv::countNonZero(split.background);
  if (background == 0 || background == split.background.total()) return split;
  cv::bitwise_not(split.background, foreground);
  split.background_mean = cv::mean(small, split.background);
  split.foreground_mean = cv::mean(small, foreground);
  return split;
}

// Noise as 1.4826 x the median absolute Laplacian over a central window at full resolution:
// a micrograph is smooth from pixel to pixel (the optics blur it), sensor noise and random
// images are not.
double pixel_noise(const cv::Mat& green) {
  const int w = std::min(green.cols, 512), h = std::min(green.rows, 512);
  const cv::Mat window = green(cv::Rect((green.cols - w) / 2, (green.rows - h) / 2, w, h));
  cv::Mat laplacian;
  cv::Laplacian(window, laplacian, CV_32F, 1);
  std::vector<double> values;
  values.reserve(laplacian.total() / 4 + 1);
  for (int r = 0; r < laplacian.rows; r += 2)
    for (int c = 0; c < laplacian.cols; c += 2)
      values.push_back(std::abs(laplacian.at<float>(r, c)));
  // A 4-neighbour Laplacian of white noise has 20x its variance: back to one pixel's scale.
  return 1.4826 * median(std::move(values)) / std::sqrt(20.0);
}

// How sharp the cell edges are, in cell diameters per edge width: the strongest gradients
// (99th percentile of the green channel's Sobel magnitude, over a central window at full
// resolution) against the cell-background contrast give the edge width in pixels, and the cell
// diameter makes it independent of magnification. Defocus widens the edges.
double edge_sharpness(const cv::Mat& green, double contrast, double cell_diameter) {
  if (contrast <= 0 || cell_diameter <= 0) return 0;
  const int w = std::min(green.cols, 768), h = std::min(green.rows, 768);
  const cv::Mat window = green(cv::Rect((green.cols - w) / 2, (green.rows - h) / 2, w, h));
  cv::Mat gx, gy, magnitude;
  cv::Sobel(window, gx, CV_32F, 1, 0, 3, 1.0 / 8);  // scaled to grey levels per pixel
  cv::Sobel(window, gy, CV_32F, 0, 1, 3, 1.0 / 8);
  cv::magnitude(gx, gy, magnitude);
  std::vector<float> values(magnitude.begin<float>(), magnitude.end<float>());
  const auto at = values.begin() + static_cast<long>(0.99 * (values.size() - 1));
  std::nth_element(values.begin(), at, values.end());
  return *at / contrast * cell_diameter;
}

// The spread of the background level across the field (grey levels of green, 10th to 90th
// percentile over a 6 x 6 grid of tiles): a haze or uneven illumination.
double background_unevenness(const BackgroundSplit& split) {
  const cv::Mat& green = split.green;
  const cv::Mat& mask = split.background;
  std::vector<double> levels;
  const int tiles = 6;
  for (int ty = 0; ty < tiles; ++ty)
    for (int tx = 0; tx < tiles; ++tx) {
      const cv::Rect tile(tx * green.cols / tiles, ty * green.rows / tiles, green.cols / tiles,
                          green.rows / tiles);
      if (tile.area() == 0 || cv::countNonZero(mask(tile)) < tile.area() / 10) continue;
      levels.push_back(cv::mean(green(tile), mask(tile))[0]);
    }
  if (levels.size() < 4) return 0;
  std::sort(levels.begin(), levels.end());
  return levels[levels.size() * 9 / 10] - levels[levels.size() / 10];
}

}  // namespace

nlohmann::json QualitySignals::to_json() const {
  auto round2 = [](double v) { return std::round(v * 100) / 100; };
  return {
      {"candidates", candidates},
      {"contrast", round2(contrast)},
      {"stain_contrast", round2(stain_contrast)},
      {"noise", round2(noise)},
      {"solidity", round2(solidity)},
      {"brightness", round2(brightness)},
      {"clipped_fraction", std::round(clipped * 1e4) / 1e4},
      {"cell_diameter_px", round2(cell_diameter)},
      {"sharpness", round2(sharpness)},
      {"background_unevenness", round2(background_unevenness)},
      {"colour_cast", round2(colour_cast)},
      {"coverage", round2(coverage)},
      {"detector_confidence",
       detector_confidence < 0 ? nlohmann::json() : nlohmann::json(round2(detector_confidence))}};
}

nlohmann::json FieldQuality::to_json() const {
  return {{"verdict", verdict}, {"reasons", reasons}, {"signals", signals.to_json()}};
}

namespace {

// Median solidity (area over convex hull area) of at most kSampledRegions regions.
double median_solidity(const FieldSegmentation& segmentation) {
  std::vector<double> solidity;
  const size_t step = std::max<size_t>(1, segmentation.cells.size() / kSampledRegions);
  for (size_t i = 0; i < segmentation.cells.size(); i += step) {
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(segmentation.cells[i].mask.clone(), contours, cv::RETR_EXTERNAL,
                     cv::CHAIN_APPROX_SIMPLE);
    if (contours.empty()) continue;
    const auto& outline = *std::max_element(
        contours.begin(), contours.end(),
        [](const auto& a, const auto& b) { return cv::contourArea(a) < cv::contourArea(b); });
    std::vector<cv::Point> hull;
    cv::convexHull(outline, hull);
    const double hull_area = cv::contourArea(hull);
    if (hull_area > 0) solidity.push_back(cv::contourArea(outline) / hull_area);
  }
  return median(std::move(solidity));
}

QualitySignals measure_signals(const cv::Mat& bgr, const FieldSegmentation& segmentation) {
  QualitySignals s;
  const cv::Mat green = green_of(bgr);
  const BackgroundSplit split = split_background(bgr);
  // Giemsa-stained cells absorb green more than red and blue, whatever the camera's colour
  // balance; black print or grey objects absorb all three alike.
  const cv::Scalar difference = split.background_mean - split.foreground_mean;
  s.candidates = segmentation.cells.size();
  s.contrast = difference[1];
  s.stain_contrast = difference[1] - (difference[0] + difference[2]) / 2;
  s.background_unevenness = background_unevenness(split);
  if (!split.background.empty())
    s.coverage =
        1.0 - double(cv::countNonZero(split.background)) / double(split.background.total());
  // The background's colour: far from grey is a white balance or filter the model never saw.
  const cv::Scalar& b = split.background_mean;
  s.colour_cast = std::max({b[0], b[1], b[2]}) - std::min({b[0], b[1], b[2]});
  s.noise = pixel_noise(green);
  cv::Mat channels[3], brightest, clipped;
  cv::split(bgr, channels);
  brightest = cv::max(channels[0], cv::max(channels[1], channels[2]));
  s.brightness = cv::mean(brightest)[0];
  cv::compare(brightest, 254, clipped, cv::CMP_GE);
  s.clipped = double(cv::countNonZero(clipped)) / double(clipped.total());
  s.cell_diameter = 2 * std::sqrt(segmentation.cell_area / CV_PI);
  s.sharpness = edge_sharpness(green, s.contrast, s.cell_diameter);
  s.solidity = median_solidity(segmentation);
  std::vector<double> scores;
  for (const auto& cell : segmentation.cells)
    if (cell.detected && !cell.cut_by_edge) scores.push_back(cell.score);
  if (!scores.empty()) s.detector_confidence = median(std::move(scores));
  return s;
}

// The verdict from the signals: any failed rule fails the field; the milder ones only warn.
FieldQuality judge(const QualitySignals& s, size_t counted) {
  FieldQuality q;
  q.signals = s;
  auto fail = [&](const std::string& reason) {
    q.verdict = "fail";
    q.reasons.push_back(reason);
  };
  if (s.candidates > kMaxCellsPerField)
    fail(std::to_string(s.candidates) + " cell candidates, more than a thin-film field holds (" +
         std::to_string(kMaxCellsPerField) + "): too thick, or not a blood smear");
  if (s.clipped > kMaxClipped)
    fail("overexposed: " + std::to_string(int(std::round(100 * s.clipped))) +
         "% of the pixels are saturated");
  if (s.brightness < kMinBrightness) fail("underexposed: the image is too dark");
  if (s.contrast < kMinContrast)
    fail(
        "no contrast between cells and background: blank, over- or under-exposed, or out of "
        "focus");
  if (s.noise > kMaxNoise) fail("the image is dominated by pixel noise, not a micrograph");
  if (counted == 0) {
    fail("no red cells found");
  } else {
    if (s.stain_contrast < kMinStainContrast)
      fail("the objects are grey, not Giemsa-stained red cells");
    if (s.solidity < kMinSolidity) fail("the objects are not shaped like red cells");
    if (s.cell_diameter < kMinCellDiameter)
      fail("the objects are too small to be red cells at a usable magnification");
    if (s.sharpness < kMinSharpness) fail("out of focus: the cell edges are blurred");
  }
  if (q.failed()) return q;
  auto warn = [&](const std::string& reason) {
    q.verdict = "warn";
    q.reasons.push_back(reason);
  };
  if (counted < kFewCells) warn("only " + std::to_string(counted) + " red cells: a sparse area");
  if (s.sharpness < kWarnSharpness) warn("slightly out of focus: check the cells by eye");
  if (s.background_unevenness > kWarnUnevenness)
    warn("uneven background (haze or illumination): cells may be missed");
  if (s.coverage > kWarnCoverage)
    warn(
        "crowded: the cells overlap here (a thick part of the film) and some may be missed; "
        "prefer fields where the cells lie side by side");
  if (s.detector_confidence >= 0 && s.detector_confidence < kWarnDetectorConfidence)
    warn("the detector is unsure these are red cells: check the field by eye");
  if (s.colour_cast > kWarnColourCast)
    warn("strong colour cast: check the white balance; calls may be less reliable");
  return q;
}

}  // namespace

FieldQuality assess_field_quality(const cv::Mat& bgr, const FieldSegmentation& segmentation) {
  const size_t counted = std::count_if(segmentation.cells.begin(), segmentation.cells.end(),
                                       [](const CellRegion& cell) { return !cell.cut_by_edge; });
  return judge(measure_signals(bgr, segmentation), counted);
}

}  // namespace malaria
