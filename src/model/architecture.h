// Torch-free view of the networks: names, layer tables and parameter counts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace malaria {

// "seed": the original Keras network. "cellnet": ours, BatchNorm throughout and global average
// pooling: far fewer parameters, faster, and more accurate on unseen patients. "cellnet-24" and
// "cellnet-wide": the same stages at 1.5 and 2 times the width (2.25 and 4 times the computation).
std::vector<std::string> architecture_names();
std::string default_architecture();

struct LayerInfo {
  std::string name, type;
  std::vector<int64_t> output_shape;  // without the batch dimension, channels first
  int64_t params = 0;                 // Keras-style: BatchNorm running statistics included
};

struct ArchitectureSummary {
  std::string arch;
  int image_size = 0;
  std::vector<LayerInfo> layers;
  int64_t total_params = 0, trainable_params = 0, non_trainable_params = 0;
};

ArchitectureSummary summarize_architecture(const std::string& arch, int image_size);
std::string format_summary(const ArchitectureSummary& summary);  // like Keras model.summary()

}  // namespace malaria
