// Training-time augmentation, the original ImageDataGenerator's settings by default.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>

namespace malaria {

struct AugmentConfig {
  double rotation_deg = 20.0;  // uniform in [-r, r]
  double zoom = 0.2;           // scale uniform in [1-z, 1+z]
  bool horizontal_flip = true;
  bool vertical_flip = true;
  bool enabled() const { return rotation_deg > 0 || zoom > 0 || horizontal_flip || vertical_flip; }
  nlohmann::json to_json() const;
  static AugmentConfig none();
};

// Deterministic for a given seed: the loader derives the seed from (run seed, epoch, sample), so
// results do not depend on thread scheduling. Input and output are 8-bit RGB of the same size;
// the area exposed by rotation or zoom is filled black, like the dataset's own background.
cv::Mat augment_image(const cv::Mat& rgb, const AugmentConfig& config, uint64_t seed);

}  // namespace malaria
