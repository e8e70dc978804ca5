// A trained red-cell detector loaded from its file, ready to find the cells of a field photo.
// Torch-free header: screening, evaluation and the server use it without LibTorch headers.
#pragma once

#include <array>
#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <string>
#include <vector>

#include "detect/detector_targets.h"

namespace malaria {

inline constexpr const char* kDetectorFormat = "malaria-cell-detector";
// More peaks than this are not decoded: above the quality verdict's cap (kMaxCellsPerField), so
// an over-full photo still fails there, and a photo of texture cannot ask for unbounded work.
inline constexpr size_t kMaxDetections = 4000;
// Fields smaller than this on a side hold no cell the detector could find (as for the classical
// segmentation): they get no detections rather than an empty network input.
inline constexpr int kMinFieldSide = 16;

class CellDetector {
 public:
  // Throws ModelFileError (model_info.h) for a missing, corrupt or foreign file.
  static CellDetector load(const std::string& path);
  CellDetector(CellDetector&&) noexcept;
  CellDetector& operator=(CellDetector&&) noexcept;
  ~CellDetector();

  const nlohmann::json& metadata() const;
  // Field pixels are shrunk by this factor before the network sees them.
  double input_scale() const;
  // Peaks below this are not cells (chosen on validation fields).
  float score_threshold() const;

  // The detector's input for a field: shrunk by input_scale, padded to kDetectorAlign, as
  // 3 x H x W floats in [0,1] RGB. `size` receives H and W.
  std::vector<float> prepare(const cv::Mat& bgr, cv::Size& size) const;
  // The output maps for n prepared inputs of one size (n x kDetectorOutputs x H/4 x W/4, the
  // heat map already through its sigmoid). Thread-safe.
  std::vector<float> forward(const float* chw, size_t n, cv::Size size) const;
  // Maps of one field back to cells in its pixels (cells whose centre lies in the padding are
  // dropped). `threshold` < 0 uses score_threshold().
  std::vector<DetectedCell> decode(const float* maps, cv::Size input, cv::Size field,
                                   float threshold = -1) const;
  // prepare, forward and decode in one call.
  std::vector<DetectedCell> detect(const cv::Mat& bgr, float threshold = -1) const;

 private:
  struct Impl;
  explicit CellDetector(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace malaria
