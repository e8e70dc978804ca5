// The detector network and its model file. Include only where torch is needed.
#pragma once

#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

namespace malaria {

// A small feature pyramid: strides 2, 4, 8 and 16, the coarse levels added back onto the
// stride-4 level, and one head there with kDetectorOutputs channels (raw: the heat map is a
// logit). Input: N x 3 x H x W, H and W multiples of kDetectorAlign.
struct DetectorNetImpl : torch::nn::Module {
  explicit DetectorNetImpl(int width = 32);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Sequential stem, down4, down8, down16;
  torch::nn::Conv2d lateral4{nullptr}, lateral8{nullptr}, top16{nullptr}, out{nullptr};
  torch::nn::Sequential merge8, merge4, head;
};
TORCH_MODULE(DetectorNet);

// Written atomically, with a "malaria_metadata" JSON string (format kDetectorFormat).
void save_detector_file(const std::string& path, DetectorNet& net, const nlohmann::json& metadata);

struct LoadedDetector {
  DetectorNet net{nullptr};
  nlohmann::json metadata;
};
// Throws ModelFileError for a missing, corrupt, foreign or non-finite file.
LoadedDetector load_detector_file(const std::string& path);

}  // namespace malaria
