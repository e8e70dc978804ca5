// screen and evaluate-fields: whole smear fields, from photo to parasitemia.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>

#include "commands.h"
#include "data/dataset.h"
#include "data/image.h"
#include "detect/detector.h"
#include "detect/detector_targets.h"
#include "detect/detector_training.h"
#include "explain/explanation.h"
#include "field/field_evaluation.h"
#include "field/screening.h"
#include "model/classifier.h"
#include "serve/http_util.h"
#include "store/slide_store.h"
#include "util/files.h"
#include "util/progress.h"
#include "util/text.h"

namespace malaria::cli {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

struct ScreenOptions {
  std::string model;
  double rbc_per_ul = 0;  // 0: not given (the default count is assumed)
  SegmenterChoice segmenter;
  std::vector<std::string> inputs;
  std::string slide;
  std::string out_dir;
  std::string json_file;
  std::string operating_point;
  std::string store;  // records to keep the slide in; empty: none
  SlideInfo info;     // the slide's details for the records
};

// The field images named on the command line: files as given, folders' images sorted by name.
// A folder that cannot be listed is an error for that folder alone; a file that cannot be read
// (a link loop among them) is reported when it is read. Returns 2 when any input failed.
int field_files(const std::vector<std::string>& inputs, std::vector<std::string>& files) {
  int status = 0;
  for (const auto& input : inputs) {
    std::error_code ec;
    if (!fs::is_directory(input, ec)) {
      files.push_back(input);
      continue;
    }
    std::vector<std::string> found;
    fs::directory_iterator it(input, ec), end;
    for (; !ec && it != end; it.increment(ec)) {
      std::error_code entry_error;  // a link loop here is that file's error, reported when read
      if (is_image_file(it->path()) && !it->is_directory(entry_error))
        found.push_back(it->path().string());
    }
    if (ec || found.empty()) {
      std::fprintf(stderr, "error: %s: %s\n", input.c_str(),
                   ec ? ("cannot list folder (" + ec.message() + ")").c_str()
                      : "no field images (PNG, JPEG, BMP, TIFF)");
      status = 2;
    }
    std::sort(found.begin(), found.end());
    files.insert(files.end(), found.begin(), found.end());
  }
  return status;
}

std::string slide_name(const ScreenOptions& o) {
  if (!o.slide.empty()) return o.slide;
  if (o.inputs.size() != 1 || !fs::is_directory(o.inputs[0])) return "slide";
  fs::path dir = fs::path(o.inputs[0]).lexically_normal();
  if (dir.filename().empty()) dir = dir.parent_path();  // "fields/" names "fields"
  return dir.filename().string();
}

std::string fields_csv(const std::vector<ScreenedField>& fields) {
  std::ostringstream csv;
  csv << "file,width,height,quality,cells,parasitized,inconclusive,excluded,parasitemia_percent,"
         "ci_low,ci_high,ring,trophozoite,schizont,gametocyte,seconds,quality_reasons\n";
  for (const auto& f : fields) {
    const Interval ci = f.summary.interval();
    const auto& st = f.summary.stages;
    char row[320];
    if (f.quality.failed())  // no figure for a field that cannot be counted
      std::snprintf(row, sizeof row, ",%d,%d,fail,,,,,,,,,,,,%.4f,", f.width, f.height,
                    f.segment_seconds + f.classify_seconds);
    else if (f.summary.staged)
      std::snprintf(
          row, sizeof row, ",%d,%d,%s,%zu,%zu,%zu,%zu,%.4f,%.4f,%.4f,%zu,%zu,%zu,%zu,%.4f,",
          f.width, f.height, f.quality.verdict.c_str(), f.summary.cells, f.summary.parasitized,
          f.summary.inconclusive, f.summary.excluded, f.summary.percent(), 100 * ci.low,
          100 * ci.high, st[0], st[1], st[2], st[3], f.segment_seconds + f.classify_seconds);
    else  // the classical segmentation tells no stages
      std::snprintf(row, sizeof row, ",%d,%d,%s,%zu,%zu,%zu,%zu,%.4f,%.4f,%.4f,,,,,%.4f,", f.width,
                    f.height, f.quality.verdict.c_str(), f.summary.cells, f.summary.parasitized,
                    f.summary.inconclusive, f.summary.excluded, f.summary.percent(), 100 * ci.low,
                    100 * ci.high, f.segment_seconds + f.classify_seconds);
    csv << csv_field(f.file) << row << csv_field(join(f.quality.reasons, "; ")) << '\n';
  }
  return csv.str();
}

// The segmenter a command asked for; `detector` keeps the loaded detector alive.
FieldSegmenter make_segmenter(const SegmenterChoice& choice,
                              std::unique_ptr<CellDetector>& detector) {
  if (choice.segmenter == "classic") return classic_segmenter();
  const std::string file = choice.detector.empty() ? default_detector_model() : choice.detector;
  if (file.empty())
    throw std::runtime_error(
        "no cell detector: pass --detector FILE, or --segmenter classic (this build has no "
        "bundled detector)");
  detector = std::make_unique<CellDetector>(CellDetector::load(file));
  return detector_segmenter(*detector);
}

// The field model to use: --model, or the bundled one.
Classifier load_field_model(const std::string& path) {
  const std::string file = path.empty() ? default_field_model() : path;
  if (file.empty())
    throw std::runtime_error("no field model: pass --model FILE (this build has no bundled one)");
  return Classifier::load(file);
}

// The people-readable result: a line per field, the slide's figure, the corrected one,
// parasites per microlitre and the warnings.
void print_screening(const std::vector<ScreenedField>& fields, const ParasitemiaSummary& running,
                     const json& result) {
  for (const auto& f : fields) {
    const std::string name = printable(fs::path(f.file).filename().string(), 40);
    if (f.quality.failed())
      std::printf("%-40s not counted (quality: fail): %s\n", name.c_str(),
                  join(f.quality.reasons, "; ").c_str());
    else
      std::printf("%-40s %5zu cells %4zu parasitized %4zu inconclusive  %6.2f%%%s\n", name.c_str(),
                  f.summary.cells, f.summary.parasitized, f.summary.inconclusive,
                  f.summary.percent(), f.quality.verdict == "warn" ? "  (quality: warn)" : "");
  }
  const json& s = result["slide"];
  if (running.cells == 0) {
    std::printf("slide %s: %zu fields, none usable: no parasitemia\n",
                printable(s.value("name", ""), 60).c_str(), fields.size());
  } else {
    std::printf(
        "slide %s: %zu of %zu fields usable, %zu cells, %zu parasitized, %zu inconclusive: "
        "parasitemia %.3f%% (95%% CI %.3f-%.3f%%)\n",
        printable(s.value("name", ""), 60).c_str(), s.value("fields_used", size_t{0}),
        fields.size(), running.cells, running.parasitized, running.inconclusive, running.percent(),
        s.value("ci_low", 0.0), s.value("ci_high", 0.0));
  }
  if (s["corrected"].is_object())
    std::printf(
        "corrected for the model's error rates (false calls %.3f%% of uninfected cells, "
        "sensitivity %.1f%%): %.3f%% (95%% CI %.3f-%.3f%%)\n",
        100 * s["corrected"].value("false_positive_rate", 0.0),
        100 * s["corrected"].value("sensitivity", 0.0),
        s["corrected"].value("parasitemia_percent", 0.0), s["corrected"].value("ci_low", 0.0),
        s["corrected"].value("ci_high", 0.0));
  if (s["parasites_per_ul"].is_object()) {
    const json& u = s["parasites_per_ul"];
    std::printf("parasites per microlitre: %.0f (95%% CI %.0f-%.0f) at %.0f red cells/uL%s\n",
                u.value("value", 0.0), u.value("ci_low", 0.0), u.value("ci_high", 0.0),
                u.value("rbc_per_ul", 0.0),
                u.value("rbc_per_ul_assumed", true)
                    ? " (assumed; give the patient's count with --rbc-per-ul)"
                    : "");
  }
  for (const auto& warning : s["warnings"])
    std::printf("warning: %s\n", warning.get<std::string>().c_str());
}

int run_screen(ScreenOptions& o, const GlobalOptions& global) {
  set_compute_threads(global.threads);
  const Classifier model = load_field_model(o.model);
  const OperatingPoint& point = model.operating_point(
      o.operating_point.empty() ? field_operating_point(model) : o.operating_point);
  std::unique_ptr<CellDetector> detector;
  const FieldSegmenter segmenter = make_segmenter(o.segmenter, detector);
  std::vector<std::string> files;
  int status = field_files(o.inputs, files);
  if (!o.out_dir.empty()) fs::create_directories(o.out_dir);
  std::vector<ScreenedField> fields;
  // With --store, the slide is created first and each field stored once screened: an
  // interrupted run keeps the fields it finished.
  std::unique_ptr<SlideStore> store;
  Slide slide;
  const User by{"cli", "cli", kRoleAdmin, {}, "", ""};
  std::string model_id;
  if (!o.store.empty()) {
    store = std::make_unique<SlideStore>(o.store == "default" ? default_store_url() : o.store);
    o.info.sample_id = slide_name(o);
    if (o.rbc_per_ul > 0) o.info.rbc_per_ul = o.rbc_per_ul;
    slide = store->create_slide(SlideInfo::from_json(o.info.to_json()), by);  // validated
    model_id = model_file_id(model.arch(), o.model.empty() ? default_field_model() : o.model);
    if (detector) model_id += "+detector";
  }
  ProgressBar bar(files.size(), "screening", "field");
  ParasitemiaSummary running;
  for (const auto& file : files) {
    try {
      const cv::Mat bgr = read_image(file, kFieldImageLimits);
      fields.push_back(screen_field(model, point, segmenter, bgr, file));
      if (!fields.back().quality.failed()) running += fields.back().summary;
      if (store) {
        const std::string bytes = read_regular_file(file, kMaxFieldFileBytes);
        store->add_field(slide.id,
                         field_record(fields.back(), bytes,
                                      sniff_image_format(bytes.data(), bytes.size()), model_id),
                         "", by);
      }
      if (!o.out_dir.empty())
        write_text_atomic(o.out_dir + "/" + fs::path(file).stem().string() + "_screen.png",
                          encode_png(draw_screening_overlay(bgr, fields.back())));
    } catch (const ImageError& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      status = 2;
    }
    char live[96];
    std::snprintf(live, sizeof live, "%zu cells, %zu parasitized", running.cells,
                  running.parasitized);
    bar.update(fields.size(), live);
  }
  bar.finish();
  SlideOptions slide_options;
  slide_options.error_rates = FieldErrorRates::from_json(model.metadata());
  slide_options.segmenter = segmenter.name;
  slide_options.operating_point =
      o.operating_point.empty() ? field_operating_point(model) : o.operating_point;
  if (o.rbc_per_ul > 0) slide_options.rbc_per_ul = o.rbc_per_ul, slide_options.rbc_assumed = false;
  const json result = screening_json(fields, slide_name(o), slide_options);
  if (!o.out_dir.empty()) {
    write_text_atomic(o.out_dir + "/fields.csv", fields_csv(fields));
    write_text_atomic(o.out_dir + "/screening.json", result.dump(2));
  }
  if (o.json_file == "-")
    std::cout << result.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
  else if (!o.json_file.empty())
    write_text_atomic(o.json_file, result.dump(2, ' ', false, json::error_handler_t::replace));
  if (o.json_file != "-") print_screening(fields, running, result);
  if (store)
    std::fprintf(stderr, "stored as slide %s in %s (malaria slides show %s)\n", slide.id.c_str(),
                 store->database().describe().c_str(), slide.id.c_str());
  return status;
}

Command add_screen(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<ScreenOptions>();
  auto* sub = app.add_subcommand(
      "screen", "Find every red cell in smear-field photos, classify it, report parasitemia");
  sub->add_option("fields", o->inputs, "field images, or folders of them (one slide)")->required();
  sub->add_option("--model", o->model, "model file (default: the bundled field model)");
  sub->add_option("--slide", o->slide, "slide name (default: the folder's name)");
  sub->add_option("--out", o->out_dir,
                  "folder for FIELD_screen.png overlays, fields.csv and screening.json");
  sub->add_option("--json", o->json_file, "write the result as JSON to this file ('-': stdout)");
  add_operating_point_option(sub, o->operating_point, "parasitemia if the file has it");
  add_segmenter_options(sub, o->segmenter);
  add_number(sub, "--rbc-per-ul", o->rbc_per_ul, 1e5, 1e7,
             "the patient's red cells per microlitre, for parasites/uL (default: 5,000,000 "
             "assumed, and said so)");
  sub->add_option("--store", o->store,
                  "keep the slide and its fields in these records (sqlite:PATH, "
                  "postgresql://..., or 'default' for the embedded default)");
  sub->add_option("--site", o->info.site, "with --store: the slide's site");
  sub->add_option("--operator", o->info.operator_name, "with --store: who made the slide");
  sub->add_option("--stain", o->info.stain, "with --store: the stain");
  sub->add_option("--collected-on", o->info.collected_on, "with --store: YYYY-MM-DD");
  return {sub, [o, &global] { return run_screen(*o, global); }};
}

struct EvaluateFieldsOptions {
  std::string model;
  std::string part = "test";
  std::string write_model;
  SegmenterChoice segmenter;
  std::string fields = MALARIA_DEFAULT_FIELDS;
  std::string split;
  std::string out_dir;
  std::string operating_point;
};

int run_evaluate_fields(const EvaluateFieldsOptions& o, const GlobalOptions& global) {
  set_compute_threads(global.threads);
  const Classifier model = load_field_model(o.model);
  FieldEvaluationOptions options;
  options.operating_point = o.operating_point;
  options.split_csv = o.split;
  options.split_part = o.part;
  if (!o.write_model.empty()) {
    if (o.split.empty() || o.part != "val")
      throw CLI::ValidationError("--write-model",
                                 "error rates are chosen on validation fields only: give --split "
                                 "and --part val");
    options.model_path = o.model.empty() ? default_field_model() : o.model;
    options.write_model = o.write_model;
  }
  options.out_dir = o.out_dir;
  std::unique_ptr<CellDetector> detector;
  const FieldSegmenter segmenter = make_segmenter(o.segmenter, detector);
  const FieldEvaluation ev = evaluate_fields(model, segmenter, o.fields, options);
  std::printf("%s", ev.to_text().c_str());
  return 0;
}

Command add_evaluate_fields(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<EvaluateFieldsOptions>();
  auto* sub = app.add_subcommand(
      "evaluate-fields",
      "Detection recall, cell metrics and parasitemia error on annotated smear fields");
  sub->add_option("--model", o->model, "model file (default: the bundled field model)");
  sub->add_option("--fields", o->fields, "folder with annotations.json or annotations.csv")
      ->capture_default_str();
  sub->add_option("--split", o->split,
                  "a run's split.csv: evaluate only the field groups of one part (--part)");
  sub->add_option("--part", o->part, "the split's part to evaluate")
      ->check(CLI::IsMember({"test", "val"}))
      ->capture_default_str();
  sub->add_option("--write-model", o->write_model,
                  "with --part val: write a copy of the field model holding the error rates "
                  "measured here, which screening corrects its counts with");
  sub->add_option("--out", o->out_dir, "folder for evaluation.json, report.html and figures");
  add_operating_point_option(sub, o->operating_point, "parasitemia if the file has it");
  add_segmenter_options(sub, o->segmenter);
  return {sub, [o, &global] { return run_evaluate_fields(*o, global); }};
}

Command add_train_detector(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<DetectorTrainOptions>();
  o->fields_dir = MALARIA_DEFAULT_FIELDS;
  auto* sub = app.add_subcommand(
      "train-detector",
      "Train the red-cell detector (cells and parasite stages) on annotated fields");
  sub->add_option("--fields", o->fields_dir, "folder with annotations.json or annotations.csv")
      ->capture_default_str();
  sub->add_option("--out", o->out_dir, "run folder (detector.pt, checkpoint/, figures)")
      ->required();
  sub->add_option("--split", o->split_csv,
                  "a cell run's split.csv: hold out the same field groups (default: dealt by "
                  "--seed)");
  add_number(sub, "--val-groups", o->val_groups, 1, 1000,
             "validation field groups without --split");
  add_number(sub, "--test-groups", o->test_groups, 0, 1000, "test field groups without --split");
  add_number(sub, "--steps", o->steps, 1, 10000000, "optimizer steps");
  add_number(sub, "--batch", o->batch, 1, 256, "windows per step");
  add_number(sub, "--window", o->window, 64, 1024,
             "window side in detector pixels (multiple of 16)");
  add_number(sub, "--width", o->width, 8, 256, "network width (channels at stride 4)");
  add_number(sub, "--input-scale", o->input_scale, 0.05, 1.0, "field pixels to detector pixels");
  add_number(sub, "--scale-jitter", o->scale_jitter, 0.0, 0.6, "random rescaling, +- this share");
  add_number(sub, "--augment", o->augment, 0.0, 2.0, "photometric damage strength (0: none)");
  add_number(sub, "--lr", o->learning_rate, 1e-6, 1.0, "peak learning rate");
  sub->add_flag("!--no-ignore", o->ignore_unboxed,
                "teach unboxed cell-like regions as background (default: leave them out of the "
                "loss)");
  add_number(sub, "--seed", o->seed, 0, kMaxSeed, "random seed");
  auto quiet = std::make_shared<bool>(false);
  sub->add_flag("--quiet", *quiet, "no progress bars");
  return {sub, [o, quiet, &global] {
            o->progress = !*quiet;
            if (o->window % kDetectorAlign)
              throw CLI::ValidationError("--window", "must be a multiple of 16");
            o->threads = global.threads;

            const auto meta = train_detector(*o);
            std::printf("%s\n", meta.dump(2).c_str());
            return 0;
          }};
}

}  // namespace

std::string default_detector_model() {
  const char* env = std::getenv("MALARIA_DETECTOR_MODEL");
  if (env && *env) return env;
  return fs::is_regular_file(MALARIA_DETECTOR_MODEL) ? MALARIA_DETECTOR_MODEL : "";
}

void add_segmenter_options(CLI::App* app, SegmenterChoice& choice) {
  app->add_option("--segmenter", choice.segmenter,
                  "how red cells are found: the learned detector, or the classical "
                  "segmentation (Otsu and distance-transform split) for comparison")
      ->check(CLI::IsMember({"detector", "classic"}))
      ->capture_default_str();
  app->add_option("--detector", choice.detector, "detector file (default: the bundled one)");
}

std::string default_field_model() {
  const char* env = std::getenv("MALARIA_FIELD_MODEL");
  if (env && *env) return env;
  return fs::is_regular_file(MALARIA_FIELD_MODEL) ? MALARIA_FIELD_MODEL : "";
}

std::vector<Command> add_field_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_screen(app, global), add_evaluate_fields(app, global),
          add_train_detector(app, global)};
}

}  // namespace malaria::cli
