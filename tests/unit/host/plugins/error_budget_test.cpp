// plugins::ErrorBudget: the sliding window behind [plugin.<name>] quarantine_* (docs/isolation.md).

#include "plugins/error_budget.hpp"

#include <catch2/catch.hpp>

#include "plugins/plugin_host.hpp"

namespace kp = keel::host::plugins;
using namespace std::chrono_literals;

namespace {

keel::host::config::ErrorBudget budget(double rate, std::chrono::milliseconds p99, std::uint32_t min = 10) {
  keel::host::config::ErrorBudget b;
  b.max_error_rate = rate;
  b.max_p99 = p99;
  b.window = 10s;
  b.min_requests = min;
  return b;
}

}  // namespace

TEST_CASE("error budget: the share of 5xx answers over the window trips it once", "[plugins][budget]") {
  kp::ErrorBudget b(budget(0.5, 0ms));
  const auto t0 = kp::ErrorBudget::Clock::time_point(1000s);
  for (int i = 0; i < 5; ++i) CHECK_FALSE(b.record(200, 1ms, t0));
  for (int i = 0; i < 4; ++i) CHECK_FALSE(b.record(503, 1ms, t0));  // 9 answers: below min_requests
  CHECK_FALSE(b.record(500, 1ms, t0));                               // 10 answers, 50%: not over
  CHECK_FALSE(b.over());
  CHECK(b.record(500, 1ms, t0 + 1s));  // 11 answers, 6 failed: 55% > 50%
  CHECK(b.over());
  CHECK(b.reason() == "5xx answers were 55% of 11 in the last 10 s, over quarantine_error_rate=0.5");
  CHECK_FALSE(b.record(500, 1ms, t0 + 1s));  // already over: said once
  b.reset();
  CHECK_FALSE(b.over());
  CHECK(b.reason().empty());
  CHECK_FALSE(b.record(500, 1ms, t0 + 2s));  // the window starts empty again
}

TEST_CASE("error budget: answers older than the window no longer count", "[plugins][budget]") {
  kp::ErrorBudget b(budget(0.5, 0ms, 4));
  const auto t0 = kp::ErrorBudget::Clock::time_point(5000s);
  for (int i = 0; i < 3; ++i) CHECK_FALSE(b.record(500, 1ms, t0));
  // Eleven seconds later the three failures have left the 10 s window: 4 good answers, 1 bad.
  for (int i = 0; i < 4; ++i) CHECK_FALSE(b.record(200, 1ms, t0 + 11s));
  CHECK_FALSE(b.record(500, 1ms, t0 + 11s));
  CHECK_FALSE(b.over());
}

TEST_CASE("error budget: the p99 latency is estimated within its bucket", "[plugins][budget]") {
  // 100 answers: 98 fast (1 ms bucket), 2 slow in (100 ms, 250 ms]: the 99th lies halfway
  // through the slow ones, so the estimate is 100 + 150 * 0.5 = 175 ms.
  std::vector<std::uint64_t> counts(kp::kHttpBuckets.size() + 1, 0);
  counts[1] = 98;
  counts[8] = 2;
  const std::vector<double> bounds(kp::kHttpBuckets.begin(), kp::kHttpBuckets.end());
  CHECK(kp::ErrorBudget::p99(counts, bounds) == Approx(0.175));
  CHECK(kp::ErrorBudget::p99(std::vector<std::uint64_t>(counts.size(), 0), bounds) == 0);

  kp::ErrorBudget b(budget(0, 150ms, 100));
  const auto t0 = kp::ErrorBudget::Clock::time_point(9000s);
  for (int i = 0; i < 98; ++i) CHECK_FALSE(b.record(200, 800us, t0));
  CHECK_FALSE(b.record(200, 200ms, t0));
  CHECK(b.record(200, 200ms, t0));
  CHECK(b.reason() == "p99 latency was 175 ms over 100 answers in the last 10 s, over quarantine_p99_ms=150");
}
