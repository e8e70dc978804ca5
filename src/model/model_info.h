// What a model file says about itself: the typed core of its metadata JSON, with the defaults
// every reader uses. Torch-free: the CLI, evaluator and server read it without LibTorch headers.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

namespace malaria {

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

struct ModelInfo {
  std::string name;
  std::string arch;
  int image_size = 0;
  double threshold = kDefaultThreshold;
  double inconclusive_band = kDefaultInconclusiveBand;

  // Throws ModelFileError when a required field is missing or out of range.
  static ModelInfo from_metadata(const nlohmann::json& metadata);
  // The fields every model file carries: format, classes, preprocessing, decision rule.
  nlohmann::json to_metadata() const;
};

}  // namespace malaria
