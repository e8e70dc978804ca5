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
  nlohmann::json to_json() const {
    return {{"epoch", epoch},
            {"train_loss", train_loss},
            {"train_accuracy", train_accuracy},
            {"val_loss", val_loss},
            {"val_accuracy", val_accuracy},
            {"learning_rate", learning_rate},
            {"seconds", seconds},
            {"images_per_second", images_per_second}};
  }
  static EpochRecord from_json(const nlohmann::json& j) {
    return {j.at("epoch"),    j.at("train_loss"),       j.at("train_accuracy"),
            j.at("val_loss"), j.at("val_accuracy"),     j.at("learning_rate"),
            j.at("seconds"),  j.at("images_per_second")};
  }
};

// Everything needed to continue a run exactly where it stopped.
struct RunState {
  int epoch = 0;          // epoch in progress (0-based)
  size_t next_batch = 0;  // first batch of that epoch not yet trained
  double loss_sum = 0;    // running sums of the epoch in progress
  size_t correct = 0, seen = 0;
  double epoch_seconds = 0;
  double best_val_loss = std::numeric_limits<double>::infinity();
  int best_epoch = 0, bad_epochs = 0;
  double train_seconds = 0;
  size_t train_images = 0;
  std::vector<EpochRecord> history;

  nlohmann::json to_json() const {
    nlohmann::json h = nlohmann::json::array();
    for (const auto& r : history) h.push_back(r.to_json());
    return {{"epoch", epoch},
            {"next_batch", next_batch},
            {"loss_sum", loss_sum},
            {"correct", correct},
            {"seen", seen},
            {"epoch_seconds", epoch_seconds},
            {"best_val_loss", best_val_loss},
            {"best_epoch", best_epoch},
            {"bad_epochs", bad_epochs},
            {"train_seconds", train_seconds},
            {"train_images", train_images},
            {"history", h}};
  }
  static RunState from_json(const nlohmann::json& j) {
    RunState s;
    s.epoch = j.at("epoch");
    s.next_batch = j.at("next_batch");
    s.loss_sum = j.at("loss_sum");
    s.correct = j.at("correct");
    s.seen = j.at("seen");
    s.epoch_seconds = j.at("epoch_seconds");
    s.best_val_loss = j.at("best_val_loss").is_null() ? std::numeric_limits<double>::infinity()
                                                      : j.at("best_val_loss").get<double>();
    s.best_epoch = j.at("best_epoch");
    s.bad_epochs = j.at("bad_epochs");
    s.train_seconds = j.at("train_seconds");
    s.train_images = j.at("train_images");
    for (const auto& r : j.at("history")) s.history.push_back(EpochRecord::from_json(r));
    return s;
  }
};

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
