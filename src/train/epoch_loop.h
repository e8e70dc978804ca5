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
  // The best weights (or the last, with no validation), in eval mode.
  CellClassifier& final_model();

 private:
  size_t steps_per_epoch() const;
  torch::Tensor input_tensor(Batch& batch) const;
  [[noreturn]] void throw_diverged(const RunState& state, const std::string& where) const;

  const TrainOptions& opt_;
  std::unique_ptr<ImageCache> cache_;
  std::unique_ptr<BatchLoader> train_loader_, val_loader_;
  std::vector<Sample> train_samples_;
  size_t train_images_;
  CellClassifier model_{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer_;
  std::vector<torch::Tensor> best_weights_;
};

}  // namespace malaria
