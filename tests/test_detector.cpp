// The cell detector: its model file, training on synthetic fields (learning, resuming, the
// files of a run), and the bundled detector on real held-out fields, hazy ones included.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/imgcodecs.hpp>
#include <opencv2/imgproc.hpp>
#include <random>
#include <set>
#include <thread>

#include "data/image.h"
#include "detect/detection_scoring.h"
#include "detect/detector.h"
#include "detect/detector_model.h"
#include "detect/detector_training.h"
#include "field/annotations.h"
#include "field/quality.h"
#include "field/screening.h"
#include "field/segmentation.h"
#include "field_damage.h"
#include "model/classifier.h"
#include "model/model.h"
#include "test_helpers.h"
#include "util/files.h"

using namespace malaria;
using testing_support::TempDir;
namespace fs = std::filesystem;

namespace {

nlohmann::json detector_metadata(int width = 16) {
  return {{"format", kDetectorFormat},
          {"format_version", 1},
          {"width", width},
          {"input_scale", 0.5},
          {"score_threshold", 0.3}};
}

// `count` fields of pale background with grey discs (red cells); every fourth disc carries a
// dark dot (a "ring"). annotations.csv boxes them all, with a group per two fields.
void write_synthetic_fields(const std::string& dir, int count, uint32_t seed) {
  fs::create_directories(dir + "/images");
  std::ofstream csv(dir + "/annotations.csv");
  csv << "image,x,y,w,h,label,group\n";
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> jitter(-5, 5);
  for (int f = 0; f < count; ++f) {
    cv::Mat field(192, 256, CV_8UC3, cv::Scalar(215, 220, 225));
    const std::string name = "field" + std::to_string(100 + f) + ".png";
    int n = 0;
    for (int y = 28; y < 180; y += 48)
      for (int x = 28; x < 240; x += 50, ++n) {
        const cv::Point c(x + jitter(rng), y + jitter(rng));
        const int r = 16 + jitter(rng) / 2;
        cv::circle(field, c, r, cv::Scalar(165, 130, 175), cv::FILLED, cv::LINE_AA);
        const bool ring = n % 4 == 1;
        if (ring) cv::circle(field, c + cv::Point(4, -3), 4, cv::Scalar(120, 40, 110), cv::FILLED);
        csv << name << ',' << c.x - r << ',' << c.y - r << ',' << 2 * r << ',' << 2 * r << ','
            << (ring ? "ring" : "red blood cell") << ",g" << f / 2 << '\n';
      }
    cv::imwrite(dir + "/images/" + name, field);
  }
}

DetectorTrainOptions small_run(const std::string& fields, const std::string& out, int steps) {
  DetectorTrainOptions o;
  o.fields_dir = fields;
  o.out_dir = out;
  o.val_groups = 1;
  o.test_groups = 1;
  o.steps = steps;
  o.batch = 8;
  o.window = 64;
  o.width = 16;
  o.input_scale = 0.5;
  o.augment = 0.3;
  o.ignore_unboxed = false;
  o.checkpoint_every = 20;
  o.progress = false;
  return o;
}

}  // namespace

