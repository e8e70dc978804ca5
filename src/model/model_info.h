// What a model file says about itself: the typed core of its metadata JSON, with the defaults
// every reader uses. Torch-free: the CLI, evaluator and server read it without LibTorch headers.
#pragma once

#include <cstddef>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace malaria {

// Model files are a few MB; the cap only stops a wrong path from filling memory.
inline constexpr size_t kMaxModelFileBytes = 512u << 20;

class ModelFileError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline constexpr const char* kModelFormat = "malaria-cell-classifier";
inline constexpr int kModelFormatVersion = 1;
// P(Parasitized) at or above the threshold is labelled Parasitized.
inline constexpr double kDefaultThreshold = 0.5;
// |P - threshold| below the band is Inconclusive: refer the cell to a microscopist.
inline constexpr double kDefaultInconclusiveBand = 0.15;

// A threshold and the Inconclusive band around it: low <= P <= high (with high > low) is
// Inconclusive, and P >= threshold is Parasitized.
struct OperatingPoint {
  double threshold = kDefaultThreshold;
  double inconclusive_low = kDefaultThreshold - kDefaultInconclusiveBand;
  double inconclusive_high = kDefaultThreshold + kDefaultInconclusiveBand;
  nlohmann::json validation;  // how it was chosen and what it scored there (may be empty)

  static OperatingPoint symmetric(double threshold, double band);
};

struct ModelInfo {
  std::string name;
  std::string arch;
  int image_size = 0;
  // P(Parasitized) = sigmoid(logit / temperature); fitted on validation data (1: uncalibrated).
  double temperature = 1.0;
  // Average the logits of the image and its three flips (4 forward passes per cell).
  bool flip_tta = false;
  // Named operating points; a file without them has one, "default", from its threshold.
  std::map<std::string, OperatingPoint> operating_points{{"default", {}}};
  std::string operating_point = "default";  // the one in use

  const OperatingPoint& point() const { return operating_points.at(operating_point); }
  double threshold() const { return point().threshold; }
  // Throws std::invalid_argument naming the points the file has.
  void select_operating_point(const std::string& name);
  std::string operating_point_names() const;  // "balanced, screening"

  // Throws ModelFileError when a required field is missing or out of range.
  static ModelInfo from_metadata(const nlohmann::json& metadata);
  // The fields every model file carries: format, classes, preprocessing, decision rule.
  nlohmann::json to_metadata() const;
};

}  // namespace malaria
