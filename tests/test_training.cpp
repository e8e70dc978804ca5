// Integration: short training runs on real NIH images from ../shared/data.
#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <opencv2/imgcodecs.hpp>
#include <thread>

#include "eval/evaluate.h"
#include "model/classifier.h"
#include "test_helpers.h"
#include "train/cross_validation.h"
#include "train/trainer.h"
#include "util/files.h"

using namespace malaria;
using testing_support::TempDir;

// oneDNN capped below its bfloat16 kernels (ONEDNN_MAX_CPU_ISA=AVX2) cannot run bf16
// convolutions: training must then default to float32 instead of failing on the first batch.
TEST(Training, Bf16IsOffWhenOneDnnIsCappedBelowIt) {
  // The run itself may be capped (CI measured with ONEDNN_MAX_CPU_ISA=AVX2): restore it after.
  const char* outer = std::getenv("ONEDNN_MAX_CPU_ISA");
  const std::string saved = outer ? outer : "";
  ::setenv("ONEDNN_MAX_CPU_ISA", "all", 1);
  const bool uncapped = cpu_has_bf16();
  EXPECT_EQ(TrainOptions().bf16, uncapped);
  ::setenv("ONEDNN_MAX_CPU_ISA", "AVX2", 1);
  EXPECT_FALSE(cpu_has_bf16());
  EXPECT_FALSE(TrainOptions().bf16);
  ::setenv("ONEDNN_MAX_CPU_ISA", "all", 1);
  EXPECT_EQ(cpu_has_bf16(), uncapped);
  if (outer)
    ::setenv("ONEDNN_MAX_CPU_ISA", saved.c_str(), 1);
  else
    ::unsetenv("ONEDNN_MAX_CPU_ISA");
}

TEST(Training, ShortRunLowersLossBeatsChanceAndWritesTheRun) {
  TempDir dir;
  testing_support::link_subset(dir / "data", 400);
  TrainOptions o;
  o.data_dir = dir / "data";
  o.out_dir = dir / "run";
  o.epochs = 10;
  o.batch_size = 16;
  o.quiet = true;
  o.cache = true;
  const TrainOutcome outcome = run_training(o);
  ASSERT_FALSE(outcome.interrupted);
  for (const char* f :
       {"model.pt", "split.csv", "config.json", "data_summary.json", "history.csv", "history.json",
        "evaluation.json", "evaluation.txt", "test_predictions.csv"})
    EXPECT_TRUE(std::filesystem::exists(dir / ("run/" + std::string(f)))) << f;
  EXPECT_FALSE(std::filesystem::exists(dir / "run/checkpoint"));

  const auto history = nlohmann::json::parse(read_text(dir / "run/history.json"));
  ASSERT_EQ(history.size(), 10u);
  EXPECT_LT(history.back()["train_loss"].get<double>(),
            history.front()["train_loss"].get<double>());
  EXPECT_GT(outcome.test["accuracy"].get<double>(), 0.75);
  EXPECT_GT(outcome.test["roc_auc"].get<double>(), 0.8);

  // The model file carries what it was trained on.
  const Classifier model = Classifier::load(outcome.model_path);
  const auto& meta = model.metadata();
  EXPECT_EQ(meta["arch"], "cellnet");
  EXPECT_EQ(meta["training"]["seed"], 42);
  EXPECT_EQ(meta["data"]["dataset"]["images"], 800);
  EXPECT_TRUE(meta["validation"].contains("accuracy"));
  EXPECT_TRUE(meta["test"].contains("roc_auc"));
  // Calibrated on validation, with both operating points and their bands.
  EXPECT_GT(model.info().temperature, 0.0);
  EXPECT_TRUE(meta["calibration"].contains("ece_after"));
  for (const char* point : {"balanced", "screening"}) {
    ASSERT_TRUE(model.info().operating_points.count(point)) << point;
    const auto& p = model.info().operating_points.at(point);
    EXPECT_LE(p.inconclusive_low, p.threshold);
    EXPECT_GE(p.inconclusive_high, p.threshold);
    EXPECT_TRUE(outcome.test["operating_points"].contains(point)) << point;
  }
  EXPECT_LE(model.info().operating_points.at("screening").threshold,
            model.info().operating_points.at("balanced").threshold);

  // evaluate and predict agree on every test image.
  const Split split = read_split_csv(dir / "run/split.csv");
  const Evaluation ev = evaluate_model(model, split.test, {64, 1, false, ""});
  std::vector<std::string> paths;
  for (const auto& s : split.test) paths.push_back(s.path);
  const auto predictions = predict_files(model, paths, model.operating_point());
  ASSERT_EQ(predictions.size(), split.test.size());
  for (size_t i = 0; i < predictions.size(); ++i) {
    ASSERT_TRUE(predictions[i].error.empty());
    EXPECT_NEAR(predictions[i].probability, ev.probabilities[i], 1e-5) << paths[i];
  }
  EXPECT_NEAR(ev.metrics.accuracy, outcome.test["accuracy"].get<double>(), 1e-9);
  const std::string predictions_csv = read_text(dir / "run/test_predictions.csv");
  EXPECT_EQ(std::count(predictions_csv.begin(), predictions_csv.end(), '\n'),
            static_cast<long>(split.test.size()) + 1);

  // Figures: present, real PNGs, and drawn from the numbers the JSON report holds.
  for (const char* f : {"training_history", "confusion_matrix", "roc", "pr", "reliability",
                        "sample_images", "feature_maps", "architecture"}) {
    const cv::Mat png = cv::imread(dir / ("run/figures/" + std::string(f) + ".png"));
    ASSERT_FALSE(png.empty()) << f;
    EXPECT_GE(png.cols, 300) << f;
    EXPECT_GE(png.rows, 150) << f;
  }
  const auto cm = outcome.test["confusion_matrix"];
  const std::string cm_csv = read_text(dir / "run/figures/confusion_matrix.csv");
  for (const char* key : {"tn", "fp", "fn", "tp"})
    EXPECT_NE(cm_csv.find("," + std::to_string(cm[key].get<long>()) + ","), std::string::npos)
        << key;
  const std::string history_csv = read_text(dir / "run/figures/training_history.csv");
  EXPECT_EQ(std::count(history_csv.begin(), history_csv.end(), '\n'), 11);  // header + 10 epochs

  // The report: one file holding every section, figures embedded.
  const std::string html = read_text(dir / "run/report.html");
  for (const char* section :
       {"Test metrics", "Classification report", "calibration and operating points",
        "Training history", "Data and split", "Per-patient results", "Configuration",
        "drawn from its definition", "<!doctype html>"})
    EXPECT_NE(html.find(section), std::string::npos) << section;
  size_t images = 0;
  for (size_t at = 0; (at = html.find("src=\"data:image/png;base64,", at)) != std::string::npos;
       ++at)
    ++images;
  EXPECT_EQ(images, 8u);
  EXPECT_EQ(html.find("src=\"http"), std::string::npos);
}

