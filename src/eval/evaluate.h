// Runs a trained Classifier over labelled images and over arbitrary files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "eval/decision.h"
#include "eval/metrics.h"
#include "model/classifier.h"

namespace malaria {

struct Evaluation {
  std::vector<Sample> samples;
  std::vector<float> logits;         // the network's raw outputs, aligned with samples
  std::vector<float> probabilities;  // calibrated P(Parasitized), aligned with samples
  OperatingPoint point;              // the model's operating point in use: metrics are at it
  Metrics metrics;
  std::vector<PatientResult> patients;
  // temperature, ece, ece_uncalibrated (15 bins), reliability bins
  nlohmann::json calibration;
  // Per operating point of the model: threshold, sensitivity, specificity, accuracy, band,
  // flagged share and the errors it holds.
  nlohmann::json operating_points;
  double seconds = 0, images_per_second = 0;
  // Images the model refused (eval/cell_check.h, typicality): counted here, left out of every
  // figure above and of `samples`.
  struct RejectedImage {
    Sample sample;
    std::string reason;
  };
  std::vector<RejectedImage> rejected;
  nlohmann::json to_json() const;
  std::string to_text() const;  // terminal report: metrics, confusion matrix, report, patients
  // One row per image: path, patient, true label, P(Parasitized), predicted label, decision, and
  // the raw logit (what out-of-fold calibration is fitted on).
  std::string predictions_csv() const;
};

// Calibration and operating-point figures of probabilities against labels (filled into `ev`).
void add_calibration_report(Evaluation& ev, const ModelInfo& info);

struct EvaluateOptions {
  int batch_size = 64;
  int workers = 1;
  bool progress = true;
  std::string operating_point;  // the model file's point that decides; empty: its default
};

Evaluation evaluate_model(const Classifier& model, const std::vector<Sample>& samples,
                          const EvaluateOptions& options = {});

struct FilePrediction {
  std::string path;
  std::string error;  // empty when the image was classified
  float probability = 0;
  std::string label;
  std::string decision;  // label, Inconclusive inside the operating point's band, or Rejected
  std::string reason;    // why Rejected
};

// Decoded cell images through the cheap check (eval/cell_check.h), the model (probability and
// typicality) and the decision rule. Rejected images get no probability (NaN).
struct AssessedCell {
  float probability = 0;
  CellDecision decision;
};
std::vector<AssessedCell> assess_cells(const Classifier& model, const std::vector<cv::Mat>& bgr,
                                       const OperatingPoint& point);

// Every image file in `paths` (folders are walked recursively); unreadable files get an error
// instead of stopping the rest.
std::vector<FilePrediction> predict_files(const Classifier& model,
                                          const std::vector<std::string>& paths,
                                          const OperatingPoint& point, int batch_size = 64);

enum class PredictionFormat { Table, Csv, Json };
// predict's output: an aligned table for people, or CSV / JSON for programs.
std::string format_predictions(const std::vector<FilePrediction>& results, PredictionFormat format);

}  // namespace malaria
