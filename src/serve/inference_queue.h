// Dynamic batching for the server: requests from many HTTP threads are queued, and one worker
// runs everything waiting (up to max_batch images) through a single forward pass.
#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "model/classifier.h"

namespace malaria {

class InferenceQueue {
 public:
  // capacity: images allowed to wait; beyond it submit() refuses (the server answers 503).
  InferenceQueue(const Classifier& model, size_t max_batch, size_t capacity, int max_wait_ms = 0,
                 std::function<void(size_t)> on_batch = {});
  ~InferenceQueue();  // finishes queued work, then stops

  // n preprocessed images (n x 3 x S x S). nullopt when the queue is full.
  std::optional<std::future<std::vector<float>>> submit(std::vector<float> pixels, size_t n);
  size_t waiting_images() const;

 private:
  struct Job {
    std::vector<float> pixels;
    size_t n;
    std::promise<std::vector<float>> result;
  };
  void run();

  const Classifier& model_;
  const size_t max_batch_, capacity_;
  const int max_wait_ms_;
  std::function<void(size_t)> on_batch_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  size_t waiting_ = 0;
  bool stop_ = false;
  std::thread worker_;
};

}  // namespace malaria
