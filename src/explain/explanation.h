// What a microscopist can check: a Grad-CAM heat map drawn over the cell, and the "pointing
// game" that tests whether the map's peak falls on the stained parasite. Torch-free; the maps
// themselves come from Classifier::explain.
#pragma once

#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

namespace malaria {

// The heat map (CV_32F in [0,1], any size) in colour over the cell image (8-bit BGR), at the
// image's own size.
cv::Mat heatmap_overlay(const cv::Mat& bgr, const cv::Mat& heatmap, double opacity = 0.45);
std::string encode_png(const cv::Mat& bgr);  // the PNG file's bytes
// Rows of the heat map as a JSON array of arrays, rounded to 3 decimals (row-major, rows=height).
nlohmann::json heatmap_json(const cv::Mat& heatmap);

// The stained parasite in a Parasitized cell (8-bit BGR with black background): the connected
// blob of the darkest green-channel pixels inside the cell (Giemsa stains chromatin purple,
// which absorbs green). CV_8U mask of the image's size; empty (all zero) when no pixel stands
// out from the cell.
cv::Mat parasite_mask(const cv::Mat& bgr);

struct PointingResult {
  bool hit = false;         // the heat map's maximum lies on the parasite (within the tolerance)
  bool has_target = false;  // a parasite blob was found
  double chance = 0;        // share of the cell's area that would count as a hit
};
// The heat map is resized to the image; `tolerance` is in pixels of the image.
PointingResult pointing_game(const cv::Mat& bgr, const cv::Mat& heatmap, int tolerance);

}  // namespace malaria
