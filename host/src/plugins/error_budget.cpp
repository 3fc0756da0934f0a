#include "plugins/error_budget.hpp"

#include <algorithm>

#include <fmt/format.h>

#include "plugins/plugin_host.hpp"

namespace keel::host::plugins {

ErrorBudget::ErrorBudget(const config::ErrorBudget& budget)
    : budget_(budget), bounds_(kHttpBuckets.begin(), kHttpBuckets.end()) {
  const auto seconds = std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::seconds>(budget.window).count());
  slots_.resize(static_cast<std::size_t>(seconds));
  for (auto& s : slots_) s.buckets.assign(bounds_.size() + 1, 0);
}

double ErrorBudget::p99(const std::vector<std::uint64_t>& counts, const std::vector<double>& bounds) {
  std::uint64_t total = 0;
  for (const auto c : counts) total += c;
  if (total == 0) return 0;
  const double rank = 0.99 * static_cast<double>(total);
  double below = 0;
  for (std::size_t i = 0; i < counts.size(); ++i) {
    const auto in = static_cast<double>(counts[i]);
    if (below + in >= rank && in > 0) {
      if (i >= bounds.size()) return bounds.back();  // in +Inf: at least the last bound
      const double lo = i == 0 ? 0 : bounds[i - 1];
      return lo + (bounds[i] - lo) * (rank - below) / in;
    }
    below += in;
  }
  return bounds.back();
}

bool ErrorBudget::record(unsigned status, Clock::duration took, Clock::time_point now) {
  const auto second = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const double secs = std::chrono::duration<double>(took).count();
  std::size_t bucket = 0;
  while (bucket < bounds_.size() && secs > bounds_[bucket]) ++bucket;
  std::lock_guard lock(mutex_);
  const auto n = static_cast<std::int64_t>(slots_.size());
  auto& slot = slots_[static_cast<std::size_t>(second % n)];
  if (slot.second != second) {
    slot.second = second;
    slot.answers = slot.errors = 0;
    std::fill(slot.buckets.begin(), slot.buckets.end(), 0);
  }
  ++slot.answers;
  if (status >= 500) ++slot.errors;
  ++slot.buckets[bucket];
  if (over_.load(std::memory_order_relaxed)) return false;

  std::uint64_t answers = 0, errors = 0;
  std::vector<std::uint64_t> buckets(bounds_.size() + 1, 0);
  for (const auto& s : slots_) {
    if (s.second <= second - n) continue;  // older than the window
    answers += s.answers;
    errors += s.errors;
    for (std::size_t i = 0; i < buckets.size(); ++i) buckets[i] += s.buckets[i];
  }
  if (answers < budget_.min_requests) return false;
  const auto window_s = static_cast<double>(budget_.window.count()) / 1000.0;
  const double rate = static_cast<double>(errors) / static_cast<double>(answers);
  if (budget_.max_error_rate > 0 && rate > budget_.max_error_rate) {
    reason_ = fmt::format("5xx answers were {:.0f}% of {} in the last {:g} s, over quarantine_error_rate={:g}",
                          rate * 100, answers, window_s, budget_.max_error_rate);
  } else if (budget_.max_p99.count() > 0) {
    const double p = p99(buckets, bounds_);
    if (p * 1000 > static_cast<double>(budget_.max_p99.count()))
      reason_ = fmt::format("p99 latency was {:.0f} ms over {} answers in the last {:g} s, over quarantine_p99_ms={}",
                            p * 1000, answers, window_s, budget_.max_p99.count());
  }
  if (reason_.empty()) return false;
  over_.store(true, std::memory_order_release);
  return true;
}

std::string ErrorBudget::reason() const {
  std::lock_guard lock(mutex_);
  return reason_;
}

void ErrorBudget::reset() {
  std::lock_guard lock(mutex_);
  for (auto& s : slots_) s.second = -1;
  reason_.clear();
  over_.store(false, std::memory_order_release);
}

}  // namespace keel::host::plugins
