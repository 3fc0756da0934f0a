#pragma once
// A fixed set of threads running queued jobs, for work that may block (plugin handlers marked
// blocking, serialized plugins, plugin-to-plugin calls) so I/O threads never do. The queue is
// bounded: post() refuses work when full instead of growing without limit. SerialQueue runs its
// jobs one at a time, in order, on the pool. All members are thread-safe.

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

namespace keel::host {

class WorkerPool {
 public:
  using Job = std::function<void()>;
  WorkerPool(std::size_t threads, std::size_t max_queued);
  ~WorkerPool();  ///< runs every queued job, then joins
  WorkerPool(const WorkerPool&) = delete;
  WorkerPool& operator=(const WorkerPool&) = delete;

  /// Queue `job`; false if the queue is full or the pool is stopping (the job is not run).
  bool post(Job job);
  /// Stop accepting jobs, finish the queued ones and join the threads. Idempotent.
  void stop();
  [[nodiscard]] std::size_t queued() const;

 private:
  void run();
  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Job> jobs_;
  std::vector<std::thread> threads_;
  std::size_t max_queued_;
  bool stopping_ = false;
};

/// Jobs posted here never overlap and run in post order, on `pool`'s threads.
class SerialQueue : public std::enable_shared_from_this<SerialQueue> {
 public:
  explicit SerialQueue(WorkerPool& pool, std::size_t max_queued) : pool_(pool), max_queued_(max_queued) {}
  /// False if this queue or the pool is full.
  bool post(WorkerPool::Job job);

 private:
  void drain();
  WorkerPool& pool_;
  std::size_t max_queued_;
  std::mutex mutex_;
  std::deque<WorkerPool::Job> jobs_;
  bool running_ = false;
};

}  // namespace keel::host
