// The learned half of Rejected: typicality fitted on real cells, written into a model file,
// and read back.
#include <gtest/gtest.h>

#include <algorithm>
#include <opencv2/imgproc.hpp>

#include "data/dataset.h"
#include "data/image.h"
#include "eval/evaluate.h"
#include "model/classifier.h"
#include "model/typicality.h"
#include "test_helpers.h"

using namespace malaria;
using testing_support::TempDir;

namespace {

std::vector<Sample> cells_128(size_t n) {
  auto samples = scan_dataset(testing_support::data_root() + "/cell_images_128").samples;
  std::vector<Sample> out;
  for (size_t i = 0; i < samples.size() && out.size() < n; i += 5) out.push_back(samples[i]);
  return out;
}

std::vector<float> pixels_of(const std::vector<Sample>& cells, int side) {
  std::vector<float> pixels(cells.size() * 3ull * side * side);
  for (size_t i = 0; i < cells.size(); ++i)
    to_chw_float(resize_rgb(read_image(cells[i].path), side),
                 pixels.data() + i * 3ull * side * side);
  return pixels;
}

}  // namespace

TEST(Typicality, FittedCellsLieWithinAndNoiseBeyond) {
  MALARIA_REQUIRE_DIR(testing_support::data_root() + "/cell_images_128");
  TempDir dir;
  const auto cells = cells_128(400);
  const Classifier model = Classifier::load(MALARIA_TEST_MODEL);
  const auto block = fit_typicality(model, cells, 1.0);
  EXPECT_EQ(block.at("features"), model.feature_size());
  EXPECT_EQ(block.at("fitted_on_cells"), cells.size());
  write_model_copy(MALARIA_TEST_MODEL, dir / "t.pt", {{"typicality", block}});
  const Classifier typical = Classifier::load(dir / "t.pt");
  ASSERT_TRUE(typical.has_typicality());
  const int s = typical.image_size();
  const auto scores = typical.score(pixels_of(cells, s).data(), cells.size());
  ASSERT_EQ(scores.atypicality.size(), cells.size());
  // The threshold is the largest training distance: every fitted cell is within it.
  EXPECT_LE(*std::max_element(scores.atypicality.begin(), scores.atypicality.end()), 1.0001f);
  EXPECT_GT(*std::max_element(scores.atypicality.begin(), scores.atypicality.end()), 0.9f);
  // The same probabilities as without the typicality model.
  const auto plain = model.predict(pixels_of(cells, s).data(), cells.size());
  for (size_t i = 0; i < cells.size(); ++i) EXPECT_NEAR(scores.probability[i], plain[i], 1e-5);
  // A noise disc on black passes the cheap checks' surround rule but not the features'.
  cv::Mat noise(64, 64, CV_8UC3, cv::Scalar(0, 0, 0)), speckle(64, 64, CV_8UC3);
  cv::randu(speckle, 0, 256);
  cv::Mat disc = cv::Mat::zeros(64, 64, CV_8U);
  cv::circle(disc, {32, 32}, 26, 255, cv::FILLED);
  speckle.copyTo(noise, disc);
  const auto assessed = assess_cells(typical, {noise}, typical.operating_point());
  EXPECT_TRUE(assessed[0].decision.rejected());
}

TEST(Typicality, AModelFileWithABrokenTypicalityBlockIsRefused) {
  TempDir dir;
  write_model_copy(MALARIA_TEST_MODEL, dir / "bad.pt",
                   {{"typicality", {{"threshold", 3.0}, {"features", 7}}}});
  EXPECT_THROW(Classifier::load(dir / "bad.pt"), ModelFileError);
  write_model_copy(MALARIA_TEST_MODEL, dir / "neg.pt", {{"typicality", {{"threshold", -1.0}}}});
  EXPECT_THROW(Classifier::load(dir / "neg.pt"), ModelFileError);
}
