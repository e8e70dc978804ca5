// Cheap checks that an image is one stained red cell as the classifier knows them (an NIH-style
// crop: the cell on a black surround), made on the decoded image before any model runs. They
// catch what is plainly not a cell: a blank or uniform image, noise, a page of text, a photo, a
// whole smear field, a cell cut in half. The learned check (typicality of the network's features,
// model/typicality.h) catches the subtler rest. Torch-free.
#pragma once

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>

namespace malaria {

struct CellImageSignals {
  int width = 0, height = 0;
  double surround = 0;        // share of pixels that are black surround (every channel < 25)
  double object_share = 0;    // the largest object's share of all non-surround pixels
  double object_fill = 0;     // the largest object's area / its convex hull's (solidity)
  double object_aspect = 0;   // long / short side of the object's rotated bounding box
  double centre_offset = 0;   // object centroid to image centre, as a share of the side
  double saturation = 0;      // mean HSV saturation of the object (0-1)
  double red_over_green = 0;  // object's mean red minus green level (Giemsa absorbs green)
  double texture = 0;         // mean |Laplacian| of the object's green channel over its spread
  double spread = 0;          // standard deviation of the green level inside the rim (0-255)
  double rim_width = 0;       // pixels fading from the surround into the cell, per rim pixel
  double straight_cut = 0;    // longest straight rim stretch off the border / object diameter
  nlohmann::json to_json() const;
};

struct CellCheck {
  bool ok = true;
  std::string reason;        // why not, in words a user can act on
  bool whole_field = false;  // it looks like a smear field: screen it instead
  CellImageSignals signals;
};

// Decoded 8-bit BGR image of any size.
CellCheck check_cell_image(const cv::Mat& bgr);

// The reason every "Rejected" decision carries when the learned check refuses the image.
inline constexpr const char* kAtypicalReason =
    "not a single stained red cell like those the model was trained on (its features lie "
    "outside the training cells')";

}  // namespace malaria
