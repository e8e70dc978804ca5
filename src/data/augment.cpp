#include "data/augment.h"

#include <opencv2/imgproc.hpp>
#include <random>

namespace malaria {

nlohmann::json AugmentConfig::to_json() const {
  return {{"rotation_deg", rotation_deg},
          {"zoom", zoom},
          {"horizontal_flip", horizontal_flip},
          {"vertical_flip", vertical_flip},
          {"color_jitter", color_jitter}};
}

AugmentConfig AugmentConfig::none() { return {0.0, 0.0, false, false, 0.0}; }

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
  if (hflip && vflip)
    cv::flip(out, out, -1);
  else if (hflip)
    cv::flip(out, out, 1);
  else if (vflip)
    cv::flip(out, out, 0);
  if (config.color_jitter > 0) cv::multiply(out, gains, out);  // saturating, per channel
  return out;
}

}  // namespace malaria
