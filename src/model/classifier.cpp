#include "model/classifier.h"

#include <thread>

#include "data/image.h"
#include "model/model.h"

namespace malaria {

struct Classifier::Impl {
  LoadedModel loaded;
  ModelInfo info;
};

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
Classifier::~Classifier() = default;

Classifier Classifier::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->loaded = load_model_file(path);
  impl->loaded.model = fold_batchnorm(impl->loaded.model);  // inference only: BatchNorm folded away
  to_channels_last(*impl->loaded.model);
  impl->info = ModelInfo::from_metadata(impl->loaded.metadata);
  return Classifier(std::move(impl));
}

const nlohmann::json& Classifier::metadata() const { return impl_->loaded.metadata; }
const ModelInfo& Classifier::info() const { return impl_->info; }

const OperatingPoint& Classifier::operating_point(const std::string& name) const {
  const ModelInfo& info = impl_->info;
  if (name.empty()) return info.point();
  const auto found = info.operating_points.find(name);
  if (found == info.operating_points.end())
    throw std::invalid_argument("unknown operating point '" + name +
                                "'; this model has: " + info.operating_point_names());
  return found->second;
}

void Classifier::set_flip_tta(bool on) { impl_->info.flip_tta = on; }

namespace {
// Raw logits, averaged over the image and its flips when asked (one batch of 4n).
torch::Tensor network_logits(CellClassifier& net, const torch::Tensor& x, bool flip_tta) {
  if (!flip_tta) return net->forward(x).reshape({-1});
  const int64_t n = x.size(0);
  const auto views = torch::cat({x, x.flip({3}), x.flip({2}), x.flip({2, 3})})
                         .contiguous(at::MemoryFormat::ChannelsLast);
  return net->forward(views).reshape({4, n}).mean(0);
}

std::vector<float> to_vector(const torch::Tensor& t) {
  const auto flat = t.reshape({-1}).contiguous();
  return std::vector<float>(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
}
}  // namespace

std::vector<float> Classifier::logits(const float* chw, size_t n) const {
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  const auto input = image_batch_tensor(chw, n, impl_->info.image_size);
  return to_vector(network_logits(impl_->loaded.model, input, impl_->info.flip_tta));
}

std::vector<float> Classifier::predict(const float* chw, size_t n) const {
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  const auto input = image_batch_tensor(chw, n, impl_->info.image_size);
  return to_vector(torch::sigmoid(network_logits(impl_->loaded.model, input, impl_->info.flip_tta) /
                                  impl_->info.temperature));
}

namespace {
// Decoded images preprocessed exactly as in training, as one n x 3 x S x S buffer.
std::vector<float> preprocess(const std::vector<cv::Mat>& bgr, int side) {
  const size_t plane = 3ull * side * side;
  std::vector<float> pixels(bgr.size() * plane);
  for (size_t i = 0; i < bgr.size(); ++i)
    to_chw_float(resize_rgb(bgr[i], side), pixels.data() + i * plane);
  return pixels;
}
}  // namespace

std::vector<float> Classifier::predict_images(const std::vector<cv::Mat>& bgr) const {
  return predict(preprocess(bgr, impl_->info.image_size).data(), bgr.size());
}

std::vector<Classifier::Explanation> Classifier::explain(const std::vector<cv::Mat>& bgr) const {
  return explain(preprocess(bgr, impl_->info.image_size).data(), bgr.size());
}

// Input values (in [0,1]) at or below this in every channel are the black background.
constexpr float kBackgroundLevel = 10.0f / 255.0f;

std::vector<Classifier::Explanation> Classifier::explain(const float* chw, size_t n) const {
  if (n == 0) return {};
  const int s = impl_->info.image_size;
  torch::AutoGradMode grad(true);
  auto& net = *impl_->loaded.model;
  const torch::Tensor x = image_batch_tensor(chw, n, s);
  const torch::Tensor activations = net.features->forward(x);  // last convolution stage
  const torch::Tensor logits = net.head->forward(activations).reshape({-1});
  // The logits of different images do not interact, so one backward pass serves the batch.
  const torch::Tensor grads = torch::autograd::grad({logits.sum()}, {activations})[0];
  torch::Tensor cam;
  {
    torch::NoGradGuard no_grad;
    const auto weights = grads.mean({2, 3}, /*keepdim=*/true);  // one weight per channel
    cam = torch::relu((weights * activations).sum(1, /*keepdim=*/true));
    cam = torch::nn::functional::interpolate(cam, torch::nn::functional::InterpolateFuncOptions()
                                                      .size(std::vector<int64_t>{s, s})
                                                      .mode(torch::kBilinear)
                                                      .align_corners(false));
    // Only the cell can hold a parasite: the black background around it (as in the NIH crops)
    // is cut from the map before it is scaled to [0,1].
    cam = cam * (std::get<0>(x.max(1, /*keepdim=*/true)) > kBackgroundLevel);
    const auto peak = std::get<0>(cam.flatten(1).max(1)).clamp_min(1e-12).view({-1, 1, 1, 1});
    cam = (cam / peak).squeeze(1).contiguous();
  }
  const auto prob = predict(chw, n);  // the same probability as predict, flips and all
  std::vector<Explanation> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].probability = prob[i];
    out[i].heatmap = cv::Mat(s, s, CV_32F, cam[i].data_ptr<float>()).clone();
  }
  return out;
}

int Classifier::conv_layers() const {
  int n = 0;
  for (const auto& m : impl_->loaded.model->features->children())
    n += m->as<torch::nn::Conv2d>() != nullptr;
  return n;
}

std::vector<cv::Mat> Classifier::feature_maps(const cv::Mat& bgr, int conv_layer) const {
  if (conv_layer < 1 || conv_layer > conv_layers())
    throw std::invalid_argument("layer must be between 1 and " + std::to_string(conv_layers()) +
                                " (the model's convolution layers)");
  torch::NoGradGuard no_grad;
  const int s = impl_->info.image_size;
  std::vector<float> pixels(3ull * s * s);
  to_chw_float(resize_rgb(bgr, s), pixels.data());
  torch::Tensor x = image_batch_tensor(pixels.data(), 1, s);
  int convs = 0;
  bool after_target_conv = false;
  for (auto& module : *impl_->loaded.model->features) {
    x = module.forward(x);
    if (module.ptr()->as<torch::nn::Conv2d>()) after_target_conv = ++convs == conv_layer;
    if (after_target_conv && module.ptr()->as<torch::nn::ReLU>()) break;
  }
  x = x.squeeze(0).contiguous();
  std::vector<cv::Mat> maps;
  for (int64_t c = 0; c < x.size(0); ++c) {
    const auto plane = x[c].contiguous();
    maps.push_back(cv::Mat(static_cast<int>(plane.size(0)), static_cast<int>(plane.size(1)), CV_32F,
                           plane.data_ptr<float>())
                       .clone());
  }
  return maps;
}

void write_model_copy(const std::string& from, const std::string& to, const nlohmann::json& patch) {
  LoadedModel loaded = load_model_file(from);
  loaded.metadata.merge_patch(patch);
  save_model_file(to, loaded.model, loaded.metadata);
}

void set_compute_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

int compute_threads() { return torch::get_num_threads(); }

}  // namespace malaria
