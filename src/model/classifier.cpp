#include "model/classifier.h"

#include <thread>

#include "data/image.h"
#include "model/model.h"

namespace malaria {

struct Classifier::Impl {
  LoadedModel loaded;
  int image_size = 0;
  double threshold = 0.5;
};

Classifier::Classifier(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Classifier::Classifier(Classifier&&) noexcept = default;
Classifier& Classifier::operator=(Classifier&&) noexcept = default;
Classifier::~Classifier() = default;

Classifier Classifier::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  impl->loaded = load_model_file(path);
  impl->image_size = impl->loaded.metadata.at("image_size").get<int>();
  impl->threshold = impl->loaded.metadata.value("threshold", 0.5);
  return Classifier(std::move(impl));
}

const nlohmann::json& Classifier::metadata() const { return impl_->loaded.metadata; }
int Classifier::image_size() const { return impl_->image_size; }
double Classifier::threshold() const { return impl_->threshold; }
std::string Classifier::arch() const { return impl_->loaded.metadata.value("arch", ""); }

std::vector<float> Classifier::predict(const float* chw, size_t n) const {
  if (n == 0) return {};
  torch::NoGradGuard no_grad;
  const int64_t s = impl_->image_size;
  auto input = torch::from_blob(const_cast<float*>(chw), {static_cast<int64_t>(n), 3, s, s});
  auto prob = torch::sigmoid(impl_->loaded.model->forward(input)).reshape({-1}).contiguous();
  return std::vector<float>(prob.data_ptr<float>(), prob.data_ptr<float>() + n);
}

std::vector<float> Classifier::predict_images(const std::vector<cv::Mat>& bgr) const {
  const int s = impl_->image_size;
  const size_t plane = 3ull * s * s;
  std::vector<float> pixels(bgr.size() * plane);
  for (size_t i = 0; i < bgr.size(); ++i) to_chw_float(resize_rgb(bgr[i], s), pixels.data() + i * plane);
  return predict(pixels.data(), bgr.size());
}

void set_compute_threads(int threads) {
  if (threads <= 0) threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  torch::set_num_threads(threads);
}

int compute_threads() { return torch::get_num_threads(); }

}  // namespace malaria
