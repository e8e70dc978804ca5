// `malaria`: the command-line entry point. Each subcommand wires options to the library.
#include <spdlog/spdlog.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "data/download.h"
#include "data/image.h"
#include "eval/decision.h"
#include "eval/evaluate.h"
#include "model/architecture.h"
#include "model/classifier.h"
#include "report/figures.h"
#include "report/report.h"
#include "serve/server.h"
#include "train/trainer.h"
#include "util/files.h"

namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace malaria;

namespace {

std::string default_data_dir() {
  if (const char* env = std::getenv("MALARIA_DATA")) return env;
  return "../shared/data/cell_images";
}

const char* kGetData =
    "The NIH malaria dataset (27,558 cell images) is public:\n"
    "  https://data.lhncbc.nlm.nih.gov/public/Malaria/cell_images.zip\n"
    "Unzip it and point the tool at the folder holding Parasitized/ and Uninfected/, with --data "
    "DIR\n"
    "or the MALARIA_DATA environment variable.";

int cmd_inspect(const std::string& data, bool strict, bool as_json) {
  ScanOptions scan;
  scan.strict = strict;
  const Dataset ds = scan_dataset(data, scan);
  const auto& s = ds.summary;
  if (as_json) {
    std::cout << s.to_json().dump(2) << '\n';
    return 0;
  }
  std::printf("%s\n", data.c_str());
  std::printf(
      "  Parasitized  %7zu images\n  Uninfected   %7zu images\n  total        %7zu images\n",
      s.per_class[kParasitized], s.per_class[kUninfected], s.per_class[0] + s.per_class[1]);
  std::printf("  patients     %7zu\n", s.patients);
  std::printf("  width        %d-%d px\n  height       %d-%d px\n", s.min_width, s.max_width,
              s.min_height, s.max_height);
  std::printf("  unreadable   %7zu\n", s.unreadable.size());
  for (const auto& u : s.unreadable) std::printf("    %s\n", u.c_str());
  return 0;
}

void print_model_info(const json& meta) {
  auto get = [&](const char* key) {
    return meta.contains(key) ? meta[key].dump() : std::string("-");
  };
  std::printf("model        %s\n", meta.value("name", "").c_str());
  std::printf("architecture %s at %dx%d, %s parameters\n", meta.value("arch", "").c_str(),
              meta.value("image_size", 0), meta.value("image_size", 0), get("parameters").c_str());
  std::printf("classes      %s (positive: %s), threshold %.2f\n", get("class_names").c_str(),
              meta.value("positive_class", "").c_str(), meta.value("threshold", 0.5));
  std::printf("created      %s by malaria %s\n", meta.value("created", "").c_str(),
              meta.contains("program") ? meta["program"].value("version", "").c_str() : "");
  if (meta.contains("data")) {
    const auto& d = meta["data"];
    std::printf("data         %s, split %s (seed %s)\n", d.value("root", "").c_str(),
                d.value("split_mode", "").c_str(),
                d.contains("split_seed") ? d["split_seed"].dump().c_str() : "-");
  }
  if (meta.contains("validation"))
    std::printf("validation   %s\n", meta["validation"].dump().c_str());
  if (meta.contains("test")) std::printf("test         %s\n", meta["test"].dump().c_str());
  if (meta.contains("training")) std::printf("training     %s\n", meta["training"].dump().c_str());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"malaria: detect malaria parasites in images of single red blood cells"};
  app.require_subcommand(1);
  app.fallthrough();
  app.set_version_flag("--version", MALARIA_VERSION);
  int threads = 0;
  app.add_option("--threads", threads, "compute threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);

  // inspect
  auto* inspect =
      app.add_subcommand("inspect", "Count images, classes and patients in a dataset folder");
  std::string data_dir = default_data_dir();
  bool strict = false, as_json = false;
  inspect->add_option("--data", data_dir, "folder with Parasitized/ and Uninfected/")
      ->capture_default_str();
  inspect->add_flag("--strict", strict, "treat an unreadable image as an error");
  inspect->add_flag("--json", as_json, "print JSON");

  // train
  auto* train = app.add_subcommand("train", "Train a model and evaluate it on a held-out split");
  TrainOptions topt;
  topt.data_dir = default_data_dir();
  std::string split_mode = "patient", resume_dir;
  std::vector<double> fractions = {0.6, 0.2, 0.2};
  bool no_augment = false;
  train->add_option("--data", topt.data_dir, "folder with Parasitized/ and Uninfected/")
      ->capture_default_str();
  train->add_option("--out", topt.out_dir, "run folder for the model, history, split and reports");
  train->add_option("--resume", resume_dir, "continue the interrupted run in this folder");
  train->add_option("--arch", topt.arch, "network")
      ->check(CLI::IsMember(architecture_names()))
      ->capture_default_str();
  train->add_option("--image-size", topt.image_size, "side of the square network input")
      ->capture_default_str();
  train->add_option("--epochs", topt.epochs)->capture_default_str()->check(CLI::PositiveNumber);
  train->add_option("--batch-size", topt.batch_size)
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  train->add_option("--lr", topt.learning_rate, "Adam learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  train->add_option("--lr-schedule", topt.lr_schedule, "cosine (decay to 1%) or constant")
      ->check(CLI::IsMember({"cosine", "constant"}))
      ->capture_default_str();
  train
      ->add_option("--patience", topt.patience,
                   "early stopping: epochs without a better validation loss")
      ->capture_default_str();
  train->add_option("--split", split_mode, "patient (no patient in two splits) or random")
      ->check(CLI::IsMember({"patient", "random"}))
      ->capture_default_str();
  train->add_option("--fractions", fractions, "train, validation and test shares")
      ->expected(3)
      ->capture_default_str();
  train->add_option("--seed", topt.seed, "seed for split, shuffling, augmentation and weights")
      ->capture_default_str();
  train->add_option("--workers", topt.workers, "data-loading threads")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  train->add_flag("--cache", topt.cache, "keep decoded, resized images in RAM");
  train->add_flag("--strict", topt.strict, "stop on an unreadable image instead of skipping it");
  train->add_option("--rotation", topt.augment.rotation_deg, "augmentation: max rotation, degrees")
      ->capture_default_str();
  train->add_option("--zoom", topt.augment.zoom, "augmentation: zoom range (0.2: 0.8-1.2)")
      ->capture_default_str();
  train
      ->add_option(
          "--color-jitter", topt.augment.color_jitter,
          "augmentation: scale each colour channel by 1 +/- this (slide-to-slide stain; 0: off)")
      ->capture_default_str();
  train->add_flag("!--no-hflip", topt.augment.horizontal_flip, "augmentation: no horizontal flips");
  train->add_flag("!--no-vflip", topt.augment.vertical_flip, "augmentation: no vertical flips");
  train->add_flag("--no-augment", no_augment, "no augmentation at all");
  train->add_option("--time-limit", topt.time_limit_minutes,
                    "minutes; stop after the epoch that crosses it");
  train->add_option("--max-steps", topt.max_steps,
                    "at most this many batches per epoch (benchmarks)");
  train
      ->add_flag("--bf16,!--no-bf16", topt.bf16,
                 "bfloat16 autocast in the forward pass (default: on when the CPU has AVX-512 BF16 "
                 "or AMX)")
      ->capture_default_str();
  train->add_flag("--quiet", topt.quiet, "no progress bars");

  // evaluate
  auto* evaluate = app.add_subcommand("evaluate", "Measure a model on a labelled dataset folder");
  std::string model_path, json_out;
  std::string eval_data = default_data_dir();
  evaluate->add_option("--model", model_path, "model file")->required();
  evaluate->add_option("--data", eval_data, "folder with Parasitized/ and Uninfected/")
      ->capture_default_str();
  evaluate->add_option("--json", json_out, "also write the full report as JSON to this file");
  evaluate->add_flag("--strict", strict, "treat an unreadable image as an error");
  std::string figures_dir, predictions_out;
  evaluate->add_option("--predictions", predictions_out,
                       "write one CSV row per image (probability, decision)");
  evaluate->add_option("--figures", figures_dir,
                       "write confusion matrix, ROC, PR, samples, feature maps, architecture here");

  // feature-maps
  auto* fmaps = app.add_subcommand("feature-maps", "Draw a layer's activations for one image");
  std::string fm_image, fm_out = "feature_maps.png";
  int fm_layer = 1;
  fmaps->add_option("--model", model_path, "model file")->required();
  fmaps->add_option("--image", fm_image, "cell image")->required();
  fmaps->add_option("--layer", fm_layer, "convolution layer, 1 = first")->capture_default_str();
  fmaps->add_option("--out", fm_out, "PNG to write")->capture_default_str();

  // download-data
  auto* download = app.add_subcommand("download-data",
                                      "Download, verify and unpack the NIH cell_images dataset");
  DownloadOptions dopt;
  download->add_option("--out", dopt.out_dir, "folder to put cell_images/ in")->required();
  download->add_option("--url", dopt.url, "source of the archive")->capture_default_str();
  download->add_option("--sha256", dopt.expected_sha256, "expected SHA-256 (empty: skip)")
      ->capture_default_str();
  download->add_option("--bytes", dopt.expected_bytes, "expected size (0: skip)")
      ->capture_default_str();
  download->add_flag("--keep-archive", dopt.keep_archive, "keep cell_images.zip after unpacking");

  // report
  auto* report = app.add_subcommand("report", "Write RUN_DIR/report.html from a training run");
  std::string report_dir;
  report->add_option("run_dir", report_dir, "training run folder")->required();

  // predict
  auto* predict = app.add_subcommand("predict", "Classify images (files or folders)");
  std::vector<std::string> inputs;
  std::string format = "table";
  predict->add_option("--model", model_path, "model file")->required();
  predict->add_option("paths", inputs, "images or folders")->required();
  auto* fmt = predict->add_option_group("format");
  bool pjson = false, pcsv = false;
  fmt->add_flag("--json", pjson, "JSON output");
  fmt->add_flag("--csv", pcsv, "CSV output");
  fmt->require_option(0, 1);

  // info
  auto* info = app.add_subcommand("info", "Show the metadata stored in a model file");
  std::string info_path;
  bool info_json = false;
  info->add_option("model", info_path, "model file")->required();
  info->add_flag("--json", info_json, "print the metadata as JSON");

  // summary
  auto* summary =
      app.add_subcommand("summary", "Layer table with output shapes and parameter counts");
  std::string sum_arch = default_architecture();
  int sum_size = 64;
  summary->add_option("--model", model_path, "model file (its architecture and size)");
  summary->add_option("--arch", sum_arch)
      ->check(CLI::IsMember(architecture_names()))
      ->capture_default_str();
  summary->add_option("--image-size", sum_size)->capture_default_str();

  // serve
  auto* serve =
      app.add_subcommand("serve", "Serve the upload page, JSON API and API docs over HTTP");
  ServerOptions sopt;
  double band = -1;
  serve->add_option("--model", sopt.model_path, "model file")->required();
  serve->add_option("--host", sopt.host, "address to bind (loopback unless told otherwise)")
      ->capture_default_str();
  serve->add_option("--port", sopt.port)->capture_default_str()->check(CLI::Range(0, 65535));
  serve->add_option("--max-batch", sopt.max_batch, "images per forward pass")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  serve->add_option("--batch-wait-ms", sopt.batch_wait_ms, "extra wait to fill a batch")
      ->capture_default_str();
  serve->add_option("--queue", sopt.queue_capacity, "images allowed to wait before 503")
      ->capture_default_str();
  serve
      ->add_option("--max-connections", sopt.max_connections,
                   "open connections at once (more are refused)")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  serve
      ->add_option("--header-timeout", sopt.header_timeout_s,
                   "seconds a client has to send a request's headers")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  serve->add_option("--max-upload-mb", sopt.max_upload_mb, "largest request body")
      ->capture_default_str();
  serve->add_option("--max-files", sopt.max_files, "most images in one request")
      ->capture_default_str();
  serve->add_option("--api-key", sopt.api_key,
                    "require 'Authorization: Bearer KEY' on /api/ routes");
  serve->add_option("--cors-origin", sopt.cors_origin,
                    "allow this origin to call the API from a browser");
  serve->add_option("--inconclusive-band", band,
                    "|p - threshold| below this is Inconclusive (default: model's, 0.15)");

  CLI11_PARSE(app, argc, argv);

  try {
    if (*serve) {
      sopt.compute_threads = threads;
      sopt.inconclusive_band = band;
      return run_server(sopt);
    }
    set_compute_threads(threads);
    if (*inspect) return cmd_inspect(data_dir, strict, as_json);

    if (*train) {
      TrainOutcome outcome;
      if (!resume_dir.empty()) {
        outcome = resume_training(resume_dir, threads);
      } else {
        if (topt.out_dir.empty())
          throw std::invalid_argument("--out RUN_DIR is required (or --resume RUN_DIR)");
        topt.split = parse_split_mode(split_mode);
        topt.fractions = {fractions[0], fractions[1], fractions[2]};
        topt.threads = threads;
        if (no_augment) topt.augment = AugmentConfig::none();
        outcome = run_training(topt);
      }
      return outcome.interrupted ? 130 : 0;
    }

    if (*evaluate) {
      const Classifier model = Classifier::load(model_path);
      ScanOptions scan;
      scan.strict = strict;
      const Dataset ds = scan_dataset(eval_data, scan);
      const Evaluation ev = evaluate_model(model, ds.samples);
      std::printf("Model %s on %s\n%s", model_path.c_str(), eval_data.c_str(),
                  ev.to_text().c_str());
      if (!json_out.empty()) {
        json j = ev.to_json();
        j["model"] = model_path;
        j["data"] = ds.summary.to_json();
        write_text_atomic(json_out, j.dump(2));
      }
      if (!predictions_out.empty())
        write_text_atomic(predictions_out, ev.predictions_csv(kDefaultInconclusiveBand));
      if (!figures_dir.empty()) {
        write_evaluation_figures(model, ev, figures_dir);
        std::printf("figures written to %s\n", figures_dir.c_str());
      }
      return 0;
    }

    if (*predict) {
      const Classifier model = Classifier::load(model_path);
      const auto results = predict_files(model, inputs);
      int failures = 0;
      if (pjson) {
        json arr = json::array();
        for (const auto& r : results) {
          if (r.error.empty())
            arr.push_back(
                {{"path", r.path}, {"label", r.label}, {"probability_parasitized", r.probability}});
          else
            arr.push_back({{"path", r.path}, {"error", r.error}});
        }
        std::cout << arr.dump(2) << '\n';
      } else if (pcsv) {
        std::printf("path,label,probability_parasitized,error\n");
        for (const auto& r : results)
          std::printf("\"%s\",%s,%s,\"%s\"\n", r.path.c_str(), r.label.c_str(),
                      r.error.empty() ? std::to_string(r.probability).c_str() : "",
                      r.error.c_str());
      } else {
        std::printf("%-12s %12s  %s\n", "label", "P(parasit.)", "path");
        for (const auto& r : results) {
          if (r.error.empty())
            std::printf("%-12s %12.4f  %s\n", r.label.c_str(), r.probability, r.path.c_str());
          else
            std::printf("%-12s %12s  %s\n", "ERROR", "-", r.error.c_str());
        }
      }
      for (const auto& r : results) failures += !r.error.empty();
      return failures ? 2 : 0;
    }

    if (*fmaps) {
      const Classifier model = Classifier::load(model_path);
      const cv::Mat cell = read_image(fm_image);
      draw_feature_maps(cell, model.feature_maps(cell, fm_layer),
                        "Convolution layer " + std::to_string(fm_layer) +
                            " activations: " + fs::path(fm_image).filename().string(),
                        fm_out);
      std::printf("%s\n", fm_out.c_str());
      return 0;
    }

    if (*download) {
      const std::string dir = download_dataset(dopt);
      std::printf("dataset ready: %s\ntrain with: malaria train --data %s --out runs/first\n",
                  dir.c_str(), dir.c_str());
      return 0;
    }

    if (*report) {
      std::printf("%s\n", write_report(report_dir).c_str());
      return 0;
    }

    if (*info) {
      const Classifier model = Classifier::load(info_path);
      if (info_json)
        std::cout << model.metadata().dump(2) << '\n';
      else
        print_model_info(model.metadata());
      return 0;
    }

    if (*summary) {
      if (!model_path.empty()) {
        const Classifier model = Classifier::load(model_path);
        sum_arch = model.arch();
        sum_size = model.image_size();
      }
      std::cout << format_summary(summarize_architecture(sum_arch, sum_size));
      return 0;
    }
  } catch (const DatasetError& e) {
    std::fprintf(stderr, "error: %s\n\n%s\n", e.what(), kGetData);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
  return 0;
}
