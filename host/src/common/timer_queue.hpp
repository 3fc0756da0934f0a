#pragma once
// One thread that runs callbacks at deadlines (plugin-to-plugin call timeouts). Callbacks must
// be short: they run on the timer thread. Cancellation is by id. Thread-safe.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace keel::host {

class TimerQueue {
 public:
  using Clock = std::chrono::steady_clock;
  TimerQueue();
  ~TimerQueue();  ///< drops pending timers without running them
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;

  /// Run `fn` at `when`; returns an id for cancel().
  std::uint64_t schedule(Clock::time_point when, std::function<void()> fn);
  /// True if the timer was pending and will not run.
  bool cancel(std::uint64_t id);

 private:
  void run();
  std::mutex mutex_;
  std::condition_variable cv_;
  std::multimap<Clock::time_point, std::uint64_t> order_;
  std::unordered_map<std::uint64_t, std::pair<std::multimap<Clock::time_point, std::uint64_t>::iterator,
                                              std::function<void()>>>
      timers_;
  std::uint64_t next_id_ = 1;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace keel::host
