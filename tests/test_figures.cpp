#include <gtest/gtest.h>

#include <fstream>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

#include "report/figures.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;

namespace {
cv::Mat decode_png(const std::string& path) { return cv::imread(path, cv::IMREAD_COLOR); }

std::vector<std::vector<std::string>> read_csv(const std::string& path) {
  std::ifstream in(path);
  std::vector<std::vector<std::string>> rows;
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> row;
    std::stringstream ss(line);
    for (std::string f; std::getline(ss, f, ',');) row.push_back(f);
    rows.push_back(row);
  }
  return rows;
}

const std::vector<float> kProb = {0.9f, 0.8f, 0.7f, 0.2f, 0.6f, 0.4f, 0.3f, 0.1f, 0.05f, 0.45f};
const std::vector<int> kLabel = {1, 1, 1, 1, 0, 0, 0, 0, 0, 0};
}  // namespace

TEST(Figures, ConfusionMatrixShowsTheMetricsCounts) {
  TempDir dir;
  const Metrics m = compute_metrics(kProb, kLabel);
  plot_confusion_matrix(m, dir / "cm.png");
  const cv::Mat png = decode_png(dir / "cm.png");
  ASSERT_FALSE(png.empty());
  EXPECT_GE(png.cols, 500);
  const auto rows = read_csv(dir / "cm.csv");
  ASSERT_EQ(rows.size(), 5u);  // header + 4 cells
  // true,predicted,count: TN, FP, FN, TP in that order.
  EXPECT_EQ(std::stol(rows[1][2]), m.confusion.tn);
  EXPECT_EQ(std::stol(rows[2][2]), m.confusion.fp);
  EXPECT_EQ(std::stol(rows[3][2]), m.confusion.fn);
  EXPECT_EQ(std::stol(rows[4][2]), m.confusion.tp);
}

TEST(Figures, RocAndPrCurvesComeFromTheSameScores) {
  TempDir dir;
  const Metrics m = compute_metrics(kProb, kLabel);
  plot_roc(kProb, kLabel, m, dir / "roc.png");
  plot_precision_recall(kProb, kLabel, m, dir / "pr.png");
  EXPECT_FALSE(decode_png(dir / "roc.png").empty());
  EXPECT_FALSE(decode_png(dir / "pr.png").empty());
  EXPECT_EQ(read_csv(dir / "roc.csv").size(), roc_curve(kProb, kLabel).size() + 1);
  EXPECT_EQ(read_csv(dir / "pr.csv").size(), pr_curve(kProb, kLabel).size() + 1);
}

TEST(Figures, HistoryArchitectureAndFeatureMapsDraw) {
  TempDir dir;
  nlohmann::json history = nlohmann::json::array();
  for (int e = 1; e <= 4; ++e)
    history.push_back({{"epoch", e},
                       {"train_loss", 1.0 / e},
                       {"val_loss", 1.1 / e},
                       {"train_accuracy", 0.5 + e / 10.0},
                       {"val_accuracy", 0.45 + e / 10.0}});
  plot_training_history(history, 3, dir / "history.png");
  const cv::Mat h = decode_png(dir / "history.png");
  ASSERT_FALSE(h.empty());
  EXPECT_GT(h.cols, h.rows);
  EXPECT_EQ(read_csv(dir / "history.csv").size(), 5u);

  ArchitectureSummary s;
  s.arch = "toy";
  s.image_size = 8;
  s.layers = {{"conv1", "Conv2d", {4, 8, 8}, 112}, {"dense", "Linear", {1}, 257}};
  s.total_params = s.trainable_params = 369;
  draw_architecture(s, dir / "arch.png");
  EXPECT_FALSE(decode_png(dir / "arch.png").empty());

  std::vector<cv::Mat> maps(5, cv::Mat(8, 8, CV_32F, cv::Scalar(0.5f)));
  maps[0].at<float>(2, 2) = 3.0f;
  draw_feature_maps(cv::Mat(20, 20, CV_8UC3, cv::Scalar(0, 0, 255)), maps, "toy", dir / "maps.png");
  EXPECT_FALSE(decode_png(dir / "maps.png").empty());
}
