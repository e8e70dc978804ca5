#include "model/model.h"

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "model/architecture.h"
#include "model/classifier.h"
#include "util/files.h"

namespace malaria {

namespace nn = torch::nn;

CellClassifierImpl::CellClassifierImpl(nn::Sequential features_, nn::Sequential head_)
    : features(register_module("features", features_)), head(register_module("head", head_)) {}

torch::Tensor CellClassifierImpl::forward(torch::Tensor x) {
  return head->forward(features->forward(x));
}

namespace {

// The cellnet variants by name and base width: the one list that names them and builds them.
const std::vector<std::pair<std::string, int>> kCellnetWidths = {
    {"cellnet", 16}, {"cellnet-24", 24}, {"cellnet-wide", 32}};

}  // namespace

std::vector<std::string> architecture_names() {
  std::vector<std::string> names;
  for (const auto& [name, width] : kCellnetWidths) names.push_back(name);
  names.push_back("seed");
  return names;
}
std::string default_architecture() { return "cellnet"; }

namespace {

nn::Conv2d conv3x3(int64_t in, int64_t out, bool bias) {
  return nn::Conv2d(nn::Conv2dOptions(in, out, 3).padding(1).bias(bias));
}

// In place: the activation overwrites its input (no layer's backward pass needs that input), one
// tensor less to allocate and fill per activation.
nn::ReLU relu() { return nn::ReLU(nn::ReLUOptions().inplace(true)); }

// The original Keras network, layer for layer (Conv -> ReLU -> BatchNorm order included).
CellClassifier seed_network(int image_size) {
  nn::Sequential f;
  f->push_back("conv1", conv3x3(3, 32, true));
  f->push_back("relu1", relu());
  f->push_back("bn1", nn::BatchNorm2d(32));
  f->push_back("pool1", nn::MaxPool2d(2));
  f->push_back("conv2", conv3x3(32, 64, true));
  f->push_back("relu2", relu());
  f->push_back("pool2", nn::MaxPool2d(2));
  f->push_back("conv3", conv3x3(64, 128, true));
  f->push_back("relu3", relu());
  f->push_back("pool3", nn::MaxPool2d(2));
  const int64_t side = image_size / 8;
  nn::Sequential h;
  h->push_back("flatten", nn::Flatten());
  h->push_back("dense1", nn::Linear(128 * side * side, 128));
  h->push_back("relu4", relu());
  h->push_back("dropout", nn::Dropout(0.3));
  h->push_back("dense2", nn::Linear(128, 1));
  return CellClassifier(f, h);
}

// Ours: Conv-BN-ReLU stages that double the width (16 to 128; 24 to 192; 32 to 256 when wide) as
// they halve the side, two convolutions in the two smallest stages, then global average pooling, so
// the head has one weight per channel and the parameter count does not grow with the image size.
CellClassifier cellnet(int base_width) {
  nn::Sequential f;
  const std::vector<int64_t> widths = {base_width, 2 * base_width, 4 * base_width, 8 * base_width};
  int64_t in = 3;
  int conv = 0;
  auto conv_bn_relu = [&](int64_t out) {
    const std::string n = std::to_string(++conv);
    f->push_back("conv" + n, conv3x3(in, out, false));
    f->push_back("bn" + n, nn::BatchNorm2d(out));
    f->push_back("relu" + n, relu());
    in = out;
  };
  for (size_t i = 0; i < widths.size(); ++i) {
    conv_bn_relu(widths[i]);
    if (i >= 2) conv_bn_relu(widths[i]);  // depth where the maps are small is cheap
    if (i + 1 < widths.size()) f->push_back("pool" + std::to_string(i + 1), nn::MaxPool2d(2));
  }
  nn::Sequential h;
  h->push_back("gap", nn::AdaptiveAvgPool2d(1));
  h->push_back("flatten", nn::Flatten());
  h->push_back("dropout", nn::Dropout(0.2));
  h->push_back("dense", nn::Linear(in, 1));
  return CellClassifier(f, h);
}

}  // namespace

CellClassifier build_model(const std::string& arch, int image_size) {
  if (image_size < 16 || image_size > 512 || image_size % 8 != 0)
    throw std::invalid_argument("image size must be a multiple of 8 between 16 and 512, got " +
                                std::to_string(image_size));
  if (arch == "seed") return seed_network(image_size);
  for (const auto& [name, width] : kCellnetWidths)
    if (arch == name) return cellnet(width);
  std::string names;
  for (const auto& a : architecture_names()) names += (names.empty() ? "" : ", ") + a;
  throw std::invalid_argument("unknown architecture '" + arch + "' (available: " + names + ")");
}

ArchitectureSummary summarize_architecture(const std::string& arch, int image_size) {
  CellClassifier model = build_model(arch, image_size);
  model->eval();
  torch::NoGradGuard no_grad;
  ArchitectureSummary s;
  s.arch = arch;
  s.image_size = image_size;
  torch::Tensor x = torch::zeros({1, 3, image_size, image_size});
  for (nn::Sequential* seq : {&model->features, &model->head}) {
    const auto children = (*seq)->named_children();
    size_t i = 0;
    for (auto& any : **seq) {
      x = any.forward(x);
      const auto& child = children[i++];
      const auto& module = child.value();
      LayerInfo layer;
      layer.name = child.key();
      layer.type = module->name();
      if (auto pos = layer.type.rfind("::"); pos != std::string::npos)
        layer.type = layer.type.substr(pos + 2);
      if (layer.type.size() > 4 && layer.type.substr(layer.type.size() - 4) == "Impl")
        layer.type.resize(layer.type.size() - 4);
      layer.output_shape.assign(x.sizes().begin() + 1, x.sizes().end());
      int64_t trainable = 0, frozen = 0;
      for (const auto& p : module->parameters()) trainable += p.numel();
      for (const auto& b : module->named_buffers())
        if (b.key().find("running_") != std::string::npos) frozen += b.value().numel();
      layer.params = trainable + frozen;
      s.trainable_params += trainable;
      s.non_trainable_params += frozen;
      s.layers.push_back(layer);
    }
  }
  s.total_params = s.trainable_params + s.non_trainable_params;
  return s;
}

std::string format_summary(const ArchitectureSummary& s) {
  std::ostringstream out;
  auto rule = [&](char c) { out << std::string(72, c) << '\n'; };
  char line[160];
  out << "Model: \"" << s.arch << "\" (input 3x" << s.image_size << "x" << s.image_size << ")\n";
  rule('_');
  std::snprintf(line, sizeof line, "%-32s %-26s %12s\n", "Layer (type)", "Output Shape", "Param #");
  out << line;
  rule('=');
  for (const auto& l : s.layers) {
    std::string shape = "(None";
    for (auto d : l.output_shape) shape += ", " + std::to_string(d);
    shape += ")";
    const std::string name = l.name + " (" + l.type + ")";
    std::snprintf(line, sizeof line, "%-32s %-26s %12lld\n", name.c_str(), shape.c_str(),
                  static_cast<long long>(l.params));
    out << line;
  }
  rule('=');
  out << "Total params: " << s.total_params << "\n";
  out << "Trainable params: " << s.trainable_params << "\n";
  out << "Non-trainable params: " << s.non_trainable_params << "\n";
  rule('_');
  return out.str();
}

void save_model_file(const std::string& path, CellClassifier& model,
                     const nlohmann::json& metadata) {
  write_file_atomic(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    archive.write("malaria_metadata", c10::IValue(metadata.dump()));
    model->save(archive);
    archive.save_to(tmp);
  });
}

