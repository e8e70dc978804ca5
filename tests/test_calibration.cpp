// Temperature scaling, ECE, operating points and the Inconclusive band.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "eval/calibration.h"
#include "eval/decision.h"
#include "model/model_info.h"

namespace malaria {
namespace {

// Labels drawn from sigmoid(z); the network is "overconfident" by `temperature`.
void synthetic_logits(double temperature, size_t n, std::vector<float>& logits,
                      std::vector<int>& labels) {
  std::mt19937 rng(7);
  std::normal_distribution<double> score(0.0, 3.0);
  std::uniform_real_distribution<double> u(0, 1);
  for (size_t i = 0; i < n; ++i) {
    const double z = score(rng);
    labels.push_back(u(rng) < 1 / (1 + std::exp(-z)) ? 1 : 0);
    logits.push_back(static_cast<float>(z * temperature));
  }
}

TEST(Calibration, TemperatureScalingRecoversAKnownTemperature) {
  for (double t : {0.5, 1.0, 2.5}) {
    std::vector<float> logits;
    std::vector<int> labels;
    synthetic_logits(t, 20000, logits, labels);
    EXPECT_NEAR(fit_temperature(logits, labels), t, 0.06 * t) << "true temperature " << t;
  }
}

TEST(Calibration, TemperatureScalingLowersTheErrorOfAnOverconfidentModel) {
  std::vector<float> logits;
  std::vector<int> labels;
  synthetic_logits(3.0, 5000, logits, labels);
  const double before = expected_calibration_error(apply_temperature(logits, 1.0), labels);
  const double after = expected_calibration_error(
      apply_temperature(logits, fit_temperature(logits, labels)), labels);
  EXPECT_GT(before, 0.05);
  EXPECT_LT(after, 0.02);
}

TEST(Calibration, TemperatureNeedsBothClasses) {
  EXPECT_THROW(fit_temperature({1, 2, 3}, {1, 1, 1}), std::invalid_argument);
  EXPECT_THROW(fit_temperature({1, NAN}, {0, 1}), std::invalid_argument);
}

TEST(Calibration, ExpectedCalibrationErrorByHand) {
  // 0.1 falls in bin 1 of 15 (half positive: |0.5 - 0.1| = 0.4), 0.9 in bin 13 (all positive:
  // |1 - 0.9| = 0.1); each bin holds half the cells: 0.5 * 0.4 + 0.5 * 0.1 = 0.25.
  EXPECT_NEAR(expected_calibration_error({0.1f, 0.1f, 0.9f, 0.9f}, {0, 1, 1, 1}), 0.25, 1e-6);
  // Perfectly calibrated: P = 0.5 and half the cells positive.
  EXPECT_NEAR(expected_calibration_error({0.5f, 0.5f, 0.5f, 0.5f}, {0, 1, 0, 1}), 0.0, 1e-9);
  // Sure and wrong: the worst case.
  EXPECT_NEAR(expected_calibration_error({0.0f, 1.0f}, {1, 0}), 1.0, 1e-9);
  const auto bins = reliability_bins({0.1f, 0.1f, 0.9f, 1.0f}, {0, 1, 1, 1}, 15);
  ASSERT_EQ(bins.size(), 15u);
  EXPECT_EQ(bins[1].count, 2);
  EXPECT_EQ(bins[13].count, 1);
  EXPECT_EQ(bins[14].count, 1);  // 1.0 lands in the last bin
  EXPECT_DOUBLE_EQ(bins[1].positive_rate, 0.5);
}

TEST(Calibration, ThresholdForSensitivity) {
  // Ten positives at 0.05, 0.15, ..., 0.95 and negatives below 0.5.
  std::vector<float> prob;
  std::vector<int> labels;
  for (int i = 0; i < 10; ++i) prob.push_back(0.05f + 0.1f * i), labels.push_back(1);
  for (int i = 0; i < 10; ++i) prob.push_back(0.02f + 0.05f * i), labels.push_back(0);
  EXPECT_FLOAT_EQ(threshold_for_sensitivity(prob, labels, 0.9), 0.15f);  // 9 of 10 at or above
  EXPECT_FLOAT_EQ(threshold_for_sensitivity(prob, labels, 1.0), 0.05f);
  EXPECT_FLOAT_EQ(threshold_for_sensitivity(prob, labels, 0.1), 0.95f);
  EXPECT_FLOAT_EQ(threshold_for_sensitivity(prob, labels, 0.95), 0.05f);  // 9.5 rounds up
}

TEST(Calibration, YoudenThresholdSeparatesSeparableClasses) {
  const std::vector<float> prob = {0.1f, 0.2f, 0.3f, 0.6f, 0.7f, 0.8f};
  const std::vector<int> labels = {0, 0, 0, 1, 1, 1};
  EXPECT_FLOAT_EQ(youden_threshold(prob, labels), 0.6f);
  // One positive among the negatives: cutting below it costs more specificity than it gains.
  EXPECT_FLOAT_EQ(youden_threshold({0.1f, 0.15f, 0.2f, 0.3f, 0.6f, 0.7f}, {0, 1, 0, 0, 1, 1}),
                  0.6f);
}

TEST(Calibration, InconclusiveBandHoldsTheMostErrorsWithinItsShare) {
  // 100 cells: negatives at 0.00-0.49, positives at 0.50-0.99, except four errors right around
  // the threshold 0.5 and one sure error far from it.
  std::vector<float> prob;
  std::vector<int> labels;
  for (int i = 0; i < 100; ++i) {
    prob.push_back(i / 100.0f + 0.001f);
    labels.push_back(i >= 50);
  }
  labels[48] = 1, labels[49] = 1;  // false negatives just below
  labels[50] = 0, labels[52] = 0;  // false positives just above
  labels[2] = 1;                   // far away: no band of 5 cells can hold it
  const auto band = choose_inconclusive_band(prob, labels, 0.5, 0.05);
  EXPECT_EQ(band.errors, 5);
  EXPECT_EQ(band.errors_held, 4);
  EXPECT_LE(band.flagged, 5);
  EXPECT_LE(band.low, 0.5);
  EXPECT_GE(band.high, 0.5);
  EXPECT_LT(band.low, prob[48]);
  EXPECT_GT(band.high, prob[52]);
  // Narrowest: it stops at the last error on each side.
  EXPECT_LT(band.high, prob[53]);
  EXPECT_GT(band.low, prob[47]);
  const auto again = count_inconclusive(prob, labels, 0.5, band.low, band.high);
  EXPECT_EQ(again.flagged, band.flagged);
  EXPECT_EQ(again.errors_held, band.errors_held);
  // No room to flag anything: an empty band at the threshold.
  const auto none = choose_inconclusive_band(prob, labels, 0.5, 0.0);
  EXPECT_EQ(none.flagged, 0);
  EXPECT_EQ(none.low, none.high);
}

TEST(Calibration, CalibrateChoosesBothPointsOnValidation) {
  std::vector<float> logits;
  std::vector<int> labels;
  synthetic_logits(2.0, 4000, logits, labels);
  const Calibration c = calibrate(logits, labels);
  EXPECT_NEAR(c.temperature, 2.0, 0.15);
  ASSERT_TRUE(c.operating_points.count("balanced"));
  ASSERT_TRUE(c.operating_points.count("screening"));
  const auto& screening = c.operating_points.at("screening");
  EXPECT_GE(screening.validation.value("sensitivity", 0.0), 0.97);
  EXPECT_LE(screening.threshold, c.operating_points.at("balanced").threshold);
  for (const auto& [name, p] : c.operating_points) {
    EXPECT_LE(p.inconclusive_low, p.threshold) << name;
    EXPECT_GE(p.inconclusive_high, p.threshold) << name;
    EXPECT_LE(p.validation.value("inconclusive_fraction", 1.0), 0.05) << name;
  }
  EXPECT_LT(c.summary.value("ece_after", 1.0), c.summary.value("ece_before", 0.0));
}

TEST(Calibration, ModelInfoKeepsOperatingPointsAndReadsOldFiles) {
  ModelInfo info;
  info.arch = "cellnet";
  info.image_size = 64;
  info.temperature = 1.7;
  OperatingPoint screening;
  screening.threshold = 0.2;
  screening.inconclusive_low = 0.15;
  screening.inconclusive_high = 0.3;
  info.operating_points = {{"balanced", OperatingPoint::symmetric(0.6, 0.1)},
                           {"screening", screening}};
  info.operating_point = "balanced";
  ModelInfo back = ModelInfo::from_metadata(info.to_metadata());
  EXPECT_DOUBLE_EQ(back.temperature, 1.7);
  EXPECT_DOUBLE_EQ(back.threshold(), 0.6);
  back.select_operating_point("screening");
  EXPECT_DOUBLE_EQ(back.threshold(), 0.2);
  EXPECT_DOUBLE_EQ(back.point().inconclusive_high, 0.3);
  EXPECT_THROW(back.select_operating_point("sloppy"), std::invalid_argument);

  nlohmann::json old = {
      {"arch", "cellnet"}, {"image_size", 64}, {"threshold", 0.42}, {"inconclusive_band", 0.1}};
  const ModelInfo legacy = ModelInfo::from_metadata(old);
  EXPECT_DOUBLE_EQ(legacy.threshold(), 0.42);
  EXPECT_NEAR(legacy.point().inconclusive_low, 0.32, 1e-12);
  EXPECT_DOUBLE_EQ(legacy.temperature, 1.0);

  nlohmann::json bad = info.to_metadata();
  bad["operating_points"]["screening"]["inconclusive_low"] = 0.5;  // above its threshold
  EXPECT_THROW(ModelInfo::from_metadata(bad), ModelFileError);
  bad = info.to_metadata();
  bad["operating_point"] = "missing";
  EXPECT_THROW(ModelInfo::from_metadata(bad), ModelFileError);
}

TEST(Calibration, DecisionUsesThePointsBand) {
  OperatingPoint p;
  p.threshold = 0.3;
  p.inconclusive_low = 0.2;
  p.inconclusive_high = 0.5;
  EXPECT_EQ(decide(0.35, p).label, "Parasitized");
  EXPECT_EQ(decide(0.35, p).decision, "Inconclusive");
  EXPECT_EQ(decide(0.25, p).label, "Uninfected");
  EXPECT_EQ(decide(0.25, p).decision, "Inconclusive");
  EXPECT_EQ(decide(0.55, p).decision, "Parasitized");
  EXPECT_EQ(decide(0.1, p).decision, "Uninfected");
  EXPECT_NEAR(decide(0.1, p).confidence, 0.9, 1e-12);
  p.inconclusive_low = p.inconclusive_high = 0.3;  // an empty band flags nothing
  EXPECT_EQ(decide(0.3, p).decision, "Parasitized");
}

}  // namespace
}  // namespace malaria
