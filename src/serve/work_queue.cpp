#include "serve/work_queue.h"

#include <algorithm>
#include <chrono>

namespace malaria {

const char* work_kind_name(WorkKind kind) {
  switch (kind) {
    case WorkKind::classify:
      return "classify";
    case WorkKind::explain:
      return "explain";
    case WorkKind::screen:
      return "screen";
  }
  return "unknown";
}

namespace {
size_t index_of(WorkKind kind) { return static_cast<size_t>(kind); }
const WorkCancelled kShuttingDown("server is shutting down: the request was not finished");
}  // namespace

WorkQueue::Ticket::Ticket(Ticket&& other) noexcept
    : queue_(other.queue_), kind_(other.kind_), cost_(other.cost_) {
  other.queue_ = nullptr;
}

WorkQueue::Ticket::~Ticket() {
  if (queue_) queue_->release(kind_, cost_);
}

WorkQueue::WorkQueue(WorkLimits limits, std::function<void(WorkKind, size_t)> on_batch)
    : limits_([&] {
        limits.max_batch = std::max<size_t>(1, limits.max_batch);
        return limits;
      }()),
      on_batch_(std::move(on_batch)),
      worker_([this] { worker(); }) {}

WorkQueue::~WorkQueue() {
  {
    std::lock_guard lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  worker_.join();
}

std::optional<WorkQueue::Ticket> WorkQueue::admit(WorkKind kind, size_t cost) {
  std::lock_guard lock(mutex_);
  size_t& held = stats_.admitted[index_of(kind)];
  if (cancelled_ || stop_ || (held > 0 && held + cost > limits_.capacity[index_of(kind)]))
    return std::nullopt;
  held += cost;
  return Ticket(this, kind, cost);
}

void WorkQueue::release(WorkKind kind, size_t cost) {
  std::lock_guard lock(mutex_);
  stats_.admitted[index_of(kind)] -= cost;
}

std::future<Classifier::Scores> WorkQueue::predict(const Ticket& ticket, const Classifier& model,
                                                   std::vector<float> pixels, size_t n) {
  Job job{ticket.kind() == WorkKind::explain ? WorkKind::classify : ticket.kind(),
          &model,
          std::move(pixels),
          n,
          {},
          {},
          nullptr,
          {},
          {}};
  auto future = job.scores.get_future();
  enqueue(std::move(job));
  return future;
}

std::future<std::vector<float>> WorkQueue::detect(const Ticket& ticket,
                                                  const CellDetector& detector,
                                                  std::vector<float> input, cv::Size size) {
  Job job{ticket.kind(), nullptr, std::move(input), 1, {}, {}, &detector, {}, size};
  auto result = job.maps.get_future();
  enqueue(std::move(job));
  return result;
}

std::future<std::vector<Classifier::Explanation>> WorkQueue::explain(const Ticket&,
                                                                     const Classifier& model,
                                                                     std::vector<float> pixels,
                                                                     size_t n) {
  Job job{WorkKind::explain, &model, std::move(pixels), n, {}, {}, nullptr, {}, {}};
  auto future = job.explanations.get_future();
  enqueue(std::move(job));
  return future;
}

void WorkQueue::enqueue(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (cancelled_ || stop_) throw kShuttingDown;
    stats_.waiting_images[index_of(job.kind)] += job.n;
    jobs_[index_of(job.kind)].push_back(std::move(job));
  }
  cv_.notify_all();
}

bool WorkQueue::cancelled() const {
  std::lock_guard lock(mutex_);
  return cancelled_;
}

void WorkQueue::flush() {
  {
    std::lock_guard lock(mutex_);
    flushing_ = true;
  }
  cv_.notify_all();
}

void WorkQueue::cancel() {
  std::vector<Job> dropped;
  {
    std::lock_guard lock(mutex_);
    cancelled_ = flushing_ = true;
    for (size_t k = 0; k < kWorkKinds; ++k) {
      for (auto& job : jobs_[k]) dropped.push_back(std::move(job));
      jobs_[k].clear();
      stats_.waiting_images[k] = 0;
    }
  }
  cv_.notify_all();
  for (auto& job : dropped) {
    const auto error = std::make_exception_ptr(kShuttingDown);
    if (job.detector)
      job.maps.set_exception(error);
    else if (job.kind == WorkKind::explain)
      job.explanations.set_exception(error);
    else
      job.scores.set_exception(error);
  }
}

WorkQueue::Stats WorkQueue::stats() const {
  std::lock_guard lock(mutex_);
  return stats_;
}

bool WorkQueue::any_waiting() const {
  return std::any_of(jobs_.begin(), jobs_.end(), [](const auto& q) { return !q.empty(); });
}

// The next kind in turn that has work; for classify and screen, the jobs behind the first that
// use the same model join its forward pass while they fit.
std::vector<WorkQueue::Job> WorkQueue::take_batch(std::unique_lock<std::mutex>& lock) {
  auto& classify = jobs_[index_of(WorkKind::classify)];
  const bool only_classify =
      jobs_[index_of(WorkKind::explain)].empty() && jobs_[index_of(WorkKind::screen)].empty();
  // Dynamic batching: with nothing else to do, wait a little for more single images.
  if (limits_.batch_wait_ms > 0 && only_classify && !flushing_ &&
      stats_.waiting_images[index_of(WorkKind::classify)] < limits_.max_batch)
    cv_.wait_for(lock, std::chrono::milliseconds(limits_.batch_wait_ms), [&] {
      return stop_ || flushing_ || classify.empty() ||
             stats_.waiting_images[index_of(WorkKind::classify)] >= limits_.max_batch ||
             !jobs_[index_of(WorkKind::explain)].empty() ||
             !jobs_[index_of(WorkKind::screen)].empty();
    });
  std::vector<Job> batch;
  for (size_t tries = 0; tries < kWorkKinds && batch.empty(); ++tries) {
    const size_t k = next_kind_;
    next_kind_ = (next_kind_ + 1) % kWorkKinds;
    auto& queue = jobs_[k];
    size_t images = 0;
    while (!queue.empty() &&
           (batch.empty() || (k != index_of(WorkKind::explain) && !batch.front().detector &&
                              queue.front().model == batch.front().model &&
                              images + queue.front().n <= limits_.max_batch))) {
      images += queue.front().n;
      batch.push_back(std::move(queue.front()));
      queue.pop_front();
    }
    stats_.waiting_images[k] -= images;
  }
  return batch;
}

void WorkQueue::run(std::vector<Job>& batch) {
  try {
    if (const CellDetector* detector = batch.front().detector) {  // always alone in its batch
      // Not reported to on_batch_: its histogram is of cell crops per forward pass.
      auto maps = detector->forward(batch.front().pixels.data(), 1, batch.front().size);
      batch.front().maps.set_value(std::move(maps));
      return;
    }
    const Classifier& model = *batch.front().model;
    if (batch.front().kind == WorkKind::explain) {
      auto explanations = model.explain(batch.front().pixels.data(), batch.front().n);
      if (on_batch_) on_batch_(WorkKind::explain, batch.front().n);
      batch.front().explanations.set_value(std::move(explanations));
      return;
    }
    size_t images = 0;
    for (const auto& job : batch) images += job.n;
    std::vector<float> joined;
    const float* input = batch.front().pixels.data();
    if (batch.size() > 1) {
      joined.reserve(images * (batch.front().pixels.size() / std::max<size_t>(1, batch.front().n)));
      for (const auto& job : batch)
        joined.insert(joined.end(), job.pixels.begin(), job.pixels.end());
      input = joined.data();
    }
    const Classifier::Scores scores = model.score(input, images);
    if (on_batch_) on_batch_(batch.front().kind, images);
    // Every result is built before any promise is set, so a failure (bad_alloc) can still go
    // to all of them.
    std::vector<Classifier::Scores> results;
    size_t offset = 0;
    for (const auto& job : batch) {
      Classifier::Scores part;
      part.probability.assign(scores.probability.begin() + offset,
                              scores.probability.begin() + offset + job.n);
      if (!scores.atypicality.empty())
        part.atypicality.assign(scores.atypicality.begin() + offset,
                                scores.atypicality.begin() + offset + job.n);
      results.push_back(std::move(part));
      offset += job.n;
    }
    for (size_t j = 0; j < batch.size(); ++j) batch[j].scores.set_value(std::move(results[j]));
    return;
  } catch (...) {
    for (auto& job : batch) {
      if (job.detector)
        job.maps.set_exception(std::current_exception());
      else if (job.kind == WorkKind::explain)
        job.explanations.set_exception(std::current_exception());
      else
        job.scores.set_exception(std::current_exception());
    }
  }
}

void WorkQueue::worker() {
  for (;;) {
    std::vector<Job> batch;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [&] { return stop_ || any_waiting(); });
      if (!any_waiting()) return;  // stopping, nothing left
      batch = take_batch(lock);
    }
    if (batch.empty()) continue;
    run(batch);
    std::lock_guard lock(mutex_);
    stats_.batches++;
  }
}

}  // namespace malaria
