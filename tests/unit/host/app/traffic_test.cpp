#include <catch2/catch.hpp>

#include <cstdint>
#include <vector>

#include "app/traffic.hpp"
#include "observability/metrics.hpp"

using keel::host::app::TrafficHistory;

TEST_CASE("traffic: p99 is the upper bound of the bucket the 99th percentile falls in", "[app][traffic]") {
  const auto& bounds = keel::host::observability::kLatencyBuckets;
  std::vector<std::uint64_t> buckets(bounds.size() + 1, 0);
  CHECK(TrafficHistory::p99_ms(buckets.data(), buckets.size()) == -1);  // no request

  buckets[0] = 100;
  CHECK(TrafficHistory::p99_ms(buckets.data(), buckets.size()) == Approx(bounds[0] * 1000));
  // 99 fast and 1 slow: the 99th of 100 is still fast; 98 and 2: it is slow.
  buckets[0] = 99;
  buckets[3] = 1;
  CHECK(TrafficHistory::p99_ms(buckets.data(), buckets.size()) == Approx(bounds[0] * 1000));
  buckets[0] = 98;
  buckets[3] = 2;
  CHECK(TrafficHistory::p99_ms(buckets.data(), buckets.size()) == Approx(bounds[3] * 1000));
  // In the +Inf bucket: the last finite bound.
  buckets.assign(buckets.size(), 0);
  buckets.back() = 5;
  CHECK(TrafficHistory::p99_ms(buckets.data(), buckets.size()) == Approx(bounds.back() * 1000));
  // One request: it is the p99.
  buckets.assign(buckets.size(), 0);
  buckets[2] = 1;
  CHECK(TrafficHistory::p99_ms(buckets.data(), buckets.size()) == Approx(bounds[2] * 1000));
}
