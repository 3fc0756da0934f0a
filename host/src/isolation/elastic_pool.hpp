#pragma once
// ElasticPool: the threads the host serves a runner's blocking calls of the host API on
// (isolation/runner_impl.hpp). Internal to isolation/.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

namespace keel::host::isolation {

/// Runs jobs on threads made when every existing one is busy, up to `max`. The runner's calls
/// of the host API that may block (storage, durable publishes) run here: each gets a thread as
/// it would have had in process, so one waiting for the database writer never holds back the
/// commit of the transaction that owns it.
class ElasticPool {
 public:
  explicit ElasticPool(std::size_t max) : max_(max) {}
  ~ElasticPool() { stop(); }
  ElasticPool(const ElasticPool&) = delete;
  ElasticPool& operator=(const ElasticPool&) = delete;

  bool post(std::function<void()> job) {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
    // More jobs waiting than threads idle: a new thread, even if one is about to wake (a job
    // that waits for the database writer must never hold back the holder's commit).
    if (jobs_.size() > idle_ && threads_.size() < max_) threads_.emplace_back([this] { run(); });
    else ready_.notify_one();
    return true;
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      jobs_.clear();
    }
    ready_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ++idle_;
      ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (stopping_) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  const std::size_t max_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

}  // namespace keel::host::isolation
