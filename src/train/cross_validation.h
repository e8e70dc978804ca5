// `malaria cv`: patient-level k-fold cross-validation. Each fold is an ordinary training run in
// OUT/fold-K (test = that fold's patients, validation from the other folds' patients); the
// summary reports every metric as mean and standard deviation over folds, plus pooled figures.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "train/trainer.h"

namespace malaria {

struct CrossValidationOutcome {
  bool interrupted = false;  // a fold was interrupted; the same command continues it
  nlohmann::json summary;
};

// Runs the folds not yet finished (resuming an interrupted one), then writes cv_summary.json,
// cv_summary.txt and cv_report.html into base.out_dir. With `final_model`, then trains OUT/final
// on every patient (validation carved out as in the folds) and records the cross-validated
// figures in its model file under "cross_validation": the model to ship, with honest numbers.
CrossValidationOutcome run_cross_validation(const TrainOptions& base, int folds,
                                            bool final_model = false);

// Temperature (or none, whichever has the lower cross-fitted ECE) and operating points fitted on
// the out-of-fold predictions of finished cross-validations (several: an ensemble, logits
// averaged), written into a model file's metadata: the calibration of a model trained on every
// patient, which has no held-out cells of its own.
void calibrate_from_out_of_fold(const std::vector<std::string>& cv_dirs, nlohmann::json& metadata);
void calibrate_from_out_of_fold(const std::string& cv_dir, nlohmann::json& metadata);

// The summary of finished folds, from each fold's evaluation.json and the pooled test
// predictions (rows of test_predictions.csv: path, patient, label, probability, ...).
struct FoldResult {
  nlohmann::json evaluation;
  std::vector<float> probabilities;
  std::vector<int> labels;
};
nlohmann::json summarize_folds(const std::vector<FoldResult>& folds);
std::string format_cv_summary(const nlohmann::json& summary);
std::string cv_report_html(const nlohmann::json& summary);

}  // namespace malaria
