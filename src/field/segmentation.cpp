#include "field/segmentation.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>

namespace malaria {
namespace {

// Cells left to right within rows about one cell high, as a person reads the field.
void sort_in_reading_order(FieldSegmentation& result) {
  const int row = std::max(1, static_cast<int>(std::sqrt(result.cell_area)));
  std::sort(result.cells.begin(), result.cells.end(), [row](const auto& a, const auto& b) {
    const int ra = (a.box.y + a.box.height / 2) / row, rb = (b.box.y + b.box.height / 2) / row;
    return ra != rb ? ra < rb : a.box.x < b.box.x;
  });
}

// Fills background components enclosed by the foreground (not touching the border) that are
// smaller than max_area: the pale centre of a red cell, but not the gap enclosed by a ring of
// touching cells, which is larger.
cv::Mat fill_holes(const cv::Mat& foreground, double max_area) {
  cv::Mat background, labels, stats, centroids;
  cv::bitwise_not(foreground, background);
  const int n = cv::connectedComponentsWithStats(background, labels, stats, centroids, 4);
  std::vector<uint8_t> fill(n, 0);
  for (int i = 1; i < n; ++i) {
    const int x = stats.at<int>(i, cv::CC_STAT_LEFT), y = stats.at<int>(i, cv::CC_STAT_TOP);
    const int w = stats.at<int>(i, cv::CC_STAT_WIDTH), h = stats.at<int>(i, cv::CC_STAT_HEIGHT);
    const bool inside = x > 0 && y > 0 && x + w < foreground.cols && y + h < foreground.rows;
    fill[i] = inside && stats.at<int>(i, cv::CC_STAT_AREA) < max_area ? 255 : 0;
  }
  cv::Mat filled = foreground.clone();
  for (int r = 0; r < labels.rows; ++r) {
    const int* l = labels.ptr<int>(r);
    uint8_t* f = filled.ptr<uint8_t>(r);
    for (int c = 0; c < labels.cols; ++c) f[c] |= fill[l[c]];
  }
  return filled;
}

// A single-cell area from the shape of clumps: pi r^2, where r is the area-weighted median over
// connected components (every hole filled) of the largest inscribed radius. A lone cell, a pair and
// a clump all have about one cell's inscribed radius, while debris and platelets are small and so
// carry little weight. 0 when there is no component.
double inscribed_cell_area(const cv::Mat& filled, double min_area) {
  cv::Mat labels, stats, centroids, distance;
  const int n = cv::connectedComponentsWithStats(filled, labels, stats, centroids, 8, CV_32S);
  cv::distanceTransform(filled, distance, cv::DIST_L2, 5);
  std::vector<float> radius(n, 0);
  for (int r = 0; r < labels.rows; ++r) {
    const int* l = labels.ptr<int>(r);
    const float* d = distance.ptr<float>(r);
    for (int c = 0; c < labels.cols; ++c) radius[l[c]] = std::max(radius[l[c]], d[c]);
  }
  std::vector<std::pair<float, double>> weighted;  // radius, area
  double total = 0;
  for (int i = 1; i < n; ++i) {
    const double area = stats.at<int>(i, cv::CC_STAT_AREA);
    if (area < min_area) continue;
    weighted.emplace_back(radius[i], area);
    total += area;
  }
  if (weighted.empty()) return 0;
  std::sort(weighted.begin(), weighted.end());
  double seen = 0;
  for (const auto& [r, area] : weighted)
    if ((seen += area) >= total / 2) return CV_PI * r * r;
  return 0;
}

// The area-weighted median area of solid (convex) components once every hole is filled: those
// are single cells, while clumps of touching cells are concave. Where no component is solid (every
// cell touches another), the inscribed-radius estimate instead. 0 when there is no component.
double typical_cell_area(const cv::Mat& foreground, double min_area) {
  const cv::Mat filled = fill_holes(foreground, 1e18);
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(filled, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  std::vector<double> areas;
  for (const auto& contour : contours) {
    const double area = cv::contourArea(contour);
    if (area < min_area) continue;
    std::vector<cv::Point> hull;
    cv::convexHull(contour, hull);
    if (area / cv::contourArea(hull) > 0.93) areas.push_back(area);
  }
  if (areas.size() < 3) return inscribed_cell_area(filled, min_area);
  // Weighted by area, so that a few specks of debris cannot pull it down.
  std::sort(areas.begin(), areas.end());
  double total = 0, seen = 0;
  for (double a : areas) total += a;
  for (double a : areas)
    if ((seen += a) >= total / 2) return a;
  return areas.back();
}

cv::Mat disk(double diameter) {
  const int d = std::max(3, static_cast<int>(diameter) | 1);
  return cv::getStructuringElement(cv::MORPH_ELLIPSE, {d, d});
}

// One label per cell (0 background): peaks of the distance transform at least ~0.9 radius apart
// and 0.4 radius deep are the cell centres, and each foreground pixel goes to the nearest one.
cv::Mat split_touching_cells(const cv::Mat& foreground, double radius, int& labels_used) {
  cv::Mat distance, dilated;
  cv::distanceTransform(foreground, distance, cv::DIST_L2, 5);
  cv::dilate(distance, dilated, disk(0.9 * radius));
  cv::Mat peaks = (distance >= dilated - 1e-3f) & (distance > 0.4 * radius);
  cv::dilate(peaks, peaks, disk(0.5 * radius));  // plateaus and close maxima become one peak
  cv::Mat peak_labels;
  labels_used = cv::connectedComponents(peaks, peak_labels, 8, CV_32S) - 1;
  // Nearest peak: distanceTransform labels each pixel with the zero component closest to it.
  cv::Mat not_peaks, nearest_distance, nearest;
  cv::bitwise_not(peaks, not_peaks);
  cv::distanceTransform(not_peaks, nearest_distance, nearest, cv::DIST_L2, 5, cv::DIST_LABEL_CCOMP);
  double max_label = 0;
  cv::minMaxLoc(nearest, nullptr, &max_label);
  std::vector<int> to_peak(static_cast<size_t>(max_label) + 1, 0);
  for (int r = 0; r < peaks.rows; ++r)
    for (int c = 0; c < peaks.cols; ++c)
      if (peaks.at<uint8_t>(r, c)) to_peak[nearest.at<int>(r, c)] = peak_labels.at<int>(r, c);
  cv::Mat cells(foreground.size(), CV_32S, cv::Scalar(0));
  for (int r = 0; r < cells.rows; ++r) {
    const uint8_t* f = foreground.ptr<uint8_t>(r);
    const int* n = nearest.ptr<int>(r);
    int* out = cells.ptr<int>(r);
    for (int c = 0; c < cells.cols; ++c) out[c] = f[c] ? to_peak[n[c]] : 0;
  }
  return cells;
}

struct LabelStats {
  cv::Rect box;
  int area = 0;
};
// Box and pixel count of labels 1..count of a CV_32S label image, in one pass (index = label).
std::vector<LabelStats> label_stats(const cv::Mat& labels, int count) {
  std::vector<LabelStats> stats(count + 1);
  for (int r = 0; r < labels.rows; ++r) {
    const int* l = labels.ptr<int>(r);
    for (int c = 0; c < labels.cols; ++c) {
      if (l[c] <= 0 || l[c] > count) continue;
      LabelStats& s = stats[l[c]];
      s.box = s.area++ ? (s.box | cv::Rect(c, r, 1, 1)) : cv::Rect(c, r, 1, 1);
    }
  }
  return stats;
}

// Stained objects (cells, white cells, platelets) against the bright background: Otsu on the
// green channel, which the stain absorbs, then an opening. Empty for a uniform image (all white,
// all black, an empty field), which has no two populations to separate.
cv::Mat stained_foreground(const cv::Mat& bgr) {
  cv::Mat green, foreground, background;
  cv::extractChannel(bgr, green, 1);
  cv::GaussianBlur(green, green, {5, 5}, 0);
  cv::threshold(green, foreground, 0, 255, cv::THRESH_BINARY_INV | cv::THRESH_OTSU);
  const double covered = cv::countNonZero(foreground) / static_cast<double>(foreground.total());
  if (covered < 0.01 || covered > 0.95) return {};
  cv::bitwise_not(foreground, background);
  if (cv::mean(green, background)[0] - cv::mean(green, foreground)[0] < 12) return {};
  cv::morphologyEx(foreground, foreground, cv::MORPH_OPEN, disk(5));
  return foreground;
}

}  // namespace

FieldSegmentation segment_cells(const cv::Mat& bgr, const SegmentationOptions& options) {
  FieldSegmentation result;
  if (bgr.empty() || bgr.type() != CV_8UC3 || std::min(bgr.cols, bgr.rows) < 16) return result;
  const double scale =
      std::min(1.0, options.max_side / static_cast<double>(std::max(bgr.cols, bgr.rows)));
  cv::Mat image = bgr;
  if (scale < 1.0) cv::resize(bgr, image, {}, scale, scale, cv::INTER_AREA);

  cv::Mat foreground = stained_foreground(image);
  if (foreground.empty()) return result;

  const double smallest = 30;  // pixels: nothing smaller is a cell at any magnification we take
  const double cell_area = typical_cell_area(foreground, smallest);
  if (cell_area <= 0 || cell_area > 0.25 * foreground.total()) return result;
  foreground = fill_holes(foreground, 0.35 * cell_area);
  const double radius = std::sqrt(cell_area / CV_PI);
  int labels = 0;
  const cv::Mat cells = split_touching_cells(foreground, radius, labels);
  result.cell_area = cell_area / (scale * scale);
  const cv::Size size = cells.size();
  const cv::Rect whole(0, 0, bgr.cols, bgr.rows);

  // mask and box in segmentation pixels; the region is stored in input pixels.
  auto add_region = [&](const cv::Mat& mask, const cv::Rect& box) {
    CellRegion region;
    if (scale < 1.0) {
      region.box = cv::Rect(cvRound(box.x / scale), cvRound(box.y / scale),
                            cvRound(box.width / scale), cvRound(box.height / scale)) &
                   whole;
      cv::resize(mask, region.mask, region.box.size(), 0, 0, cv::INTER_NEAREST);
    } else {
      region.mask = mask;
      region.box = box;
    }
    region.area = cv::countNonZero(region.mask);
    region.cut_by_edge =
        box.x == 0 || box.y == 0 || box.br().x >= size.width || box.br().y >= size.height;
    result.cells.push_back(std::move(region));
  };
  const double min_area = options.min_cell_fraction * cell_area;
  const double max_area = options.max_cell_fraction * cell_area;
  const std::vector<LabelStats> stats = label_stats(cells, labels);
  for (int l = 1; l <= labels; ++l) {
    const LabelStats& st = stats[l];
    if (st.area == 0) continue;
    if (st.area < min_area) {
      ++result.rejected_small;
      continue;
    }
    const cv::Mat mask = cells(st.box) == l;
    if (st.area <= max_area) {
      add_region(mask, st.box);
      continue;
    }
    // A clump the first split left whole: split it again with peaks allowed closer together.
    cv::Mat padded;
    cv::copyMakeBorder(mask, padded, 1, 1, 1, 1, cv::BORDER_CONSTANT, 0);
    int parts = 0;
    const cv::Mat split = split_touching_cells(padded, 0.75 * radius, parts);
    const std::vector<LabelStats> part_stats = label_stats(split, parts);
    for (int k = 1; k <= parts; ++k) {
      const LabelStats& part = part_stats[k];
      if (part.area == 0) continue;
      if (part.area < min_area || part.area > max_area) {
        part.area < min_area ? ++result.rejected_small : ++result.rejected_large;
        continue;
      }
      add_region(split(part.box) == k, part.box + st.box.tl() - cv::Point(1, 1));
    }
    if (parts == 0) ++result.rejected_large;
  }
  sort_in_reading_order(result);
  return result;
}

FieldSegmentation regions_from_detections(const cv::Mat& bgr,
                                          const std::vector<DetectedCell>& detections) {
  FieldSegmentation result;
  const cv::Rect whole(0, 0, bgr.cols, bgr.rows);
  std::vector<double> areas;
  for (const DetectedCell& d : detections) {
    CellRegion region;
    region.box = d.box & whole;
    if (region.box.width < 2 || region.box.height < 2) continue;
    region.detected = true;
    region.score = d.score;
    region.class_probabilities = d.class_probabilities;
    const cv::Size size = region.box.size();
    cv::Mat ellipse(size, CV_8U, cv::Scalar(0));
    // The box as predicted (it may reach past the image edge), its ellipse slightly enlarged.
    const cv::Point2f centre(float(d.box.x + d.box.width / 2.0 - region.box.x),
                             float(d.box.y + d.box.height / 2.0 - region.box.y));
    cv::ellipse(ellipse,
                cv::RotatedRect(centre, cv::Size2f(d.box.width * 1.08f, d.box.height * 1.08f), 0),
                cv::Scalar(255), cv::FILLED);
    cv::Mat green, object;
    cv::extractChannel(bgr(region.box), green, 1);
    cv::threshold(green, object, 0, 255, cv::THRESH_BINARY_INV | cv::THRESH_OTSU);
    object &= ellipse;
    std::vector<std::vector<cv::Point>> contours;
    cv::findContours(object, contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
    cv::Mat mask(size, CV_8U, cv::Scalar(0));
    const cv::Point2f at(std::clamp(centre.x, 0.f, size.width - 1.f),
                         std::clamp(centre.y, 0.f, size.height - 1.f));
    double best = 0;
    for (size_t c = 0; c < contours.size(); ++c) {
      const double area = cv::contourArea(contours[c]);
      if (area > best && cv::pointPolygonTest(contours[c], at, true) > -0.15 * d.box.width) {
        best = area;
        mask.setTo(0);
        cv::drawContours(mask, contours, int(c), cv::Scalar(255), cv::FILLED);
      }
    }
    const int ellipse_area = cv::countNonZero(ellipse);
    if (cv::countNonZero(mask) < 0.35 * ellipse_area) mask = ellipse;
    region.mask = mask;
    region.area = cv::countNonZero(mask);
    region.cut_by_edge = region.box.x == 0 || region.box.y == 0 || region.box.br().x >= bgr.cols ||
                         region.box.br().y >= bgr.rows;
    areas.push_back(region.area);
    result.cells.push_back(std::move(region));
  }
  if (!areas.empty()) {
    std::nth_element(areas.begin(), areas.begin() + areas.size() / 2, areas.end());
    result.cell_area = areas[areas.size() / 2];
  }
  sort_in_reading_order(result);
  return result;
}

cv::Mat masked_crop(const cv::Mat& bgr, const CellRegion& cell) {
  cv::Mat crop(cell.box.size(), bgr.type(), cv::Scalar::all(0));
  bgr(cell.box).copyTo(crop, cell.mask);
  return crop;
}

}  // namespace malaria
