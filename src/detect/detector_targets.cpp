#include "detect/detector_targets.h"

#include <algorithm>
#include <cmath>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>

#include "data/augment.h"

namespace malaria {

int detector_class_of(const std::string& type) {
  if (type == "red blood cell" || type == "Uninfected" || type == "uninfected") return 0;
  if (type == "Parasitized" || type == "parasitized") return kInfectedStageUnknown;
  for (int c = 1; c < kDetectorClasses; ++c)
    if (type == kDetectorClassNames[c]) return c;
  return -1;
}

DetectorTargets build_detector_targets(const DetectorSample& sample) {
  DetectorTargets t;
  t.rows = sample.bgr.rows / kDetectorStride;
  t.cols = sample.bgr.cols / kDetectorStride;
  t.heat.assign(size_t(t.rows) * t.cols, 0.f);
  t.weight.assign(size_t(t.rows) * t.cols, 1.f);
  const float s = kDetectorStride;
  for (const cv::Rect2f& r : sample.ignore) {
    const int x0 = std::max(0, int(std::floor(r.x / s))),
              y0 = std::max(0, int(std::floor(r.y / s)));
    const int x1 = std::min(t.cols - 1, int(std::ceil((r.x + r.width) / s)));
    const int y1 = std::min(t.rows - 1, int(std::ceil((r.y + r.height) / s)));
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) t.weight[size_t(y) * t.cols + x] = 0.f;
  }
  for (size_t i = 0; i < sample.boxes.size(); ++i) {
    const cv::Rect2f& b = sample.boxes[i];
    const float cx = (b.x + b.width / 2) / s, cy = (b.y + b.height / 2) / s;
    const int ix = int(cx), iy = int(cy);
    if (ix < 0 || iy < 0 || ix >= t.cols || iy >= t.rows) continue;
    const float w = b.width / s, h = b.height / s;
    // CenterNet's peak width, about a sixth of the cell: neighbouring cells keep separate peaks.
    const float sigma = std::max(0.5f, 0.15f * std::min(w, h));
    const int radius = int(std::ceil(3 * sigma));
    for (int y = std::max(0, iy - radius); y <= std::min(t.rows - 1, iy + radius); ++y)
      for (int x = std::max(0, ix - radius); x <= std::min(t.cols - 1, ix + radius); ++x) {
        const float dx = x - ix, dy = y - iy;
        float& v = t.heat[size_t(y) * t.cols + x];
        v = std::max(v, std::exp(-(dx * dx + dy * dy) / (2 * sigma * sigma)));
        t.weight[size_t(y) * t.cols + x] = 1.f;  // a boxed cell is never ignored
      }
    t.index.push_back(int64_t(iy) * t.cols + ix);
    // An infected cell of unknown stage teaches where a cell is, not its class.
    t.cls.push_back(sample.classes[i] >= 0 ? sample.classes[i] : kIgnoredClass);
    t.size.insert(t.size.end(), {w, h});
    t.offset.insert(t.offset.end(), {cx - ix, cy - iy});
  }
  return t;
}