TEST(Training, RefusesToOverwriteAnInterruptedRun) {
  TempDir dir;
  testing_support::link_subset(dir / "data", 20);  // valid data: only the guard can refuse
  testing_support::write_bytes(dir / "run/checkpoint/state.json", "{\"epoch\": 1}");
  TrainOptions o;
  o.data_dir = dir / "data";
  o.out_dir = dir / "run";
  o.epochs = 1;
  o.quiet = true;
  try {
    run_training(o);
    FAIL() << "an interrupted run was overwritten";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("--resume"), std::string::npos) << e.what();
  }
  EXPECT_EQ(read_text(dir / "run/checkpoint/state.json"), "{\"epoch\": 1}");
  EXPECT_FALSE(std::filesystem::exists(dir / "run/model.pt"));
}

TEST(Training, ADivergingRunStopsWithAClearErrorAndSavesNoModel) {
  TempDir dir;
  testing_support::link_subset(dir / "data", 40);
  TrainOptions o;
  o.data_dir = dir / "data";
  o.out_dir = dir / "run";
  o.epochs = 3;
  o.batch_size = 8;
  o.learning_rate = 1e30;  // the CLI refuses this; the library must still not save garbage
  o.quiet = true;
  try {
    run_training(o);
    FAIL() << "training with a diverging loss finished";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("diverged"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(std::filesystem::exists(dir / "run/model.pt"));
}

TEST(Training, AnInterruptedAndResumedRunEqualsAnUninterruptedOne) {
  TempDir dir;
  testing_support::link_subset(dir / "data", 150);
  TrainOptions o;
  o.data_dir = dir / "data";
  o.epochs = 4;
  o.batch_size = 8;
  o.quiet = true;
  o.cache = true;
  o.threads = 1;        // one thread: reductions in a fixed order
  o.image_size = 32;    // small and fast; cellnet has dropout, whose generator must survive
  o.ema_decay = 0.9;    // the average is checkpointed too (validation is measured on it)
  o.mixup_alpha = 0.4;  // mixup draws from the same generator
  o.out_dir = dir / "straight";
  run_training(o);

  // Interrupt the second run once its first epoch is written, as Ctrl-C would. Should the run
  // end first, the late signal meets this no-op handler instead of ending the test binary.
  o.out_dir = dir / "resumed";
  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = [](int) {};
  sigemptyset(&ignore.sa_mask);
  ::sigaction(SIGINT, &ignore, &previous);
  std::atomic<bool> finished{false};
  std::thread interrupter([&] {
    while (!finished && !std::filesystem::exists(dir / "resumed/history.json"))
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    if (!finished) std::raise(SIGINT);
  });
  const TrainOutcome first = run_training(o);
  finished = true;
  interrupter.join();
  ::sigaction(SIGINT, &previous, nullptr);
  ASSERT_TRUE(first.interrupted) << "the run ended before the interrupt";
  resume_training(dir / "resumed", 1);

  const auto a = nlohmann::json::parse(read_text(dir / "straight/history.json"));
  const auto b = nlohmann::json::parse(read_text(dir / "resumed/history.json"));
  ASSERT_EQ(a.size(), b.size());
  for (size_t e = 0; e < a.size(); ++e)
    for (const char* key : {"train_loss", "val_loss", "val_accuracy"})
      EXPECT_DOUBLE_EQ(a[e][key].get<double>(), b[e][key].get<double>()) << key << " epoch " << e;
}

// The fixed-schedule recipe: folds without validation patients train to the end of their
// schedule; figures and the final model's calibration come from out-of-fold predictions.
TEST(Training, FixedScheduleCrossValidationCalibratesOnOutOfFoldPredictions) {
  TempDir dir;
  testing_support::link_subset(dir / "data", 90);
  TrainOptions o;
  o.data_dir = dir / "data";
  o.out_dir = dir / "cv";
  o.epochs = 2;
  o.batch_size = 16;
  o.image_size = 32;
  o.quiet = true;
  o.cache = true;
  o.fractions = {1.0, 0.0, 0.0};  // --val-share 0
  o.ema_decay = 0.9;
  o.label_smoothing = 0.1;
  o.mixup_alpha = 0.2;
  const auto outcome = run_cross_validation(o, 3, /*final_model=*/true);
  ASSERT_FALSE(outcome.interrupted);
  for (int k = 1; k <= 3; ++k) {
    const std::string fold = dir / ("cv/fold-" + std::to_string(k));
    const std::string header = read_text(fold + "/test_predictions.csv").substr(0, 80);
    EXPECT_NE(header.find(",logit"), std::string::npos) << header;
    EXPECT_TRUE(std::filesystem::exists(fold + "/test_predictions_raw.csv"));  // without EMA
    const auto split = read_split_csv(fold + "/split.csv");
    EXPECT_TRUE(split.val.empty());
    EXPECT_FALSE(split.test.empty());
  }
  const auto& fitted = outcome.summary.at("cross_fitted");
  EXPECT_EQ(fitted.at("folds"), 3);
  EXPECT_TRUE(fitted["metrics"].contains("balanced_sensitivity"));
  // The final model: every patient trains, the rule comes from the folds' predictions.
  const Classifier final_model = Classifier::load(dir / "cv/final/model.pt");
  const auto& meta = final_model.metadata();
  EXPECT_NE(meta["calibration"]["fitted_on"].get<std::string>().find("out-of-fold"),
            std::string::npos);
  EXPECT_TRUE(meta["operating_points"].contains("balanced"));
  EXPECT_TRUE(meta["operating_points"].contains("screening"));
  EXPECT_TRUE(meta["cross_validation"].contains("cross_fitted"));
  EXPECT_EQ(meta["training"]["ema_decay"], 0.9);
  EXPECT_EQ(meta["training"]["label_smoothing"], 0.1);
  EXPECT_EQ(meta["training"]["early_stopping"], "none: the fixed schedule runs to its end");
  const auto final_split = read_split_csv(dir / "cv/final/split.csv");
  EXPECT_TRUE(final_split.val.empty() && final_split.test.empty());
  EXPECT_EQ(final_split.train.size(), 180u);
}
