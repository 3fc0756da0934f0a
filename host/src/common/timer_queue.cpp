#include "common/timer_queue.hpp"

namespace keel::host {

TimerQueue::TimerQueue() : thread_([this] { run(); }) {}

TimerQueue::~TimerQueue() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

std::uint64_t TimerQueue::schedule(Clock::time_point when, std::function<void()> fn) {
  std::uint64_t id;
  {
    std::lock_guard lock(mutex_);
    id = next_id_++;
    auto it = order_.emplace(when, id);
    timers_.emplace(id, std::pair{it, std::move(fn)});
  }
  cv_.notify_all();
  return id;
}

bool TimerQueue::cancel(std::uint64_t id) {
  std::lock_guard lock(mutex_);
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  order_.erase(it->second.first);
  timers_.erase(it);
  return true;
}

void TimerQueue::run() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (order_.empty()) {
      cv_.wait(lock);
      continue;
    }
    const auto first = order_.begin();
    if (Clock::now() < first->first) {
      // A copy: wait_until reads the deadline again after waking, and cancel() may have freed
      // this node while the lock was released.
      const auto when = first->first;
      cv_.wait_until(lock, when);
      continue;
    }
    const auto id = first->second;
    order_.erase(first);
    auto node = timers_.extract(id);
    lock.unlock();
    if (!node.empty()) node.mapped().second();
    lock.lock();
  }
}

}  // namespace keel::host
