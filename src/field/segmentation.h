// Red-cell segmentation of a thin-smear field photo: one region per red cell, each with its
// mask, so a cell can be cut out in the form the classifier was trained on. Torch-free.
#pragma once

#include <array>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "detect/detector_targets.h"

namespace malaria {

struct CellRegion {
  cv::Rect box;              // tight box in the pixels of the input image (x, y = top-left corner)
  cv::Mat mask;              // CV_8U, box-sized, 255 on the cell
  int area = 0;              // pixels on the mask
  bool cut_by_edge = false;  // touches the image border: part of the cell is missing
  // From the learned detector only (detected = true): its confidence and class probabilities
  // (uninfected, ring, trophozoite, schizont, gametocyte).
  bool detected = false;
  float score = 0;
  std::array<float, kDetectorClasses> class_probabilities{};
};

struct FieldSegmentation {
  std::vector<CellRegion> cells;  // red-cell candidates, left to right within rows of the field
  double cell_area = 0;           // typical single-cell area in input pixels (0: no cells found)
  int rejected_small = 0;         // platelets, debris and fragments below the cell-size range
  int rejected_large = 0;         // clumps and large objects (white cells) above it
};

struct SegmentationOptions {
  // Fields are segmented at most this wide or high (larger ones are shrunk for segmentation;
  // boxes and masks come back at full size): the cells stay 30+ px across, and time stays flat.
  int max_side = 1600;
  double min_cell_fraction = 0.25;  // regions below this share of the typical cell are rejected
  double max_cell_fraction = 2.6;   // and above this
};

// Otsu on the green channel (the stain absorbs green; the background is bright), small round
// holes filled (the pale cell centre, never the gaps between cells), opening, the typical cell
// size from solid components, then touching cells split at the peaks of the distance transform
// (each pixel goes to its nearest peak). Empty for images without cells, uniform images and
// images too small to hold a cell.
FieldSegmentation segment_cells(const cv::Mat& bgr, const SegmentationOptions& options = {});

// Regions for the cells a detector found: each box's mask is the stained object under the box's
// centre (Otsu on the green channel inside the box, so a haze elsewhere does not matter, kept
// within the box's ellipse, holes filled), or the ellipse itself where that split fails.
FieldSegmentation regions_from_detections(const cv::Mat& bgr,
                                          const std::vector<DetectedCell>& detections);

// The cell cut out as the NIH images were: its tight box, black outside the mask.
cv::Mat masked_crop(const cv::Mat& bgr, const CellRegion& cell);

}  // namespace malaria
