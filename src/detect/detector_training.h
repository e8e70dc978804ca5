// `malaria train-detector`: trains the red-cell detector on annotated fields, split by field
// group, and writes RUN/detector.pt with its figures. Torch-free header.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

namespace malaria {

struct DetectorTrainOptions {
  std::string fields_dir;  // annotations.json (IML) or annotations.csv, images/
  std::string out_dir;     // RUN: detector.pt, checkpoint/, history.csv, evaluation.json
  // A run's split.csv: field groups ("fields-NNN") follow its parts, so that the detector and
  // the cell model trained with it hold out the same groups. Empty: groups dealt by seed.
  std::string split_csv;
  int val_groups = 4, test_groups = 5;  // without split_csv
  int steps = 4000;                     // optimizer steps
  int batch = 16;                       // windows per step
  int window = 192;                     // window side at the detector's scale
  int width = 32;                       // channels at stride 4 (the network's size)
  double input_scale = 0.25;            // field pixels to detector pixels
  double scale_jitter = 0.25;           // random rescaling, +- this share
  double augment = 1.0;                 // photometric damage strength (0: none)
  double learning_rate = 2e-3;          // AdamW, warm-up then half cosine
  // Unboxed cell-like regions (the annotation is not exhaustive) are left out of the loss
  // rather than taught as background.
  bool ignore_unboxed = true;
  int checkpoint_every = 250;
  uint64_t seed = 42;
  int threads = 0;
  bool progress = true;
};

// Trains (continuing RUN/checkpoint when present), picks the score threshold on the validation
// groups, evaluates on the test groups and writes RUN/detector.pt. Returns the evaluation.
nlohmann::json train_detector(const DetectorTrainOptions& options);

}  // namespace malaria