TEST(DetectorFile, RoundTripAndClearErrors) {
  TempDir dir;
  DetectorNet net(16);
  net->eval();
  save_detector_file(dir / "d.pt", net, detector_metadata());
  const CellDetector detector = CellDetector::load(dir / "d.pt");
  EXPECT_DOUBLE_EQ(detector.input_scale(), 0.5);
  cv::Size size;
  const auto input = detector.prepare(cv::Mat(100, 150, CV_8UC3, cv::Scalar::all(200)), size);
  EXPECT_EQ(size, cv::Size(80, 64));  // 75 x 50 padded to multiples of 16
  const auto maps = detector.forward(input.data(), 1, size);
  ASSERT_EQ(maps.size(), size_t(kDetectorOutputs) * 16 * 20);
  for (int i = 0; i < 16 * 20; ++i) ASSERT_TRUE(maps[i] >= 0 && maps[i] <= 1);  // sigmoid

  auto message = [](const std::string& path) {
    try {
      CellDetector::load(path);
    } catch (const ModelFileError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  // A classifier's file is refused by name, and the other way round.
  auto classifier = build_model("cellnet", 64);
  nlohmann::json cell_meta = {
      {"format", kModelFormat}, {"format_version", 1}, {"arch", "cellnet"}, {"image_size", 64}};
  save_model_file(dir / "cell.pt", classifier, cell_meta);
  EXPECT_NE(message(dir / "cell.pt").find("not a malaria-cell-detector"), std::string::npos)
      << message(dir / "cell.pt");
  EXPECT_THROW(Classifier::load(dir / "d.pt"), ModelFileError);
  auto bad = detector_metadata();
  bad["input_scale"] = 0;
  save_detector_file(dir / "scale.pt", net, bad);
  EXPECT_NE(message(dir / "scale.pt").find("input_scale"), std::string::npos);
  save_detector_file(dir / "wide.pt", net, detector_metadata(32));  // weights of width 16
  EXPECT_NE(message(dir / "wide.pt").find("do not match"), std::string::npos)
      << message(dir / "wide.pt");
  {
    torch::NoGradGuard no_grad;
    net->parameters()[0][0][0][0][0] = std::numeric_limits<float>::quiet_NaN();
  }
  save_detector_file(dir / "nan.pt", net, detector_metadata());
  EXPECT_NE(message(dir / "nan.pt").find("not finite"), std::string::npos);
  testing_support::write_bytes(dir / "cut.pt",
                               testing_support::read_bytes(dir / "d.pt").substr(0, 500));
  EXPECT_NE(message(dir / "cut.pt").find("truncated or corrupt"), std::string::npos);
}

TEST(DetectorTraining, LearnsSyntheticCellsAndWritesARun) {
  TempDir dir;
  write_synthetic_fields(dir / "fields", 8, 1);
  const auto meta = train_detector(small_run(dir / "fields", dir / "run", 300));
  for (const char* file : {"detector.pt", "evaluation.json", "config.json", "history.json",
                           "training_history.png", "checkpoint/state.json"})
    EXPECT_TRUE(fs::is_regular_file(dir / ("run/" + std::string(file)))) << file;
  EXPECT_EQ(meta["steps_run"], 300);
  EXPECT_EQ(meta["data"]["train_fields"], 4);  // 4 groups of 2: 1 validation, 1 test
  // The held-out group's cells are found, and the file as shipped gives the same boxes.
  const auto& test = meta["test"];
  EXPECT_GE(test["recall"].get<double>(), 0.9) << test.dump();
  EXPECT_GE(test["precision"].get<double>(), 0.8) << test.dump();
  const CellDetector detector = CellDetector::load(dir / "run/detector.pt");
  EXPECT_FLOAT_EQ(detector.score_threshold(), meta["score_threshold"].get<float>());
  const auto fields = read_field_annotations(dir / "fields");
  const auto found = detector.detect(read_image(fields[0].path));
  EXPECT_NEAR(double(found.size()), double(fields[0].cells.size()), 3);
}

TEST(DetectorTraining, ContinuesAnInterruptedRun) {
  TempDir dir;
  write_synthetic_fields(dir / "fields", 6, 2);
  auto options = small_run(dir / "fields", dir / "run", 200);
  // A checkpoint on the same step as a history row: resuming one step early would repeat it.
  options.checkpoint_every = 50;
  // Ctrl-C once the first periodic checkpoint (step 50) is on disk: the run saves where it is
  // and stops; the same command then continues it.
  std::atomic<bool> done{false};
  std::thread interrupter([&] {
    const std::string state = dir / "run/checkpoint/state.json";
    while (!done && !fs::exists(state)) std::this_thread::yield();
    if (!done) ::kill(::getpid(), SIGINT);
  });
  EXPECT_THROW(train_detector(options), std::runtime_error);
  done = true;
  interrupter.join();
  const auto stopped = nlohmann::json::parse(read_text(dir / "run/checkpoint/state.json"));
  const int at = stopped["step"];
  EXPECT_GE(at, 50);
  EXPECT_LT(at, 200);
  const auto meta = train_detector(options);
  EXPECT_EQ(meta["steps_run"], 200);
  const auto history = nlohmann::json::parse(read_text(dir / "run/history.json"));
  ASSERT_EQ(history.size(), 4u);  // one row per 50 steps, none repeated by the resumption
  for (size_t i = 0; i < history.size(); ++i) EXPECT_EQ(history[i]["step"], 50 * int(i + 1));
}

TEST(BundledDetector, FindsCellsOfHeldOutFieldsAndSurvivesHaze) {
  const std::string fields_dir = testing_support::data_root() + "/fields/iml";
  MALARIA_REQUIRE_DIR(fields_dir);
  ASSERT_TRUE(fs::is_regular_file(MALARIA_TEST_DETECTOR)) << MALARIA_TEST_DETECTOR;
  const CellDetector detector = CellDetector::load(MALARIA_TEST_DETECTOR);
  std::set<std::string> held_out;
  for (const auto& g : detector.metadata()["data"]["test_groups"]) held_out.insert(g);
  ASSERT_FALSE(held_out.empty());
  std::vector<AnnotatedField> fields;
  for (const auto& f : read_field_annotations(fields_dir))
    if (held_out.count(f.group) && fields.size() < 6) fields.push_back(f);
  ASSERT_EQ(fields.size(), 6u);
  std::vector<std::vector<DetectedCell>> clear, hazy, classic;
  for (const auto& f : fields) {
    const cv::Mat bgr = read_image(f.path, kFieldImageLimits);
    clear.push_back(detector.detect(bgr));
    // A dense pink haze over the left half, fading out by two thirds: the kind of background
    // that made the classical segmentation report 0 cells on a field of clear cells (Otsu then
    // separates hazy from clear background, not cells from background).
    cv::Mat haze = bgr.clone();
    for (int x = 0; x < haze.cols; ++x) {
      const double t = double(x) / haze.cols;
      const double a = t < 0.5 ? 0.6 : std::max(0.0, 0.6 * (1 - (t - 0.5) / 0.17));
      cv::Mat column = haze.col(x);
      cv::addWeighted(column, 1 - a,
                      cv::Mat(column.size(), column.type(), cv::Scalar(190, 170, 215)), a, 0,
                      column);
    }
    hazy.push_back(detector.detect(haze));
    std::vector<DetectedCell> regions;
    for (const auto& r : segment_cells(haze).cells) regions.push_back({r.box, 1.f, {}});
    classic.push_back(regions);
  }
  const auto on_clear = score_detections(fields, clear, detector.score_threshold());
  const auto on_haze = score_detections(fields, hazy, detector.score_threshold());
  const auto classic_haze = score_detections(fields, classic, 0.5f);
  std::printf("recall: clear %.3f, haze %.3f (classical segmentation in haze %.3f)\n",
              on_clear.recall(), on_haze.recall(), classic_haze.recall());
  EXPECT_GE(on_clear.recall(), 0.96);
  // Unboxed real cells count against precision (the annotation is not exhaustive).
  EXPECT_GE(on_clear.precision(), 0.75);
  EXPECT_GE(on_haze.recall(), 0.93);
  EXPECT_GE(on_haze.field_recall.front().second, 0.75);  // no field lost
  EXPECT_LT(classic_haze.recall(), 0.8);  // the haze is real damage: Otsu loses the cells
}

// The quality verdict from the detector's cells (what screening uses by default) on the same
// damaged copies of real fields as the classical segmentation's test (test_field.cpp).
TEST(BundledDetector, QualityVerdictCatchesDamagedFields) {
  const std::string fields_dir = testing_support::data_root() + "/fields/iml";
  MALARIA_REQUIRE_DIR(fields_dir);
  const CellDetector detector = CellDetector::load(MALARIA_TEST_DETECTOR);
  const FieldSegmenter segmenter = detector_segmenter(detector);
  const auto fields = read_field_annotations(fields_dir);
  int real_failed = 0, checked = 0;
  std::map<std::string, int> failed, flagged, tried;
  for (size_t i = 0; i < fields.size(); i += 45) {  // 5 fields across the whole set
    const cv::Mat field = read_image(fields[i].path, kFieldImageLimits);
    ++checked;
    real_failed += assess_field_quality(field, segmenter.segment(field)).failed();
    for (const auto& [name, image] : testing_support::damaged_copies(field)) {
      const FieldQuality q = assess_field_quality(image, segmenter.segment(image));
      ++tried[name];
      failed[name] += q.failed();
      flagged[name] += q.verdict != "ok";
    }
  }
  for (const auto& [name, n] : tried)
    std::printf("%-22s failed %d of %d, flagged %d of %d\n", name.c_str(), failed[name], n,
                flagged[name], n);
  EXPECT_EQ(real_failed, 0) << "of " << checked;
  for (const char* name : {"blank", "noise", "text", "grey (unstained)", "overexposed",
                           "underexposed", "defocused (sigma 8)"})
    EXPECT_EQ(failed[name], tried[name]) << name;
  for (const char* name : {"soft focus (sigma 5)", "colour cast"})
    EXPECT_EQ(flagged[name], tried[name]) << name;
  EXPECT_EQ(failed["gradient haze"], 0);  // the detector copes with haze: still counted
}
