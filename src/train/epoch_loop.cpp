#include "train/epoch_loop.h"

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <filesystem>

#include "field/field_cells.h"
#include "util/files.h"
#include "util/progress.h"

namespace malaria {

namespace {

std::atomic<int> g_signal{0};

extern "C" void on_stop_signal(int sig) {
  if (g_signal.exchange(sig) != 0) {  // a second Ctrl-C: stop now, without a checkpoint
    std::signal(sig, SIG_DFL);
    std::raise(sig);
  }
}

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

}  // namespace

StopSignals::StopSignals() {
  g_signal = 0;
  previous_int_ = std::signal(SIGINT, on_stop_signal);
  previous_term_ = std::signal(SIGTERM, on_stop_signal);
}
StopSignals::~StopSignals() {
  std::signal(SIGINT, previous_int_);
  std::signal(SIGTERM, previous_term_);
}
bool StopSignals::requested() { return g_signal.load() != 0; }

namespace {
// The training list with every Parasitized field cell repeated `repeat` times.
std::vector<Sample> with_field_positives_repeated(const std::vector<Sample>& train, int repeat) {
  std::vector<Sample> out = train;
  for (const auto& s : train)
    if (s.label == kParasitized && is_field_group(s.patient))
      for (int k = 1; k < repeat; ++k) out.push_back(s);
  return out;
}
}  // namespace

EpochLoop::EpochLoop(const TrainOptions& options, const Split& split)
    : opt_(options),
      train_samples_(with_field_positives_repeated(split.train, options.field_positive_repeat)),
      train_images_(train_samples_.size()) {
  if (opt_.cache) cache_ = std::make_unique<ImageCache>(opt_.image_size);
  LoaderOptions train_lo;
  train_lo.image_size = opt_.image_size;
  train_lo.batch_size = opt_.batch_size;
  train_lo.shuffle = true;
  train_lo.seed = opt_.seed;
  train_lo.augment = opt_.augment;
  train_lo.workers = opt_.workers;
  train_lo.cache = cache_.get();
  train_loader_ = std::make_unique<BatchLoader>(train_samples_, train_lo);
  LoaderOptions val_lo = train_lo;
  val_lo.shuffle = false;
  val_lo.augment = AugmentConfig::none();
  val_lo.batch_size = std::max(64, opt_.batch_size);
  val_loader_ = std::make_unique<BatchLoader>(split.val, val_lo);
  model_ = build_model(opt_.arch, opt_.image_size);
  to_channels_last(*model_);
  optimizer_ = std::make_unique<torch::optim::Adam>(model_->parameters(),
                                                    torch::optim::AdamOptions(opt_.learning_rate));
  if (opt_.ema_decay > 0) average_ = snapshot_state(*model_);
}

std::pair<torch::Tensor, torch::Tensor> EpochLoop::training_pair(torch::Tensor x,
                                                                 torch::Tensor y) const {
  if (opt_.label_smoothing > 0) y = y * (1 - opt_.label_smoothing) + 0.5 * opt_.label_smoothing;
  if (opt_.mixup_alpha > 0 && x.size(0) > 1) {
    // Beta(a, a) from two gamma draws of the global generator (checkpointed with the run).
    const torch::Tensor g = torch::_standard_gamma(torch::full({2}, opt_.mixup_alpha));
    const double lambda = (g[0] / (g[0] + g[1])).item<double>();
    const torch::Tensor perm = torch::randperm(x.size(0));
    x = (lambda * x + (1 - lambda) * x.index_select(0, perm))
            .contiguous(torch::MemoryFormat::ChannelsLast);
    y = lambda * y + (1 - lambda) * y.index_select(0, perm);
  }
  return {x, y};
}

// The usual warm-up (as in timm and TensorFlow): early steps average over few, so the first
// epochs' random weights fade fast.
void EpochLoop::update_average(int64_t step) {
  torch::NoGradGuard no_grad;
  const double decay = std::min(opt_.ema_decay, (1.0 + step) / (10.0 + step));
  size_t i = 0;
  for (const auto& p : model_->parameters()) average_.at(i++).mul_(decay).add_(p, 1 - decay);
  for (const auto& b : model_->buffers()) average_.at(i++).copy_(b);  // BatchNorm statistics
}

template <typename Fn>
auto EpochLoop::with_kept_weights(Fn fn) {
  if (average_.empty()) return fn();
  const auto current = snapshot_state(*model_);
  restore_state(*model_, average_);
  auto result = fn();
  restore_state(*model_, current);
  return result;
}

size_t EpochLoop::steps_per_epoch() const {
  const size_t n = train_loader_->batches_per_epoch();
  return opt_.max_steps > 0 ? std::min(n, opt_.max_steps) : n;
}

double EpochLoop::learning_rate(int epoch, size_t batch) const {
  if (opt_.lr_schedule != "cosine") return opt_.learning_rate;
  // Stepped per batch: a linear warm-up over the first epoch (at most 5% of all steps), then a
  // half cosine down to zero at the last batch, so even a short run ends well trained.
  const double steps = static_cast<double>(steps_per_epoch());
  const double total = steps * opt_.epochs;
  const double step = epoch * steps + static_cast<double>(batch);
  const double warmup = std::max(1.0, std::min(steps, 0.05 * total));
  if (step < warmup) return opt_.learning_rate * (step + 1) / warmup;
  const double progress = std::min(1.0, (step - warmup) / std::max(1.0, total - warmup));
  return opt_.learning_rate * 0.5 * (1 + std::cos(M_PI * progress));
}

bool EpochLoop::train_epoch(RunState& state) {
  model_->train();
  train_loader_->start_epoch(state.epoch, state.next_batch);
  const size_t steps = steps_per_epoch();
  ProgressBar bar(std::min<size_t>(train_images_, steps * opt_.batch_size),
                  "epoch " + std::to_string(state.epoch + 1) + "/" + std::to_string(opt_.epochs));
  const auto t0 = std::chrono::steady_clock::now();
  const double seconds_before = state.epoch_seconds;
  auto elapsed = [&] {
    return seconds_before +
           std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  };
  while (state.next_batch < steps) {
    if (StopSignals::requested()) {
      state.epoch_seconds = elapsed();
      return false;
    }
    auto batch = train_loader_->next();
    if (!batch) break;
    const auto [x, y] = training_pair(
        image_batch_tensor(batch->pixels.data(), batch->size(), opt_.image_size),
        torch::from_blob(batch->labels.data(), {static_cast<int64_t>(batch->size())}));
    for (auto& group : optimizer_->param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options())
          .lr(learning_rate(state.epoch, state.next_batch));
    release_gradients(*model_);
    torch::Tensor logits;
    {
      Bf16Autocast autocast(opt_.bf16);
      logits = model_->forward(x).reshape({x.size(0)}).to(torch::kFloat);
    }
    auto loss = torch::binary_cross_entropy_with_logits(logits, y);
    const double batch_loss = loss.item<double>();
    if (!std::isfinite(batch_loss))
      throw_diverged(state, "batch " + std::to_string(state.next_batch + 1));
    loss.backward();
    optimizer_->step();
    if (!average_.empty())
      update_average(static_cast<int64_t>(state.epoch * steps + state.next_batch));
    state.loss_sum += batch_loss * x.size(0);
    state.correct += ((logits >= 0) == (y >= 0.5)).sum().item<int64_t>();
    state.seen += x.size(0);
    state.next_batch++;
    if (!opt_.quiet) {
      char status[96];
      std::snprintf(status, sizeof status, "loss %.4f acc %.4f", state.loss_sum / state.seen,
                    double(state.correct) / state.seen);
      bar.update(state.seen, status);
    }
  }
  state.epoch_seconds = elapsed();
  if (!opt_.quiet) bar.finish();
  return true;
}

std::pair<double, double> EpochLoop::validate(const RunState& state) {
  return with_kept_weights([&] { return validate_current(state); });
}

std::pair<double, double> EpochLoop::validate_current(const RunState& state) {
  model_->eval();
  torch::NoGradGuard no_grad;
  val_loader_->start_epoch(0);
  double loss_sum = 0;
  int64_t correct = 0, seen = 0;
  while (auto batch = val_loader_->next()) {
    const torch::Tensor x =
        image_batch_tensor(batch->pixels.data(), batch->size(), opt_.image_size);
    const torch::Tensor y = torch::from_blob(batch->labels.data(), {x.size(0)});
    auto logits = model_->forward(x).reshape({x.size(0)});
    loss_sum += torch::binary_cross_entropy_with_logits(logits, y, {}, {}, torch::Reduction::Sum)
                    .item<double>();
    correct += ((logits >= 0).to(torch::kFloat) == y).sum().item<int64_t>();
    seen += x.size(0);
  }
  model_->train();
  if (!std::isfinite(loss_sum)) throw_diverged(state, "validation");
  return {seen ? loss_sum / seen : 0.0, seen ? double(correct) / seen : 0.0};
}

// A loss that is not a number means the weights are gone: stop, and save nothing from them.
void EpochLoop::throw_diverged(const RunState& state, const std::string& where) const {
  throw std::runtime_error("training diverged in epoch " + std::to_string(state.epoch + 1) + " (" +
                           where +
                           "): the loss is not a finite number; nothing was saved from this "
                           "state. Try a smaller --lr (now " +
                           std::to_string(opt_.learning_rate) + ")");
}

void EpochLoop::keep_best(const std::string& checkpoint_dir) {
  with_kept_weights([&] {
    best_weights_ = snapshot_state(*model_);
    save_module(checkpoint_dir + "/best.pt", *model_);
    return 0;
  });
}

void EpochLoop::save_checkpoint(const std::string& cp, const RunState& state) {
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
  if (!average_.empty())
    write_file_atomic(cp + "/average.pt",
                      [&](const std::string& tmp) { torch::save(average_, tmp); });
  write_text_atomic(cp + "/state.json",
                    nlohmann::json(state).dump(2));  // last: marks the set whole
}

RunState EpochLoop::load_checkpoint(const std::string& cp) {
  if (!std::filesystem::exists(cp + "/state.json"))
    throw std::runtime_error("no checkpoint to resume (expected " + cp + "/state.json)");
  auto state = nlohmann::json::parse(read_text(cp + "/state.json")).get<RunState>();
  load_module(cp + "/weights.pt", *model_);
  to_channels_last(*model_);  // loading restores the file's memory order
  torch::serialize::InputArchive archive;
  archive.load_from(cp + "/optimizer.pt");
  optimizer_->load(archive);
  if (std::filesystem::exists(cp + "/best.pt")) {
    CellClassifier best = build_model(opt_.arch, opt_.image_size);
    load_module(cp + "/best.pt", *best);
    best_weights_ = snapshot_state(*best);
  }
  if (!average_.empty()) {
    const size_t expected = average_.size();
    average_.clear();  // torch::load appends to a vector: it would keep the initial weights first
    torch::load(average_, cp + "/average.pt");
    if (average_.size() != expected)
      throw std::runtime_error(cp + "/average.pt holds " + std::to_string(average_.size()) +
                               " tensors, not the model's " + std::to_string(expected));
    // The same memory order as the weights it follows, so each update rounds as it did before.
    for (auto& t : average_)
      if (t.dim() == 4) t = t.contiguous(at::MemoryFormat::ChannelsLast);
  }
  // Last: building the model above draws from the generator too.
  if (std::filesystem::exists(cp + "/rng.pt")) {
    torch::Tensor rng;
    torch::load(rng, cp + "/rng.pt");
    auto generator = at::detail::getDefaultCPUGenerator();
    std::lock_guard<std::mutex> lock(generator.mutex());
    generator.set_state(rng);
  }
  return state;
}

CellClassifier& EpochLoop::final_model(bool raw) {
  if (last_weights_.empty()) last_weights_ = snapshot_state(*model_);
  if (raw)
    restore_state(*model_, last_weights_);
  else if (!best_weights_.empty())
    restore_state(*model_, best_weights_);
  else if (!average_.empty())
    restore_state(*model_, average_);
  else
    restore_state(*model_, last_weights_);
  model_->eval();
  return model_;
}

}  // namespace malaria
