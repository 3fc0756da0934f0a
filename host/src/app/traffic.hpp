#pragma once
// The last minute of traffic, one sample per second, for the console's sparklines and module map
// (GET /admin/traffic, docs/operations.md): per plugin the requests answered, the 5xx among them
// and the p99 latency; per caller and target the plugin-to-plugin calls and their errors; per
// topic the events published. Sampled on the timer thread from the counters /metrics shows (a
// few microseconds a second); read by the admin API. Thread-safe.

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace keel::host {
class TimerQueue;
}
namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::app {

class TrafficHistory {
 public:
  static constexpr std::size_t kSamples = 60;  ///< one a second

  /// Starts sampling `plugins` every second on `timers`; both must outlive this object.
  TrafficHistory(plugins::PluginHost& plugins, TimerQueue& timers);
  ~TrafficHistory();  ///< stops sampling (waits for a sample in progress)
  TrafficHistory(const TrafficHistory&) = delete;
  TrafficHistory& operator=(const TrafficHistory&) = delete;

  /// Takes one sample now (the timer does this every second; tests call it directly).
  void sample();
  /// {"interval_ms":1000,"samples":N,"plugins":{...},"calls":[...],"topics":[...]}: every series
  /// holds N values, oldest first, N <= 60; p99_ms per second (null: no request) and
  /// p99_minute_ms over all N seconds.
  [[nodiscard]] nlohmann::ordered_json to_json() const;

  /// The p99 (milliseconds) of the requests counted in `buckets` (non-cumulative counts over
  /// observability::kLatencyBuckets and a last +Inf bucket): the upper bound of the bucket the
  /// 99th percentile falls in; the last finite bound when it falls in +Inf; -1 with no request.
  [[nodiscard]] static double p99_ms(const std::uint64_t* buckets, std::size_t count);

 private:
  // A counter source's totals at the last sample: a route, a caller and target, a topic. Kept
  // while the source is gone, so one that comes back with its counters adds no spike.
  struct Totals {
    std::uint64_t count = 0, errors = 0;
    std::vector<std::uint64_t> buckets;  // latency histogram; empty for topics
  };
  // What a source added since the last sample (after a reset, all it holds), and `last` := `now`.
  static Totals advance(Totals& last, Totals now);
  // One displayed series (a plugin, a caller and target, a topic) over the last kSamples seconds.
  struct Series {
    Series() { p99.fill(-1); }
    std::array<double, kSamples> counts{}, errors{}, p99{};
    std::array<std::vector<std::uint64_t>, kSamples> histograms;  // each second's latency counts
    std::size_t idle = 0;  // samples since it was last seen (at most kSamples + 1)
  };
  static void add(Series& s, std::size_t slot, const Totals& delta);
  void schedule();  // under life_->mutex

  plugins::PluginHost& plugins_;
  TimerQueue& timers_;
  // Shared with the pending timer's callback, which may start while the destructor runs: the
  // callback samples only under `mutex` and while not `stopped`, so once the destructor has set
  // it, the callback touches nothing of this object.
  struct Life {
    std::mutex mutex;
    bool stopped = false;
    std::uint64_t timer = 0;
  };
  std::shared_ptr<Life> life_ = std::make_shared<Life>();
  mutable std::mutex mutex_;  // the series below
  std::size_t taken_ = 0;  // samples taken so far; the next goes to slot taken_ % kSamples
  std::map<std::string, Totals> last_;  // by source: "r", plugin, method, route / "c", caller, target / "t", ...
  std::map<std::string, Series> plugins_series_;
  std::map<std::pair<std::string, std::string>, Series> calls_;
  std::map<std::pair<std::string, std::string>, Series> topics_;
};

}  // namespace keel::host::app
