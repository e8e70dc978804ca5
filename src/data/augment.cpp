#include "data/augment.h"

#include <cmath>
#include <opencv2/imgproc.hpp>
#include <random>

namespace malaria {

nlohmann::json AugmentConfig::to_json() const {
  return {{"rotation_deg", rotation_deg},       {"zoom", zoom},
          {"horizontal_flip", horizontal_flip}, {"vertical_flip", vertical_flip},
          {"color_jitter", color_jitter},       {"stain", stain}};
}

AugmentConfig AugmentConfig::none() { return {0.0, 0.0, false, false, 0.0, 0.0}; }

namespace {

// Hue, saturation, gamma, blur and noise on the cell's pixels (RGB, 8-bit).
void stain_and_camera(cv::Mat& rgb, double s, std::mt19937_64& rng) {
  std::uniform_real_distribution<double> sym(-1.0, 1.0), unit(0.0, 1.0);
  const double hue = 10.0 * s * sym(rng);  // OpenCV hue units are 2 degrees
  const double saturation = 1.0 + 0.6 * s * sym(rng);
  const double gamma = std::exp(0.6 * s * sym(rng));
  const bool blur = unit(rng) < 0.5 * s;
  const double sigma = 0.3 + 0.9 * unit(rng);
  const double noise = 0.04 * 255.0 * s * unit(rng);
  const uint64_t noise_seed = rng();

  cv::Mat gray, cell;
  cv::cvtColor(rgb, gray, cv::COLOR_RGB2GRAY);
  cv::compare(gray, 8, cell, cv::CMP_GT);  // the background is black
  cv::Mat hsv;
  cv::cvtColor(rgb, hsv, cv::COLOR_RGB2HSV);
  cv::Mat lut(1, 256, CV_8UC3);
  for (int v = 0; v < 256; ++v) {
    auto& e = lut.at<cv::Vec3b>(0, v);
    e[0] = cv::saturate_cast<uchar>(std::fmod(v + hue + 180.0, 180.0));
    e[1] = cv::saturate_cast<uchar>(v * saturation);
    e[2] = cv::saturate_cast<uchar>(255.0 * std::pow(v / 255.0, gamma));
  }
  cv::LUT(hsv, lut, hsv);
  cv::Mat changed;
  cv::cvtColor(hsv, changed, cv::COLOR_HSV2RGB);
  if (blur) cv::GaussianBlur(changed, changed, cv::Size(0, 0), sigma);
  if (noise > 0) {
    cv::Mat n(changed.size(), CV_32FC3);
    cv::RNG cv_rng(noise_seed);
    cv_rng.fill(n, cv::RNG::NORMAL, 0.0, noise);
    cv::Mat f;
    changed.convertTo(f, CV_32FC3);
    f += n;
    f.convertTo(changed, CV_8UC3);  // saturating
  }
  changed.copyTo(rgb, cell);
}

}  // namespace

void flip_image(cv::Mat& image, bool horizontal, bool vertical) {
  if (horizontal && vertical)
    cv::flip(image, image, -1);
  else if (horizontal)
    cv::flip(image, image, 1);
  else if (vertical)
    cv::flip(image, image, 0);
}

cv::Mat augment_image(const cv::Mat& rgb, const AugmentConfig& config, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double angle = config.rotation_deg * (2.0 * unit(rng) - 1.0);
  const double scale = 1.0 + config.zoom * (2.0 * unit(rng) - 1.0);
  const bool hflip = config.horizontal_flip && unit(rng) < 0.5;
  const bool vflip = config.vertical_flip && unit(rng) < 0.5;
  cv::Scalar gains(1, 1, 1);
  for (int c = 0; c < 3; ++c) gains[c] = 1.0 + config.color_jitter * (2.0 * unit(rng) - 1.0);

  cv::Mat out;  // never aliases the input: cached images must stay untouched
  if (angle != 0.0 || scale != 1.0) {
    const cv::Point2f center((rgb.cols - 1) * 0.5f, (rgb.rows - 1) * 0.5f);
    const cv::Mat m = cv::getRotationMatrix2D(center, angle, scale);
    cv::warpAffine(rgb, out, m, rgb.size(), cv::INTER_LINEAR, cv::BORDER_CONSTANT, cv::Scalar());
  } else {
    out = rgb.clone();
  }
  flip_image(out, hflip, vflip);
  if (config.color_jitter > 0) cv::multiply(out, gains, out);  // saturating, per channel
  if (config.stain > 0) stain_and_camera(out, config.stain, rng);
  return out;
}

}  // namespace malaria
