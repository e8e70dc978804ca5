#include "detect/detector.h"

#include <array>
#include <opencv2/imgproc.hpp>

#include "detect/detector_model.h"
#include "model/model.h"
#include "model/model_info.h"
#include "util/files.h"

namespace malaria {
namespace nn = torch::nn;

namespace {

// Convolution, BatchNorm, ReLU for each (in, out, stride) triple, in one Sequential.
nn::Sequential conv_stack(std::initializer_list<std::array<int, 3>> layers) {
  nn::Sequential s;
  for (const auto& [in, out, stride] : layers) {
    s->push_back(nn::Conv2d(nn::Conv2dOptions(in, out, 3).stride(stride).padding(1).bias(false)));
    s->push_back(nn::BatchNorm2d(out));
    s->push_back(nn::ReLU(nn::ReLUOptions(true)));
  }
  return s;
}

nn::Conv2d pointwise(int in, int out) { return nn::Conv2d(nn::Conv2dOptions(in, out, 1)); }

torch::Tensor upsample_to(const torch::Tensor& x, const torch::Tensor& like) {
  return torch::nn::functional::interpolate(
      x, torch::nn::functional::InterpolateFuncOptions()
             .size(std::vector<int64_t>{like.size(2), like.size(3)})
             .mode(torch::kNearest));
}

}  // namespace

DetectorNetImpl::DetectorNetImpl(int width) {
  const int w = width, w2 = width / 2, w3 = width * 3 / 4;
  stem = register_module("stem", conv_stack({{3, w2, 2}, {w2, w3, 1}}));
  down4 = register_module("down4", conv_stack({{w3, w, 2}, {w, w, 1}}));
  down8 = register_module("down8", conv_stack({{w, 2 * w, 2}, {2 * w, 2 * w, 1}}));
  down16 = register_module("down16",
                           conv_stack({{2 * w, 3 * w, 2}, {3 * w, 3 * w, 1}, {3 * w, 3 * w, 1}}));
  top16 = register_module("top16", pointwise(3 * w, w));
  lateral8 = register_module("lateral8", pointwise(2 * w, w));
  lateral4 = register_module("lateral4", pointwise(w, w));
  merge8 = register_module("merge8", conv_stack({{w, w, 1}}));
  merge4 = register_module("merge4", conv_stack({{w, w, 1}}));
  head = register_module("head", conv_stack({{w, w, 1}}));
  out = register_module("out", pointwise(w, kDetectorOutputs));
  // CenterNet's start: the heat map begins near "no cell here" (p = 0.01), so the many empty
  // pixels do not swamp the first steps; sizes start near a cell's, offsets mid-pixel.
  torch::NoGradGuard no_grad;
  out->bias.zero_();
  out->bias[0].fill_(-4.6);
  out->bias.slice(0, 1 + kDetectorClasses, 3 + kDetectorClasses).fill_(5.0);
  out->bias.slice(0, 3 + kDetectorClasses, 5 + kDetectorClasses).fill_(0.5);
}

torch::Tensor DetectorNetImpl::forward(torch::Tensor x) {
  const auto c4 = down4->forward(stem->forward(x));
  const auto c8 = down8->forward(c4);
  const auto c16 = down16->forward(c8);
  const auto p8 = merge8->forward(lateral8->forward(c8) + upsample_to(top16->forward(c16), c8));
  const auto p4 = merge4->forward(lateral4->forward(c4) + upsample_to(p8, c4));
  return out->forward(head->forward(p4));
}

void save_detector_file(const std::string& path, DetectorNet& net, const nlohmann::json& metadata) {
  write_file_atomic(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    archive.write("malaria_metadata", c10::IValue(metadata.dump()));
    net->save(archive);
    archive.save_to(tmp);
  });
}

LoadedDetector load_detector_file(const std::string& path) {
  torch::serialize::InputArchive archive;
  LoadedDetector loaded;
  loaded.metadata = open_model_archive(path, kDetectorFormat, archive);
  const auto& m = loaded.metadata;
  auto number = [&](const char* key) {
    return m.contains(key) && m[key].is_number() ? m[key].get<double>() : -1.0;
  };
  const bool sane = m.contains("width") && m["width"].is_number_integer() && number("width") >= 8 &&
                    number("width") <= 256 && number("input_scale") > 0.01 &&
                    number("input_scale") <= 1 && number("score_threshold") > 0 &&
                    number("score_threshold") < 1;
  if (!sane)
    throw ModelFileError(path +
                         ": detector metadata lacks a valid width, input_scale or "
                         "score_threshold");
  try {
    loaded.net = DetectorNet(m["width"].get<int>());
    load_weights(*loaded.net, archive);
  } catch (const std::exception& e) {
    throw ModelFileError(path + ": weights do not match the recorded detector (" +
                         std::string(e.what()).substr(0, 200) + ")");
  }
  check_finite_weights(*loaded.net, path);
  loaded.net->eval();
  return loaded;
}

