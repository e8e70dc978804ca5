// Streams batches of preprocessed (and optionally augmented) images from disk, built by
// background workers a few batches ahead of the consumer, in a deterministic order.
#pragma once

#include <condition_variable>
#include <exception>
#include <map>
#include <mutex>
#include <opencv2/core.hpp>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "data/augment.h"
#include "data/dataset.h"

namespace malaria {

// Decoded, resized 8-bit RGB images kept in RAM (--cache): memory grows by size*size*3 per image.
class ImageCache {
 public:
  explicit ImageCache(int image_size) : image_size_(image_size) {}
  cv::Mat get(const std::string& path);  // decodes and stores on first use
  size_t bytes() const;
  int image_size() const { return image_size_; }

 private:
  int image_size_;
  mutable std::mutex mutex_;
  std::unordered_map<std::string, cv::Mat> images_;
};

struct LoaderOptions {
  int image_size = 64;
  int batch_size = 32;
  bool shuffle = false;
  uint64_t seed = 0;
  AugmentConfig augment = AugmentConfig::none();
  int workers = 1;   // background threads; 0 builds batches on the caller's thread
  int prefetch = 4;  // batches built ahead of the consumer
  ImageCache* cache = nullptr;
};

struct Batch {
  std::vector<float> pixels;  // N x 3 x S x S, values in [0,1]
  std::vector<float> labels;  // N, 1 for Parasitized
  std::vector<size_t> items;  // index of each image in the loader's sample list
  size_t size() const { return items.size(); }
};

class BatchLoader {
 public:
  BatchLoader(std::vector<Sample> samples, LoaderOptions options);
  ~BatchLoader();
  BatchLoader(const BatchLoader&) = delete;
  BatchLoader& operator=(const BatchLoader&) = delete;

  const std::vector<Sample>& samples() const { return samples_; }
  size_t batches_per_epoch() const;
  const LoaderOptions& options() const { return options_; }

  // Order and augmentation depend only on (seed, epoch), so an interrupted epoch can be resumed
  // at `first_batch` and see exactly the batches it would have seen.
  void start_epoch(int epoch, size_t first_batch = 0);
  // Next batch of the epoch, or nullopt at its end. Rethrows a worker's error (e.g. a file that
  // became unreadable) naming the file.
  std::optional<Batch> next();

 private:
  Batch build(size_t batch_index) const;
  void stop_workers();
  void worker_loop();

  std::vector<Sample> samples_;
  LoaderOptions options_;
  std::vector<size_t> order_;
  int epoch_ = 0;

  std::mutex mutex_;
  std::condition_variable cv_;
  bool stop_ = false;
  size_t next_to_build_ = 0, next_to_take_ = 0;
  std::map<size_t, Batch> ready_;
  std::map<size_t, std::exception_ptr> failed_;
  std::vector<std::thread> workers_;
};

}  // namespace malaria
