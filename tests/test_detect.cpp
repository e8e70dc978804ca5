// The detector's torch-free half: training targets, windows and augmentation, decoding of its
// output maps, scoring against annotations, regions cut from detections, and the parasitemia
// correction for known error rates.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <opencv2/imgproc.hpp>

#include "detect/detection_scoring.h"
#include "detect/detector_targets.h"
#include "field/parasitemia.h"
#include "field/segmentation.h"

using namespace malaria;

namespace {

DetectorSample two_cells() {
  DetectorSample s;
  s.bgr = cv::Mat(64, 96, CV_8UC3, cv::Scalar(200, 200, 200));
  s.boxes = {cv::Rect2f(8, 8, 20, 20), cv::Rect2f(50, 30, 24, 16)};
  s.classes = {0, 4};
  s.ignore = {cv::Rect2f(70, 2, 16, 12)};
  return s;
}

// Output maps of rows x cols with the given peaks: heat value, class, box size, offset.
struct Maps {
  int rows, cols;
  std::vector<float> heat, rest;
  Maps(int r, int c)
      : rows(r),
        cols(c),
        heat(size_t(r) * c, 0.f),
        rest(size_t(kDetectorOutputs - 1) * r * c, 0.f) {}
  void peak(int y, int x, float v, int cls, float w, float h, float ox = 0.5f, float oy = 0.5f) {
    const size_t plane = size_t(rows) * cols, at = size_t(y) * cols + x;
    heat[at] = v;
    rest[cls * plane + at] = 5.f;
    rest[kDetectorClasses * plane + at] = w;
    rest[(kDetectorClasses + 1) * plane + at] = h;
    rest[(kDetectorClasses + 2) * plane + at] = ox;
    rest[(kDetectorClasses + 3) * plane + at] = oy;
  }
};

}  // namespace

TEST(DetectorTargets, PeaksAtCentresAndIgnoredRegionsWeighNothing) {
  const DetectorSample s = two_cells();
  const DetectorTargets t = build_detector_targets(s);
  ASSERT_EQ(t.rows, 16);
  ASSERT_EQ(t.cols, 24);
  ASSERT_EQ(t.index.size(), 2u);
  // First cell: centre (18, 18) input px = (4.5, 4.5) output px: pixel (4, 4), offset 0.5.
  EXPECT_EQ(t.index[0], 4 * 24 + 4);
  EXPECT_FLOAT_EQ(t.heat[t.index[0]], 1.f);
  EXPECT_FLOAT_EQ(t.offset[0], 0.5f);
  EXPECT_FLOAT_EQ(t.size[0], 5.f);  // 20 px / stride 4
  EXPECT_EQ(t.cls[1], 4);
  EXPECT_FLOAT_EQ(t.size[2], 6.f);
  EXPECT_FLOAT_EQ(t.size[3], 4.f);
  // Exactly one pixel per cell is 1; the Gaussian falls off around it.
  EXPECT_EQ(std::count(t.heat.begin(), t.heat.end(), 1.f), 2);
  EXPECT_GT(t.heat[4 * 24 + 5], 0.f);
  EXPECT_LT(t.heat[4 * 24 + 5], 1.f);
  EXPECT_EQ(t.heat[15 * 24 + 0], 0.f);
  // The ignored region (x 70-86, y 2-14) weighs nothing; elsewhere everything weighs 1.
  EXPECT_EQ(t.weight[1 * 24 + 19], 0.f);
  EXPECT_EQ(t.weight[10 * 24 + 2], 1.f);
}

TEST(DetectorTargets, BoxedCellsInsideIgnoredRegionsStillCount) {
  DetectorSample s = two_cells();
  s.ignore = {cv::Rect2f(0, 0, 96, 64)};  // everything ignored ...
  const DetectorTargets t = build_detector_targets(s);
  for (int64_t i : t.index) EXPECT_EQ(t.weight[i], 1.f);  // ... but the boxed cells' peaks
  EXPECT_EQ(t.weight[15 * 24 + 23], 0.f);
}