void save_model_file(const std::string& path, std::vector<CellClassifier>& members,
                     nlohmann::json metadata) {
  if (members.empty()) throw std::invalid_argument("an ensemble needs at least one member");
  if (members.size() == 1) {
    metadata.erase("ensemble");
    return save_model_file(path, members[0], metadata);
  }
  metadata["ensemble"] = {{"members", members.size()}, {"combine", "mean of the members' logits"}};
  write_file_atomic(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    archive.write("malaria_metadata", c10::IValue(metadata.dump()));
    for (size_t i = 0; i < members.size(); ++i) {
      torch::serialize::OutputArchive member;
      members[i]->save(member);
      archive.write("member" + std::to_string(i + 1), member);
    }
    archive.save_to(tmp);
  });
}

// Members in the file: 1 for an ordinary model; an ensemble's recorded count (bounded).
static size_t member_count(const nlohmann::json& metadata, const std::string& path) {
  const auto ensemble = metadata.find("ensemble");
  if (ensemble == metadata.end()) return 1;
  const auto members = ensemble->is_object() ? ensemble->find("members") : ensemble->end();
  if (members == ensemble->end() || !members->is_number_unsigned() || *members < 1 || *members > 32)
    throw ModelFileError(path + ": the ensemble's member count is missing or out of range");
  return members->get<size_t>();
}

