// Model subcommands: info, summary, feature-maps, report.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "data/image.h"
#include "detect/detector.h"
#include "model/architecture.h"
#include "model/classifier.h"
#include "model/model_info.h"
#include "report/figures.h"
#include "report/report.h"

namespace malaria::cli {

namespace {

using json = nlohmann::json;

void print_model_info(const json& meta) {
  auto get = [&](const char* key) {
    return meta.contains(key) ? meta[key].dump() : std::string("-");
  };
  const ModelInfo info = ModelInfo::from_metadata(meta);
  std::printf("model        %s\n", meta.value("name", "").c_str());
  std::printf("architecture %s at %dx%d, %s parameters\n", info.arch.c_str(), info.image_size,
              info.image_size, get("parameters").c_str());
  std::printf("classes      %s (positive: %s)\n", get("class_names").c_str(),
              meta.value("positive_class", "").c_str());
  std::printf("calibration  temperature %.4f%s\n", info.temperature,
              info.temperature == 1.0 ? " (uncalibrated)" : "");
  for (const auto& [name, p] : info.operating_points)
    std::printf("%-12s %s threshold %.4f, Inconclusive from %.4f to %.4f%s\n",
                name == info.operating_points.begin()->first ? "points" : "", name.c_str(),
                p.threshold, p.inconclusive_low, p.inconclusive_high,
                name == info.operating_point ? " (default)" : "");
  std::printf("created      %s by malaria %s\n", meta.value("created", "").c_str(),
              meta.contains("program") ? meta["program"].value("version", "").c_str() : "");
  if (meta.contains("data") && meta["data"].is_object()) {
    const auto& d = meta["data"];
    std::printf("data         %s, split %s (seed %s)\n", d.value("root", "").c_str(),
                d.value("split_mode", "").c_str(),
                d.contains("split_seed") ? d["split_seed"].dump().c_str() : "-");
  }
  for (const char* key : {"validation", "test", "training"})
    if (meta.contains(key)) std::printf("%-12s %s\n", key, meta[key].dump().c_str());
}

// A detector file: what it finds, how it was trained and its held-out figures.
void print_detector_info(const json& meta) {
  std::printf("detector     %s (width %d, fields shrunk by %.3g, score threshold %.3f)\n",
              meta.value("name", "").c_str(), meta.value("width", 0),
              meta.value("input_scale", 0.0), meta.value("score_threshold", 0.0));
  std::printf("classes      %s\n", meta.contains("classes") ? meta["classes"].dump().c_str() : "-");
  for (const char* part : {"validation", "test"}) {
    if (!meta.contains(part)) continue;
    const json& t = meta[part];
    std::printf(
        "%-12s recall %.2f%% (uninfected %.2f%%, infected %.2f%%), precision %.2f%%, "
        "stage accuracy %.1f%%, worst field %.1f%%\n",
        part, 100 * t.value("recall", 0.0), 100 * t.value("recall_uninfected", 0.0),
        100 * t.value("recall_infected", 0.0), 100 * t.value("precision", 0.0),
        100 * t.value("stage_accuracy", 0.0), 100 * t.value("field_recall_min", 0.0));
  }
  for (const char* key : {"data", "training"})
    if (meta.contains(key)) std::printf("%-12s %s\n", key, meta[key].dump().c_str());
}

Command add_info(CLI::App& app) {
  struct Options {
    std::string model;
    bool json = false;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("info", "Show the metadata stored in a model file");
  sub->add_option("model", o->model, "model file")->required();
  sub->add_flag("--json", o->json, "print the metadata as JSON");
  return {sub, [o] {
            try {
              const Classifier model = Classifier::load(o->model);
              if (o->json)
                std::cout << model.metadata().dump(2) << '\n';
              else
                print_model_info(model.metadata());
            } catch (const ModelFileError& e) {
              // Not a classifier: it may be a cell detector, which has its own summary.
              if (std::string(e.what()).find(kDetectorFormat) == std::string::npos) throw;
              const CellDetector detector = CellDetector::load(o->model);
              if (o->json)
                std::cout << detector.metadata().dump(2) << '\n';
              else
                print_detector_info(detector.metadata());
            }
            return 0;
          }};
}

Command add_summary(CLI::App& app) {
  struct Options {
    std::string model;
    std::string arch = default_architecture();
    int image_size = 64;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("summary", "Layer table with output shapes and parameter counts");
  sub->add_option("--model", o->model, "model file (its architecture and size)");
  sub->add_option("--arch", o->arch)
      ->check(CLI::IsMember(architecture_names()))
      ->capture_default_str();
  add_number(sub, "--image-size", o->image_size, 16, 1024);
  return {sub, [o] {
            std::string arch = o->arch;
            int size = o->image_size;
            if (!o->model.empty()) {
              const Classifier model = Classifier::load(o->model);
              arch = model.arch();
              size = model.image_size();
            }
            std::cout << format_summary(summarize_architecture(arch, size));
            return 0;
          }};
}

Command add_feature_maps(CLI::App& app, const GlobalOptions& global) {
  struct Options {
    std::string model, image, out = "feature_maps.png";
    int layer = 1;
  };
  auto o = std::make_shared<Options>();
  auto* sub = app.add_subcommand("feature-maps", "Draw a layer's activations for one image");
  sub->add_option("--model", o->model, "model file")->required();
  sub->add_option("--image", o->image, "cell image")->required();
  add_number(sub, "--layer", o->layer, 1, 1000, "convolution layer, 1 = first");
  sub->add_option("--out", o->out, "PNG to write")->capture_default_str();
  return {sub, [o, &global] {
            set_compute_threads(global.threads);
            const Classifier model = Classifier::load(o->model);
            const cv::Mat cell = read_image(o->image);
            draw_feature_maps(cell, model.feature_maps(cell, o->layer),
                              "Convolution layer " + std::to_string(o->layer) + " activations: " +
                                  std::filesystem::path(o->image).filename().string(),
                              o->out);
            std::printf("%s\n", o->out.c_str());
            return 0;
          }};
}

Command add_report(CLI::App& app) {
  auto run_dir = std::make_shared<std::string>();
  auto* sub = app.add_subcommand("report", "Write RUN_DIR/report.html from a training run");
  sub->add_option("run_dir", *run_dir, "training run folder")->required();
  return {sub, [run_dir] {
            std::printf("%s\n", write_report(*run_dir).c_str());
            return 0;
          }};
}

}  // namespace

std::vector<Command> add_model_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_info(app), add_summary(app), add_feature_maps(app, global), add_report(app)};
}

}  // namespace malaria::cli
