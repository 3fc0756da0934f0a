#include "common/worker_pool.hpp"

namespace keel::host {

WorkerPool::WorkerPool(std::size_t threads, std::size_t max_queued) : max_queued_(max_queued) {
  if (threads == 0) threads = 1;
  threads_.reserve(threads);
  for (std::size_t i = 0; i < threads; ++i) threads_.emplace_back([this] { run(); });
}

WorkerPool::~WorkerPool() { stop(); }

bool WorkerPool::post(Job job) {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ || jobs_.size() >= max_queued_) return false;
    jobs_.push_back(std::move(job));
  }
  cv_.notify_one();
  return true;
}

void WorkerPool::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_ && threads_.empty()) return;
    stopping_ = true;
  }
  cv_.notify_all();
  for (auto& t : threads_)
    if (t.joinable()) t.join();
  threads_.clear();
}

std::size_t WorkerPool::queued() const {
  std::lock_guard lock(mutex_);
  return jobs_.size();
}

void WorkerPool::run() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mutex_);
      cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;  // stopping and drained
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();  // jobs catch their own exceptions: a plugin boundary never throws into the pool
  }
}

bool SerialQueue::post(WorkerPool::Job job) {
  std::lock_guard lock(mutex_);
  if (jobs_.size() >= max_queued_) return false;
  // An idle queue needs a drain: it is posted before the job is queued, under the lock, so when
  // the pool is full nothing was queued (the pool never calls back into a queue while it holds
  // its own lock, and a drain that starts at once waits for this lock and finds the job).
  if (!running_) {
    if (!pool_.post([self = shared_from_this()] { self->drain(); })) return false;
    running_ = true;
  }
  jobs_.push_back(std::move(job));
  return true;
}

void SerialQueue::drain() {
  for (;;) {
    WorkerPool::Job job;
    {
      std::lock_guard lock(mutex_);
      if (jobs_.empty()) {
        running_ = false;
        return;
      }
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

}  // namespace keel::host
