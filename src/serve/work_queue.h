// Every model call of the server goes through this queue, as every task of llama.cpp's server
// goes through its task queue: one worker thread runs the networks, requests wait here, and a
// request that does not fit is refused before any work is done (the server answers 503 with
// Retry-After). Work is admitted by kind and cost, so one kind cannot crowd out another: a flood
// of explanations or screenings leaves room for plain predictions, and the worker takes the
// kinds in turn.
#pragma once

#include <array>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "detect/detector.h"
#include "model/classifier.h"

namespace malaria {

enum class WorkKind { classify, explain, screen };
inline constexpr size_t kWorkKinds = 3;
const char* work_kind_name(WorkKind kind);  // "classify", "explain", "screen"

struct WorkLimits {
  size_t max_batch = 32;  // images per forward pass
  int batch_wait_ms = 0;  // extra wait to fill a classification batch; 0 takes what is queued
  // What may be admitted at once, per kind: cell images for classify and explain, megapixels
  // of field photos for screen. A request larger than a whole budget is admitted alone.
  std::array<size_t, kWorkKinds> capacity = {1024, 64, 128};
};

// Thrown into the futures of work that was waiting when the queue was cancelled (a server
// shutting down past its drain time), and by submissions after that.
class WorkCancelled : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class WorkQueue {
 public:
  // Admission of `cost` units of one kind, held for as long as the request works. Movable.
  class Ticket {
   public:
    Ticket(Ticket&& other) noexcept;
    Ticket& operator=(Ticket&&) = delete;
    Ticket(const Ticket&) = delete;
    ~Ticket();
    WorkKind kind() const { return kind_; }

   private:
    friend class WorkQueue;
    Ticket(WorkQueue* queue, WorkKind kind, size_t cost)
        : queue_(queue), kind_(kind), cost_(cost) {}
    WorkQueue* queue_;
    WorkKind kind_;
    size_t cost_;
  };

  // on_batch(kind, images) is called by the worker after each forward pass (metrics).
  explicit WorkQueue(WorkLimits limits, std::function<void(WorkKind, size_t)> on_batch = {});
  ~WorkQueue();  // finishes queued work, then stops
  WorkQueue(const WorkQueue&) = delete;
  WorkQueue& operator=(const WorkQueue&) = delete;

  // nullopt when that kind's budget is full (or the queue is cancelled).
  std::optional<Ticket> admit(WorkKind kind, size_t cost);

  // P(Parasitized) (and atypicality, when the model has a typicality model) for n preprocessed
  // images (n x 3 x S x S), in one forward pass with whatever else of the same model and kind is
  // waiting (up to max_batch images).
  std::future<Classifier::Scores> predict(const Ticket& ticket, const Classifier& model,
                                          std::vector<float> pixels, size_t n);
  // The cell detector's output maps for one prepared field (CellDetector::prepare), under a
  // screen ticket: a forward pass of its own.
  std::future<std::vector<float>> detect(const Ticket& ticket, const CellDetector& detector,
                                         std::vector<float> input, cv::Size size);
  // Grad-CAM for n preprocessed images.
  std::future<std::vector<Classifier::Explanation>> explain(const Ticket& ticket,
                                                            const Classifier& model,
                                                            std::vector<float> pixels, size_t n);

  // Stop waiting to fill batches (a server that is stopping answers what it has).
  void flush();
  // Fail all waiting work and every later admission or submission with WorkCancelled.
  void cancel();
  bool cancelled() const;  // handlers check it between steps that do not go through the queue

  struct Stats {
    std::array<size_t, kWorkKinds> admitted{};        // cost units held by tickets
    std::array<size_t, kWorkKinds> waiting_images{};  // images queued for the worker
    size_t batches = 0;                               // forward passes run
  };
  Stats stats() const;

 private:
  struct Job {
    WorkKind kind;
    const Classifier* model;
    std::vector<float> pixels;
    size_t n;
    std::promise<Classifier::Scores> scores;                          // classify, screen
    std::promise<std::vector<Classifier::Explanation>> explanations;  // explain
    const CellDetector* detector = nullptr;  // a detection job (model is null): maps
    std::promise<std::vector<float>> maps;   // the detector's output
    cv::Size size;                           // its prepared input's size
  };
  void enqueue(Job job);
  void release(WorkKind kind, size_t cost);
  bool any_waiting() const;
  std::vector<Job> take_batch(std::unique_lock<std::mutex>& lock);
  void run(std::vector<Job>& batch);
  void worker();

  const WorkLimits limits_;
  const std::function<void(WorkKind, size_t)> on_batch_;
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::array<std::deque<Job>, kWorkKinds> jobs_;
  Stats stats_;
  size_t next_kind_ = 0;  // round robin over the kinds
  bool flushing_ = false, cancelled_ = false, stop_ = false;
  std::thread worker_;
};

}  // namespace malaria
