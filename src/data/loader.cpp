#include "data/loader.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "data/image.h"

namespace malaria {

cv::Mat ImageCache::get(const std::string& path) {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = images_.find(path);
    if (it != images_.end()) return it->second;
  }
  cv::Mat rgb = resize_rgb(read_image(path), image_size_);
  std::lock_guard<std::mutex> lock(mutex_);
  return images_.emplace(path, rgb).first->second;
}

size_t ImageCache::bytes() const {
  std::lock_guard<std::mutex> lock(mutex_);
  size_t total = 0;
  for (const auto& [_, m] : images_) total += m.total() * m.elemSize();
  return total;
}

BatchLoader::BatchLoader(std::vector<Sample> samples, LoaderOptions options)
    : samples_(std::move(samples)), options_(options) {
  if (options_.batch_size <= 0) throw std::invalid_argument("batch size must be positive");
  order_.resize(samples_.size());
  std::iota(order_.begin(), order_.end(), 0);
}

BatchLoader::~BatchLoader() { stop_workers(); }

size_t BatchLoader::batches_per_epoch() const {
  return (samples_.size() + options_.batch_size - 1) / options_.batch_size;
}

void BatchLoader::stop_workers() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  for (auto& w : workers_) w.join();
  workers_.clear();
}

void BatchLoader::start_epoch(int epoch, size_t first_batch) {
  stop_workers();
  epoch_ = epoch;
  std::iota(order_.begin(), order_.end(), 0);
  if (options_.shuffle) {
    std::mt19937_64 rng(options_.seed * 1000003ull + static_cast<uint64_t>(epoch));
    std::shuffle(order_.begin(), order_.end(), rng);
  }
  stop_ = false;
  next_to_build_ = next_to_take_ = first_batch;
  ready_.clear();
  failed_.clear();
  for (int i = 0; i < options_.workers; ++i) workers_.emplace_back([this] { worker_loop(); });
}

void BatchLoader::worker_loop() {
  const size_t total = batches_per_epoch();
  for (;;) {
    size_t index;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] {
        return stop_ || next_to_build_ >= total ||
               next_to_build_ < next_to_take_ + static_cast<size_t>(options_.prefetch);
      });
      if (stop_ || next_to_build_ >= total) return;
      index = next_to_build_++;
    }
    try {
      Batch batch = build(index);
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(index, std::move(batch));
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      failed_.emplace(index, std::current_exception());
    }
    cv_.notify_all();
  }
}

std::optional<Batch> BatchLoader::next() {
  if (next_to_take_ >= batches_per_epoch()) return std::nullopt;
  if (options_.workers == 0) return build(next_to_take_++);
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return ready_.count(next_to_take_) || failed_.count(next_to_take_); });
  if (auto it = failed_.find(next_to_take_); it != failed_.end())
    std::rethrow_exception(it->second);
  Batch batch = std::move(ready_.at(next_to_take_));
  ready_.erase(next_to_take_++);
  lock.unlock();
  cv_.notify_all();
  return batch;
}

Batch BatchLoader::build(size_t batch_index) const {
  const size_t begin = batch_index * options_.batch_size;
  const size_t end = std::min(samples_.size(), begin + options_.batch_size);
  const int s = options_.image_size;
  const size_t plane = static_cast<size_t>(3) * s * s;
  Batch batch;
  batch.pixels.resize((end - begin) * plane);
  for (size_t pos = begin; pos < end; ++pos) {
    const size_t item = order_[pos];
    const Sample& sample = samples_[item];
    cv::Mat rgb =
        options_.cache ? options_.cache->get(sample.path) : resize_rgb(read_image(sample.path), s);
    if (options_.augment.enabled()) {
      // splitmix-style mix: a distinct, reproducible stream per (seed, epoch, position).
      uint64_t key =
          options_.seed ^ (static_cast<uint64_t>(epoch_) << 40) ^ (pos * 0x9E3779B97F4A7C15ull);
      key ^= key >> 31;
      rgb = augment_image(rgb, options_.augment, key * 0xBF58476D1CE4E5B9ull);
    }
    to_chw_float(rgb, batch.pixels.data() + (pos - begin) * plane);
    batch.labels.push_back(static_cast<float>(sample.label));
    batch.items.push_back(item);
  }
  return batch;
}

}  // namespace malaria
