// Evaluation subcommands: evaluate (labelled folder), predict (any images), rejection-test.
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "data/dataset.h"
#include "data/image.h"
#include "eval/decision.h"
#include "eval/evaluate.h"
#include "eval/non_cells.h"
#include "explain/explanation.h"
#include "model/classifier.h"
#include "report/figures.h"
#include "report/report.h"
#include "util/files.h"

namespace malaria::cli {

namespace {

struct EvaluateCommandOptions {
  std::string model;
  std::string data = default_data_dir();
  std::string json_out;
  std::string predictions_out;
  std::string figures_dir;
  std::string operating_point;
  std::string tta;  // empty: the file's own; "on" or "off"
  bool strict = false;
};

int run_evaluate(const EvaluateCommandOptions& o, const GlobalOptions& global) {
  set_compute_threads(global.threads);
  Classifier model = Classifier::load(o.model);
  model.operating_point(o.operating_point);  // an unknown name fails before any work
  if (!o.tta.empty()) model.set_flip_tta(o.tta == "on");
  // A dataset folder, or a run's split.csv: its test rows (patients the run never trained on).
  std::vector<Sample> samples;
  nlohmann::json data_summary;
  if (std::filesystem::path(o.data).extension() == ".csv") {
    samples = read_split_csv(o.data).test;
    if (samples.empty()) throw std::runtime_error(o.data + " has no test rows");
    data_summary = {{"split_csv", o.data}, {"images", samples.size()}};
  } else {
    ScanOptions scan;
    scan.strict = o.strict;
    const Dataset ds = scan_dataset(o.data, scan);
    samples = ds.samples;
    data_summary = ds.summary.to_json();
  }
  EvaluateOptions options;
  options.operating_point = o.operating_point;
  const Evaluation ev = evaluate_model(model, samples, options);
  std::printf("Model %s on %s\n%s", o.model.c_str(), o.data.c_str(), ev.to_text().c_str());
  if (!o.json_out.empty()) {
    nlohmann::json j = ev.to_json();
    j["model"] = o.model;
    j["data"] = data_summary;
    write_text_atomic(o.json_out, j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace));
  }
  if (!o.predictions_out.empty()) write_text_atomic(o.predictions_out, ev.predictions_csv());
  if (!o.figures_dir.empty()) {
    write_evaluation_figures(model, ev, o.figures_dir);
    std::printf("figures written to %s\n", o.figures_dir.c_str());
  }
  return 0;
}

Command add_evaluate(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<EvaluateCommandOptions>();
  auto* sub = app.add_subcommand("evaluate", "Measure a model on a labelled dataset folder");
  sub->add_option("--model", o->model, "model file")->required();
  sub->add_option("--data", o->data,
                  "folder with Parasitized/ and Uninfected/, or a run's split.csv (its test rows)")
      ->capture_default_str();
  sub->add_option("--tta", o->tta, "flip test-time augmentation: on or off (default: the file's)")
      ->check(CLI::IsMember({"on", "off"}));
  sub->add_option("--json", o->json_out, "also write the full report as JSON to this file");
  sub->add_flag("--strict", o->strict, "treat an unreadable image as an error");
  sub->add_option("--predictions", o->predictions_out,
                  "write one CSV row per image (probability, decision)");
  sub->add_option("--figures", o->figures_dir,
                  "write confusion matrix, ROC, PR, reliability, samples, feature maps, "
                  "architecture here");
  add_operating_point_option(sub, o->operating_point, "the file's own");
  return {sub, [o, &global] { return run_evaluate(*o, global); }};
}

struct PredictOptions {
  std::string model;
  std::vector<std::string> paths;
  std::string operating_point;
  bool json = false;
  bool csv = false;
};

// Exit status 2 when any file could not be classified, so scripts notice.
int run_predict(const PredictOptions& o, const GlobalOptions& global) {
  set_compute_threads(global.threads);
  const Classifier model = Classifier::load(o.model);
  const auto results = predict_files(model, o.paths, model.operating_point(o.operating_point));
  std::cout << format_predictions(results, o.json  ? PredictionFormat::Json
                                           : o.csv ? PredictionFormat::Csv
                                                   : PredictionFormat::Table);
  for (const auto& r : results)
    if (!r.error.empty()) return 2;
  return 0;
}

Command add_predict(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<PredictOptions>();
  auto* sub = app.add_subcommand("predict", "Classify images (files or folders)");
  sub->add_option("--model", o->model, "model file")->required();
  sub->add_option("paths", o->paths, "images or folders")->required();
  auto* format = sub->add_option_group("format");
  format->add_flag("--json", o->json, "JSON output");
  format->add_flag("--csv", o->csv, "CSV output");
  format->require_option(0, 1);
  add_operating_point_option(sub, o->operating_point, "the file's own");
  return {sub, [o, &global] { return run_predict(*o, global); }};
}

struct RejectionTestOptions {
  std::string model;
  std::string fields;
  std::vector<std::string> photos = default_photo_dirs();
  std::string cells = default_data_dir();
  std::string out;
  int damaged = 100;
  uint64_t seed = 7;
};

// The share of non-cells Rejected, per kind, and a contact sheet of those that were not.
int run_rejection_test(const RejectionTestOptions& o, const GlobalOptions& global) {
  set_compute_threads(global.threads);
  const Classifier model = Classifier::load(o.model);
  NonCellSources sources;
  sources.fields_dir = o.fields;
  sources.photo_dirs = o.photos;
  sources.damaged_per_kind = static_cast<size_t>(o.damaged);
  sources.seed = o.seed;
  if (!o.cells.empty())
    sources.cells = std::filesystem::path(o.cells).extension() == ".csv"
                        ? read_split_csv(o.cells).test
                        : scan_dataset(o.cells).samples;
  const auto non_cells = make_non_cells(sources);
  std::map<std::string, std::pair<long, long>> per_kind;  // rejected, all
  std::vector<ContactSheetItem> accepted;
  nlohmann::json rows = nlohmann::json::array();
  const OperatingPoint& point = model.operating_point();
  for (size_t first = 0; first < non_cells.size(); first += 32) {
    std::vector<cv::Mat> images;
    for (size_t i = first; i < std::min(non_cells.size(), first + 32); ++i)
      images.push_back(non_cells[i].bgr);
    const auto assessed = assess_cells(model, images, point);
    for (size_t k = 0; k < assessed.size(); ++k) {
      const NonCell& nc = non_cells[first + k];
      const CellDecision& d = assessed[k].decision;
      auto& [rejected, all] = per_kind[nc.kind];
      ++all;
      rejected += d.rejected();
      rows.push_back(
          {{"kind", nc.kind}, {"name", nc.name}, {"decision", d.decision}, {"reason", d.reason}});
      if (!d.rejected() && !o.out.empty()) {
        const std::string path = o.out + "/accepted/" + std::to_string(accepted.size()) + ".png";
        std::filesystem::create_directories(o.out + "/accepted");
        write_text_atomic(path, encode_png(nc.bgr));
        accepted.push_back({path, nc.kind + ": " + d.decision, nc.name.substr(0, 18), true});
      }
    }
  }
  long rejected = 0, all = 0;
  std::printf("%-14s %8s %8s %9s\n", "kind", "images", "Rejected", "share");
  for (const auto& [kind, counts] : per_kind) {
    std::printf("%-14s %8ld %8ld %8.2f%%\n", kind.c_str(), counts.second, counts.first,
                100.0 * counts.first / counts.second);
    rejected += counts.first;
    all += counts.second;
  }
  std::printf("%-14s %8ld %8ld %8.2f%%\n", "all", all, rejected,
              100.0 * rejected / std::max(1L, all));
  if (!o.out.empty()) {
    write_text_atomic(o.out + "/non_cells.json", rows.dump(1));
    draw_contact_sheet(accepted, 10, std::to_string(accepted.size()) + " non-cells not Rejected",
                       o.out + "/accepted.png");
    std::printf("details: %s/non_cells.json, %s/accepted.png\n", o.out.c_str(), o.out.c_str());
  }
  return 0;
}

Command add_rejection_test(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<RejectionTestOptions>();
  auto* sub = app.add_subcommand(
      "rejection-test",
      "How many images that are not a red cell the model Rejects: synthetic images, smear fields "
      "and field crops without a cell, sample photographs, damaged cells");
  sub->add_option("--model", o->model, "model file")->required()->check(CLI::ExistingFile);
  sub->add_option("--fields", o->fields, "annotated smear fields (whole fields and empty crops)")
      ->check(CLI::ExistingDirectory);
  sub->add_option("--photos", o->photos, "folders of photographs")->capture_default_str();
  sub->add_option("--cells", o->cells,
                  "real cells to damage: a dataset folder, or a split.csv's test part")
      ->capture_default_str();
  add_number(sub, "--damaged", o->damaged, 0, 100000, "cells damaged per kind of damage");
  add_number(sub, "--seed", o->seed, 0, kMaxSeed, "seed of the set (cells, cuts, blur, crops)");
  sub->add_option("--out", o->out, "folder for non_cells.json and a sheet of those accepted");
  return {sub, [o, &global] { return run_rejection_test(*o, global); }};
}

}  // namespace

std::vector<Command> add_evaluate_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_evaluate(app, global), add_predict(app, global), add_rejection_test(app, global)};
}

}  // namespace malaria::cli
