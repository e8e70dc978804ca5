#include "model/model_info.h"

#include <algorithm>
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
  info.temperature = number("temperature", 1.0, 1e-3, 1e3);
  const std::string tta = m.value("test_time_augmentation", "none");
  if (tta != "none" && tta != "flips")
    throw ModelFileError("model metadata: unknown test_time_augmentation '" + tta + "'");
  info.flip_tta = tta == "flips";
  const auto points = m.find("operating_points");
  if (points == m.end()) {  // a file from before operating points: its threshold and band
    info.operating_points = {
        {"default",
         OperatingPoint::symmetric(number("threshold", kDefaultThreshold, 0, 1),
                                   number("inconclusive_band", kDefaultInconclusiveBand, 0, 0.5))}};
    info.operating_point = "default";
    return info;
  }
  if (!points->is_object() || points->empty())
    throw ModelFileError("model metadata: 'operating_points' is not an object of points");
  info.operating_points.clear();
  for (const auto& item : points->items()) {
    // Plain references: a lambda may not capture structured bindings in C++17.
    const std::string& key = item.key();
    const nlohmann::json& value = item.value();
    auto field = [&](const char* name) {
      const auto it = value.find(name);
      if (it == value.end() || !it->is_number() || !(it->get<double>() >= 0) ||
          !(it->get<double>() <= 1))
        throw ModelFileError("model metadata: operating point '" + key + "' has no valid '" + name +
                             "'");
      return it->get<double>();
    };
    OperatingPoint p;
    p.threshold = field("threshold");
    p.inconclusive_low = field("inconclusive_low");
    p.inconclusive_high = field("inconclusive_high");
    if (!(p.inconclusive_low <= p.threshold && p.threshold <= p.inconclusive_high))
      throw ModelFileError("model metadata: operating point '" + key +
                           "' has a band that does not contain its threshold");
    p.validation = value.value("validation", nlohmann::json::object());
    info.operating_points[key] = p;
  }
  info.operating_point = m.value("operating_point", info.operating_points.begin()->first);
  if (!info.operating_points.count(info.operating_point))
    throw ModelFileError("model metadata: operating point '" + info.operating_point +
                         "' is not among the file's points");
  return info;
}

OperatingPoint OperatingPoint::symmetric(double threshold, double band) {
  OperatingPoint p;
  p.threshold = threshold;
  p.inconclusive_low = std::max(0.0, threshold - band);
  p.inconclusive_high = std::min(1.0, threshold + band);
  return p;
}

void ModelInfo::select_operating_point(const std::string& name) {
  if (!operating_points.count(name))
    throw std::invalid_argument("unknown operating point '" + name +
                                "'; this model has: " + operating_point_names());
  operating_point = name;
}

std::string ModelInfo::operating_point_names() const {
  std::string names;
  for (const auto& [key, value] : operating_points) names += (names.empty() ? "" : ", ") + key;
  return names;
}

nlohmann::json ModelInfo::to_metadata() const {
  nlohmann::json points = nlohmann::json::object();
  for (const auto& [key, p] : operating_points)
    points[key] = {
        {"threshold", p.threshold},
        {"inconclusive_low", p.inconclusive_low},
        {"inconclusive_high", p.inconclusive_high},
        {"validation", p.validation.is_null() ? nlohmann::json::object() : p.validation}};
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
          {"temperature", temperature},
          {"test_time_augmentation", flip_tta ? "flips" : "none"},
          {"operating_point", operating_point},
          {"operating_points", points}};
}

}  // namespace malaria