DetectorSample random_window(const DetectorSample& sample, int side, double scale_jitter,
                             std::mt19937& rng) {
  std::uniform_real_distribution<double> unit(0, 1);
  const double scale = 1 + scale_jitter * (2 * unit(rng) - 1);
  cv::Mat scaled;
  cv::resize(sample.bgr, scaled, {}, scale, scale, scale < 1 ? cv::INTER_AREA : cv::INTER_LINEAR);
  // Smaller than the window: pad with the field's own median-ish background (its mean colour).
  if (scaled.cols < side || scaled.rows < side) {
    const cv::Scalar fill = cv::mean(scaled);
    cv::copyMakeBorder(scaled, scaled, 0, std::max(0, side - scaled.rows), 0,
                       std::max(0, side - scaled.cols), cv::BORDER_CONSTANT, fill);
  }
  const int x0 = std::uniform_int_distribution<int>(0, scaled.cols - side)(rng);
  const int y0 = std::uniform_int_distribution<int>(0, scaled.rows - side)(rng);
  const bool flip_x = unit(rng) < 0.5, flip_y = unit(rng) < 0.5, transpose = unit(rng) < 0.5;

  DetectorSample out;
  cv::Mat window = scaled(cv::Rect(x0, y0, side, side)).clone();
  flip_image(window, flip_x, flip_y);
  if (transpose) cv::transpose(window, window);
  out.bgr = window;
  auto place = [&](const cv::Rect2f& b) {
    cv::Rect2f r(float(b.x * scale - x0), float(b.y * scale - y0), float(b.width * scale),
                 float(b.height * scale));
    if (flip_x) r.x = side - r.x - r.width;
    if (flip_y) r.y = side - r.y - r.height;
    if (transpose) r = cv::Rect2f(r.y, r.x, r.height, r.width);
    return r;
  };
  for (size_t i = 0; i < sample.boxes.size(); ++i) {
    const cv::Rect2f r = place(sample.boxes[i]);
    const float cx = r.x + r.width / 2, cy = r.y + r.height / 2;
    if (cx < 0 || cy < 0 || cx >= side || cy >= side) continue;
    out.boxes.push_back(r);
    out.classes.push_back(sample.classes[i]);
  }
  const cv::Rect2f whole(0, 0, float(side), float(side));
  for (const cv::Rect2f& b : sample.ignore) {
    const cv::Rect2f r = place(b) & whole;
    if (r.area() > 0) out.ignore.push_back(r);
  }
  return out;
}

namespace {

// A smooth random field in [0, 1] the size of `size`: a coarse grid of random values enlarged.
cv::Mat smooth_field(cv::Size size, int grid, std::mt19937& rng) {
  cv::Mat coarse(grid, grid, CV_32F), out;
  std::uniform_real_distribution<float> unit(0, 1);
  for (int i = 0; i < coarse.rows * coarse.cols; ++i) coarse.at<float>(i) = unit(rng);
  cv::resize(coarse, out, size, 0, 0, cv::INTER_CUBIC);
  return cv::min(cv::max(out, 0), 1);
}

}  // namespace

void augment_field_photometric(cv::Mat& bgr, double strength, std::mt19937& rng) {
  if (strength <= 0) return;
  std::uniform_real_distribution<double> unit(0, 1);
  auto around = [&](double spread) { return 1 + strength * spread * (2 * unit(rng) - 1); };
  cv::Mat f;
  bgr.convertTo(f, CV_32FC3, 1.0 / 255);
  // Camera white balance and exposure: a gain per channel and overall, contrast about the mean.
  const double gain = around(0.2);
  cv::multiply(f, cv::Scalar(gain * around(0.12), gain * around(0.12), gain * around(0.12)), f);
  const cv::Scalar mean = cv::mean(f);
  const double contrast = around(0.3);
  f = (f - mean) * contrast + mean;
  // An uneven haze: the field pulled towards a pale tint, more in some places than others
  // (the pinkish background of the fields the classical segmentation lost).
  if (unit(rng) < 0.6 * std::min(1.0, strength)) {
    const cv::Mat alpha = smooth_field(f.size(), 3, rng) * (0.55 * strength * unit(rng));
    const cv::Scalar tint(0.75 + 0.25 * unit(rng), 0.65 + 0.3 * unit(rng), 0.8 + 0.2 * unit(rng));
    cv::Mat alpha3, tinted(f.size(), CV_32FC3, tint);
    cv::Mat planes[] = {alpha, alpha, alpha};
    cv::merge(planes, 3, alpha3);
    f = f.mul(1 - alpha3) + tinted.mul(alpha3);
  }
  // Uneven illumination: a smooth multiplicative shading.
  if (unit(rng) < 0.5 * std::min(1.0, strength)) {
    const cv::Mat shade = 1 - smooth_field(f.size(), 2, rng) * (0.35 * strength);
    cv::Mat shade3;
    cv::Mat planes[] = {shade, shade, shade};
    cv::merge(planes, 3, shade3);
    f = f.mul(shade3);
  }
  cv::max(f, 0, f);
  cv::min(f, 1, f);
  const double gamma = std::exp(strength * 0.4 * (2 * unit(rng) - 1));
  cv::pow(f, gamma, f);
  if (unit(rng) < 0.3 * std::min(1.0, strength)) {
    const double sigma = 0.3 + 1.2 * strength * unit(rng);
    cv::GaussianBlur(f, f, {0, 0}, sigma);
  }
  if (unit(rng) < 0.3 * std::min(1.0, strength)) {
    cv::Mat noise(f.size(), CV_32FC3);
    cv::randn(noise, 0, 0.025 * strength * unit(rng));
    f += noise;
  }
  f.convertTo(bgr, CV_8UC3, 255);
  if (unit(rng) < 0.3 * std::min(1.0, strength)) {
    std::vector<uchar> jpeg;
    cv::imencode(".jpg", bgr, jpeg, {cv::IMWRITE_JPEG_QUALITY, 30 + int(65 * unit(rng))});
    bgr = cv::imdecode(jpeg, cv::IMREAD_COLOR);
  }
}