struct CellDetector::Impl {
  DetectorNet net{nullptr};
  nlohmann::json metadata;
  double input_scale = 0.25;
  float score_threshold = 0.3f;
};

CellDetector::CellDetector(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
CellDetector::CellDetector(CellDetector&&) noexcept = default;
CellDetector& CellDetector::operator=(CellDetector&&) noexcept = default;
CellDetector::~CellDetector() = default;

CellDetector CellDetector::load(const std::string& path) {
  LoadedDetector loaded = load_detector_file(path);
  auto impl = std::make_unique<Impl>();
  impl->net = loaded.net;
  to_channels_last(*impl->net);
  impl->metadata = std::move(loaded.metadata);
  impl->input_scale = impl->metadata["input_scale"].get<double>();
  impl->score_threshold = impl->metadata["score_threshold"].get<float>();
  return CellDetector(std::move(impl));
}

const nlohmann::json& CellDetector::metadata() const { return impl_->metadata; }
double CellDetector::input_scale() const { return impl_->input_scale; }
float CellDetector::score_threshold() const { return impl_->score_threshold; }

std::vector<float> CellDetector::prepare(const cv::Mat& bgr, cv::Size& size) const {
  cv::Mat small, rgb;
  const double s = impl_->input_scale;
  cv::resize(bgr, small, {}, s, s, cv::INTER_AREA);
  const int h = (small.rows + kDetectorAlign - 1) / kDetectorAlign * kDetectorAlign;
  const int w = (small.cols + kDetectorAlign - 1) / kDetectorAlign * kDetectorAlign;
  // Padding repeats the edge: no artificial border for the network to call a cell edge.
  cv::copyMakeBorder(small, small, 0, h - small.rows, 0, w - small.cols, cv::BORDER_REPLICATE);
  cv::cvtColor(small, rgb, cv::COLOR_BGR2RGB);
  size = {w, h};
  std::vector<float> chw(3ull * w * h);
  for (int y = 0; y < h; ++y) {
    const uint8_t* row = rgb.ptr<uint8_t>(y);
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < 3; ++c) chw[(size_t(c) * h + y) * w + x] = row[3 * x + c] / 255.f;
  }
  return chw;
}

std::vector<float> CellDetector::forward(const float* chw, size_t n, cv::Size size) const {
  torch::NoGradGuard no_grad;
  const auto input =
      torch::from_blob(const_cast<float*>(chw), {int64_t(n), 3, size.height, size.width})
          .contiguous(at::MemoryFormat::ChannelsLast);
  torch::Tensor out = impl_->net->forward(input).to(torch::kFloat32);
  out.select(1, 0).sigmoid_();
  out = out.contiguous();
  return std::vector<float>(out.data_ptr<float>(), out.data_ptr<float>() + out.numel());
}

std::vector<DetectedCell> CellDetector::decode(const float* maps, cv::Size input, cv::Size field,
                                               float threshold) const {
  const int rows = input.height / kDetectorStride, cols = input.width / kDetectorStride;
  const size_t plane = size_t(rows) * cols;
  if (threshold < 0) threshold = impl_->score_threshold;
  const double back = 1.0 / impl_->input_scale;
  std::vector<DetectedCell> cells;
  for (const RawDetection& d :
       decode_detections(maps, maps + plane, rows, cols, threshold, kMaxDetections)) {
    const double cx = (d.box.x + d.box.width / 2) * back, cy = (d.box.y + d.box.height / 2) * back;
    if (cx >= field.width || cy >= field.height) continue;  // a centre in the padding
    const cv::Rect box(int(std::lround(d.box.x * back)), int(std::lround(d.box.y * back)),
                       int(std::lround(d.box.width * back)), int(std::lround(d.box.height * back)));
    const cv::Rect inside = box & cv::Rect(0, 0, field.width, field.height);
    if (inside.area() == 0) continue;
    cells.push_back({inside, d.score, d.class_probabilities});
  }
  return cells;
}

std::vector<DetectedCell> CellDetector::detect(const cv::Mat& bgr, float threshold) const {
  if (std::min(bgr.cols, bgr.rows) < kMinFieldSide) return {};
  cv::Size size;
  const std::vector<float> input = prepare(bgr, size);
  const std::vector<float> maps = forward(input.data(), 1, size);
  return decode(maps.data(), size, bgr.size(), threshold);
}

}  // namespace malaria
