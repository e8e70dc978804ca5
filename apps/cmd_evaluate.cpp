// Evaluation subcommands: evaluate (labelled folder), predict (any images).
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.h"
#include "data/dataset.h"
#include "eval/decision.h"
#include "eval/evaluate.h"
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

}  // namespace

std::vector<Command> add_evaluate_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_evaluate(app, global), add_predict(app, global)};
}

}  // namespace malaria::cli
