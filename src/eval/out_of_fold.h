// What a cross-validation's out-of-fold predictions say once every fold is done: figures at
// operating points and temperatures fitted on the *other* folds (cross-fitting, so no fold is
// judged by a rule tuned on it), ensembles of runs on the same folds (logits averaged), the
// choice between temperature scaling and none, and the training cells whose label the models
// contradict most confidently. Torch-free.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace malaria {

struct OutOfFoldCell {
  Sample sample;
  float logit = 0;
};
// fold -> its test cells, from RUN/fold-K/test_predictions.csv (or _raw.csv for the weights
// without their moving average).
using OutOfFold = std::vector<std::vector<OutOfFoldCell>>;

// Reads every finished fold of a `malaria cv` run folder; throws when a fold is missing or its
// predictions have no logit column.
OutOfFold read_out_of_fold(const std::string& cv_dir, bool raw_weights = false);

// {"mean", "sd" (sample), "per_fold"} of the values.
nlohmann::json mean_sd(const std::vector<double>& values);
// The first `n` rows of a per-patient table (patient, fold, cells, accuracy, true and predicted
// parasitemia; least accurate first), aligned, with a header line.
std::string format_weakest_patients(const nlohmann::json& patients, size_t n = 10);

// Several runs on the same folds as one ensemble: logits averaged per cell, over the cells every
// run scored (one may have Rejected a cell). Throws when a fold's cells differ by more than 1%
// (another --fold-seed).
OutOfFold average_runs(const std::vector<OutOfFold>& runs);

// Per fold, a temperature (or none) and the operating points fitted on the other folds' cells,
// then applied to this fold: accuracy, sensitivity, specificity at `balanced` and `screening`,
// AUC, ECE with and without the temperature; mean ± sd over folds, pooled confusion, and the
// per-patient table. `temperature_choice` says which calibration has the lower mean ECE.
nlohmann::json cross_fitted_summary(const OutOfFold& oof);
std::string format_cross_fitted(const nlohmann::json& summary);

// Cells whose out-of-fold probability contradicts their label by at least `min_confidence`
// (e.g. 0.95: labelled Uninfected with P >= 0.95, or Parasitized with P <= 0.05), most confident
// first. Probabilities use no temperature.
struct Suspect {
  OutOfFoldCell cell;
  int fold = 0;
  double probability = 0;
};
std::vector<Suspect> contradicted_labels(const OutOfFold& oof, double min_confidence);

}  // namespace malaria