TEST(DetectorTargets, WindowsMoveBoxesWithThePixels) {
  // A dark square marks the first cell; after any window, flip and transposition, the box that
  // survives must still sit on dark pixels.
  DetectorSample s = two_cells();
  s.bgr = cv::Mat(128, 128, CV_8UC3, cv::Scalar(220, 220, 220));
  s.boxes = {cv::Rect2f(40, 60, 28, 14)};  // wide: a transposed window makes it tall
  s.classes = {2};
  s.ignore.clear();
  cv::rectangle(s.bgr, cv::Rect(40, 60, 28, 14), cv::Scalar(30, 30, 30), cv::FILLED);
  std::mt19937 rng(7);
  int kept = 0;
  for (int i = 0; i < 40; ++i) {
    const DetectorSample w = random_window(s, 96, 0.2, rng);
    ASSERT_EQ(w.bgr.size(), cv::Size(96, 96));
    if (w.boxes.empty()) continue;
    ++kept;
    EXPECT_EQ(w.classes[0], 2);
    const cv::Point centre(int(w.boxes[0].x + w.boxes[0].width / 2),
                           int(w.boxes[0].y + w.boxes[0].height / 2));
    ASSERT_TRUE(cv::Rect(0, 0, 96, 96).contains(centre));
    EXPECT_LT(w.bgr.at<cv::Vec3b>(centre)[0], 80) << "window " << i;
    // The box's long side follows the dark bar's: measure the bar along both axes.
    const cv::Vec3b dark = w.bgr.at<cv::Vec3b>(centre);
    int across = 0, down = 0;
    for (int x = 0; x < 96; ++x) across += w.bgr.at<cv::Vec3b>(centre.y, x) == dark;
    for (int y = 0; y < 96; ++y) down += w.bgr.at<cv::Vec3b>(y, centre.x) == dark;
    EXPECT_EQ(w.boxes[0].width > w.boxes[0].height, across > down) << "window " << i;
  }
  EXPECT_GT(kept, 10);
}

TEST(DetectorTargets, PhotometricDamageKeepsTheImageAndVariesIt) {
  cv::Mat base(96, 96, CV_8UC3, cv::Scalar(210, 190, 215));
  cv::circle(base, {48, 48}, 20, cv::Scalar(150, 110, 160), cv::FILLED);
  std::mt19937 rng(3);
  double largest_change = 0;
  for (int i = 0; i < 20; ++i) {
    cv::Mat img = base.clone();
    augment_field_photometric(img, 1.0, rng);
    ASSERT_EQ(img.size(), base.size());
    ASSERT_EQ(img.type(), CV_8UC3);
    largest_change = std::max(largest_change, cv::norm(img, base, cv::NORM_L1) / img.total());
  }
  EXPECT_GT(largest_change, 10);  // the damage is not a no-op
  cv::Mat untouched = base.clone();
  augment_field_photometric(untouched, 0.0, rng);
  EXPECT_EQ(cv::norm(untouched, base, cv::NORM_L1), 0);
}

TEST(DetectorDecoding, LocalMaximaAboveTheThresholdBecomeBoxes) {
  Maps m(10, 12);
  m.peak(2, 3, 0.9f, 0, 5, 4, 0.25f, 0.75f);
  m.peak(7, 9, 0.6f, 4, 6, 6);
  m.heat[2 * 12 + 4] = 0.8f;    // a shoulder of the first peak: not a maximum
  m.peak(5, 5, 0.1f, 1, 5, 5);  // below the threshold
  const auto found = decode_detections(m.heat.data(), m.rest.data(), 10, 12, 0.3f, 100);
  ASSERT_EQ(found.size(), 2u);
  EXPECT_FLOAT_EQ(found[0].score, 0.9f);
  // Centre (3.25, 2.75) output px, 5 x 4 output px: in input pixels x 4.
  EXPECT_FLOAT_EQ(found[0].box.x, (3.25f - 2.5f) * 4);
  EXPECT_FLOAT_EQ(found[0].box.y, (2.75f - 2.f) * 4);
  EXPECT_FLOAT_EQ(found[0].box.width, 20.f);
  EXPECT_GT(found[1].class_probabilities[4], 0.9f);
  float sum = 0;
  for (float p : found[1].class_probabilities) sum += p;
  EXPECT_NEAR(sum, 1.f, 1e-5);
  // A flat top of two equal pixels is one detection, and the cap holds.
  Maps flat(4, 4);
  flat.peak(1, 1, 0.7f, 0, 4, 4);
  flat.peak(1, 2, 0.7f, 0, 4, 4);
  EXPECT_EQ(decode_detections(flat.heat.data(), flat.rest.data(), 4, 4, 0.3f, 100).size(), 1u);
  EXPECT_EQ(decode_detections(m.heat.data(), m.rest.data(), 10, 12, 0.3f, 1).size(), 1u);
  // A broken model's NaN or infinite outputs are no cells, and boxes stay within the map.
  Maps broken(4, 4);
  broken.heat.assign(16, std::nanf(""));
  broken.peak(2, 2, 0.9f, 0, 1e30f, 4);
  const auto sane = decode_detections(broken.heat.data(), broken.rest.data(), 4, 4, 0.3f, 100);
  ASSERT_EQ(sane.size(), 1u);
  EXPECT_LE(sane[0].box.width, 4.f * 4);
  broken.rest[kDetectorClasses * 16 + 10] = std::numeric_limits<float>::infinity();
  broken.rest[(kDetectorClasses + 2) * 16 + 10] = std::nanf("");
  EXPECT_TRUE(decode_detections(broken.heat.data(), broken.rest.data(), 4, 4, 0.3f, 100).empty());
}

