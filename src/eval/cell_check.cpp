#include "eval/cell_check.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgproc.hpp>
#include <vector>

namespace malaria {

nlohmann::json CellImageSignals::to_json() const {
  return {{"width", width},
          {"height", height},
          {"surround", surround},
          {"object_share", object_share},
          {"object_fill", object_fill},
          {"object_aspect", object_aspect},
          {"centre_offset", centre_offset},
          {"saturation", saturation},
          {"red_over_green", red_over_green},
          {"texture", texture},
          {"spread", spread},
          {"rim_width", rim_width},
          {"straight_cut", straight_cut}};
}

namespace {

// The limits below hold all but the rarest of the 22,080 NIH training cells (their signal ranges
// are in docs/ and the model card); each is set well outside that range.
constexpr int kMinSide = 16;
constexpr int kFieldSide = 400;          // larger, without a black surround, and many objects
constexpr double kMaxImageAspect = 3.0;  // NIH crops: at most about 1.6
constexpr int kSurroundLevel = 25;
constexpr double kBlank = 0.985;           // surround share: nothing there
constexpr double kSurroundPresent = 0.04;  // NIH crops: at least 0.12
constexpr double kMaxSurround = 0.70;      // NIH: at most 0.67; half a small cell: 0.72+
constexpr double kMinObjectShare = 0.80;   // NIH: 0.05% below 0.955
constexpr double kMinFill = 0.62;          // NIH: 0.05% below 0.72
constexpr double kMaxAspect = 2.6;         // NIH: at most 2.23
constexpr double kMaxCentreOffset = 0.17;  // NIH: 4 of 22,080 above; a cell cut in half: 0.2+
constexpr double kMinSaturation = 0.008;   // NIH: at least 0.013 (some are grey)
constexpr double kMinRedOverGreen = -30;   // NIH: at least -20
constexpr double kMinSpread = 1.0;         // NIH: at least 1.4; a flat colour: 0
constexpr double kMaxTexture = 0.6;        // NIH: at most 0.35
constexpr double kMaxRimWidth = 1.6;       // NIH: at most 1.31; a cell blurred by 10 px: 2.3+
constexpr double kMaxStraightCut = 0.85;   // NIH: at most 0.81; a cut cell: 1.2
constexpr int kSide = 64;                  // signals are measured at the model's input scale

cv::Mat largest_component(const cv::Mat& mask, double& share_of_mask) {
  cv::Mat labels, stats, centroids;
  const int n = cv::connectedComponentsWithStats(mask, labels, stats, centroids, 8);
  int best = 0;
  long total = 0, best_area = 0;
  for (int i = 1; i < n; ++i) {
    const long area = stats.at<int>(i, cv::CC_STAT_AREA);
    total += area;
    if (area > best_area) best_area = area, best = i;
  }
  share_of_mask = total > 0 ? double(best_area) / total : 0.0;
  return best > 0 ? cv::Mat(labels == best) : cv::Mat::zeros(mask.size(), CV_8U);
}

// Holes (the pale centre of a red cell, a parasite's vacuole) belong to the object.
cv::Mat fill_holes(const cv::Mat& mask) {
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  cv::Mat filled = cv::Mat::zeros(mask.size(), CV_8U);
  cv::drawContours(filled, contours, -1, cv::Scalar(255), cv::FILLED);
  return filled;
}

// Cell-like dark objects on a bright background (Otsu on the green channel).
cv::Mat dark_objects(const cv::Mat& bgr) {
  std::vector<cv::Mat> ch;
  cv::split(bgr, ch);
  cv::Mat blurred, mask;
  cv::GaussianBlur(ch[1], blurred, {5, 5}, 0);
  cv::threshold(blurred, mask, 0, 255, cv::THRESH_BINARY_INV | cv::THRESH_OTSU);
  cv::morphologyEx(mask, mask, cv::MORPH_OPEN,
                   cv::getStructuringElement(cv::MORPH_ELLIPSE, {3, 3}));
  return mask;
}

size_t count_cell_like(const cv::Mat& mask) {
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(mask.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_SIMPLE);
  const double image = double(mask.total());
  size_t n = 0;
  for (const auto& c : contours) {
    const double area = cv::contourArea(c);
    if (area < image * 0.0005 || area > image * 0.05) continue;
    std::vector<cv::Point> hull;
    cv::convexHull(c, hull);
    const double hull_area = cv::contourArea(hull);
    n += hull_area > 0 && area / hull_area > 0.85;
  }
  return n;
}

void measure_object(const cv::Mat& small, const cv::Mat& brightest, const cv::Mat& object,
                    CellImageSignals& s) {
  std::vector<std::vector<cv::Point>> contours;
  cv::findContours(object.clone(), contours, cv::RETR_EXTERNAL, cv::CHAIN_APPROX_NONE);
  if (contours.empty()) return;
  const auto& c = *std::max_element(contours.begin(), contours.end(), [](auto& a, auto& b) {
    return cv::contourArea(a) < cv::contourArea(b);
  });
  std::vector<cv::Point> hull;
  cv::convexHull(c, hull);
  const double area = cv::countNonZero(object), hull_area = cv::contourArea(hull);
  // A straight stretch of rim away from the image border is a cut, not a cell's edge (the crop's
  // border may truncate a cell; that side lies on the border and is not counted).
  std::vector<cv::Point> poly;
  cv::approxPolyDP(c, poly, 1.0, true);
  auto on_border = [](const cv::Point& p) {
    return p.x <= 1 || p.y <= 1 || p.x >= kSide - 2 || p.y >= kSide - 2;
  };
  double longest = 0;
  for (size_t i = 0; i < poly.size(); ++i) {
    const cv::Point &a = poly[i], &b = poly[(i + 1) % poly.size()];
    if (!(on_border(a) && on_border(b))) longest = std::max(longest, cv::norm(a - b));
  }
  s.straight_cut = area > 0 ? longest / std::sqrt(4 * area / M_PI) : 0.0;
  s.object_fill = hull_area > 0 ? std::min(1.0, area / hull_area) : 0.0;
  const cv::RotatedRect box = cv::minAreaRect(c);
  const double lo = std::min(box.size.width, box.size.height);
  s.object_aspect = lo > 0 ? std::max(box.size.width, box.size.height) / lo : 99.0;
  const cv::Moments m = cv::moments(object, true);
  if (m.m00 > 0)
    s.centre_offset = std::hypot(m.m10 / m.m00 - kSide / 2.0, m.m01 / m.m00 - kSide / 2.0) / kSide;
  cv::Mat hsv, inner;
  cv::cvtColor(small, hsv, cv::COLOR_BGR2HSV);
  s.saturation = cv::mean(hsv, object)[1] / 255.0;
  const cv::Scalar mean = cv::mean(small, object);
  s.red_over_green = mean[2] - mean[1];
  std::vector<cv::Mat> ch;
  cv::split(small, ch);
  cv::Scalar g_mean, g_sd;
  cv::erode(object, inner, cv::getStructuringElement(cv::MORPH_ELLIPSE, {5, 5}));
  // Inside the rim, so the blend into the black surround does not count as structure.
  cv::meanStdDev(ch[1], g_mean, g_sd, cv::countNonZero(inner) > 0 ? inner : object);
  s.spread = g_sd[0];
  // A cut-out cell has a crisp rim; a blurred one fades into the surround over many pixels.
  const double perimeter = cv::arcLength(c, true);
  if (perimeter > 0) {
    const double level = cv::mean(brightest, object)[0];
    const cv::Mat fading = (brightest >= kSurroundLevel) & (brightest < 0.6 * level);
    s.rim_width = cv::countNonZero(fading) / perimeter;
  }
  if (cv::countNonZero(inner) > 0) {
    cv::Mat lap;
    cv::Laplacian(ch[1], lap, CV_32F, 1);
    s.texture = cv::mean(cv::abs(lap), inner)[0] / (s.spread + 4.0);
  }
}

CellCheck refuse(CellCheck c, std::string reason) {
  c.ok = false;
  c.reason = std::move(reason);
  return c;
}

}  // namespace

CellCheck check_cell_image(const cv::Mat& bgr) {
  CellCheck check;
  auto& s = check.signals;
  s.width = bgr.cols;
  s.height = bgr.rows;
  if (bgr.empty() || std::min(bgr.cols, bgr.rows) < kMinSide)
    return refuse(check, "too small to be an image of a red cell (" + std::to_string(bgr.cols) +
                             "x" + std::to_string(bgr.rows) + " pixels)");
  if (double(std::max(bgr.cols, bgr.rows)) / std::min(bgr.cols, bgr.rows) > kMaxImageAspect)
    return refuse(check, "far too elongated for an image of one red cell");
  cv::Mat small;
  cv::resize(bgr, small, {kSide, kSide}, 0, 0, cv::INTER_AREA);
  cv::Mat brightest;
  cv::max(small.reshape(1, kSide * kSide).col(0), small.reshape(1, kSide * kSide).col(1),
          brightest);
  cv::max(brightest, small.reshape(1, kSide * kSide).col(2), brightest);
  const cv::Mat surround = (brightest.reshape(1, kSide) < kSurroundLevel);
  s.surround = double(cv::countNonZero(surround)) / surround.total();
  if (s.surround >= kBlank) return refuse(check, "blank: no cell in the image");
  if (s.surround > kMaxSurround)
    return refuse(check, "the cell fills too little of the image (cut off, or not a cell crop)");
  const bool nih_style = s.surround >= kSurroundPresent;
  if (!nih_style && std::max(bgr.cols, bgr.rows) >= kFieldSide) {
    cv::Mat view;
    const double scale = 1024.0 / std::max(bgr.cols, bgr.rows);
    cv::resize(bgr, view, {}, std::min(1.0, scale), std::min(1.0, scale), cv::INTER_AREA);
    const size_t cells = count_cell_like(dark_objects(view));
    if (cells >= 5) {
      check.whole_field = true;
      return refuse(check, "this looks like a whole smear field (" + std::to_string(cells) +
                               " cell-like objects), not one cell: screen it instead "
                               "(Screen a field on the page, malaria screen, POST /api/v1/screen)");
    }
  }
  // The model has only seen cells cut out onto black (as the NIH crops and screen's own crops
  // are): a cell on its smear background, or anything else without that surround, is not one.
  if (!nih_style)
    return refuse(check,
                  "not a cell cut out on a black background, as the model knows cells "
                  "(for a photo of a smear, screen it instead)");
  cv::Mat foreground = ~surround;
  cv::morphologyEx(foreground, foreground, cv::MORPH_OPEN,
                   cv::getStructuringElement(cv::MORPH_ELLIPSE, {3, 3}));
  cv::Mat object = fill_holes(largest_component(foreground, s.object_share));
  measure_object(small, brightest.reshape(1, kSide), object, s);
  const double object_area = double(cv::countNonZero(object)) / object.total();
  if (object_area < 0.08) return refuse(check, "no cell-sized object in the middle of the image");
  if (s.object_share < kMinObjectShare)
    return refuse(check, "several separate objects: not a single red cell");
  if (s.object_fill < kMinFill || s.object_aspect > kMaxAspect)
    return refuse(check,
                  "the object's shape is not that of a whole red cell (cut, torn or "
                  "not a cell)");
  if (s.straight_cut > kMaxStraightCut)
    return refuse(check, "the cell has a straight cut edge: part of it is missing");
  if (s.centre_offset > kMaxCentreOffset)
    return refuse(check, "the cell is not in the middle of the image (cut off or misplaced)");
  if (s.spread < kMinSpread) return refuse(check, "a uniform colour with no cell structure");
  if (s.saturation < kMinSaturation || s.red_over_green < kMinRedOverGreen)
    return refuse(check, "colours unlike a Giemsa-stained red cell");
  if (s.texture > kMaxTexture) return refuse(check, "grainy like noise, not a cell");
  if (s.rim_width > kMaxRimWidth)
    return refuse(check, "too blurred to see a cell's structure (out of focus)");
  return check;
}

}  // namespace malaria
