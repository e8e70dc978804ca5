// The networks (LibTorch modules) and the model file format. Include only where torch is needed.
#pragma once

#include <ATen/autocast_mode.h>
#include <torch/torch.h>

#include <nlohmann/json.hpp>
#include <string>

namespace malaria {

// One logit for Parasitized. `features` ends at the last convolutional activation (Grad-CAM and
// feature maps tap it); `head` turns it into the logit.
struct CellClassifierImpl : torch::nn::Module {
  CellClassifierImpl(torch::nn::Sequential features, torch::nn::Sequential head);
  torch::Tensor forward(torch::Tensor x);

  torch::nn::Sequential features, head;
};
TORCH_MODULE(CellClassifier);

CellClassifier build_model(const std::string& arch, int image_size);

// The file is a LibTorch archive holding the weights and a "malaria_metadata" JSON string.
// Written atomically (temporary file, then rename).
void save_model_file(const std::string& path, CellClassifier& model,
                     const nlohmann::json& metadata);
// An ensemble: several networks of one architecture in one file, each in its own sub-archive
// ("member1", ...), metadata "ensemble": {"members": n}; the classifier averages their logits.
// One member is written as an ordinary file.
void save_model_file(const std::string& path, std::vector<CellClassifier>& members,
                     nlohmann::json metadata);

struct LoadedModel {
  std::vector<CellClassifier> members;  // one, or an ensemble's
  nlohmann::json metadata;
  CellClassifier& model() { return members.at(0); }
};
// Throws ModelFileError (classifier.h) for a missing, truncated, corrupt or foreign file, and for
// anything that is not a regular file (a FIFO, a device).
LoadedModel load_model_file(const std::string& path);

// The shared first half of loading any model file (classifier or detector): read with the
// regular-file rules, parse the archive, check its metadata's format and version. Returns the
// metadata; throws ModelFileError saying what is wrong.
nlohmann::json open_model_archive(const std::string& path, const std::string& format,
                                  torch::serialize::InputArchive& archive);
// Loads the archive's weights into `module`, throwing std::runtime_error when one has another
// shape than the module's architecture gives it.
void load_weights(torch::nn::Module& module, torch::serialize::InputArchive& archive);
// Throws ModelFileError when a weight or buffer is not finite (a diverged training wrote it).
void check_finite_weights(torch::nn::Module& module, const std::string& path);

// An inference copy with every BatchNorm that directly follows a convolution folded into that
// convolution's weights and bias: the same function with one memory pass less per layer.
// The input must be in eval mode; the result is too.
CellClassifier fold_batchnorm(CellClassifier& model);

// Stores every 4-D parameter channels-last (NHWC). The same numbers in another memory order,
// which LibTorch's CPU convolutions run much faster (see docs/PERFORMANCE.md). Inputs should
// be made channels-last too.
void to_channels_last(torch::nn::Module& module);

// While alive (and `on`), CPU operations that autocast covers (convolutions, matrix products)
// run in bfloat16; everything else, the weights and the optimizer stay float32.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on) : on_(on) {
    if (!on_) return;
    at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
    at::autocast::set_cpu_enabled(true);
  }
  ~Bf16Autocast() {
    if (!on_) return;
    at::autocast::set_cpu_enabled(false);
    at::autocast::clear_cache();
  }
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool on_;
};

// n preprocessed images (n x 3 x size x size floats) as a channels-last tensor: the memory order
// the convolutions here run fastest in. The result owns its memory.
torch::Tensor image_batch_tensor(const float* chw, size_t n, int size);

// Drops every parameter's gradient before a training step, so backward writes fresh gradients
// instead of adding to zeroed ones (Optimizer::zero_grad in LibTorch 1.13 zeroes them in place).
void release_gradients(torch::nn::Module& module);

// Copies of parameters and buffers, to keep the best epoch's weights in memory.
std::vector<torch::Tensor> snapshot_state(torch::nn::Module& module);
void restore_state(torch::nn::Module& module, const std::vector<torch::Tensor>& state);

}  // namespace malaria
