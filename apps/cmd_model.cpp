// Model subcommands: info, summary, feature-maps, report, fit-typicality, ensemble.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "data/image.h"
#include "data/loader.h"
#include "detect/detector.h"
#include "model/architecture.h"
#include "model/classifier.h"
#include "model/model_info.h"
#include "model/typicality.h"
#include "report/figures.h"
#include "report/report.h"
#include "train/cross_validation.h"
#include "util/files.h"

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
  if (meta.contains("ensemble"))
    std::printf("ensemble     %s members, logits averaged\n",
                meta["ensemble"].value("members", json()).dump().c_str());
  if (meta.contains("typicality") && meta["typicality"].is_object()) {
    const json& t = meta["typicality"];
    std::printf(
        "rejects      images whose features lie beyond %.3f (quantile %s of %s training "
        "cells' distances)\n",
        t.value("threshold", 0.0), t.value("quantile", json()).dump().c_str(),
        t.value("fitted_on_cells", json()).dump().c_str());
  } else {
    std::printf("rejects      by the image checks only (no typicality model)\n");
  }
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

struct TypicalityOptions {
  std::string model, cells, out;
  double quantile = 0.999;
};

// Held-out cells' distances (from the fitted copy) against each recorded training quantile:
// the share of real cells each candidate threshold would reject.
void report_held_out_rejection(const std::string& fitted, const std::vector<Sample>& held_out) {
  const Classifier model = Classifier::load(fitted);
  LoaderOptions lo;
  lo.image_size = model.image_size();
  lo.batch_size = 128;
  BatchLoader loader(held_out, lo);
  loader.start_epoch(0);
  const json& t = model.metadata().at("typicality");
  const double threshold = t.at("threshold");
  std::vector<double> distances;
  while (auto batch = loader.next())
    for (float a : model.score(batch->pixels.data(), batch->size()).atypicality)
      distances.push_back(a * threshold);
  std::printf("held-out cells (%zu) beyond each training quantile's distance:\n", distances.size());
  for (const auto& [q, value] : t.at("training_distance_quantiles").items()) {
    const double v = value;
    const long beyond =
        std::count_if(distances.begin(), distances.end(), [&](double d) { return d > v; });
    std::printf("  quantile %-7s distance %8.3f  rejects %5ld (%.3f%%)\n", q.c_str(), v, beyond,
                100.0 * beyond / std::max<size_t>(1, distances.size()));
  }
}

int run_fit_typicality(const TypicalityOptions& o) {
  // A split.csv: fit on its training part, report on its test part; a folder: fit on all of it.
  Split split;
  if (std::filesystem::is_directory(o.cells))
    split.train = scan_dataset(o.cells).samples;
  else
    split = read_split_csv(o.cells);
  const Classifier model = Classifier::load(o.model);
  json block = fit_typicality(model, split.train, o.quantile);
  std::printf("fitted on %zu cells: threshold %.3f (quantile %g of their distances)\n",
              split.train.size(), block.value("threshold", 0.0), o.quantile);
  write_model_copy(o.model, o.out, {{"typicality", block}});
  std::printf("wrote %s\n", o.out.c_str());
  if (!split.test.empty()) report_held_out_rejection(o.out, split.test);
  return 0;
}

Command add_fit_typicality(CLI::App& app) {
  auto o = std::make_shared<TypicalityOptions>();
  auto* sub = app.add_subcommand(
      "fit-typicality",
      "Fit the learned non-cell check (feature typicality) on a model's training cells and write "
      "a copy of the model that rejects images unlike them");
  sub->add_option("--model", o->model, "model file")->required()->check(CLI::ExistingFile);
  sub->add_option("--cells", o->cells,
                  "the model's training cells: a dataset folder, or a run's split.csv (fitted on "
                  "its train part, and the share of its test part rejected is reported)")
      ->required()
      ->check(CLI::ExistingPath);
  add_number(sub, "--quantile", o->quantile, 0.5, 1,
             "the threshold: this quantile of the training cells' own distances");
  sub->add_option("--out", o->out, "model file to write")->required();
  return {sub, [o] { return run_fit_typicality(*o); }};
}

struct EnsembleOptions {
  std::vector<std::string> models, calibrate_from;
  std::string out, name;
};

// Several model files of one architecture as one ensemble file, calibrated on the out-of-fold
// predictions of the cross-validations that measured the same recipes.
int run_ensemble(const EnsembleOptions& o) {
  json meta;
  json sources = json::array();
  for (const auto& path : o.models) {
    const json m = Classifier::load(path).metadata();
    if (meta.is_null()) meta = m;
    sources.push_back({{"file", std::filesystem::path(path).filename().string()},
                       {"name", m.value("name", "")},
                       {"seed", m.value("training", json::object()).value("seed", 0)},
                       {"created", m.value("created", "")}});
  }
  meta.erase("typicality");  // fitted to one member's features; refit for the ensemble
  meta["members"] = sources;
  if (!o.name.empty()) meta["name"] = o.name;
  calibrate_from_out_of_fold(o.calibrate_from, meta);
  meta["cross_validation"]["runs"] = o.calibrate_from;
  meta["created"] = now_iso8601();
  write_ensemble_file(o.models, o.out, meta);
  std::printf("wrote %s: %zu members\n", o.out.c_str(), o.models.size());
  return 0;
}

Command add_ensemble(CLI::App& app) {
  auto o = std::make_shared<EnsembleOptions>();
  auto* sub =
      app.add_subcommand("ensemble",
                         "Join model files into one ensemble (logits averaged), calibrated on the "
                         "out-of-fold predictions of the cross-validations of the same recipes");
  sub->add_option("models", o->models, "model files of one architecture")
      ->required()
      ->check(CLI::ExistingFile);
  sub->add_option("--calibrate-from", o->calibrate_from,
                  "cv run folders of the members' recipes, one per member, on the same folds")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--name", o->name, "the ensemble's name");
  sub->add_option("--out", o->out, "model file to write")->required();
  return {sub, [o] { return run_ensemble(*o); }};
}

}  // namespace

std::vector<Command> add_model_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_info(app),   add_summary(app),        add_feature_maps(app, global),
          add_report(app), add_fit_typicality(app), add_ensemble(app)};
}

}  // namespace malaria::cli
