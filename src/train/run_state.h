// The torch-free side of a training run: its recorded state, history and data split, all
// stored as files in the run folder so an interrupted run continues exactly.
#pragma once

#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "train/trainer.h"

namespace malaria {

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, val_loss = 0, val_accuracy = 0;
  double learning_rate = 0, seconds = 0, images_per_second = 0;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(EpochRecord, epoch, train_loss, train_accuracy, val_loss,
                                   val_accuracy, learning_rate, seconds, images_per_second)

// Everything needed to continue a run exactly where it stopped (checkpoint/state.json).
struct RunState {
  int epoch = 0;          // epoch in progress (0-based)
  size_t next_batch = 0;  // first batch of that epoch not yet trained
  double loss_sum = 0;    // running sums of the epoch in progress
  size_t correct = 0, seen = 0;
  double epoch_seconds = 0;
  double best_val_loss = std::numeric_limits<double>::max();  // finite: JSON has no infinity
  int best_epoch = 0, bad_epochs = 0;
  double train_seconds = 0;
  size_t train_images = 0;
  std::vector<EpochRecord> history;
};
NLOHMANN_DEFINE_TYPE_NON_INTRUSIVE(RunState, epoch, next_batch, loss_sum, correct, seen,
                                   epoch_seconds, best_val_loss, best_epoch, bad_epochs,
                                   train_seconds, train_images, history)

void write_history(const std::string& dir, const std::vector<EpochRecord>& history);

// The split a run trains on and the summary of its data.
struct RunData {
  Split split;
  nlohmann::json summary;
};
// A new run scans and splits the data and records split.csv, data_summary.json and config.json;
// a resumed run reads them back.
RunData prepare_run_data(const TrainOptions& options, bool resuming);

}  // namespace malaria