TEST(DetectionScoring, RecallPrecisionAndStageConfusion) {
  AnnotatedField field;
  field.name = "f.jpg";
  field.cells = {{cv::Rect(0, 0, 20, 20), 0, "red blood cell"},
                 {cv::Rect(40, 0, 20, 20), 1, "ring"},
                 {cv::Rect(80, 0, 20, 20), 1, "gametocyte"},
                 {cv::Rect(120, 0, 20, 20), -1, "difficult"}};
  auto cell = [](cv::Rect box, float score, int cls) {
    DetectedCell d{box, score, {}};
    d.class_probabilities[cls] = 1;
    return d;
  };
  const std::vector<std::vector<DetectedCell>> detections = {
      {cell({1, 1, 20, 20}, 0.9f, 0), cell({41, 0, 20, 20}, 0.8f, 4),
       cell({200, 0, 20, 20}, 0.7f, 0), cell({120, 0, 20, 20}, 0.9f, 0),
       cell({80, 0, 20, 20}, 0.2f, 4)}};
  const DetectionScore s = score_detections({field}, detections, 0.5f);
  EXPECT_EQ(s.annotated[0] + s.annotated[1] + s.annotated[4], 3u);  // difficult left out
  EXPECT_EQ(s.found[0], 1u);
  EXPECT_EQ(s.found[1], 1u);
  EXPECT_EQ(s.found[4], 0u);  // its detection is below the threshold
  EXPECT_NEAR(s.recall(), 2.0 / 3, 1e-9);
  EXPECT_EQ(s.detections, 4u);
  EXPECT_EQ(s.unmatched, 1u);        // the one at x = 200; the difficult cell's is not held against
  EXPECT_EQ(s.confusion[1][4], 1u);  // a ring called gametocyte
  const auto j = s.to_json();
  EXPECT_DOUBLE_EQ(j["stage_accuracy"].get<double>(), 0.0);
  EXPECT_NEAR(j["field_recall_min"].get<double>(), 2.0 / 3, 1e-9);
  // A lower threshold finds the gametocyte too.
  EXPECT_EQ(score_detections({field}, detections, 0.1f).found[4], 1u);
}

TEST(DetectedRegions, MasksFollowTheStainedObjectEvenInHaze) {
  // Two dark discs on a background that brightens from left to right (a haze): a global Otsu
  // would cut the background in two; the per-box split must still give disc-shaped masks.
  cv::Mat field(200, 300, CV_8UC3);
  for (int x = 0; x < field.cols; ++x)
    field.col(x).setTo(cv::Scalar(150 + x / 4, 160 + x / 4, 150 + x / 4));
  cv::circle(field, {60, 100}, 30, cv::Scalar(120, 70, 130), cv::FILLED);
  cv::circle(field, {230, 100}, 30, cv::Scalar(170, 120, 180), cv::FILLED);
  std::vector<DetectedCell> found = {{cv::Rect(26, 66, 68, 68), 0.9f, {}},
                                     {cv::Rect(196, 66, 68, 68), 0.8f, {}},
                                     {cv::Rect(270, 0, 40, 40), 0.5f, {}}};
  found[1].class_probabilities[3] = 1;
  const FieldSegmentation seg = regions_from_detections(field, found);
  ASSERT_EQ(seg.cells.size(), 3u);
  const double disc = CV_PI * 30 * 30;
  for (int i : {0, 1}) {
    const CellRegion& r = seg.cells[i == 0 ? 1 : 2];  // sorted by row, then x: edge cell first
    EXPECT_TRUE(r.detected);
    EXPECT_NEAR(r.area, disc, 0.15 * disc) << i;
    EXPECT_FALSE(r.cut_by_edge);
  }
  EXPECT_TRUE(seg.cells[0].cut_by_edge);  // the box reaching past the right edge
  EXPECT_EQ(seg.cells[2].class_probabilities[3], 1.f);
  EXPECT_GT(seg.cell_area, 0);
}

