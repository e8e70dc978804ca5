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
  // Not in the original: each colour channel scaled by 1 + U(-c, c), which imitates the stain and
  // illumination differences between slides (the main shift between patients). 0: off.
  double color_jitter = 0.0;
  // Stain and camera robustness, strength in [0, 1] (0: off): hue shift up to 20*s degrees,
  // saturation x (1 +/- 0.6 s), gamma exp(+/- 0.6 s), a slight blur for half of s of the cells,
  // sensor noise up to 4% s. Applied to the cell only: the black background stays black.
  double stain = 0.0;
  bool enabled() const {
    return rotation_deg > 0 || zoom > 0 || horizontal_flip || vertical_flip || color_jitter > 0 ||
           stain > 0;
  }
  nlohmann::json to_json() const;
  static AugmentConfig none();
};

// Deterministic for a given seed: the loader derives the seed from (run seed, epoch, sample), so
// results do not depend on thread scheduling. Input and output are 8-bit RGB of the same size;
// the area exposed by rotation or zoom is filled black, like the dataset's own background (which
// colour jitter leaves black).
cv::Mat augment_image(const cv::Mat& rgb, const AugmentConfig& config, uint64_t seed);

// Mirrors `image` in place: left-right, top-bottom, or both (a half turn).
void flip_image(cv::Mat& image, bool horizontal, bool vertical);

}  // namespace malaria
