#include "app/traffic.hpp"

#include <chrono>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/timer_queue.hpp"
#include "events/bus.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::app {

double TrafficHistory::Track::step(std::uint64_t total) {
  const auto delta = total >= last ? total - last : total;  // a counter that went down was reset
  last = total;
  return static_cast<double>(delta);
}

double TrafficHistory::p99_ms(const std::uint64_t* buckets, std::size_t count) {
  std::uint64_t total = 0;
  for (std::size_t i = 0; i < count; ++i) total += buckets[i];
  if (total == 0) return -1;
  // The smallest bucket holding the ceil(0.99 * total)-th request.
  const auto rank = (total * 99 + 99) / 100;
  const auto& bounds = plugins::kHttpBuckets;
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < count; ++i) {
    seen += buckets[i];
    if (seen >= rank) return (i < bounds.size() ? bounds[i] : bounds.back()) * 1000.0;
  }
  return bounds.back() * 1000.0;
}

TrafficHistory::TrafficHistory(plugins::PluginHost& plugins, TimerQueue& timers) : plugins_(plugins), timers_(timers) {
  std::lock_guard lock(life_->mutex);
  schedule();
}

TrafficHistory::~TrafficHistory() {
  std::lock_guard lock(life_->mutex);  // a sample in progress holds it
  life_->stopped = true;
  timers_.cancel(life_->timer);
}

void TrafficHistory::schedule() {
  life_->timer = timers_.schedule(TimerQueue::Clock::now() + std::chrono::seconds(1), [this, life = life_] {
    std::lock_guard lock(life->mutex);
    if (life->stopped) return;
    sample();
    schedule();
  });
}

void TrafficHistory::record(Series& s, std::size_t slot, bool baseline, std::uint64_t count, std::uint64_t errors,
                            const std::vector<std::uint64_t>* buckets) {
  s.idle = 0;
  s.counts[0].values[slot] = s.counts[0].step(count);
  s.counts[1].values[slot] = s.counts[1].step(errors);
  if (baseline) s.counts[0].values[slot] = s.counts[1].values[slot] = 0;
  if (buckets == nullptr) return;
  // This second's histogram: the difference from the last sample's (all of it after a reset;
  // a histogram first seen now started empty).
  std::vector<std::uint64_t> delta(buckets->size());
  bool reset = s.last_buckets.size() != buckets->size();
  for (std::size_t i = 0; i < buckets->size() && !reset; ++i) reset = (*buckets)[i] < s.last_buckets[i];
  for (std::size_t i = 0; i < buckets->size(); ++i) delta[i] = reset ? (*buckets)[i] : (*buckets)[i] - s.last_buckets[i];
  s.last_buckets = *buckets;
  if (baseline) return;
  s.p99[slot] = p99_ms(delta.data(), delta.size());
  s.histograms[slot] = std::move(delta);
}

void TrafficHistory::sample() {
  // Read the counters before taking the lock: to_json() never waits behind them.
  const auto routes = plugins_.route_stats();
  const auto calls = plugins_.call_stats();
  const auto topics = plugins_.bus().topics();

  std::map<std::string, std::tuple<std::uint64_t, std::uint64_t, std::vector<std::uint64_t>>> per_plugin;
  for (const auto& r : routes) {
    auto& [requests, errors, buckets] = per_plugin[r.plugin];
    for (const auto n : r.by_class) requests += n;
    errors += r.by_class[4];
    if (buckets.size() < r.buckets.size()) buckets.resize(r.buckets.size());
    for (std::size_t i = 0; i < r.buckets.size(); ++i) buckets[i] += r.buckets[i];
  }

  std::lock_guard lock(mutex_);
  const auto slot = taken_ % kSamples;
  const bool baseline = taken_ == 0;
  ++taken_;
  // Whatever is not seen this second counts nothing in it. A series is kept when it goes (its
  // counters may come back where they were), and left out of to_json() after a minute unseen.
  const auto age = [slot](auto& all) {
    for (auto& [key, s] : all) {
      if (s.idle < kSamples + 1) ++s.idle;
      s.counts[0].values[slot] = s.counts[1].values[slot] = 0;
      s.p99[slot] = -1;
      s.histograms[slot].clear();
    }
  };
  age(plugins_series_);
  age(calls_);
  age(topics_);
  for (const auto& [name, totals] : per_plugin)
    record(plugins_series_[name], slot, baseline, std::get<0>(totals), std::get<1>(totals), &std::get<2>(totals));
  for (const auto& c : calls) record(calls_[{c.caller, c.target}], slot, baseline, c.calls, c.errors, &c.buckets);
  for (const auto& t : topics)
    if (!t.topic.empty()) record(topics_[{t.publisher, t.topic}], slot, baseline, t.published, t.refused, nullptr);
}

nlohmann::ordered_json TrafficHistory::to_json() const {
  using Json = nlohmann::ordered_json;
  std::lock_guard lock(mutex_);
  const auto n = taken_ < kSamples ? taken_ : kSamples;
  const auto first = taken_ - n;  // the oldest sample held
  const auto series = [&](const std::array<double, kSamples>& values, bool latency) {
    Json out = Json::array();
    for (std::size_t i = 0; i < n; ++i) {
      const auto v = values[(first + i) % kSamples];
      out.push_back(!latency ? Json(static_cast<std::uint64_t>(v)) : v < 0 ? Json(nullptr) : Json(v));
    }
    return out;
  };
  // The p99 over every second held: the sum of their histograms.
  const auto minute_p99 = [](const Series& s) {
    std::vector<std::uint64_t> total;
    for (const auto& h : s.histograms) {
      if (total.size() < h.size()) total.resize(h.size());
      for (std::size_t i = 0; i < h.size(); ++i) total[i] += h[i];
    }
    const auto p = p99_ms(total.data(), total.size());
    return p < 0 ? Json(nullptr) : Json(p);
  };
  Json out{{"interval_ms", 1000}, {"samples", n}};
  auto& plugins = out["plugins"] = Json::object();
  for (const auto& [name, s] : plugins_series_)
    if (s.idle <= kSamples) plugins[name] = {{"requests", series(s.counts[0].values, false)},
                     {"errors", series(s.counts[1].values, false)},
                     {"p99_ms", series(s.p99, true)},
                     {"p99_minute_ms", minute_p99(s)}};
  auto& calls = out["calls"] = Json::array();
  for (const auto& [key, s] : calls_)
    if (s.idle <= kSamples) calls.push_back({{"caller", key.first},
                     {"target", key.second},
                     {"calls", series(s.counts[0].values, false)},
                     {"errors", series(s.counts[1].values, false)},
                     {"p99_ms", series(s.p99, true)},
                     {"p99_minute_ms", minute_p99(s)}});
  auto& topics = out["topics"] = Json::array();
  for (const auto& [key, s] : topics_)
    if (s.idle <= kSamples) topics.push_back({{"publisher", key.first},
                      {"topic", key.second},
                      {"published", series(s.counts[0].values, false)},
                      {"refused", series(s.counts[1].values, false)}});
  return out;
}

}  // namespace keel::host::app
