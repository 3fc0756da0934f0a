#pragma once
// ErrorBudget watches one plugin generation's answers over a sliding window of one-second
// slots and says when they go over the budget its config sets ([plugin.<name>] quarantine_*):
// the share of 5xx answers, or the 99th percentile latency, estimated from a latency histogram
// the way Prometheus' histogram_quantile() does (linear within the bucket that holds it).
// Thread-safe: record() takes a short lock, paid only by plugins that set a budget.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace keel::host::plugins {

class ErrorBudget {
 public:
  using Clock = std::chrono::steady_clock;
  explicit ErrorBudget(const config::ErrorBudget& budget);

  /// Records one answer. True when this answer put the window over budget: over() is true from
  /// then on and reason() says why, e.g. "5xx answers were 62% of 40 in the last 30 s, over
  /// quarantine_error_rate=0.5".
  bool record(unsigned status, Clock::duration took, Clock::time_point now = Clock::now());
  /// Over budget: the plugin is out of routing until reset(). Lock-free.
  [[nodiscard]] bool over() const noexcept { return over_.load(std::memory_order_acquire); }
  [[nodiscard]] std::string reason() const;
  /// Forgets the window and the verdict (the plugin was brought back).
  void reset();

  /// The 99th percentile of `counts` (non-cumulative, over `bounds` + +Inf) in seconds: 0 without samples.
  [[nodiscard]] static double p99(const std::vector<std::uint64_t>& counts, const std::vector<double>& bounds);

 private:
  struct Slot {
    std::int64_t second = -1;
    std::uint64_t answers = 0, errors = 0;
    std::vector<std::uint64_t> buckets;
  };
  config::ErrorBudget budget_;
  std::vector<double> bounds_;
  mutable std::mutex mutex_;
  std::vector<Slot> slots_;
  std::string reason_;
  std::atomic<bool> over_{false};
};

}  // namespace keel::host::plugins
