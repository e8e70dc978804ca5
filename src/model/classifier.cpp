#include "model/classifier.h"

#include <cmath>
#include <optional>
#include <thread>

#include "data/image.h"
#include "model/model.h"

namespace malaria {

// The typicality model of the file (model/typicality.h): class means and the shared precision
// matrix of the pooled features, and the distance at which an image is Rejected.
struct TypicalityModel {
  torch::Tensor means;      // classes x D
  torch::Tensor precision;  // D x D
  double threshold = 0;
};

struct Classifier::Impl {
  LoadedModel loaded;  // members with BatchNorm folded away (inference only)
  ModelInfo info;
  std::optional<TypicalityModel> typicality;
  int feature_size = 0;
};

namespace {

// Channels of the last convolution: the pooled feature size of one member.
int last_conv_channels(CellClassifier& net) {
  int channels = 0;
  for (const auto& m : net->features->children())
    if (const auto* conv = m->as<torch::nn::Conv2d>()) channels = conv->options.out_channels();
  return channels;
}

// Only networks that pool globally before their head (cellnet) have features to fit on.
bool pools_globally(CellClassifier& net) {
  return !net->head->is_empty() &&
         net->head->children().front()->as<torch::nn::AdaptiveAvgPool2d>();
}

torch::Tensor json_matrix(const nlohmann::json& j, int64_t rows, int64_t cols,
                          const std::string& what) {
  std::vector<float> values;
  try {
    for (const auto& row : j) {
      if (row.is_array())
        for (const auto& v : row) values.push_back(v.get<float>());
      else
        values.push_back(row.get<float>());
    }
  } catch (const std::exception&) {
    throw ModelFileError("typicality " + what + " holds something other than numbers");
  }
  if (static_cast<int64_t>(values.size()) != rows * cols)
    throw ModelFileError("typicality " + what + " has " + std::to_string(values.size()) +
                         " numbers, not " + std::to_string(rows * cols));
  torch::Tensor t = torch::from_blob(values.data(), {rows, cols}).clone();
  if (!torch::isfinite(t).all().item<bool>())
    throw ModelFileError("typicality " + what + " holds values that are not finite");
  return t;
}

std::optional<TypicalityModel> read_typicality(const nlohmann::json& metadata, int feature_size) {
  const auto found = metadata.find("typicality");
  if (found == metadata.end() || found->is_null()) return std::nullopt;
  const auto& j = *found;
  if (!j.is_object() || !j.contains("threshold") || !j["threshold"].is_number())
    throw ModelFileError("the typicality model has no threshold");
  TypicalityModel t;
  t.threshold = j["threshold"].get<double>();
  if (!std::isfinite(t.threshold) || t.threshold <= 0)
    throw ModelFileError("the typicality threshold is not a positive number");
  if (j.value("features", 0) != feature_size)
    throw ModelFileError("the typicality model was fitted on " +
                         std::to_string(j.value("features", 0)) + " features, not the network's " +
                         std::to_string(feature_size));
  t.means = json_matrix(j.value("means", nlohmann::json()), 2, feature_size, "means");
  t.precision =
      json_matrix(j.value("precision", nlohmann::json()), feature_size, feature_size, "precision");
  return t;
}

}  // namespace

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
Classifier::~Classifier() = default;

Classifier Classifier::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->loaded = load_model_file(path);
  for (auto& member : impl->loaded.members) {
    member = fold_batchnorm(member);
    to_channels_last(*member);
  }
  impl->info = ModelInfo::from_metadata(impl->loaded.metadata);
  auto& first = impl->loaded.model();
  impl->feature_size = pools_globally(first) ? last_conv_channels(first) *
                                                   static_cast<int>(impl->loaded.members.size())
                                             : 0;
  try {
    impl->typicality = read_typicality(impl->loaded.metadata, impl->feature_size);
  } catch (const ModelFileError& e) {
    throw ModelFileError(path + ": " + e.what());
  }
  return Classifier(std::move(impl));
}

const nlohmann::json& Classifier::metadata() const { return impl_->loaded.metadata; }
const ModelInfo& Classifier::info() const { return impl_->info; }
bool Classifier::has_typicality() const { return impl_->typicality.has_value(); }
int Classifier::feature_size() const { return impl_->feature_size; }
size_t Classifier::members() const { return impl_->loaded.members.size(); }

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

struct ForwardPass {
  torch::Tensor logits;  // mean over members
  torch::Tensor pooled;  // members' pooled features side by side (undefined unless asked)
};

ForwardPass run_members(std::vector<CellClassifier>& members, const torch::Tensor& x, bool flip_tta,
                        bool with_features) {
  ForwardPass out;
  std::vector<torch::Tensor> pooled;
  for (auto& net : members) {
    torch::Tensor logits;
    if (with_features) {
      const torch::Tensor act = net->features->forward(x);
      pooled.push_back(act.mean({2, 3}));
      logits = flip_tta ? network_logits(net, x, true) : net->head->forward(act).reshape({-1});
    } else {
      logits = network_logits(net, x, flip_tta);
    }
    out.logits = out.logits.defined() ? out.logits + logits : logits;
  }
  out.logits = out.logits / static_cast<double>(members.size());
  if (with_features) out.pooled = torch::cat(pooled, 1).contiguous();
  return out;
}

