// The figures of an evaluation, and the self-contained HTML report of a training run.
#pragma once

#include <string>

#include "eval/evaluate.h"
#include "model/classifier.h"

namespace malaria {

// confusion_matrix.png, roc.png, pr.png, sample_images.png, feature_maps.png and
// architecture.png (each plot with its CSV), all from `evaluation` and `model`.
void write_evaluation_figures(const Classifier& model, const Evaluation& evaluation,
                              const std::string& dir);

// RUN_DIR/report.html: data, split, configuration, history, test metrics, classification
// report, per-patient results and every figure, embedded so the file opens offline.
std::string write_report(const std::string& run_dir);

}  // namespace malaria
