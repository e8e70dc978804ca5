// Calibration and operating points, chosen on validation data: temperature scaling, expected
// calibration error, the reliability diagram's bins, the thresholds for a target sensitivity and
// for the best Youden index, and the Inconclusive band that holds the most errors. Torch-free.
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "model/model_info.h"

namespace malaria {

// The temperature T minimising the mean binary cross-entropy of sigmoid(logit / T): the standard
// one-parameter calibrator (Guo et al. 2017). It keeps every ranking (and so the AUC).
double fit_temperature(const std::vector<float>& logits, const std::vector<int>& labels);
std::vector<float> apply_temperature(const std::vector<float>& logits, double temperature);

struct ReliabilityBin {
  double low = 0, high = 0;     // range of P(Parasitized)
  long count = 0;               // cells whose probability falls in it
  double mean_probability = 0;  // their mean P(Parasitized)
  double positive_rate = 0;     // the share of them that are Parasitized
};
// `bins` equal-width bins of P(Parasitized) over [0, 1]; the last one includes 1.
std::vector<ReliabilityBin> reliability_bins(const std::vector<float>& probabilities,
                                             const std::vector<int>& labels, int bins = 15);
// Sum over bins of (count / n) * |positive rate - mean probability|.
double expected_calibration_error(const std::vector<float>& probabilities,
                                  const std::vector<int>& labels, int bins = 15);

// The highest threshold (P >= t is Parasitized) whose sensitivity is at least `sensitivity`.
double threshold_for_sensitivity(const std::vector<float>& probabilities,
                                 const std::vector<int>& labels, double sensitivity);
// The threshold with the largest sensitivity + specificity - 1.
double youden_threshold(const std::vector<float>& probabilities, const std::vector<int>& labels);

struct InconclusiveBand {
  double low = 0, high = 0;  // low <= P <= high is Inconclusive; low <= threshold <= high
  long flagged = 0;          // cells inside
  long errors_held = 0;      // of those, cells the threshold would have got wrong
  long errors = 0;           // errors at the threshold, in all
};
// The band around `threshold` that flags at most `max_flagged` of the cells and holds as many
// of the threshold's errors as possible (the narrowest such band on ties).
InconclusiveBand choose_inconclusive_band(const std::vector<float>& probabilities,
                                          const std::vector<int>& labels, double threshold,
                                          double max_flagged = 0.05);
// The same counts for a given band.
InconclusiveBand count_inconclusive(const std::vector<float>& probabilities,
                                    const std::vector<int>& labels, double threshold, double low,
                                    double high);

nlohmann::json to_json(const std::vector<ReliabilityBin>& bins);

inline constexpr double kScreeningSensitivity = 0.97;  // the `screening` point's floor
inline constexpr double kMaxInconclusive = 0.05;       // share of cells a band may flag
// In a field nearly every cell is a clear negative, so 5% would stretch the band far from the
// threshold; 1% is still a dozen cells per 1,000 for a microscopist to look at.
inline constexpr double kMaxInconclusiveInFields = 0.01;

struct Calibration {
  double temperature = 1.0;
  // "balanced" (largest Youden index) and "screening" (sensitivity >= 97%, and never a higher
  // threshold than balanced), each with the band
  // that holds the most errors while flagging at most 5% of cells; chosen on calibrated values.
  std::map<std::string, OperatingPoint> operating_points;
  std::string default_point = "balanced";
  nlohmann::json summary;  // temperature, ECE before and after, cells
};
// Everything a model file records about its decision rule, fitted on validation logits. When
// some of the cells were cut from smear fields (from_field, same length as logits), a third point,
// "parasitemia", is chosen on those alone: the threshold that calls as many of them Parasitized as
// are, so a field's count is unbiased (screening uses it).
// Without `temperature_scaling` the temperature stays 1 (the choice cross-validation makes when
// a fitted temperature does not lower the ECE on unseen patients).
Calibration calibrate(const std::vector<float>& logits, const std::vector<int>& labels,
                      const std::vector<bool>& from_field = {}, bool temperature_scaling = true);

// The threshold that calls exactly as many cells Parasitized as there are (the count of
// Parasitized labels); 1.0 when there are none.
double count_matching_threshold(const std::vector<float>& probabilities,
                                const std::vector<int>& labels);

}  // namespace malaria
