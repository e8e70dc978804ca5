// The cheap checks of a cell image, the Rejected decision, and the set of non-cells.
#include <gtest/gtest.h>

#include <opencv2/imgproc.hpp>

#include "data/dataset.h"
#include "data/image.h"
#include "eval/cell_check.h"
#include "eval/decision.h"
#include "eval/non_cells.h"
#include "test_helpers.h"

namespace {

using namespace malaria;
using testing_support::cell_images;

std::vector<Sample> some_cells(size_t per_class) {
  const Dataset ds = scan_dataset(cell_images());
  std::vector<Sample> out;
  size_t counts[2] = {0, 0};
  for (size_t i = 0; i < ds.samples.size(); i += 37)  // spread over many patients
    if (counts[ds.samples[i].label]++ < per_class) out.push_back(ds.samples[i]);
  return out;
}

TEST(CellCheck, RealCellsOfBothClassesPass) {
  MALARIA_REQUIRE_DIR(cell_images());
  for (const auto& s : some_cells(150)) {
    const CellCheck c = check_cell_image(read_image(s.path));
    EXPECT_TRUE(c.ok) << s.path << ": " << c.reason;
  }
}

TEST(CellCheck, PlainNonCellsAreRefusedWithAReason) {
  cv::Mat noise(96, 96, CV_8UC3);
  cv::randu(noise, 0, 256);
  cv::Mat square(64, 64, CV_8UC3, cv::Scalar(0, 0, 0));
  cv::rectangle(square, {12, 12}, {52, 52}, cv::Scalar(150, 60, 120), cv::FILLED);
  cv::Mat text(64, 64, CV_8UC3, cv::Scalar(255, 255, 255));
  cv::putText(text, "RBC", {4, 40}, cv::FONT_HERSHEY_SIMPLEX, 1.0, {0, 0, 0}, 2);
  const std::vector<std::pair<std::string, cv::Mat>> cases = {
      {"blank", cv::Mat::zeros(64, 64, CV_8UC3)},
      {"solid purple", cv::Mat(64, 64, CV_8UC3, cv::Scalar(150, 60, 120))},
      {"noise", noise},
      {"purple square on black", square},
      {"text", text},
      {"tiny", cv::Mat(8, 8, CV_8UC3, cv::Scalar(150, 60, 120))},
      {"strip", cv::Mat(20, 200, CV_8UC3, cv::Scalar(150, 60, 120))}};
  for (const auto& [name, image] : cases) {
    const CellCheck c = check_cell_image(image);
    EXPECT_FALSE(c.ok) << name;
    EXPECT_FALSE(c.reason.empty()) << name;
    EXPECT_FALSE(c.whole_field) << name;
  }
}

// A cell cut in half still has a whole-looking rim on one side; nearly all are caught.
TEST(CellCheck, DamagedCellsAreRefused) {
  MALARIA_REQUIRE_DIR(cell_images());
  const auto cells = some_cells(20);
  size_t halves = 0, blurred_ones = 0;
  for (const auto& s : cells) {
    const cv::Mat cell = read_image(s.path);
    cv::Mat half = cell.clone();
    half(cv::Rect(0, 0, half.cols / 2, half.rows)).setTo(0);
    cv::Mat blurred;
    cv::GaussianBlur(cell, blurred, {0, 0}, 12);
    halves += !check_cell_image(half).ok;
    blurred_ones += !check_cell_image(blurred).ok;
  }
  EXPECT_GE(halves, cells.size() * 9 / 10);
  EXPECT_EQ(blurred_ones, cells.size());
}

TEST(CellCheck, AWholeFieldPointsToScreening) {
  const std::string fields = testing_support::data_root() + "/fields/iml";
  MALARIA_REQUIRE_DIR(fields);
  NonCellSources sources;
  sources.fields_dir = fields;
  sources.field_crops = 0;
  sources.damaged_per_kind = 0;
  size_t seen = 0;
  for (const auto& nc : make_non_cells(sources)) {
    if (nc.kind != "field") continue;
    const CellCheck c = check_cell_image(nc.bgr);
    EXPECT_FALSE(c.ok);
    EXPECT_TRUE(c.whole_field) << nc.name << ": " << c.reason;
    EXPECT_NE(c.reason.find("screen"), std::string::npos);
    ++seen;
  }
  EXPECT_GE(seen, 10u);
}

// The whole non-cell set, minus the photographs (they need Debian's sample-image packages and
// are measured by `malaria rejection-test`): the cheap checks alone refuse nearly all of it.
TEST(CellCheck, CheapChecksRefuseNearlyAllOfTheNonCellSet) {
  const std::string fields = testing_support::data_root() + "/fields/iml";
  MALARIA_REQUIRE_DIR(fields);
  MALARIA_REQUIRE_DIR(cell_images());
  NonCellSources sources;
  sources.fields_dir = fields;
  sources.field_crops = 100;
  sources.damaged_per_kind = 50;
  sources.cells = some_cells(100);
  sources.seed = 11;
  const auto set = make_non_cells(sources);
  size_t refused = 0;
  for (const auto& nc : set) refused += !check_cell_image(nc.bgr).ok;
  EXPECT_GT(set.size(), 400u);
  EXPECT_GE(double(refused) / set.size(), 0.97) << refused << " of " << set.size();
}

TEST(Decision, RejectedCarriesTheReasonAndNoLabel) {
  const OperatingPoint point = OperatingPoint::symmetric(0.5, 0.1);
  CellCheck ok;
  CellCheck refused;
  refused.ok = false;
  refused.reason = "blank: no cell in the image";
  const CellDecision a = decide_cell(refused, 0.99, 0.0f, point);
  EXPECT_TRUE(a.rejected());
  EXPECT_EQ(a.reason, refused.reason);
  EXPECT_TRUE(a.label.empty());
  const CellDecision b = decide_cell(ok, 0.99, 1.5f, point);  // beyond the typicality threshold
  EXPECT_TRUE(b.rejected());
  EXPECT_EQ(b.reason, kAtypicalReason);
  EXPECT_TRUE(decide_cell(ok, 0.99, NAN, point).rejected());
  const CellDecision c = decide_cell(ok, 0.99, 0.7f, point);
  EXPECT_EQ(c.decision, "Parasitized");
  EXPECT_EQ(decide_cell(ok, 0.55, 0.7f, point).decision, kInconclusive);
}

}  // namespace
