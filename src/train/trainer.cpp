#include "train/trainer.h"

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>

#include "data/loader.h"
#include "eval/decision.h"
#include "eval/evaluate.h"
#include "model/architecture.h"
#include "model/classifier.h"
#include "model/model.h"
#include "report/figures.h"
#include "report/report.h"
#include "util/files.h"
#include "util/progress.h"

namespace malaria {

namespace fs = std::filesystem;
using json = nlohmann::json;

bool cpu_has_bf16() {
  std::ifstream cpuinfo("/proc/cpuinfo");
  for (std::string line; std::getline(cpuinfo, line);)
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos ||
             line.find(" amx_bf16") != std::string::npos;
  return false;
}

json TrainOptions::to_json() const {
  return {{"data_dir", data_dir},
          {"out_dir", out_dir},
          {"arch", arch},
          {"image_size", image_size},
          {"epochs", epochs},
          {"batch_size", batch_size},
          {"learning_rate", learning_rate},
          {"lr_schedule", lr_schedule},
          {"patience", patience},
          {"split", malaria::to_string(split)},
          {"fractions", {fractions.train, fractions.val, fractions.test}},
          {"seed", seed},
          {"threads", threads},
          {"workers", workers},
          {"cache", cache},
          {"strict", strict},
          {"augment", augment.to_json()},
          {"time_limit_minutes", time_limit_minutes},
          {"max_steps", max_steps},
          {"bf16", bf16},
          {"optimizer", "adam"},
          {"loss", "binary_cross_entropy_with_logits"},
          {"early_stopping", "validation loss, best weights restored"}};
}

TrainOptions TrainOptions::from_json(const json& j) {
  TrainOptions o;
  o.data_dir = j.at("data_dir");
  o.out_dir = j.at("out_dir");
  o.arch = j.at("arch");
  o.image_size = j.at("image_size");
  o.epochs = j.at("epochs");
  o.batch_size = j.at("batch_size");
  o.learning_rate = j.at("learning_rate");
  o.lr_schedule = j.value("lr_schedule", "constant");
  o.patience = j.at("patience");
  o.split = parse_split_mode(j.at("split"));
  o.fractions = {j.at("fractions")[0], j.at("fractions")[1], j.at("fractions")[2]};
  o.seed = j.at("seed");
  o.threads = j.at("threads");
  o.workers = j.at("workers");
  o.cache = j.at("cache");
  o.strict = j.at("strict");
  const auto& a = j.at("augment");
  o.augment = {a.at("rotation_deg"), a.at("zoom"), a.at("horizontal_flip"), a.at("vertical_flip"),
               a.value("color_jitter", 0.0)};
  o.time_limit_minutes = j.at("time_limit_minutes");
  o.max_steps = j.at("max_steps");
  o.bf16 = j.value("bf16", false);
  return o;
}

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {  // a second Ctrl-C: stop now, without a checkpoint
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

// Ctrl-C and SIGTERM only set a flag; the loop saves a checkpoint at the next batch boundary.
class StopSignals {
 public:
  StopSignals() {
    g_signal = 0;
    previous_int_ = std::signal(SIGINT, on_stop_signal);
    previous_term_ = std::signal(SIGTERM, on_stop_signal);
  }
  ~StopSignals() {
    std::signal(SIGINT, previous_int_);
    std::signal(SIGTERM, previous_term_);
  }
  static bool requested() { return g_signal.load() != 0; }

 private:
  void (*previous_int_)(int);
  void (*previous_term_)(int);
};

struct EpochRecord {
  int epoch = 0;
  double train_loss = 0, train_accuracy = 0, val_loss = 0, val_accuracy = 0;
  double learning_rate = 0, seconds = 0, images_per_second = 0;
  json to_json() const {
    return {{"epoch", epoch},
            {"train_loss", train_loss},
            {"train_accuracy", train_accuracy},
            {"val_loss", val_loss},
            {"val_accuracy", val_accuracy},
            {"learning_rate", learning_rate},
            {"seconds", seconds},
            {"images_per_second", images_per_second}};
  }
  static EpochRecord from_json(const json& j) {
    return {j.at("epoch"),    j.at("train_loss"),       j.at("train_accuracy"),
            j.at("val_loss"), j.at("val_accuracy"),     j.at("learning_rate"),
            j.at("seconds"),  j.at("images_per_second")};
  }
};

// Everything needed to continue a run exactly where it stopped.
struct RunState {
  int epoch = 0;          // epoch in progress (0-based)
  size_t next_batch = 0;  // first batch of that epoch not yet trained
  double loss_sum = 0;    // running sums of the epoch in progress
  size_t correct = 0, seen = 0;
  double epoch_seconds = 0;
  double best_val_loss = std::numeric_limits<double>::infinity();
  int best_epoch = 0, bad_epochs = 0;
  double train_seconds = 0;
  size_t train_images = 0;
  std::vector<EpochRecord> history;

  json to_json() const {
    json h = json::array();
    for (const auto& r : history) h.push_back(r.to_json());
    return {{"epoch", epoch},
            {"next_batch", next_batch},
            {"loss_sum", loss_sum},
            {"correct", correct},
            {"seen", seen},
            {"epoch_seconds", epoch_seconds},
            {"best_val_loss", best_val_loss},
            {"best_epoch", best_epoch},
            {"bad_epochs", bad_epochs},
            {"train_seconds", train_seconds},
            {"train_images", train_images},
            {"history", h}};
  }
  static RunState from_json(const json& j) {
    RunState s;
    s.epoch = j.at("epoch");
    s.next_batch = j.at("next_batch");
    s.loss_sum = j.at("loss_sum");
    s.correct = j.at("correct");
    s.seen = j.at("seen");
    s.epoch_seconds = j.at("epoch_seconds");
    s.best_val_loss = j.at("best_val_loss").is_null() ? std::numeric_limits<double>::infinity()
                                                      : j.at("best_val_loss").get<double>();
    s.best_epoch = j.at("best_epoch");
    s.bad_epochs = j.at("bad_epochs");
    s.train_seconds = j.at("train_seconds");
    s.train_images = j.at("train_images");
    for (const auto& r : j.at("history")) s.history.push_back(EpochRecord::from_json(r));
    return s;
  }
};

void save_module(const std::string& path, torch::nn::Module& module) {
  write_file_atomic(path, [&](const std::string& tmp) {
    torch::serialize::OutputArchive archive;
    module.save(archive);
    archive.save_to(tmp);
  });
}

void load_module(const std::string& path, torch::nn::Module& module) {
  torch::serialize::InputArchive archive;
  archive.load_from(path);
  module.load(archive);
}

void write_history(const std::string& dir, const std::vector<EpochRecord>& history) {
  std::ostringstream csv;
  csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,learning_rate,seconds,images_per_"
         "second\n";
  json j = json::array();
  for (const auto& r : history) {
    csv << r.epoch << ',' << r.train_loss << ',' << r.train_accuracy << ',' << r.val_loss << ','
        << r.val_accuracy << ',' << r.learning_rate << ',' << r.seconds << ','
        << r.images_per_second << '\n';
    j.push_back(r.to_json());
  }
  write_text_atomic(dir + "/history.csv", csv.str());
  write_text_atomic(dir + "/history.json", j.dump(2));
}

class Trainer {
 public:
  Trainer(TrainOptions options, bool resuming) : opt_(std::move(options)), dir_(opt_.out_dir) {
    set_compute_threads(opt_.threads);
    torch::manual_seed(opt_.seed);
    prepare_data(resuming);
    model_ = build_model(opt_.arch, opt_.image_size);
    to_channels_last(*model_);
    optimizer_ = std::make_unique<torch::optim::Adam>(
        model_->parameters(), torch::optim::AdamOptions(opt_.learning_rate));
    if (resuming) {
      load_checkpoint();
      to_channels_last(*model_);  // loading restores the file's memory order
    }
  }

  TrainOutcome run() {
    StopSignals signals;
    const auto start = std::chrono::steady_clock::now();
    const double budget = opt_.time_limit_minutes * 60.0;
    const double already = state_.train_seconds;
    TrainOutcome outcome;
    log("training %s at %dx%d on %zu images (validation %zu, test %zu), %d threads",
        opt_.arch.c_str(), opt_.image_size, opt_.image_size, split_.train.size(), split_.val.size(),
        split_.test.size(), compute_threads());
    bool stop_early = false;
    while (state_.epoch < opt_.epochs && !stop_early) {
      if (!train_epoch()) {
        save_checkpoint();
        outcome.interrupted = true;
        log("interrupted: checkpoint saved in %s/checkpoint; continue with: malaria train --resume "
            "%s",
            dir_.c_str(), dir_.c_str());
        return outcome;
      }
      stop_early = end_epoch();
      const double elapsed =
          already + std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (budget > 0 && elapsed >= budget && state_.epoch < opt_.epochs && !stop_early) {
        log("time limit of %.1f min reached after epoch %d", opt_.time_limit_minutes, state_.epoch);
        stop_early = true;
      }
      save_checkpoint();
    }
    return finish();
  }

 private:
  // printf-style, for the aligned numbers of the epoch lines; goes to the log like all else.
  void log(const char* fmt, ...) const __attribute__((format(printf, 2, 3))) {
    char line[1024];
    va_list args;
    va_start(args, fmt);
    std::vsnprintf(line, sizeof line, fmt, args);
    va_end(args);
    spdlog::info("{}", line);
  }

  void prepare_data(bool resuming) {
    fs::create_directories(dir_);
    const std::string split_csv = dir_ + "/split.csv";
    if (resuming) {
      split_ = read_split_csv(split_csv);
      data_summary_ = json::parse(read_text(dir_ + "/data_summary.json"));
    } else {
      ScanOptions scan;
      scan.strict = opt_.strict;
      const Dataset ds = scan_dataset(opt_.data_dir, scan);
      split_ = split_dataset(ds.samples, opt_.split, opt_.fractions, opt_.seed);
      data_summary_ = {{"root", ds.root},
                       {"dataset", ds.summary.to_json()},
                       {"split", split_summary(split_)},
                       {"split_mode", malaria::to_string(opt_.split)},
                       {"split_seed", opt_.seed}};
      write_split_csv(split_, split_csv);
      write_text_atomic(dir_ + "/data_summary.json", data_summary_.dump(2));
      write_text_atomic(dir_ + "/config.json", opt_.to_json().dump(2));
      log("data: %zu images of %zu patients (%zu Parasitized, %zu Uninfected), %zu unreadable "
          "skipped",
          ds.samples.size(), ds.summary.patients, ds.summary.per_class[kParasitized],
          ds.summary.per_class[kUninfected], ds.summary.unreadable.size());
    }
    if (opt_.cache) cache_ = std::make_unique<ImageCache>(opt_.image_size);
    LoaderOptions train_lo;
    train_lo.image_size = opt_.image_size;
    train_lo.batch_size = opt_.batch_size;
    train_lo.shuffle = true;
    train_lo.seed = opt_.seed;
    train_lo.augment = opt_.augment;
    train_lo.workers = opt_.workers;
    train_lo.cache = cache_.get();
    train_loader_ = std::make_unique<BatchLoader>(split_.train, train_lo);
    LoaderOptions val_lo = train_lo;
    val_lo.shuffle = false;
    val_lo.augment = AugmentConfig::none();
    val_lo.batch_size = std::max(64, opt_.batch_size);
    val_loader_ = std::make_unique<BatchLoader>(split_.val, val_lo);
  }

  size_t steps_per_epoch() const {
    const size_t n = train_loader_->batches_per_epoch();
    return opt_.max_steps > 0 ? std::min(n, opt_.max_steps) : n;
  }

  double epoch_learning_rate(int epoch) const {
    if (opt_.lr_schedule != "cosine" || opt_.epochs <= 1) return opt_.learning_rate;
    const double progress = static_cast<double>(epoch) / (opt_.epochs - 1);
    constexpr double kFloor = 0.01;
    return opt_.learning_rate * (kFloor + (1 - kFloor) * 0.5 * (1 + std::cos(M_PI * progress)));
  }

  // Returns false when a stop signal arrived (the state then points at the next batch).
  bool train_epoch() {
    model_->train();
    for (auto& group : optimizer_->param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options())
          .lr(epoch_learning_rate(state_.epoch));
    train_loader_->start_epoch(state_.epoch, state_.next_batch);
    const size_t steps = steps_per_epoch();
    const size_t batch_images = std::min<size_t>(split_.train.size(), steps * opt_.batch_size);
    ProgressBar bar(batch_images, "epoch " + std::to_string(state_.epoch + 1) + "/" +
                                      std::to_string(opt_.epochs));
    auto t0 = std::chrono::steady_clock::now();
    auto flush_time = [&] {
      const auto now = std::chrono::steady_clock::now();
      state_.epoch_seconds += std::chrono::duration<double>(now - t0).count();
      t0 = now;
    };
    while (state_.next_batch < steps) {
      if (StopSignals::requested()) {
        flush_time();
        return false;
      }
      auto batch = train_loader_->next();
      if (!batch) break;
      const auto n = static_cast<int64_t>(batch->size());
      auto x = torch::from_blob(batch->pixels.data(), {n, 3, opt_.image_size, opt_.image_size})
                   .contiguous(at::MemoryFormat::ChannelsLast);
      auto y = torch::from_blob(batch->labels.data(), {n});
      optimizer_->zero_grad();
      torch::Tensor logits;
      {
        Bf16Autocast autocast(opt_.bf16);
        logits = model_->forward(x).reshape({n}).to(torch::kFloat);
      }
      auto loss = torch::binary_cross_entropy_with_logits(logits, y);
      const double batch_loss = loss.item<double>();
      if (!std::isfinite(batch_loss))
        throw_diverged("batch " + std::to_string(state_.next_batch + 1));
      loss.backward();
      optimizer_->step();
      state_.loss_sum += batch_loss * n;
      state_.correct += ((logits >= 0).to(torch::kFloat) == y).sum().item<int64_t>();
      state_.seen += n;
      state_.next_batch++;
      if (!opt_.quiet) {
        char status[96];
        std::snprintf(status, sizeof status, "loss %.4f acc %.4f", state_.loss_sum / state_.seen,
                      double(state_.correct) / state_.seen);
        bar.update(state_.seen, status);
      }
    }
    flush_time();
    if (!opt_.quiet) bar.finish();
    return true;
  }

  std::pair<double, double> validate() {
    model_->eval();
    torch::NoGradGuard no_grad;
    val_loader_->start_epoch(0);
    double loss_sum = 0;
    int64_t correct = 0, seen = 0;
    while (auto batch = val_loader_->next()) {
      const auto n = static_cast<int64_t>(batch->size());
      auto x = torch::from_blob(batch->pixels.data(), {n, 3, opt_.image_size, opt_.image_size})
                   .contiguous(at::MemoryFormat::ChannelsLast);
      auto y = torch::from_blob(batch->labels.data(), {n});
      auto logits = model_->forward(x).reshape({n});
      loss_sum += torch::binary_cross_entropy_with_logits(logits, y, {}, {}, torch::Reduction::Sum)
                      .item<double>();
      correct += ((logits >= 0).to(torch::kFloat) == y).sum().item<int64_t>();
      seen += n;
    }
    model_->train();
    if (!std::isfinite(loss_sum)) throw_diverged("validation");
    return {seen ? loss_sum / seen : 0.0, seen ? double(correct) / seen : 0.0};
  }

  // A loss that is not a number means the weights are gone: stop, and save nothing from them.
  [[noreturn]] void throw_diverged(const std::string& where) const {
    throw std::runtime_error("training diverged in epoch " + std::to_string(state_.epoch + 1) +
                             " (" + where +
                             "): the loss is not a finite number; nothing was saved from this "
                             "state. Try a smaller --lr (now " +
                             std::to_string(opt_.learning_rate) + ")");
  }

  // Records the finished epoch; returns true when early stopping ends the run.
  bool end_epoch() {
    EpochRecord r;
    r.epoch = state_.epoch + 1;
    r.train_loss = state_.seen ? state_.loss_sum / state_.seen : 0;
    r.train_accuracy = state_.seen ? double(state_.correct) / state_.seen : 0;
    r.seconds = state_.epoch_seconds;
    r.images_per_second = r.seconds > 0 ? state_.seen / r.seconds : 0;
    r.learning_rate = epoch_learning_rate(state_.epoch);
    if (!split_.val.empty()) {
      std::tie(r.val_loss, r.val_accuracy) = validate();
    } else {
      r.val_loss = r.train_loss, r.val_accuracy = r.train_accuracy;
    }
    state_.train_seconds += state_.epoch_seconds;
    state_.train_images += state_.seen;
    state_.history.push_back(r);
    const bool improved = r.val_loss < state_.best_val_loss;
    if (improved) {
      state_.best_val_loss = r.val_loss;
      state_.best_epoch = r.epoch;
      state_.bad_epochs = 0;
      best_weights_ = snapshot_state(*model_);
      save_module(dir_ + "/checkpoint/best.pt", *model_);
    } else {
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
    if (state_.bad_epochs >= opt_.patience) {
      log("early stopping: validation loss has not improved for %d epochs (best: epoch %d)",
          opt_.patience, state_.best_epoch);
      return true;
    }
    return false;
  }

  void save_checkpoint() {
    const std::string cp = dir_ + "/checkpoint";
    save_module(cp + "/weights.pt", *model_);
    write_file_atomic(cp + "/optimizer.pt", [&](const std::string& tmp) {
      torch::serialize::OutputArchive archive;
      optimizer_->save(archive);
      archive.save_to(tmp);
    });
    // Dropout draws from the global generator: its state makes a resumed run exact.
    write_file_atomic(cp + "/rng.pt", [&](const std::string& tmp) {
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      torch::save(at::Tensor(generator.get_state()), tmp);
    });
    write_text_atomic(cp + "/state.json",
                      state_.to_json().dump(2));  // last: marks the set complete
  }

  void load_checkpoint() {
    const std::string cp = dir_ + "/checkpoint";
    if (!fs::exists(cp + "/state.json"))
      throw std::runtime_error("no checkpoint to resume in " + dir_ + " (expected " + cp +
                               "/state.json)");
    state_ = RunState::from_json(json::parse(read_text(cp + "/state.json")));
    load_module(cp + "/weights.pt", *model_);
    torch::serialize::InputArchive archive;
    archive.load_from(cp + "/optimizer.pt");
    optimizer_->load(archive);
    if (fs::exists(cp + "/best.pt")) {
      CellClassifier best = build_model(opt_.arch, opt_.image_size);
      load_module(cp + "/best.pt", *best);
      best_weights_ = snapshot_state(*best);
    }
    // Last: building the model above draws from the generator too.
    if (fs::exists(cp + "/rng.pt")) {
      torch::Tensor rng;
      torch::load(rng, cp + "/rng.pt");
      auto generator = at::detail::getDefaultCPUGenerator();
      std::lock_guard<std::mutex> lock(generator.mutex());
      generator.set_state(rng);
    }
    log("resuming %s at epoch %d, batch %zu", dir_.c_str(), state_.epoch + 1, state_.next_batch);
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
    json meta = info.to_metadata();
    meta.update({{"parameters", summarize_architecture(opt_.arch, opt_.image_size).total_params},
                 {"training", opt_.to_json()},
                 {"data", data_summary_},
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
      json history = json::array();
      for (const auto& r : state_.history) history.push_back(r.to_json());
      plot_training_history(history, state_.best_epoch, dir_ + "/figures/training_history.png");
      write_evaluation_figures(classifier, ev, dir_ + "/figures");
      log("report: %s", write_report(dir_).c_str());
    } catch (const std::exception& e) {
      log("warning: figures or report not written: %s", e.what());
    }
  }

  TrainOutcome finish() {
    TrainOutcome outcome;
    if (!best_weights_.empty()) restore_state(*model_, best_weights_);
    model_->eval();
    const std::string model_path = dir_ + "/model.pt";
    json meta = metadata();
    save_model_file(model_path, model_, meta);
    outcome.model_path = model_path;
    outcome.epochs_run = static_cast<int>(state_.history.size());
    outcome.best_epoch = state_.best_epoch;
    outcome.train_seconds = state_.train_seconds;
    outcome.train_images_per_second =
        state_.train_seconds > 0 ? state_.train_images / state_.train_seconds : 0;
    log("saved %s (best epoch %d, validation loss %.4f)", model_path.c_str(), state_.best_epoch,
        state_.best_val_loss);
    if (!split_.test.empty()) {
      const Classifier classifier = Classifier::load(model_path);  // exactly what users will load
      EvaluateOptions eo;
      eo.workers = opt_.workers;
      eo.progress = !opt_.quiet;
      const Evaluation ev = evaluate_model(classifier, split_.test, eo);
      outcome.test = ev.to_json();
      write_text_atomic(dir_ + "/evaluation.json", outcome.test.dump(2));
      write_text_atomic(dir_ + "/evaluation.txt", ev.to_text());
      write_text_atomic(dir_ + "/test_predictions.csv",
                        ev.predictions_csv(classifier.info().inconclusive_band));
      std::printf("Test split (%zu images, %zu patients never seen in training)\n%s",
                  split_.test.size(), ev.patients.size(), ev.to_text().c_str());
      meta["test"] = {{"loss", ev.metrics.loss},           {"accuracy", ev.metrics.accuracy},
                      {"sensitivity", ev.metrics.recall},  {"specificity", ev.metrics.specificity},
                      {"precision", ev.metrics.precision}, {"f1", ev.metrics.f1},
                      {"roc_auc", ev.metrics.roc_auc},     {"images", split_.test.size()}};
      save_model_file(model_path, model_, meta);
      write_figures_and_report(classifier, ev);
    }
    std::error_code ignored;
    fs::remove_all(dir_ + "/checkpoint",
                   ignored);  // the run is complete; model.pt holds the result
    return outcome;
  }

  TrainOptions opt_;
  std::string dir_;
  Split split_;
  json data_summary_;
  std::unique_ptr<ImageCache> cache_;
  std::unique_ptr<BatchLoader> train_loader_, val_loader_;
  CellClassifier model_{nullptr};
  std::unique_ptr<torch::optim::Adam> optimizer_;
  RunState state_;
  std::vector<torch::Tensor> best_weights_;
};

}  // namespace

TrainOutcome run_training(const TrainOptions& options) {
  if (options.out_dir.empty()) throw std::invalid_argument("an output folder (--out) is required");
  if (fs::exists(options.out_dir + "/checkpoint/state.json"))
    throw std::runtime_error(options.out_dir +
                             " holds an interrupted run; continue it with --resume " +
                             options.out_dir + " or choose another --out");
  build_model(options.arch, options.image_size);  // fail fast on a bad arch or size
  Trainer trainer(options, false);
  return trainer.run();
}

TrainOutcome resume_training(const std::string& run_dir, int threads) {
  const std::string config = run_dir + "/config.json";
  if (!fs::exists(config))
    throw std::runtime_error(run_dir + " is not a training run folder (no config.json)");
  TrainOptions options = TrainOptions::from_json(json::parse(read_text(config)));
  options.out_dir = run_dir;
  if (threads > 0) options.threads = threads;
  Trainer trainer(options, true);
  return trainer.run();
}

}  // namespace malaria