std::vector<RawDetection> decode_detections(const float* heat, const float* maps, int rows,
                                            int cols, float threshold, size_t max_detections) {
  const size_t plane = size_t(rows) * cols;
  std::vector<RawDetection> found;
  for (int y = 0; y < rows; ++y)
    for (int x = 0; x < cols; ++x) {
      const float v = heat[size_t(y) * cols + x];
      if (!(v >= threshold) || !std::isfinite(v)) continue;  // NaN never passes
      bool peak = true;
      for (int dy = -1; dy <= 1 && peak; ++dy)
        for (int dx = -1; dx <= 1; ++dx) {
          const int yy = y + dy, xx = x + dx;
          if ((dx || dy) && yy >= 0 && xx >= 0 && yy < rows && xx < cols) {
            const float n = heat[size_t(yy) * cols + xx];
            // Ties go to the first pixel in reading order, so a flat top gives one peak.
            if (n > v || (n == v && (dy < 0 || (dy == 0 && dx < 0)))) {
              peak = false;
              break;
            }
          }
        }
      if (!peak) continue;
      const size_t at = size_t(y) * cols + x;
      RawDetection d;
      d.score = v;
      float largest = -1e30f;
      for (int c = 0; c < kDetectorClasses; ++c) largest = std::max(largest, maps[c * plane + at]);
      float sum = 0;
      for (int c = 0; c < kDetectorClasses; ++c)
        sum += d.class_probabilities[c] = std::exp(maps[c * plane + at] - largest);
      for (float& p : d.class_probabilities) p /= sum;
      bool finite = std::isfinite(sum);
      for (int k = kDetectorClasses; k < kDetectorOutputs - 1; ++k)
        finite = finite && std::isfinite(maps[k * plane + at]);
      if (!finite) continue;  // a broken model's output is no cell
      // A box is at least a pixel and at most the whole map.
      const float w = std::clamp(maps[kDetectorClasses * plane + at], 1.f, float(cols));
      const float h = std::clamp(maps[(kDetectorClasses + 1) * plane + at], 1.f, float(rows));
      const float cx = x + std::clamp(maps[(kDetectorClasses + 2) * plane + at], 0.f, 1.f);
      const float cy = y + std::clamp(maps[(kDetectorClasses + 3) * plane + at], 0.f, 1.f);
      const float s = kDetectorStride;
      d.box = cv::Rect2f((cx - w / 2) * s, (cy - h / 2) * s, w * s, h * s);
      found.push_back(d);
    }
  std::sort(found.begin(), found.end(),
            [](const RawDetection& a, const RawDetection& b) { return a.score > b.score; });
  if (found.size() > max_detections) found.resize(max_detections);
  return found;
}

}  // namespace malaria
