// A trained model loaded from its file, ready for inference. Torch-free header: the CLI, the
// evaluator and the server use it without compiling LibTorch headers.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <opencv2/core.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "model/model_info.h"

namespace malaria {

class Classifier {
 public:
  static Classifier load(const std::string& path);
  Classifier(Classifier&&) noexcept;
  Classifier& operator=(Classifier&&) noexcept;
  ~Classifier();

  const nlohmann::json& metadata() const;
  const ModelInfo& info() const;
  int image_size() const { return info().image_size; }
  double threshold() const { return info().threshold(); }
  // The file's default decision rule, or the named one (empty: the default). Throws
  // std::invalid_argument naming the points the file has for a name it does not have.
  const OperatingPoint& operating_point(const std::string& name = "") const;
  const std::string& arch() const { return info().arch; }
  // Overrides the file's test-time augmentation (flips), e.g. to measure what it is worth.
  void set_flip_tta(bool on);

  // P(Parasitized) for n preprocessed images (n x 3 x S x S floats in [0,1]), calibrated with
  // the file's temperature. Thread-safe. An ensemble averages its members' logits.
  std::vector<float> predict(const float* chw, size_t n) const;

  struct Scores {
    std::vector<float> logits;       // as logits gives them
    std::vector<float> probability;  // as predict gives it
    // Distance of each image's features from the training cells', over the file's rejection
    // threshold: above 1 is "Rejected". Empty when the file has no typicality model.
    std::vector<float> atypicality;
  };
  // Both from one forward pass.
  Scores score(const float* chw, size_t n) const;
  // The same for decoded 8-bit BGR images of any size, preprocessed exactly as in training.
  Scores score_images(const std::vector<cv::Mat>& bgr) const;
  bool has_typicality() const;
  // The features the typicality model is fitted on: each member's globally pooled last
  // convolution stage, side by side (n x feature_size floats).
  std::vector<float> features(const float* chw, size_t n) const;
  int feature_size() const;
  size_t members() const;
  // The network's raw outputs, before temperature and sigmoid (what calibration is fitted on).
  std::vector<float> logits(const float* chw, size_t n) const;
  // Decoded 8-bit BGR images of any size, preprocessed exactly as in training.
  std::vector<float> predict_images(const std::vector<cv::Mat>& bgr) const;

  struct Explanation {
    float probability = 0;  // calibrated P(Parasitized)
    float atypicality = 0;  // as score gives it (0 without a typicality model)
    cv::Mat heatmap;        // Grad-CAM, CV_32F in [0,1], image_size x image_size
  };
  // Grad-CAM on the last convolution stage: where the evidence for Parasitized lies, for decoded
  // 8-bit BGR images of any size. All zero where nothing speaks for Parasitized. Thread-safe.
  std::vector<Explanation> explain(const std::vector<cv::Mat>& bgr) const;
  // The same for n preprocessed images (as predict takes them).
  std::vector<Explanation> explain(const float* chw, size_t n) const;

  // Activations after the n-th convolution (1-based) and its ReLU: one float map per channel.
  std::vector<cv::Mat> feature_maps(const cv::Mat& bgr, int conv_layer) const;
  int conv_layers() const;

 private:
  struct Impl;
  explicit Classifier(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Joins model files of one architecture and input size into one ensemble file (the members'
// logits averaged) with `metadata`, atomically. Throws when they do not match.
void write_ensemble_file(const std::vector<std::string>& members, const std::string& out,
                         const nlohmann::json& metadata);

// Copies a model file with `patch` merged into its metadata (same weights), atomically.
void write_model_copy(const std::string& from, const std::string& to, const nlohmann::json& patch);

// Sets LibTorch's intra-op thread count (0: all cores). LibTorch alone would pick 1 here.
void set_compute_threads(int threads);
int compute_threads();

}  // namespace malaria
