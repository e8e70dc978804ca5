// How well detected cells cover annotated ones: recall per class, precision, the spread of
// recall over fields, and the stage confusion at matched infected cells. Torch-free.
#pragma once

#include <array>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "detect/detector.h"
#include "field/annotations.h"

namespace malaria {

struct DetectionScore {
  float threshold = 0;
  std::array<size_t, kDetectorClasses> annotated{}, found{};
  size_t detections = 0;
  size_t unmatched = 0;  // detections on no annotated cell (unboxed cells count here too)
  // Rows: annotated class, columns: the detector's most likely class, over matched cells.
  std::array<std::array<size_t, kDetectorClasses>, kDetectorClasses> confusion{};
  std::vector<std::pair<std::string, double>> field_recall;  // every field, worst first
  double recall() const;
  double precision() const;  // detections that lie on an annotated cell
  nlohmann::json to_json() const;
};

// Detections at or above `threshold` matched to the annotations (match_annotations: IoU >= 0.3
// or the centre inside the box; "difficult" cells are neither counted nor held against).
DetectionScore score_detections(const std::vector<AnnotatedField>& fields,
                                const std::vector<std::vector<DetectedCell>>& detections,
                                float threshold);

// The threshold (0.05 to 0.9) with the best F2 score: recall weighs twice precision, since an
// unboxed real cell also counts against precision and a missed cell may be a missed parasite.
float choose_score_threshold(const std::vector<AnnotatedField>& fields,
                             const std::vector<std::vector<DetectedCell>>& detections);

}  // namespace malaria