nlohmann::json open_model_archive(const std::string& path, const std::string& format,
                                  torch::serialize::InputArchive& archive) {
  namespace fs = std::filesystem;
  if (!fs::exists(path)) throw ModelFileError("model file not found: " + path);
  if (fs::is_directory(path)) throw ModelFileError(path + " is a folder, not a model file");
  // Read once with the regular-file rules (a FIFO or device must not block), then parse from
  // memory, so what is checked is what is loaded.
  std::string bytes;
  try {
    bytes = read_regular_file(path, kMaxModelFileBytes);
  } catch (const FileError& e) {
    throw ModelFileError(e.what());
  }
  if (bytes.size() < 2 || bytes[0] != 'P' || bytes[1] != 'K')
    throw ModelFileError(path +
                         " is not a malaria model file (expected a model file written by "
                         "'malaria train' or 'malaria train-detector')");
  try {
    archive.load_from(bytes.data(), bytes.size());
  } catch (const std::exception& e) {
    throw ModelFileError(path +
                         " is truncated or corrupt and cannot be read; re-copy it or retrain");
  }
  c10::IValue meta_value;
  bool has_meta = false;
  try {
    has_meta = archive.try_read("malaria_metadata", meta_value) && meta_value.isString();
  } catch (const std::exception&) {
    has_meta = false;
  }
  if (!has_meta)
    throw ModelFileError(path +
                         " is a LibTorch archive but not a malaria model file (no metadata)");
  nlohmann::json metadata;
  try {
    metadata = nlohmann::json::parse(meta_value.toStringRef());
  } catch (const std::exception&) {
    throw ModelFileError(path + ": model metadata is corrupt");
  }
  if (!metadata.is_object() || !metadata.contains("format") || !metadata["format"].is_string())
    throw ModelFileError(path + " is not a malaria model file (format field missing)");
  if (metadata["format"] != format)
    throw ModelFileError(path + " is a " + metadata["format"].get<std::string>() + " file, not a " +
                         format);
  if (!metadata.contains("format_version") || !metadata["format_version"].is_number() ||
      metadata["format_version"].get<double>() > kModelFormatVersion)
    throw ModelFileError(path + " was written by a newer version of malaria; upgrade to read it");
  return metadata;
}

void check_finite_weights(torch::nn::Module& module, const std::string& path) {
  for (const auto& t : module.parameters())
    if (!torch::isfinite(t).all().item<bool>())
      throw ModelFileError(path +
                           ": the weights hold values that are not finite numbers (the "
                           "training that wrote it diverged)");
  for (const auto& t : module.buffers())
    if (t.is_floating_point() && !torch::isfinite(t).all().item<bool>())
      throw ModelFileError(path + ": the weights hold values that are not finite numbers");
}

void load_weights(torch::nn::Module& module, torch::serialize::InputArchive& archive) {
  // LibTorch's load replaces each tensor whole, whatever its shape: a file of another width
  // would load "successfully". The shapes the architecture expects are checked afterwards.
  std::vector<std::pair<std::string, std::vector<int64_t>>> expected;
  for (const auto& p : module.named_parameters())
    expected.emplace_back(p.key(), p.value().sizes().vec());
  for (const auto& b : module.named_buffers())
    expected.emplace_back(b.key(), b.value().sizes().vec());
  module.load(archive);
  size_t i = 0;
  auto check = [&](const std::string& name, const torch::Tensor& t) {
    if (t.sizes().vec() != expected.at(i++).second)
      throw std::runtime_error(name + " has shape " + c10::str(t.sizes()) +
                               " in the file, not the architecture's " +
                               c10::str(c10::IntArrayRef(expected.at(i - 1).second)));
  };
  for (const auto& p : module.named_parameters()) check(p.key(), p.value());
  for (const auto& b : module.named_buffers()) check(b.key(), b.value());
}

