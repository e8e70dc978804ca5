// train: split, train, early-stop, evaluate and report; or resume an interrupted run.
#include <memory>

#include "commands.h"
#include "eval/out_of_fold.h"
#include "model/architecture.h"
#include "model/classifier.h"
#include "report/figures.h"
#include "train/cross_validation.h"
#include "train/trainer.h"
#include "util/files.h"
#include "util/text.h"

namespace malaria::cli {

namespace {

struct TrainCommandOptions {
  TrainOptions train;
  std::string split_mode = "patient";
  std::string resume_dir;
  std::vector<double> fractions = {0.6, 0.2, 0.2};
  bool no_augment = false;
};

int run_train(TrainCommandOptions o, const GlobalOptions& global) {
  TrainOutcome outcome;
  set_compute_threads(global.threads);
  if (!o.resume_dir.empty()) {
    outcome = resume_training(o.resume_dir, global.threads);
  } else {
    if (o.train.out_dir.empty())
      throw std::invalid_argument("--out RUN_DIR is required (or --resume RUN_DIR)");
    o.train.split = parse_split_mode(o.split_mode);
    o.train.fractions = {o.fractions[0], o.fractions[1], o.fractions[2]};
    o.train.threads = global.threads;
    if (o.no_augment) o.train.augment = AugmentConfig::none();
    outcome = run_training(o.train);
  }
  return outcome.interrupted ? 130 : 0;
}

void add_schedule_options(CLI::App* sub, TrainOptions& t) {
  sub->add_option("--arch", t.arch, "network")
      ->check(CLI::IsMember(architecture_names()))
      ->capture_default_str();
  add_number(sub, "--image-size", t.image_size, 16, 1024, "side of the square network input");
  add_number(sub, "--epochs", t.epochs, 1, 10000);
  add_number(sub, "--batch-size", t.batch_size, 1, 4096);
  add_number(sub, "--lr", t.learning_rate, 1e-8, 1, "Adam learning rate");
  sub->add_option("--lr-schedule", t.lr_schedule,
                  "cosine (per batch: warm-up, then down to zero) or constant")
      ->check(CLI::IsMember({"cosine", "constant"}))
      ->capture_default_str();
  add_number(sub, "--patience", t.patience, 1, 10000,
             "early stopping: epochs without a better validation loss");
  add_number(sub, "--seed", t.seed, 0, kMaxSeed,
             "seed for split, shuffling, augmentation and weights");
  add_number(sub, "--time-limit", t.time_limit_minutes, 0, 1e6,
             "minutes; stop after the epoch that crosses it (0: none)");
  add_number(sub, "--max-steps", t.max_steps, 0, 1e9,
             "at most this many batches per epoch (benchmarks)");
  sub->add_flag("--bf16,!--no-bf16", t.bf16,
                "bfloat16 autocast in the forward pass (default: on when the CPU has AVX-512 BF16 "
                "or AMX)")
      ->capture_default_str();
  add_number(sub, "--ema", t.ema_decay, 0, 0.99999,
             "keep an exponential moving average of the weights with this decay per step (e.g. "
             "0.999; 0: off); the model file holds the average");
  add_number(sub, "--label-smoothing", t.label_smoothing, 0, 0.5,
             "training targets eps/2 and 1 - eps/2 instead of 0 and 1 (0: off)");
  add_number(sub, "--mixup", t.mixup_alpha, 0, 10,
             "blend each batch with a shuffled copy of itself, weight ~ Beta(a, a) (0: off)");
  sub->add_option("--exclude", t.exclude_list,
                  "file of image paths (one per line) left out of training and validation, never "
                  "out of a test part")
      ->check(CLI::ExistingFile);
  sub->add_flag("--quiet", t.quiet, "no progress bars");
  sub->add_flag("--tta", t.flip_tta,
                "the model averages each cell with its flips (4 passes per cell; calibrated so)");
}

void add_augment_options(CLI::App* sub, TrainCommandOptions& o) {
  auto& a = o.train.augment;
  add_number(sub, "--rotation", a.rotation_deg, 0, 180, "augmentation: max rotation, degrees");
  add_number(sub, "--zoom", a.zoom, 0, 0.9, "augmentation: zoom range (0.2: 0.8-1.2)");
  add_number(
      sub, "--color-jitter", a.color_jitter, 0, 0.9,
      "augmentation: scale each colour channel by 1 +/- this (slide-to-slide stain; 0: off)");
  add_number(sub, "--stain", a.stain, 0, 1,
             "augmentation: stain and camera robustness (hue, saturation, gamma, blur, noise), "
             "strength 0-1 (0: off)");
  sub->add_flag("!--no-hflip", a.horizontal_flip, "augmentation: no horizontal flips");
  sub->add_flag("!--no-vflip", a.vertical_flip, "augmentation: no vertical flips");
  sub->add_flag("--no-augment", o.no_augment, "no augmentation at all");
}

// Where the images come from and how they are loaded: the same for train and cv.
void add_data_options(CLI::App* sub, TrainOptions& t) {
  t.data_dir = default_data_dir();
  sub->add_option("--data", t.data_dir, "folder with Parasitized/ and Uninfected/")
      ->capture_default_str();
  sub->add_option("--fields", t.fields_dir,
                  "annotated smear fields (annotations.json or .csv): their cells join the data "
                  "(--data none: train on them alone)");
  add_number(sub, "--field-positive-repeat", t.field_positive_repeat, 1, 1000,
             "times each infected field cell is shown per epoch");
  add_number(sub, "--workers", t.workers, 0, 64, "data-loading threads");
  sub->add_flag("--cache", t.cache, "keep decoded, resized images in RAM");
}

Command add_train(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<TrainCommandOptions>();
  auto* sub = app.add_subcommand("train", "Train a model and evaluate it on a held-out split");
  add_data_options(sub, o->train);
  sub->add_option("--out", o->train.out_dir,
                  "run folder for the model, history, split and reports");
  sub->add_option("--resume", o->resume_dir, "continue the interrupted run in this folder");
  sub->add_option("--split", o->split_mode, "patient (no patient in two splits) or random")
      ->check(CLI::IsMember({"patient", "random"}))
      ->capture_default_str();
  sub->add_option("--fractions", o->fractions, "train, validation and test shares")
      ->expected(3)
      ->check(number_in(0, 1))
      ->capture_default_str();
  sub->add_flag("--strict", o->train.strict, "stop on an unreadable image instead of skipping it");
  add_schedule_options(sub, o->train);
  add_augment_options(sub, *o);
  return {sub, [o, &global] { return run_train(*o, global); }};
}

Command add_cv(CLI::App& app, const GlobalOptions& global) {
  auto o = std::make_shared<TrainCommandOptions>();
  auto folds = std::make_shared<int>(5);
  auto val_share = std::make_shared<double>(0.25);
  auto final_model = std::make_shared<bool>(false);
  auto* sub = app.add_subcommand(
      "cv", "Patient-level cross-validation: train and test once per fold, report mean ± sd");
  add_data_options(sub, o->train);
  sub->add_option("--out", o->train.out_dir,
                  "folder for the folds (fold-1 ...) and the summary; run the same command "
                  "again to continue an interrupted cross-validation")
      ->required();
  add_number(sub, "--folds", *folds, 2, 50, "folds of whole patients");
  add_number(sub, "--val-share", *val_share, 0, 0.9,
             "share of each fold's training patients kept for validation (0: none; every fold "
             "trains on all its patients for the fixed schedule, and temperature and operating "
             "points come from the other folds' out-of-fold predictions)");
  add_number(sub, "--fold-seed", o->train.fold_seed, 0, kMaxSeed,
             "seed of the patient folds (keep it to compare recipes or seeds on the same folds)");
  sub->add_flag("--final", *final_model,
                "then train OUT/final on every patient with the same recipe, its model file "
                "carrying the cross-validated figures");
  add_schedule_options(sub, o->train);
  add_augment_options(sub, *o);
  return {sub, [o, folds, val_share, final_model, &global] {
            set_compute_threads(global.threads);
            TrainOptions t = o->train;
            t.split = SplitMode::Patient;
            t.fractions = {1 - *val_share, *val_share, 0};
            t.threads = global.threads;
            if (o->no_augment) t.augment = AugmentConfig::none();
            return run_cross_validation(t, *folds, *final_model).interrupted ? 130 : 0;
          }};
}

struct CvReportOptions {
  std::vector<std::string> runs;
  std::string out;
  bool raw = false;
  double suspect_confidence = 0.95;
  int sheet = 60;
};

// Suspected label errors: a CSV, the paths alone (a ready --exclude list) and a contact sheet.
void write_label_suspects(const OutOfFold& oof, const CvReportOptions& o) {
  const auto suspects = contradicted_labels(oof, o.suspect_confidence);
  std::string csv = "path,patient,fold,label,probability_parasitized\n", paths;
  std::vector<ContactSheetItem> sheet;
  for (const auto& s : suspects) {
    const auto& sample = s.cell.sample;
    char p[32];
    std::snprintf(p, sizeof p, "%.4f", s.probability);
    csv += csv_field(sample.path) + ',' + csv_field(sample.patient) + ',' + std::to_string(s.fold) +
           ',' + kClassNames[sample.label] + ',' + p + '\n';
    paths += sample.path + '\n';
    if (static_cast<int>(sheet.size()) < o.sheet)
      sheet.push_back({sample.path, std::string("label ") + kClassNames[sample.label],
                       std::string("P(Parasitized) ") + p, sample.label == kUninfected});
  }
  write_text_atomic(o.out + "/label_suspects.csv", csv);
  write_text_atomic(o.out + "/label_suspects.txt", paths);
  char title[160];
  std::snprintf(title, sizeof title,
                "%zu cells whose out-of-fold P contradicts the label by >= %.2f (first %zu)",
                suspects.size(), o.suspect_confidence, sheet.size());
  draw_contact_sheet(sheet, 10, title, o.out + "/label_suspects_sheet.png");
  long labelled_uninfected = 0;
  for (const auto& s : suspects) labelled_uninfected += s.cell.sample.label == kUninfected;
  std::printf(
      "\n%zu suspected label errors (%ld labelled Uninfected, %ld Parasitized): %s/"
      "label_suspects.{csv,txt}, label_suspects_sheet.png\n",
      suspects.size(), labelled_uninfected,
      static_cast<long>(suspects.size()) - labelled_uninfected, o.out.c_str());
}

int run_cv_report(const CvReportOptions& o) {
  std::vector<OutOfFold> runs;
  for (const auto& run : o.runs) runs.push_back(read_out_of_fold(run, o.raw));
  const OutOfFold oof = average_runs(runs);
  nlohmann::json summary = cross_fitted_summary(oof);
  summary["runs"] = o.runs;
  summary["weights"] = o.raw ? "last, without the moving average" : "as in each model file";
  std::printf("%s%s\n", runs.size() > 1 ? "Ensemble of the runs (logits averaged)\n" : "",
              format_cross_fitted(summary).c_str());
  std::filesystem::create_directories(o.out);
  write_text_atomic(o.out + "/oof_summary.json", summary.dump(2));
  write_text_atomic(o.out + "/oof_summary.txt", format_cross_fitted(summary));
  write_label_suspects(oof, o);
  return 0;
}

Command add_cv_report(CLI::App& app) {
  auto o = std::make_shared<CvReportOptions>();
  auto* sub = app.add_subcommand(
      "cv-report",
      "Out-of-fold figures of finished cross-validations: cross-fitted calibration and operating "
      "points, ensembles of runs on the same folds, suspected label errors");
  sub->add_option("runs", o->runs, "cv run folders (several: their logits averaged per cell)")
      ->required()
      ->check(CLI::ExistingDirectory);
  sub->add_option("--out", o->out,
                  "folder for oof_summary.* and label_suspects.* (default: the "
                  "first run)");
  sub->add_flag("--raw", o->raw, "the last weights of runs with --ema, without the average");
  add_number(sub, "--suspect-confidence", o->suspect_confidence, 0.5, 1,
             "list cells whose out-of-fold P contradicts their label by at least this");
  add_number(sub, "--sheet", o->sheet, 0, 1000, "suspects shown on the contact sheet");
  return {sub, [o] {
            if (o->out.empty()) o->out = o->runs.front();
            return run_cv_report(*o);
          }};
}

}  // namespace

std::vector<Command> add_train_commands(CLI::App& app, const GlobalOptions& global) {
  return {add_train(app, global), add_cv(app, global), add_cv_report(app)};
}

}  // namespace malaria::cli
