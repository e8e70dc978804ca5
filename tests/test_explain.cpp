// Grad-CAM maps, the pointing game's parasite finder, and temperature in the model file.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "data/dataset.h"
#include "data/image.h"
#include "explain/explanation.h"
#include "model/classifier.h"
#include "model/model.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;

namespace {

std::vector<cv::Mat> real_cells(int label, size_t n) {
  const std::string dir = testing_support::data_root() + "/cell_images_128";
  std::vector<cv::Mat> cells;
  for (const auto& s : scan_dataset(dir).samples)
    if (s.label == label && cells.size() < n) cells.push_back(read_image(s.path));
  return cells;
}

}  // namespace

TEST(GradCam, MapsHaveTheInputSizeAndRangeAndFollowTheImage) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  const Classifier model = Classifier::load(MALARIA_TEST_MODEL);
  auto cells = real_cells(kParasitized, 4);
  ASSERT_EQ(cells.size(), 4u);
  const auto explanations = model.explain(cells);
  ASSERT_EQ(explanations.size(), 4u);
  const auto probabilities = model.predict_images(cells);
  for (size_t i = 0; i < cells.size(); ++i) {
    const cv::Mat& h = explanations[i].heatmap;
    EXPECT_EQ(h.rows, model.image_size());
    EXPECT_EQ(h.cols, model.image_size());
    EXPECT_EQ(h.type(), CV_32F);
    double lo, hi;
    cv::minMaxLoc(h, &lo, &hi);
    EXPECT_GE(lo, 0.0);
    EXPECT_LE(hi, 1.0 + 1e-6);
    EXPECT_NEAR(explanations[i].probability, probabilities[i], 1e-4) << "same as predict";
    if (probabilities[i] > 0.5) {
      EXPECT_NEAR(hi, 1.0, 1e-5) << "a Parasitized call has a peak";
    }
  }
  // The map moves with the cell: flip the image and the map flips with it.
  cv::Mat flipped;
  cv::flip(cells[0], flipped, 1);
  const auto again = model.explain(std::vector<cv::Mat>{flipped});
  cv::Mat map_flipped;
  cv::flip(explanations[0].heatmap, map_flipped, 1);
  EXPECT_GT(cv::norm(explanations[0].heatmap, again[0].heatmap, cv::NORM_L1), 1.0)
      << "a different input gives a different map";
  EXPECT_LT(cv::norm(map_flipped, again[0].heatmap, cv::NORM_L1),
            cv::norm(explanations[0].heatmap, again[0].heatmap, cv::NORM_L1));
  // The same call twice gives the same map (no state left behind by the backward pass).
  const auto twice = model.explain(std::vector<cv::Mat>{cells[0]});
  EXPECT_LT(cv::norm(twice[0].heatmap, explanations[0].heatmap, cv::NORM_INF), 1e-5);
}

TEST(GradCam, OverlayKeepsTheImageSize) {
  const cv::Mat cell(90, 70, CV_8UC3, cv::Scalar(120, 60, 160));
  cv::Mat heat = cv::Mat::zeros(64, 64, CV_32F);
  heat.at<float>(10, 10) = 1.0f;
  const cv::Mat overlay = heatmap_overlay(cell, heat);
  EXPECT_EQ(overlay.size(), cell.size());
  EXPECT_EQ(overlay.type(), CV_8UC3);
  const std::string png = encode_png(overlay);
  const cv::Mat back = decode_image(png, "overlay.png", kCellImageLimits);
  EXPECT_EQ(back.size(), cell.size());
  const auto rows = heatmap_json(heat);
  ASSERT_EQ(rows.size(), 64u);
  EXPECT_EQ(rows[0].size(), 64u);
  EXPECT_DOUBLE_EQ(rows[10][10].get<double>(), 1.0);
}

TEST(PointingGame, FindsADarkBlobAndScoresThePeak) {
  // A pale disc on black with one dark purple spot: the spot is the parasite.
  cv::Mat cell = cv::Mat::zeros(64, 64, CV_8UC3);
  cv::circle(cell, {32, 32}, 28, cv::Scalar(190, 170, 200), cv::FILLED);
  cv::circle(cell, {20, 40}, 4, cv::Scalar(140, 40, 110), cv::FILLED);
  const cv::Mat mask = parasite_mask(cell);
  EXPECT_GT(mask.at<uchar>(40, 20), 0);
  EXPECT_EQ(mask.at<uchar>(32, 45), 0);
  cv::Mat on = cv::Mat::zeros(64, 64, CV_32F), off = on.clone();
  on.at<float>(40, 21) = 1.0f;
  off.at<float>(20, 50) = 1.0f;
  EXPECT_TRUE(pointing_game(cell, on, 3).hit);
  EXPECT_FALSE(pointing_game(cell, off, 3).hit);
  EXPECT_GT(pointing_game(cell, on, 3).chance, 0.0);
  EXPECT_LT(pointing_game(cell, on, 3).chance, 0.2);
  // A cell with nothing darker than the rest has no target.
  cv::Mat plain = cv::Mat::zeros(64, 64, CV_8UC3);
  cv::circle(plain, {32, 32}, 28, cv::Scalar(190, 170, 200), cv::FILLED);
  EXPECT_FALSE(pointing_game(plain, on, 3).has_target);
}

TEST(ModelFile, TemperatureScalesTheLogitsBeforeTheSigmoid) {
  TempDir dir;
  torch::manual_seed(5);
  auto model = build_model("cellnet", 32);
  model->eval();
  const nlohmann::json meta = {{"format", kModelFormat}, {"format_version", kModelFormatVersion},
                               {"arch", "cellnet"},      {"image_size", 32},
                               {"temperature", 2.0},     {"name", "unit"}};
  save_model_file(dir / "t.pt", model, meta);
  const Classifier loaded = Classifier::load(dir / "t.pt");
  const auto x = torch::rand({3, 3, 32, 32});
  const auto logits = loaded.logits(x.data_ptr<float>(), 3);
  const auto prob = loaded.predict(x.data_ptr<float>(), 3);
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(prob[i], 1 / (1 + std::exp(-logits[i] / 2.0)), 1e-5);
}
