// Classification metrics for the binary task, positive class Parasitized.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace malaria {

struct ConfusionMatrix {
  long tp = 0, fn = 0, fp = 0, tn = 0;  // positive = Parasitized
  long total() const { return tp + fn + fp + tn; }
};

struct ClassReport {
  std::string name;
  double precision = 0, recall = 0, f1 = 0;
  long support = 0;
};

struct Metrics {
  double threshold = 0.5;
  double loss = 0;  // mean binary cross-entropy of the probabilities
  double accuracy = 0, precision = 0, recall = 0, specificity = 0, f1 = 0, roc_auc = 0;
  ConfusionMatrix confusion;
  std::vector<ClassReport> classes;  // Uninfected, Parasitized
  ClassReport macro_avg, weighted_avg;
  nlohmann::json to_json() const;
};

// probabilities[i] = P(Parasitized) for an image with labels[i] (0 or 1).
Metrics compute_metrics(const std::vector<float>& probabilities, const std::vector<int>& labels,
                        double threshold = 0.5);

// Area under the ROC curve by the rank statistic; ties count one half.
double roc_auc(const std::vector<float>& probabilities, const std::vector<int>& labels);

struct CurvePoint {
  double x, y, threshold;
};
std::vector<CurvePoint> roc_curve(const std::vector<float>& probabilities,
                                  const std::vector<int>& labels);
std::vector<CurvePoint> pr_curve(const std::vector<float>& probabilities,
                                 const std::vector<int>& labels);

// The layout of scikit-learn's classification_report.
std::string classification_report(const Metrics& m);

struct PatientResult {
  std::string patient;
  long cells = 0, parasitized_true = 0, parasitized_predicted = 0, correct = 0;
  double accuracy() const { return cells ? double(correct) / cells : 0.0; }
  // Share of cells called Parasitized: the parasitemia estimate for the slide.
  double predicted_parasitemia() const {
    return cells ? double(parasitized_predicted) / cells : 0.0;
  }
  double true_parasitemia() const { return cells ? double(parasitized_true) / cells : 0.0; }
};

std::vector<PatientResult> per_patient(const std::vector<Sample>& samples,
                                       const std::vector<float>& probabilities, double threshold);
nlohmann::json to_json(const std::vector<PatientResult>& patients);

}  // namespace malaria
