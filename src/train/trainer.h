// `malaria train`: split, stream, fit with Adam and early stopping, checkpoint, evaluate, save.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "data/augment.h"
#include "data/dataset.h"

namespace malaria {

// ONEDNN_MAX_CPU_ISA (or DNNL_MAX_CPU_ISA) upper-cased: the widest ISA oneDNN may use; empty when
// unset (oneDNN then uses all the CPU has).
std::string onednn_isa_cap();

// True when the CPU computes bfloat16 natively (AVX-512 BF16 or AMX) and ONEDNN_MAX_CPU_ISA
// does not cap oneDNN below that: autocast then pays.
bool cpu_has_bf16();

struct TrainOptions {
  std::string data_dir;
  // Annotated smear fields (see read_field_annotations): their cells join the training data,
  // each group of fields as one "patient".
  std::string fields_dir;
  // Each Parasitized field cell appears this many times per training epoch (each time augmented
  // anew): a few hundred infected field cells would otherwise be lost among tens of thousands.
  int field_positive_repeat = 1;
  std::string out_dir;
  std::string arch = "cellnet";
  int image_size = 64;
  int epochs = 20;
  int batch_size = 32;
  double learning_rate = 5e-4;
  // cosine: per batch, a warm-up then a half cosine to zero; constant: the original
  std::string lr_schedule = "cosine";
  int patience = 10;  // epochs without a better validation loss before stopping
  SplitMode split = SplitMode::Patient;
  SplitFractions fractions;
  uint64_t seed = 42;
  int threads = 0;  // LibTorch threads; 0: all cores
  int workers = 1;  // data-loading threads
  bool cache = false;
  bool strict = false;
  AugmentConfig augment;
  double time_limit_minutes = 0;  // stop after the epoch that crosses it; 0: no limit
  size_t max_steps = 0;           // cap on batches per epoch (benchmarks); 0: whole epoch
  bool bf16 = cpu_has_bf16();     // bfloat16 autocast in the forward pass (see docs/PERFORMANCE.md)
  bool quiet = false;             // no progress bars
  bool flip_tta = false;          // the model file averages each cell over its flips
  // Cross-validation: with cv_folds > 0 the test part is patient fold cv_fold (0-based) and
  // validation comes from the other folds' patients (see cross_validation_split).
  int cv_folds = 0, cv_fold = 0;
  // Seeds the patient folds and the validation carve-out of cross-validation, apart from `seed`,
  // so runs of other seeds (ensemble members) are tested on the same folds.
  uint64_t fold_seed = 42;
  // Exponential moving average of the weights (decay per step; 0: off). The run's model file
  // then holds the averaged weights; the last raw weights are evaluated beside them.
  double ema_decay = 0;
  // Targets 0 and 1 become eps/2 and 1 - eps/2 (0: off).
  double label_smoothing = 0;
  // mixup: each batch blended with a shuffled copy of itself, weight ~ Beta(alpha, alpha) (0: off).
  double mixup_alpha = 0;
  // Image paths (one per line) left out of training and validation, never out of a test part:
  // the suspected label errors of a label-noise analysis.
  std::string exclude_list;

  nlohmann::json to_json() const;
  static TrainOptions from_json(const nlohmann::json& j);
};

struct TrainOutcome {
  bool interrupted = false;  // a checkpoint was saved; continue with --resume
  std::string model_path;
  int epochs_run = 0, best_epoch = 0;
  double train_seconds = 0, train_images_per_second = 0;
  nlohmann::json test;  // evaluation of the test split (empty when there is none)
};

// Runs a whole training job into options.out_dir. Ctrl-C/SIGTERM save a checkpoint and return
// with interrupted=true.
TrainOutcome run_training(const TrainOptions& options);

// Continues the interrupted run in run_dir with its recorded configuration. `threads` overrides
// the recorded thread count when > 0.
TrainOutcome resume_training(const std::string& run_dir, int threads = 0);

}  // namespace malaria
