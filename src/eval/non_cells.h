// A set of images that are not one stained red cell, to measure how often the classifier's
// "Rejected" holds: synthetic images (noise, gradients, solid colours, text, shapes), whole smear
// fields and field crops without a cell, photographs from Debian's sample-image packages, and
// real cells damaged beyond use (blank, cut in half, heavily blurred). Deterministic for a seed.
// No threshold is chosen on it: it only measures. Torch-free.
#pragma once

#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace malaria {

struct NonCell {
  std::string kind;  // synthetic, field, field-crop, photo, damaged-cell
  std::string name;  // what it is, e.g. "noise-rgb-128" or the photo's file name
  cv::Mat bgr;
};

struct NonCellSources {
  std::string fields_dir;               // annotated smear fields (IML): whole fields and crops
  std::vector<std::string> photo_dirs;  // folders of photographs (searched recursively)
  std::vector<Sample> cells;            // real cells to damage
  size_t damaged_per_kind = 100;
  size_t field_crops = 300;
  uint64_t seed = 7;
};

std::vector<NonCell> make_non_cells(const NonCellSources& sources);

// Where Debian keeps the sample photographs of python3-skimage and opencv-doc, or the folder
// scripts/sample-photos.sh unpacks them into: those of them that exist.
std::vector<std::string> default_photo_dirs();

}  // namespace malaria