LoadedModel load_model_file(const std::string& path) {
  torch::serialize::InputArchive archive;
  LoadedModel loaded;
  loaded.metadata = open_model_archive(path, kModelFormat, archive);
  ModelInfo info;
  try {
    info = ModelInfo::from_metadata(loaded.metadata);
  } catch (const ModelFileError& e) {
    throw ModelFileError(path + ": " + e.what());
  }
  const size_t members = member_count(loaded.metadata, path);
  for (size_t i = 0; i < members; ++i) {
    CellClassifier net{nullptr};
    try {
      net = build_model(info.arch, info.image_size);
      if (members == 1) {
        load_weights(*net, archive);
      } else {
        torch::serialize::InputArchive member;
        if (!archive.try_read("member" + std::to_string(i + 1), member))
          throw std::runtime_error("member " + std::to_string(i + 1) + " is missing");
        load_weights(*net, member);
      }
    } catch (const std::exception& e) {
      throw ModelFileError(path + ": weights do not match the recorded architecture (" +
                           std::string(e.what()).substr(0, 200) + ")");
    }
    check_finite_weights(*net, path);
    net->eval();
    loaded.members.push_back(net);
  }
  return loaded;
}

CellClassifier fold_batchnorm(CellClassifier& model) {
  torch::NoGradGuard no_grad;
  nn::Sequential features;
  const auto children = model->features->named_children();
  for (size_t i = 0; i < children.size(); ++i) {
    const auto& module = children[i].value();
    auto* conv = module->as<nn::Conv2d>();
    auto* bn = i + 1 < children.size() ? children[i + 1].value()->as<nn::BatchNorm2d>() : nullptr;
    if (conv && bn) {
      const auto& o = conv->options;
      nn::Conv2d fused(nn::Conv2dOptions(o.in_channels(), o.out_channels(), o.kernel_size())
                           .stride(o.stride())
                           .padding(o.padding())
                           .bias(true));
      const auto scale = bn->weight / torch::sqrt(bn->running_var + bn->options.eps());
      fused->weight.copy_(conv->weight * scale.reshape({-1, 1, 1, 1}));
      const auto bias = conv->bias.defined() ? conv->bias : torch::zeros_like(bn->running_mean);
      fused->bias.copy_((bias - bn->running_mean) * scale + bn->bias);
      features->push_back(std::string(children[i].key()), fused);
      ++i;  // the BatchNorm is now inside the convolution
    } else {
      features->push_back(std::string(children[i].key()),
                          *(model->features->begin() + static_cast<std::ptrdiff_t>(i)));
    }
  }
  CellClassifier folded(features, model->head);
  folded->eval();
  return folded;
}

void to_channels_last(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for (auto& p : module.parameters())
    if (p.dim() == 4) p.set_data(p.contiguous(at::MemoryFormat::ChannelsLast));
}

torch::Tensor image_batch_tensor(const float* chw, size_t n, int size) {
  return torch::from_blob(const_cast<float*>(chw), {static_cast<int64_t>(n), 3, size, size})
      .contiguous(at::MemoryFormat::ChannelsLast);
}

void release_gradients(torch::nn::Module& module) {
  for (auto& p : module.parameters()) p.mutable_grad().reset();
}

std::vector<torch::Tensor> snapshot_state(torch::nn::Module& module) {
  std::vector<torch::Tensor> state;
  for (const auto& p : module.parameters()) state.push_back(p.detach().clone());
  for (const auto& b : module.buffers()) state.push_back(b.detach().clone());
  return state;
}

void restore_state(torch::nn::Module& module, const std::vector<torch::Tensor>& state) {
  torch::NoGradGuard no_grad;
  size_t i = 0;
  for (auto& p : module.parameters()) p.copy_(state.at(i++));
  for (auto& b : module.buffers()) b.copy_(state.at(i++));
}

}  // namespace malaria
