#include "model/model_info.h"

#include <cmath>

#include "data/dataset.h"

namespace malaria {

ModelInfo ModelInfo::from_metadata(const nlohmann::json& m) {
  if (!m.is_object()) throw ModelFileError("model metadata is not a JSON object");
  auto number = [&](const char* key, double fallback, double lo, double hi) {
    const auto it = m.find(key);
    if (it == m.end()) return fallback;
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < lo ||
        it->get<double>() > hi)
      throw ModelFileError(std::string("model metadata: '") + key + "' is not a number from " +
                           std::to_string(lo) + " to " + std::to_string(hi));
    return it->get<double>();
  };
  ModelInfo info;
  const auto arch = m.find("arch");
  if (arch == m.end() || !arch->is_string())
    throw ModelFileError("model metadata: 'arch' is missing");
  info.arch = arch->get<std::string>();
  info.name = m.value("name", "");
  if (!m.contains("image_size")) throw ModelFileError("model metadata: 'image_size' is missing");
  info.image_size = static_cast<int>(number("image_size", 0, 8, 4096));
  info.threshold = number("threshold", kDefaultThreshold, 0, 1);
  info.inconclusive_band = number("inconclusive_band", kDefaultInconclusiveBand, 0, 0.5);
  return info;
}

nlohmann::json ModelInfo::to_metadata() const {
  return {{"format", kModelFormat},
          {"format_version", kModelFormatVersion},
          {"name", name},
          {"arch", arch},
          {"image_size", image_size},
          {"class_names", {kClassNames[0], kClassNames[1]}},
          {"positive_class", kClassNames[kParasitized]},
          {"output", "one logit; sigmoid gives P(Parasitized)"},
          {"preprocessing",
           {{"decode", "OpenCV, 8-bit color"},
            {"color", "RGB"},
            {"resize",
             "to image_size x image_size; INTER_AREA when shrinking, INTER_CUBIC when enlarging"},
            {"scale", "pixel / 255"},
            {"layout", "NCHW float32"}}},
          {"threshold", threshold},
          {"inconclusive_band", inconclusive_band}};
}

}  // namespace malaria