TEST(ParasitemiaCorrection, RemovesKnownFalseCallsAndWidensTheInterval) {
  FieldErrorRates rates;
  rates.uninfected_cells = 10000;
  rates.false_calls = 50;  // 0.5% of uninfected cells called Parasitized
  rates.infected_cells = 200;
  rates.true_calls = 180;  // 90% sensitivity
  ParasitemiaSummary s;
  s.cells = 2000;
  s.parasitized = 30;  // 1.5% observed
  const auto j = corrected_parasitemia(s, rates, 4e6, false);
  const double expected = (0.015 - 0.005) / (0.9 - 0.005);
  EXPECT_NEAR(j["parasitemia_percent"].get<double>(), 100 * expected, 1e-9);
  const Interval raw = s.interval();
  EXPECT_LE(j["ci_low"].get<double>(), 100 * expected);
  EXPECT_GE(j["ci_high"].get<double>(), 100 * expected);
  // Wider than the plain Wilson interval mapped through the same correction.
  EXPECT_GT(j["ci_high"].get<double>() - j["ci_low"].get<double>(),
            100 * ((raw.high - 0.005) - (raw.low - 0.005)) / (0.9 - 0.005) - 1e-9);
  EXPECT_NEAR(j["parasites_per_ul"]["value"].get<double>(), expected * 4e6, 1e-6);
  EXPECT_FALSE(j["parasites_per_ul"]["rbc_per_ul_assumed"].get<bool>());
  // Fewer calls than the false-call rate explains: zero, never negative.
  s.parasitized = 2;
  EXPECT_EQ(corrected_parasitemia(s, rates, 5e6, true)["parasitemia_percent"].get<double>(), 0);
}

TEST(ParasitemiaCorrection, RatesTooUncertainToCorrectGiveTheWholeRange) {
  // 2 of 3 infected and 30 of 100 uninfected cells called: the rates' Wilson bounds cross (the
  // sensitivity's lower bound is below the false-call rate's upper bound).
  FieldErrorRates rates;
  rates.uninfected_cells = 100;
  rates.false_calls = 30;
  rates.infected_cells = 3;
  rates.true_calls = 2;
  ParasitemiaSummary s;
  s.cells = 100;
  s.parasitized = 40;
  const auto j = corrected_parasitemia(s, rates, 5e6, true);
  EXPECT_DOUBLE_EQ(j["ci_low"].get<double>(), 0.0);
  EXPECT_DOUBLE_EQ(j["ci_high"].get<double>(), 100.0);
}

TEST(ParasitemiaCorrection, OnlyUsableRatesAreReadFromAModelFile) {
  nlohmann::json meta = {{"field_error_rates",
                          {{"uninfected_cells", 1000},
                           {"false_calls", 5},
                           {"infected_cells", 50},
                           {"true_calls", 45},
                           {"segmenter", "detector"},
                           {"operating_point", "parasitemia"}}}};
  const auto rates = FieldErrorRates::from_json(meta);
  ASSERT_TRUE(rates);
  EXPECT_DOUBLE_EQ(rates->sensitivity(), 0.9);
  EXPECT_FALSE(FieldErrorRates::from_json(nlohmann::json::object()));
  meta["field_error_rates"]["true_calls"] = 0;  // no better than chance
  EXPECT_FALSE(FieldErrorRates::from_json(meta));
  meta["field_error_rates"]["true_calls"] = "many";
  EXPECT_FALSE(FieldErrorRates::from_json(meta));
  meta["field_error_rates"]["true_calls"] = 60;  // more than the infected cells
  EXPECT_FALSE(FieldErrorRates::from_json(meta));
  meta["field_error_rates"]["true_calls"] = 45;
  meta["field_error_rates"].erase("segmenter");  // rates that do not say how they were measured
  EXPECT_FALSE(FieldErrorRates::from_json(meta));
}

TEST(ParasitemiaSummary, StagesAndGametocytesOnlyWhenStaged) {
  ParasitemiaSummary a, b;
  a.cells = 100;
  a.parasitized = 2;
  EXPECT_FALSE(a.to_json().contains("stages"));
  b.staged = true;
  b.cells = 50;
  b.parasitized = 1;
  b.stages[3] = 1;
  a += b;
  const auto j = a.to_json();
  ASSERT_TRUE(j.contains("stages"));
  EXPECT_EQ(j["stages"]["gametocyte"], 1);
  EXPECT_TRUE(j["gametocytes_present"].get<bool>());
  EXPECT_EQ(j["cells"], 150);
}
