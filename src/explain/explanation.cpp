#include "explain/explanation.h"

#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <stdexcept>

namespace malaria {

cv::Mat heatmap_overlay(const cv::Mat& bgr, const cv::Mat& heatmap, double opacity) {
  if (bgr.empty() || bgr.type() != CV_8UC3)
    throw std::invalid_argument("overlay needs a BGR image");
  cv::Mat resized, scaled, colour, out;
  cv::resize(heatmap, resized, bgr.size(), 0, 0, cv::INTER_LINEAR);
  resized.convertTo(scaled, CV_8U, 255.0);
  cv::applyColorMap(scaled, colour, cv::COLORMAP_JET);
  cv::addWeighted(bgr, 1.0 - opacity, colour, opacity, 0.0, out);
  return out;
}

std::string encode_png(const cv::Mat& bgr) {
  std::vector<uchar> bytes;
  if (!cv::imencode(".png", bgr, bytes)) throw std::runtime_error("PNG encoding failed");
  return std::string(bytes.begin(), bytes.end());
}

nlohmann::json heatmap_json(const cv::Mat& heatmap) {
  nlohmann::json rows = nlohmann::json::array();
  for (int y = 0; y < heatmap.rows; ++y) {
    nlohmann::json row = nlohmann::json::array();
    for (int x = 0; x < heatmap.cols; ++x)
      row.push_back(std::round(heatmap.at<float>(y, x) * 1000.0) / 1000.0);
    rows.push_back(std::move(row));
  }
  return rows;
}

namespace {

cv::Mat cell_mask(const cv::Mat& bgr) {
  cv::Mat gray, mask;
  cv::cvtColor(bgr, gray, cv::COLOR_BGR2GRAY);
  cv::compare(gray, 10, mask, cv::CMP_GT);
  return mask;
}

}  // namespace

cv::Mat parasite_mask(const cv::Mat& bgr) {
  cv::Mat mask = cell_mask(bgr);
  // Away from the rim: the cell's dark edge is not a parasite.
  const int rim = std::max(1, std::min(bgr.rows, bgr.cols) / 20);
  cv::erode(mask, mask, cv::getStructuringElement(cv::MORPH_ELLIPSE, {2 * rim + 1, 2 * rim + 1}));
  cv::Mat green;
  cv::extractChannel(bgr, green, 1);
  cv::Mat blurred;
  cv::GaussianBlur(green, blurred, cv::Size(3, 3), 0);
  std::vector<uchar> values;
  for (int y = 0; y < blurred.rows; ++y)
    for (int x = 0; x < blurred.cols; ++x)
      if (mask.at<uchar>(y, x)) values.push_back(blurred.at<uchar>(y, x));
  cv::Mat target = cv::Mat::zeros(bgr.size(), CV_8U);
  if (values.size() < 10) return target;
  std::sort(values.begin(), values.end());
  const double median = values[values.size() / 2];
  const double darkest = values[values.size() / 50];  // 2nd percentile
  if (darkest > 0.8 * median) return target;          // nothing stands out: no visible parasite
  // Pixels closer to the darkest than to the median, joined into blobs.
  const double cut = (darkest + median) / 2;
  cv::Mat dark;
  cv::compare(blurred, cut, dark, cv::CMP_LE);
  dark &= mask;
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(dark, labels, stats, centroids, 8);
  // The blob holding the darkest pixel is the parasite.
  double min_value;
  cv::Point min_at;
  cv::minMaxLoc(blurred, &min_value, nullptr, &min_at, nullptr, dark);
  const int blob = n > 1 ? labels.at<int>(min_at) : 0;
  if (blob > 0) cv::compare(labels, blob, target, cv::CMP_EQ);
  return target;
}

PointingResult pointing_game(const cv::Mat& bgr, const cv::Mat& heatmap, int tolerance) {
  PointingResult r;
  cv::Mat target = parasite_mask(bgr);
  if (cv::countNonZero(target) == 0) return r;
  r.has_target = true;
  if (tolerance > 0)
    cv::dilate(
        target, target,
        cv::getStructuringElement(cv::MORPH_ELLIPSE, {2 * tolerance + 1, 2 * tolerance + 1}));
  cv::Mat resized;
  cv::resize(heatmap, resized, bgr.size(), 0, 0, cv::INTER_LINEAR);
  cv::Point peak;
  cv::minMaxLoc(resized, nullptr, nullptr, nullptr, &peak);
  r.hit = target.at<uchar>(peak) != 0;
  const cv::Mat cell = cell_mask(bgr);
  const int area = cv::countNonZero(cell);
  r.chance = area > 0 ? double(cv::countNonZero(target & cell)) / area : 0.0;
  return r;
}

}  // namespace malaria
