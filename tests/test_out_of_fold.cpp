// Cross-fitted out-of-fold figures, ensembles of runs, suspected label errors.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "eval/out_of_fold.h"
#include "test_helpers.h"

namespace {

using namespace malaria;
using namespace testing_support;

// Folds of cells whose logits separate the classes with noise; `scale` stretches the logits
// (an overconfident model) without changing their order.
OutOfFold synthetic(int folds, int per_fold, double scale, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> noise(0, 1.2);
  OutOfFold oof(folds);
  for (int k = 0; k < folds; ++k)
    for (int i = 0; i < per_fold; ++i) {
      const int label = i % 2;
      OutOfFoldCell c;
      c.sample = {"f" + std::to_string(k) + "/" + std::to_string(i), label,
                  "P" + std::to_string(k * 10 + i % 10)};
      c.logit = static_cast<float>(scale * ((label ? 1.5 : -1.5) + noise(rng)));
      oof[k].push_back(c);
    }
  return oof;
}

TEST(OutOfFold, CrossFittedFiguresAndTheTemperatureChoice) {
  const auto calibrated = cross_fitted_summary(synthetic(5, 400, 1.0, 1));
  const auto& m = calibrated.at("metrics");
  EXPECT_EQ(calibrated.at("folds"), 5);
  EXPECT_GT(m.at("roc_auc").at("mean").get<double>(), 0.85);
  EXPECT_GT(m.at("balanced_accuracy").at("mean").get<double>(), 0.8);
  EXPECT_EQ(m.at("balanced_sensitivity").at("per_fold").size(), 5u);
  // Logits five times too large: a temperature fitted on the other folds must help.
  const auto overconfident = cross_fitted_summary(synthetic(5, 400, 5.0, 1));
  EXPECT_EQ(overconfident.at("temperature_choice"), "temperature scaling");
  EXPECT_LT(overconfident["metrics"]["ece"]["mean"].get<double>(),
            overconfident["metrics"]["ece_uncalibrated"]["mean"].get<double>());
  EXPECT_LT(overconfident["metrics"]["loss"]["mean"].get<double>(),
            overconfident["metrics"]["loss_uncalibrated"]["mean"].get<double>());
  // The logits' best temperature here is 5 / (2 * 1.5 / 1.2^2) = 2.4.
  EXPECT_NEAR(overconfident["metrics"]["temperature"]["mean"].get<double>(), 2.4, 0.4);
  EXPECT_FALSE(format_cross_fitted(overconfident).empty());
}

TEST(OutOfFold, EnsembleAveragesLogitsAndRefusesOtherFolds) {
  const auto a = synthetic(3, 50, 1.0, 1), b = synthetic(3, 50, 1.0, 2);
  const auto both = average_runs({a, b});
  EXPECT_FLOAT_EQ(both[1][7].logit, (a[1][7].logit + b[1][7].logit) / 2);
  auto shuffled = b;
  std::swap(shuffled[0][0].sample.path, shuffled[1][0].sample.path);
  EXPECT_THROW(average_runs({a, shuffled}), std::runtime_error);
  // One cell missing from one run (Rejected there) is left out of the ensemble, not an error.
  auto a_big = synthetic(3, 400, 1.0, 1), b_big = synthetic(3, 400, 1.0, 2);
  b_big[2].erase(b_big[2].begin() + 5);
  const auto joined = average_runs({a_big, b_big});
  EXPECT_EQ(joined[2].size(), 399u);
  EXPECT_EQ(joined[0].size(), 400u);
}

TEST(OutOfFold, ContradictedLabelsMostConfidentFirst) {
  OutOfFold oof(2);
  auto cell = [](const std::string& path, int label, float logit) {
    OutOfFoldCell c;
    c.sample = {path, label, "P1"};
    c.logit = logit;
    return c;
  };
  oof[0] = {cell("a", 0, 6.0f), cell("b", 1, 5.0f), cell("c", 0, 1.0f)};
  oof[1] = {cell("d", 1, -8.0f), cell("e", 0, -3.0f)};
  const auto s = contradicted_labels(oof, 0.95);
  ASSERT_EQ(s.size(), 2u);  // d (P = 0.0003 for a Parasitized label), a (P = 0.9975)
  EXPECT_EQ(s[0].cell.sample.path, "d");
  EXPECT_EQ(s[0].fold, 2);
  EXPECT_EQ(s[1].cell.sample.path, "a");
}

TEST(OutOfFold, ReadsEveryFoldAndRefusesAnUnfinishedRun) {
  TempDir run;
  const std::string header =
      "path,patient,label,probability_parasitized,predicted,decision,logit\n";
  for (int k = 1; k <= 2; ++k)
    write_bytes(run / ("fold-" + std::to_string(k) + "/test_predictions.csv"),
                header + "a" + std::to_string(k) + ".png,P" + std::to_string(k) +
                    ",Parasitized,0.9,Parasitized,Parasitized,2.2\n");
  write_bytes(run / "cv_config.json", R"({"cv_folds": 2})");
  const auto oof = read_out_of_fold(run.str());
  ASSERT_EQ(oof.size(), 2u);
  EXPECT_EQ(oof[1][0].sample.patient, "P2");
  EXPECT_FLOAT_EQ(oof[1][0].logit, 2.2f);
  write_bytes(run / "cv_config.json", R"({"cv_folds": 3})");
  try {
    read_out_of_fold(run.str());
    FAIL() << "a run with fold 3 missing was read";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("fold-3"), std::string::npos) << e.what();
  }
}

}  // namespace
