#include "field/quality.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

namespace malaria {
namespace {

// The thresholds sit far from every one of the 225 annotated IML fields (docs/ARCHITECTURE.md,
// "Field quality", gives the measured ranges) and far from the damage they catch.
constexpr double kMinContrast = 12;      // grey levels between background and cells
constexpr double kMinStainContrast = 5;  // grey levels more of green absorbed than red, blue
constexpr double kMaxNoise = 10;         // grey levels of pixel-to-pixel noise
constexpr double kMinSolidity = 0.75;    // red cells are round, noise blobs are not
constexpr double kMinCellDiameter = 10;  // pixels: smaller "cells" cannot be classified
constexpr double kMaxClipped = 0.2;      // share of pixels saturated in some channel
constexpr double kMinBrightness = 60;    // mean level of the brightest channel
constexpr size_t kFewCells = 20;         // fewer counted cells: a sparse area, warn
constexpr size_t kSampledRegions = 400;  // signals per region come from at most this many

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

// Background minus foreground colour, split by Otsu on the green channel of a small copy.
cv::Scalar foreground_difference(const cv::Mat& bgr) {
  const double scale = std::min(1.0, 640.0 / std::max(bgr.cols, bgr.rows));
  cv::Mat small = bgr, green, mask, inverse;
  if (scale < 1) cv::resize(bgr, small, {}, scale, scale, cv::INTER_AREA);
  cv::extractChannel(small, green, 1);
  cv::threshold(green, mask, 0, 255, cv::THRESH_BINARY_INV | cv::THRESH_OTSU);
  const size_t foreground = cv::countNonZero(mask);
  if (foreground == 0 || foreground == mask.total()) return {0, 0, 0};
  cv::bitwise_not(mask, inverse);
  return cv::mean(small, inverse) - cv::mean(small, mask);
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

}  // namespace

nlohmann::json QualitySignals::to_json() const {
  auto round2 = [](double v) { return std::round(v * 100) / 100; };
  return {{"candidates", candidates},
          {"contrast", round2(contrast)},
          {"stain_contrast", round2(stain_contrast)},
          {"noise", round2(noise)},
          {"solidity", round2(solidity)},
          {"brightness", round2(brightness)},
          {"clipped_fraction", std::round(clipped * 1e4) / 1e4},
          {"cell_diameter_px", round2(cell_diameter)}};
}

nlohmann::json FieldQuality::to_json() const {
  return {{"verdict", verdict}, {"reasons", reasons}, {"signals", signals.to_json()}};
}

FieldQuality assess_field_quality(const cv::Mat& bgr, const FieldSegmentation& segmentation) {
  FieldQuality q;
  QualitySignals& s = q.signals;
  const cv::Mat green = green_of(bgr);
  s.candidates = segmentation.cells.size();
  // Giemsa-stained cells absorb green more than red and blue, whatever the camera's colour
  // balance; black print or grey objects absorb all three alike.
  const cv::Scalar difference = foreground_difference(bgr);
  s.contrast = difference[1];
  s.stain_contrast = difference[1] - (difference[0] + difference[2]) / 2;
  s.noise = pixel_noise(green);
  {
    cv::Mat brightest, clipped;
    cv::Mat channels[3];
    cv::split(bgr, channels);
    brightest = cv::max(channels[0], cv::max(channels[1], channels[2]));
    s.brightness = cv::mean(brightest)[0];
    cv::compare(brightest, 254, clipped, cv::CMP_GE);
    s.clipped = double(cv::countNonZero(clipped)) / double(clipped.total());
  }
  s.cell_diameter = 2 * std::sqrt(segmentation.cell_area / CV_PI);
  std::vector<double> solidity;
  size_t counted = 0;
  for (const auto& cell : segmentation.cells) counted += !cell.cut_by_edge;
  const size_t step = std::max<size_t>(1, segmentation.cells.size() / kSampledRegions);
  for (size_t i = 0; i < segmentation.cells.size(); i += step) {
    const CellRegion& cell = segmentation.cells[i];
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(cell.mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    if (contours.empty()) continue;
    const auto& outline = *std::max_element(
        contours.begin(), contours.end(),
        [](const auto& a, const auto& b) { return cv::contourArea(a) < cv::contourArea(b); });
    std::vector<cv::Point> hull;
    cv::convexHull(outline, hull);
    const double hull_area = cv::contourArea(hull);
    if (hull_area > 0) solidity.push_back(cv::contourArea(outline) / hull_area);
  }
  s.solidity = median(solidity);

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
  }
  if (!q.failed() && counted < kFewCells) {
    q.verdict = "warn";
    q.reasons.push_back("only " + std::to_string(counted) + " red cells: a sparse area");
  }
  return q;
}

}  // namespace malaria
