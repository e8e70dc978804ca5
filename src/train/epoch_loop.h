// The training loop itself: one model, one optimizer, the data loaders, and what a checkpoint
// must hold. What pytorch/examples keeps to twenty lines, plus exact resumption. Needs LibTorch.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "data/loader.h"
#include "model/model.h"
#include "train/run_state.h"

namespace malaria {

// Ctrl-C and SIGTERM only set a flag while alive; the loop stops at the next batch boundary.
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  static bool requested();

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

class EpochLoop {
 public:
  EpochLoop(const TrainOptions& options, const Split& split);

  // Trains state.epoch from state.next_batch, updating the running sums in `state`. Returns
  // false when a stop signal arrived (state then points at the next batch). Throws when the
  // loss stops being a finite number.
  bool train_epoch(RunState& state);
  // Mean loss and accuracy on the validation split.
  std::pair<double, double> validate(const RunState& state);
  // The rate for a batch of an epoch (0-based both).
  double learning_rate(int epoch, size_t batch) const;

  // Keeps the current weights as the best so far (in memory and in the checkpoint folder).
  void keep_best(const std::string& checkpoint_dir);
  // Weights, optimizer and generator state; state.json is written last and marks the set whole.
  void save_checkpoint(const std::string& checkpoint_dir, const RunState& state);
  RunState load_checkpoint(const std::string& checkpoint_dir);
  // The weights to ship, in eval mode: the best epoch's with validation, else the moving average
  // (with --ema) or the last. `raw`: the last weights as trained, whatever the options.
  CellClassifier& final_model(bool raw = false);
  bool averages_weights() const { return !average_.empty(); }

 private:
  size_t steps_per_epoch() const;
  torch::Tensor input_tensor(Batch& batch) const;
  [[noreturn]] void throw_diverged(const RunState& state, const std::string& where) const;
  std::pair<double, double> validate_current(const RunState& state);
  // The batch's training targets and inputs after label smoothing and mixup.
  std::pair<torch::Tensor, torch::Tensor> training_pair(torch::Tensor x, torch::Tensor y) const;
  void update_average(int64_t step);
  // Runs `fn` with the weights that would be kept (the moving average when on) in the model.
  template <typename Fn>
  auto with_kept_weights(Fn fn);

  const TrainOptions& opt_;
  std::unique_ptr<ImageCache> cache_;
  std::unique_ptr<BatchLoader> train_loader_, val_loader_;
  std::vector<Sample> train_samples_;
  size_t train_images_;
  CellClassifier model_{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::vector<torch::Tensor> best_weights_;
  std::vector<torch::Tensor> average_;  // moving average of parameters and buffers (--ema)
  std::vector<torch::Tensor> last_weights_;
};

}  // namespace malaria