std::vector<float> to_vector(const torch::Tensor& t) {
  const auto flat = t.reshape({-1}).contiguous();
  return std::vector<float>(flat.data_ptr<float>(), flat.data_ptr<float>() + flat.numel());
}

// Smallest Mahalanobis distance to a class mean, over the threshold.
torch::Tensor atypicality_of(const torch::Tensor& pooled, const TypicalityModel& t) {
  const auto diff = pooled.unsqueeze(1) - t.means.unsqueeze(0);                   // n x 2 x D
  const auto d2 = (torch::matmul(diff, t.precision) * diff).sum(2).clamp_min(0);  // n x 2
  return std::get<0>(d2.min(1)).sqrt() / t.threshold;
}
}  // namespace

std::vector<float> Classifier::logits(const float* chw, size_t n) const {
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  const auto input = image_batch_tensor(chw, n, impl_->info.image_size);
  return to_vector(run_members(impl_->loaded.members, input, impl_->info.flip_tta, false).logits);
}

std::vector<float> Classifier::predict(const float* chw, size_t n) const {
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  const auto input = image_batch_tensor(chw, n, impl_->info.image_size);
  const auto pass = run_members(impl_->loaded.members, input, impl_->info.flip_tta, false);
  return to_vector(torch::sigmoid(pass.logits / impl_->info.temperature));
}

Classifier::Scores Classifier::score(const float* chw, size_t n) const {
  Scores out;
  if (n == 0) return out;
  torch::NoGradGuard no_grad;
  const auto input = image_batch_tensor(chw, n, impl_->info.image_size);
  const bool typicality = impl_->typicality.has_value();
  const auto pass = run_members(impl_->loaded.members, input, impl_->info.flip_tta, typicality);
  out.logits = to_vector(pass.logits);
  out.probability = to_vector(torch::sigmoid(pass.logits / impl_->info.temperature));
  if (typicality) out.atypicality = to_vector(atypicality_of(pass.pooled, *impl_->typicality));
  return out;
}

std::vector<float> Classifier::features(const float* chw, size_t n) const {
  if (impl_->feature_size == 0)
    throw std::invalid_argument("the " + arch() +
                                " network does not pool its features globally: no typicality "
                                "model can be fitted to it");
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  const auto input = image_batch_tensor(chw, n, impl_->info.image_size);
  return to_vector(run_members(impl_->loaded.members, input, false, true).pooled);
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

Classifier::Scores Classifier::score_images(const std::vector<cv::Mat>& bgr) const {
  return score(preprocess(bgr, impl_->info.image_size).data(), bgr.size());
}

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
  const torch::Tensor x = image_batch_tensor(chw, n, s);
  std::vector<torch::Tensor> activations;  // each member's last convolution stage
  torch::Tensor logits;
  for (auto& net : impl_->loaded.members) {
    activations.push_back(net->features->forward(x));
    const auto member_logits = net->head->forward(activations.back()).reshape({-1});
    logits = logits.defined() ? logits + member_logits : member_logits;
  }
  // The logits of different images do not interact, so one backward pass serves the batch.
  const auto grads = torch::autograd::grad({logits.sum()}, activations);
  torch::Tensor cam;
  {
    torch::NoGradGuard no_grad;
    for (size_t m = 0; m < activations.size(); ++m) {  // an ensemble's maps are averaged
      const auto weights = grads[m].mean({2, 3}, /*keepdim=*/true);  // one weight per channel
      const auto member_cam = torch::relu((weights * activations[m]).sum(1, /*keepdim=*/true));
      cam = cam.defined() ? cam + member_cam : member_cam;
    }
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
  const auto scores = score(chw, n);  // the same probability as predict, flips and all
  std::vector<Explanation> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].probability = scores.probability[i];
    if (!scores.atypicality.empty()) out[i].atypicality = scores.atypicality[i];
    out[i].heatmap = cv::Mat(s, s, CV_32F, cam[i].data_ptr<float>()).clone();
  }
  return out;
}

int Classifier::conv_layers() const {
  int n = 0;
  for (const auto& m : impl_->loaded.model()->features->children())
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
  for (auto& module : *impl_->loaded.model()->features) {  // an ensemble's first member
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

void write_ensemble_file(const std::vector<std::string>& members, const std::string& out,
                         const nlohmann::json& metadata) {
  std::vector<CellClassifier> nets;
  const ModelInfo info = ModelInfo::from_metadata(metadata);
  for (const auto& path : members) {
    LoadedModel m = load_model_file(path);
    const ModelInfo mi = ModelInfo::from_metadata(m.metadata);
    if (mi.arch != info.arch || mi.image_size != info.image_size)
      throw std::invalid_argument(path + " is a " + mi.arch + " at " +
                                  std::to_string(mi.image_size) + " px, not a " + info.arch +
                                  " at " + std::to_string(info.image_size) + " px");
    nets.insert(nets.end(), m.members.begin(), m.members.end());
  }
  save_model_file(out, nets, metadata);
}

void write_model_copy(const std::string& from, const std::string& to, const nlohmann::json& patch) {
  LoadedModel loaded = load_model_file(from);
  loaded.metadata.merge_patch(patch);
  save_model_file(to, loaded.members, loaded.metadata);
}

void set_compute_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

int compute_threads() { return torch::get_num_threads(); }

}  // namespace malaria
