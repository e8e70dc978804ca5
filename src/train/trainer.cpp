#include "train/trainer.h"

#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdarg>
#include <filesystem>
#include <optional>

#include "eval/calibration.h"
#include "eval/evaluate.h"
#include "field/field_cells.h"
#include "model/architecture.h"
#include "model/classifier.h"
#include "model/model.h"
#include "report/figures.h"
#include "report/report.h"
#include "train/epoch_loop.h"
#include "train/run_state.h"
#include "util/files.h"

namespace malaria {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// printf-style, for the aligned numbers of the epoch lines; goes to the log like all else.
void log(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void log(const char* fmt, ...) {
  char line[1024];
  va_list args;
  va_start(args, fmt);
  std::vsnprintf(line, sizeof line, fmt, args);
  va_end(args);
  spdlog::info("{}", line);
}

// A whole run: data and split, the epoch loop with early stopping and time limit, checkpoints,
// then the model file, its evaluation on the test split, figures and report.
class TrainingRun {
 public:
  TrainingRun(TrainOptions options, bool resuming)
      : opt_(std::move(options)),
        dir_(opt_.out_dir),
        data_(seeded_run_data(opt_, resuming)),
        loop_(opt_, data_.split) {
    if (resuming) {
      state_ = loop_.load_checkpoint(dir_ + "/checkpoint");
      log("resuming %s at epoch %d, batch %zu", dir_.c_str(), state_.epoch + 1, state_.next_batch);
    }
  }

  TrainOutcome run() {
    StopSignals signals;
    const auto start = std::chrono::steady_clock::now();
    const double already = state_.train_seconds;
    log("training %s at %dx%d on %zu images (validation %zu, test %zu), %d threads",
        opt_.arch.c_str(), opt_.image_size, opt_.image_size, data_.split.train.size(),
        data_.split.val.size(), data_.split.test.size(), compute_threads());
    bool stop = false;
    while (state_.epoch < opt_.epochs && !stop) {
      if (!loop_.train_epoch(state_)) {
        loop_.save_checkpoint(dir_ + "/checkpoint", state_);
        log("interrupted: checkpoint saved in %s/checkpoint; continue with: malaria train --resume "
            "%s",
            dir_.c_str(), dir_.c_str());
        TrainOutcome outcome;
        outcome.interrupted = true;
        return outcome;
      }
      stop = end_epoch();
      const double elapsed =
          already + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!stop && opt_.time_limit_minutes > 0 && elapsed >= opt_.time_limit_minutes * 60 &&
          state_.epoch < opt_.epochs) {
        log("time limit of %.1f min reached after epoch %d", opt_.time_limit_minutes, state_.epoch);
        stop = true;
      }
      loop_.save_checkpoint(dir_ + "/checkpoint", state_);
    }
    return finish();
  }

 private:
  // Threads and the seed are set before anything draws from the generator.
  static RunData seeded_run_data(const TrainOptions& options, bool resuming) {
    set_compute_threads(options.threads);
    torch::manual_seed(options.seed);
    return prepare_run_data(options, resuming);
  }

  EpochRecord record_epoch() {
    EpochRecord r;
    r.epoch = state_.epoch + 1;
    r.train_loss = state_.seen ? state_.loss_sum / state_.seen : 0;
    r.train_accuracy = state_.seen ? double(state_.correct) / state_.seen : 0;
    r.seconds = state_.epoch_seconds;
    r.images_per_second = r.seconds > 0 ? state_.seen / r.seconds : 0;
    r.learning_rate = loop_.learning_rate(state_.epoch, 0);  // at the epoch's first batch
    if (!data_.split.val.empty())
      std::tie(r.val_loss, r.val_accuracy) = loop_.validate(state_);
    else
      r.val_loss = r.train_loss, r.val_accuracy = r.train_accuracy;
    return r;
  }

  // Records the finished epoch and keeps the best weights; true when early stopping ends the run.
  bool end_epoch() {
    const EpochRecord r = record_epoch();
    state_.train_seconds += state_.epoch_seconds;
    state_.train_images += state_.seen;
    state_.history.push_back(r);
    // Without validation the fixed schedule runs to its end and its last (or averaged) weights
    // are kept: nothing to choose an epoch on.
    const bool validating = !data_.split.val.empty();
    const bool improved = validating && r.val_loss < state_.best_val_loss;
    if (improved) {
      state_.best_val_loss = r.val_loss;
      state_.best_epoch = r.epoch;
      state_.bad_epochs = 0;
      loop_.keep_best(dir_ + "/checkpoint");
    } else if (validating) {
      state_.bad_epochs++;
    }
    log("epoch %d/%d  train loss %.4f acc %.4f  val loss %.4f acc %.4f  %.1fs %.0f img/s%s",
        r.epoch, opt_.epochs, r.train_loss, r.train_accuracy, r.val_loss, r.val_accuracy, r.seconds,
        r.images_per_second, improved ? "  *best" : "");
    write_history(dir_, state_.history);
    state_.epoch++;
    state_.next_batch = 0;
    state_.loss_sum = 0;
    state_.correct = state_.seen = 0;
    state_.epoch_seconds = 0;
    if (state_.bad_epochs < opt_.patience) return false;
    log("early stopping: validation loss has not improved for %d epochs (best: epoch %d)",
        opt_.patience, state_.best_epoch);
    return true;
  }

  json metadata() const {
    json val = json::object();
    if (!state_.history.empty() && state_.best_epoch > 0) {
      const auto& best = state_.history.at(state_.best_epoch - 1);
      val = {{"loss", best.val_loss}, {"accuracy", best.val_accuracy}, {"epoch", best.epoch}};
    }
    ModelInfo info;
    info.name = fs::path(dir_).filename().string();
    info.arch = opt_.arch;
    info.image_size = opt_.image_size;
    info.flip_tta = opt_.flip_tta;
    if (calibration_) {
      info.temperature = calibration_->temperature;
      info.operating_points = calibration_->operating_points;
      info.operating_point = calibration_->default_point;
    }
    json meta = info.to_metadata();
    if (calibration_) meta["calibration"] = calibration_->summary;
    meta.update({{"parameters", summarize_architecture(opt_.arch, opt_.image_size).total_params},
                 {"training", opt_.to_json()},
                 {"data", data_.summary},
                 {"epochs_run", state_.history.size()},
                 {"train_seconds", state_.train_seconds},
                 {"validation", val},
                 {"program", {{"name", "malaria"}, {"version", MALARIA_VERSION}}},
                 {"created", now_iso8601()}});
    return meta;
  }

  // Pictures are for people; a plotting failure must not lose the trained model.
  void write_figures_and_report(const Classifier& classifier, const Evaluation& ev) {
    try {
      const json history = state_.history;
      plot_training_history(history, state_.best_epoch, dir_ + "/figures/training_history.png");
      write_evaluation_figures(classifier, ev, dir_ + "/figures");
      log("report: %s", write_report(dir_).c_str());
    } catch (const std::exception& e) {
      log("warning: figures or report not written: %s", e.what());
    }
  }

  // Temperature and operating points from the validation split, through the saved model exactly
  // as users will load it.
  void calibrate_on_validation(const std::string& model_path) {
    if (data_.split.val.empty()) {
      log("no validation split: the model keeps the uncalibrated default threshold");
      return;
    }
    EvaluateOptions eo;
    eo.workers = opt_.workers;
    eo.progress = false;
    const Evaluation val = evaluate_model(Classifier::load(model_path), data_.split.val, eo);
    std::vector<int> labels;
    std::vector<bool> from_field;
    for (const auto& s : val.samples) {
      labels.push_back(s.label);
      from_field.push_back(is_field_group(s.patient));
    }
    calibration_ = calibrate(val.logits, labels, from_field);
    const auto& c = calibration_->summary;
    log("calibrated on %zu validation cells: temperature %.3f, ECE %.4f -> %.4f", labels.size(),
        calibration_->temperature, c.value("ece_before", 0.0), c.value("ece_after", 0.0));
    for (const auto& [name, p] : calibration_->operating_points)
      log("operating point %-9s threshold %.4f  sensitivity %.4f  specificity %.4f  "
          "Inconclusive %.4f-%.4f holds %ld of %ld errors",
          name.c_str(), p.threshold, p.validation.value("sensitivity", 0.0),
          p.validation.value("specificity", 0.0), p.inconclusive_low, p.inconclusive_high,
          p.validation.value("errors_held", 0L), p.validation.value("errors", 0L));
  }

  // Evaluates the saved model, exactly as users will load it, on the test split.
  void evaluate_test_split(const std::string& model_path, json& meta, TrainOutcome& outcome) {
    const Classifier classifier = Classifier::load(model_path);
    EvaluateOptions eo;
    eo.workers = opt_.workers;
    eo.progress = !opt_.quiet;
    const Evaluation ev = evaluate_model(classifier, data_.split.test, eo);
    outcome.test = ev.to_json();
    write_text_atomic(dir_ + "/evaluation.json", outcome.test.dump(2));
    write_text_atomic(dir_ + "/evaluation.txt", ev.to_text());
    write_text_atomic(dir_ + "/test_predictions.csv", ev.predictions_csv());
    std::printf("Test split (%zu images, %zu patients never seen in training)\n%s",
                data_.split.test.size(), ev.patients.size(), ev.to_text().c_str());
    const Metrics& m = ev.metrics;
    meta["test"] = {{"loss", m.loss},
                    {"accuracy", m.accuracy},
                    {"sensitivity", m.recall},
                    {"specificity", m.specificity},
                    {"precision", m.precision},
                    {"f1", m.f1},
                    {"roc_auc", m.roc_auc},
                    {"images", data_.split.test.size()},
                    {"ece", ev.calibration.value("ece", 0.0)},
                    {"ece_uncalibrated", ev.calibration.value("ece_uncalibrated", 0.0)},
                    {"operating_points", ev.operating_points}};
    save_model_file(model_path, loop_.final_model(), meta);
    write_figures_and_report(classifier, ev);
  }

  // With a moving average, the last weights as trained are measured beside it on the same test
  // part (model_raw.pt, test_predictions_raw.csv): what the average is worth, at no extra run.
  void evaluate_raw_weights(json meta) {
    const std::string raw_path = dir_ + "/model_raw.pt";
    meta["weights"] = "last weights as trained, without the moving average";
    save_model_file(raw_path, loop_.final_model(/*raw=*/true), meta);
    EvaluateOptions eo;
    eo.workers = opt_.workers;
    eo.progress = false;
    const Evaluation ev = evaluate_model(Classifier::load(raw_path), data_.split.test, eo);
    write_text_atomic(dir_ + "/evaluation_raw.json", ev.to_json().dump(2));
    write_text_atomic(dir_ + "/test_predictions_raw.csv", ev.predictions_csv());
    log("without the moving average: accuracy %.4f, ROC AUC %.4f (test_predictions_raw.csv)",
        ev.metrics.accuracy, ev.metrics.roc_auc);
  }

  TrainOutcome finish() {
    TrainOutcome outcome;
    const std::string model_path = dir_ + "/model.pt";
    save_model_file(model_path, loop_.final_model(), metadata());
    calibrate_on_validation(model_path);
    json meta = metadata();
    save_model_file(model_path, loop_.final_model(), meta);
    outcome.model_path = model_path;
    outcome.epochs_run = static_cast<int>(state_.history.size());
    outcome.best_epoch = state_.best_epoch;
    outcome.train_seconds = state_.train_seconds;
    outcome.train_images_per_second =
        state_.train_seconds > 0 ? state_.train_images / state_.train_seconds : 0;
    if (data_.split.val.empty())
      log("saved %s (%s weights after epoch %zu)", model_path.c_str(),
          loop_.averages_weights() ? "averaged" : "last", state_.history.size());
    else
      log("saved %s (best epoch %d, validation loss %.4f)", model_path.c_str(), state_.best_epoch,
          state_.best_val_loss);
    if (!data_.split.test.empty()) {
      evaluate_test_split(model_path, meta, outcome);
      if (loop_.averages_weights()) evaluate_raw_weights(meta);
    }
    std::error_code ignored;
    fs::remove_all(dir_ + "/checkpoint", ignored);  // the run is complete; model.pt holds it
    return outcome;
  }

  TrainOptions opt_;
  std::string dir_;
  RunData data_;
  EpochLoop loop_;
  RunState state_;
  std::optional<Calibration> calibration_;
};

}  // namespace

TrainOutcome run_training(const TrainOptions& options) {
  if (options.out_dir.empty()) throw std::invalid_argument("an output folder (--out) is required");
  if (fs::exists(options.out_dir + "/checkpoint/state.json"))
    throw std::runtime_error(options.out_dir +
                             " holds an interrupted run; continue it with --resume " +
                             options.out_dir + " or choose another --out");
  build_model(options.arch, options.image_size);  // fail fast on a bad arch or size
  TrainingRun run(options, false);
  return run.run();
}

TrainOutcome resume_training(const std::string& run_dir, int threads) {
  const std::string config = run_dir + "/config.json";
  if (!fs::exists(config))
    throw std::runtime_error(run_dir + " is not a training run folder (no config.json)");
  TrainOptions options = TrainOptions::from_json(json::parse(read_text(config)));
  options.out_dir = run_dir;
  if (threads > 0) options.threads = threads;
  TrainingRun run(options, true);
  return run.run();
}

}  // namespace malaria
