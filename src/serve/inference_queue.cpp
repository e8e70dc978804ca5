#include "serve/inference_queue.h"

#include <chrono>

namespace malaria {

InferenceQueue::InferenceQueue(const Classifier& model, size_t max_batch, size_t capacity,
                               int max_wait_ms, std::function<void(size_t)> on_batch)
    : model_(model),
      max_batch_(std::max<size_t>(1, max_batch)),
      capacity_(capacity),
      max_wait_ms_(max_wait_ms),
      on_batch_(std::move(on_batch)),
      worker_([this] { run(); }) {}

InferenceQueue::~InferenceQueue() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

size_t InferenceQueue::waiting_images() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return waiting_;
}

std::optional<std::future<std::vector<float>>> InferenceQueue::submit(std::vector<float> pixels,
                                                                      size_t n) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (stop_ || (waiting_ > 0 && waiting_ + n > capacity_)) return std::nullopt;
  Job job{std::move(pixels), n, {}};
  auto future = job.result.get_future();
  jobs_.push_back(std::move(job));
  waiting_ += n;
  cv_.notify_one();
  return future;
}

void InferenceQueue::run() {
  const size_t image_floats = 3ull * model_.image_size() * model_.image_size();
  std::vector<float> batch_pixels;
  for (;;) {
    std::vector<Job> batch;
    size_t images = 0;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping, nothing left
      if (max_wait_ms_ > 0 && waiting_ < max_batch_)
        cv_.wait_for(lock, std::chrono::milliseconds(max_wait_ms_),
                     [&] { return stop_ || waiting_ >= max_batch_; });
      // Take whole requests while they fit; a single request larger than max_batch runs alone.
      while (!jobs_.empty() && (batch.empty() || images + jobs_.front().n <= max_batch_)) {
        images += jobs_.front().n;
        batch.push_back(std::move(jobs_.front()));
        jobs_.pop_front();
      }
      waiting_ -= images;
    }
    try {
      const float* input = batch.front().pixels.data();
      if (batch.size() > 1) {
        batch_pixels.resize(images * image_floats);
        size_t offset = 0;
        for (const auto& job : batch) {
          std::copy(job.pixels.begin(), job.pixels.end(), batch_pixels.begin() + offset);
          offset += job.pixels.size();
        }
        input = batch_pixels.data();
      }
      const std::vector<float> prob = model_.predict(input, images);
      if (on_batch_) on_batch_(images);
      size_t offset = 0;
      for (auto& job : batch) {
        job.result.set_value(
            std::vector<float>(prob.begin() + offset, prob.begin() + offset + job.n));
        offset += job.n;
      }
    } catch (...) {
      for (auto& job : batch) job.result.set_exception(std::current_exception());
    }
  }
}

}  // namespace malaria
