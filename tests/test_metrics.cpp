#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "eval/metrics.h"

using namespace malaria;

// 10 images: 4 Parasitized, 6 Uninfected. At threshold 0.5: TP 3, FN 1, FP 1, TN 5.
static const std::vector<float> kProb = {0.9f, 0.8f, 0.7f, 0.2f,  0.6f,
                                         0.4f, 0.3f, 0.1f, 0.05f, 0.45f};
static const std::vector<int> kLabel = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0};

TEST(Metrics, MatchHandComputedValues) {
  const Metrics m = compute_metrics(kProb, kLabel, 0.5);
  EXPECT_EQ(m.confusion.tp, 3);
  EXPECT_EQ(m.confusion.fn, 1);
  EXPECT_EQ(m.confusion.fp, 1);
  EXPECT_EQ(m.confusion.tn, 5);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.8);
  EXPECT_DOUBLE_EQ(m.precision, 0.75);
  EXPECT_DOUBLE_EQ(m.recall, 0.75);
  EXPECT_NEAR(m.specificity, 5.0 / 6.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.f1, 0.75);
  // AUC: of 24 (pos, neg) pairs, the positive 0.2 loses to 0.6, 0.4, 0.3, 0.45 -> 20/24.
  EXPECT_NEAR(m.roc_auc, 20.0 / 24.0, 1e-12);
  double loss = 0;
  for (size_t i = 0; i < kProb.size(); ++i)
    loss -= kLabel[i] ? std::log(kProb[i]) : std::log(1 - kProb[i]);
  EXPECT_NEAR(m.loss, loss / 10, 1e-6);
}

TEST(Metrics, ClassReportAndAveragesLikeScikitLearn) {
  const Metrics m = compute_metrics(kProb, kLabel, 0.5);
  ASSERT_EQ(m.classes.size(), 2u);
  EXPECT_EQ(m.classes[0].name, "Uninfected");
  EXPECT_NEAR(m.classes[0].precision, 5.0 / 6.0, 1e-12);  // TN / (TN + FN)
  EXPECT_NEAR(m.classes[0].recall, 5.0 / 6.0, 1e-12);
  EXPECT_EQ(m.classes[0].support, 6);
  EXPECT_EQ(m.classes[1].support, 4);
  EXPECT_NEAR(m.macro_avg.f1, (5.0 / 6.0 + 0.75) / 2, 1e-12);
  EXPECT_NEAR(m.weighted_avg.recall, 0.6 * 5.0 / 6.0 + 0.4 * 0.75, 1e-12);
  const std::string report = classification_report(m);
  EXPECT_NE(report.find("precision"), std::string::npos);
  EXPECT_NE(report.find("macro avg"), std::string::npos);
  EXPECT_NE(report.find("weighted avg"), std::string::npos);
  EXPECT_NE(report.find("0.8000"), std::string::npos);  // accuracy row
}

TEST(Metrics, ThresholdMovesTheOperatingPoint) {
  const Metrics low = compute_metrics(kProb, kLabel, 0.15);
  EXPECT_EQ(low.confusion.tp, 4);  // every Parasitized cell caught
  EXPECT_DOUBLE_EQ(low.recall, 1.0);
  EXPECT_LT(low.specificity, compute_metrics(kProb, kLabel, 0.5).specificity);
}

TEST(RocAuc, TiesCountHalfAndExtremesAreExact) {
  EXPECT_DOUBLE_EQ(roc_auc({0.5f, 0.5f}, {1, 0}), 0.5);
  EXPECT_DOUBLE_EQ(roc_auc({0.9f, 0.1f}, {1, 0}), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc({0.1f, 0.9f}, {1, 0}), 0.0);
  EXPECT_TRUE(std::isnan(roc_auc({0.1f, 0.9f}, {1, 1})));
}

TEST(Curves, RocRunsFromOriginToOneAndPrRecallIsMonotone) {
  const auto roc = roc_curve(kProb, kLabel);
  EXPECT_DOUBLE_EQ(roc.front().x, 0.0);
  EXPECT_DOUBLE_EQ(roc.back().x, 1.0);
  EXPECT_DOUBLE_EQ(roc.back().y, 1.0);
  double area = 0;
  for (size_t i = 1; i < roc.size(); ++i)
    area += (roc[i].x - roc[i - 1].x) * (roc[i].y + roc[i - 1].y) / 2;
  EXPECT_NEAR(area, roc_auc(kProb, kLabel), 1e-12);
  const auto pr = pr_curve(kProb, kLabel);
  for (size_t i = 1; i < pr.size(); ++i) EXPECT_GE(pr[i].x, pr[i - 1].x);
}

TEST(PerPatient, CountsCellsAccuracyAndParasitemia) {
  std::vector<Sample> samples = {{"a", 1, "P1"}, {"b", 0, "P1"}, {"c", 1, "P1"}, {"d", 0, "P2"}};
  const auto r = per_patient(samples, {0.9f, 0.7f, 0.2f, 0.1f}, 0.5);
  ASSERT_EQ(r.size(), 2u);
  EXPECT_EQ(r[0].patient, "P1");
  EXPECT_EQ(r[0].cells, 3);
  EXPECT_NEAR(r[0].accuracy(), 1.0 / 3.0, 1e-12);
  EXPECT_NEAR(r[0].true_parasitemia(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(r[0].predicted_parasitemia(), 2.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(r[1].accuracy(), 1.0);
}

TEST(Metrics, ProbabilitiesThatAreNotNumbersNeverHangOrPassSilently) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const std::vector<float> p = {0.9f, nan, 0.2f, nan};
  const std::vector<int> y = {1, 1, 0, 0};
  EXPECT_TRUE(std::isnan(roc_auc(p, y)));  // returns at once instead of looping forever
  EXPECT_THROW(roc_curve(p, y), std::invalid_argument);
  EXPECT_THROW(compute_metrics(p, y, 0.5), std::invalid_argument);
}
