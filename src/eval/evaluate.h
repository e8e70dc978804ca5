// Runs a trained Classifier over labelled images and over arbitrary files.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "eval/metrics.h"
#include "model/classifier.h"

namespace malaria {

struct Evaluation {
  std::vector<Sample> samples;
  std::vector<float> probabilities;  // P(Parasitized), aligned with samples
  Metrics metrics;
  std::vector<PatientResult> patients;
  double seconds = 0, images_per_second = 0;
  nlohmann::json to_json() const;
  std::string to_text() const;  // terminal report: metrics, confusion matrix, report, patients
  // One row per image: path, patient, true label, P(Parasitized), predicted label, decision.
  std::string predictions_csv(double inconclusive_band) const;
};

struct EvaluateOptions {
  int batch_size = 64;
  int workers = 1;
  bool progress = true;
};

Evaluation evaluate_model(const Classifier& model, const std::vector<Sample>& samples,
                          const EvaluateOptions& options = {});

struct FilePrediction {
  std::string path;
  std::string error;  // empty when the image was classified
  float probability = 0;
  std::string label;
};

// Every image file in `paths` (folders are walked recursively); unreadable files get an error
// instead of stopping the rest.
std::vector<FilePrediction> predict_files(const Classifier& model,
                                          const std::vector<std::string>& paths,
                                          int batch_size = 64);

enum class PredictionFormat { Table, Csv, Json };
// predict's output: an aligned table for people, or CSV / JSON for programs.
std::string format_predictions(const std::vector<FilePrediction>& results, PredictionFormat format);

}  // namespace malaria
