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
constexpr double kMinSharpness = 6;      // cell diameters per edge width: defocused (IML >= 8.5)
constexpr double kWarnSharpness = 10;    // soft (IML: 1 of 225 fields below)
constexpr double kWarnUnevenness = 30;   // grey levels of background spread (IML <= 27.4)
constexpr double kWarnColourCast = 70;   // grey levels between the background's channels (<= 31)
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
double background_unevenness(const cv::Mat& bgr) {
  const double scale = std::min(1.0, 640.0 / std::max(bgr.cols, bgr.rows));
  cv::Mat small = bgr, green, mask;
  if (scale < 1) cv::resize(bgr, small, {}, scale, scale, cv::INTER_AREA);
  cv::extractChannel(small, green, 1);
  cv::threshold(green, mask, 0, 255, cv::THRESH_BINARY | cv::THRESH_OTSU);  // background
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
  return {{"candidates", candidates},
          {"contrast", round2(contrast)},
          {"stain_contrast", round2(stain_contrast)},
          {"noise", round2(noise)},
          {"solidity", round2(solidity)},
          {"brightness", round2(brightness)},
          {"clipped_fraction", std::round(clipped * 1e4) / 1e4},
          {"cell_diameter_px", round2(cell_diameter)},
          {"sharpness", round2(sharpness)},
          {"background_unevenness", round2(background_unevenness)},
          {"colour_cast", round2(colour_cast)}};
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
  s.background_unevenness = background_unevenness(bgr);
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
  s.sharpness = edge_sharpness(green, s.contrast, s.cell_diameter);
  {
    // The background's colour: far from grey is a white balance or filter the model never saw.
    cv::Mat mask;
    cv::threshold(green, mask, 0, 255, cv::THRESH_BINARY | cv::THRESH_OTSU);
    const cv::Scalar background = cv::mean(bgr, mask);
    s.colour_cast = std::max({background[0], background[1], background[2]}) -
                    std::min({background[0], background[1], background[2]});
  }
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
  if (counted > 0 && s.sharpness < kMinSharpness) fail("out of focus: the cell edges are blurred");
  if (q.failed()) return q;
  auto warn = [&](const std::string& reason) {
    q.verdict = "warn";
    q.reasons.push_back(reason);
  };
  if (counted < kFewCells) warn("only " + std::to_string(counted) + " red cells: a sparse area");
  if (s.sharpness < kWarnSharpness) warn("slightly out of focus: check the cells by eye");
  if (s.background_unevenness > kWarnUnevenness)
    warn("uneven background (haze or illumination): cells may be missed");
  if (s.colour_cast > kWarnColourCast)
    warn("strong colour cast: check the white balance; calls may be less reliable");
  return q;
}

}  // namespace malaria
