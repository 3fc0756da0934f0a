#include "app/traffic.hpp"

#include <chrono>
#include <initializer_list>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/timer_queue.hpp"
#include "events/bus.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::app {

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
    try {
      sample();
    } catch (const std::exception&) {  // out of memory: this second is missing, the next one comes
    }
    schedule();
  });
}

TrafficHistory::Totals TrafficHistory::advance(Totals& last, Totals now) {
  bool reset = now.count < last.count || now.errors < last.errors || now.buckets.size() < last.buckets.size();
  for (std::size_t i = 0; i < last.buckets.size() && !reset; ++i) reset = now.buckets[i] < last.buckets[i];
  Totals delta = now;
  if (!reset) {
    delta.count -= last.count;
    delta.errors -= last.errors;
    for (std::size_t i = 0; i < last.buckets.size(); ++i) delta.buckets[i] -= last.buckets[i];
  }
  last = std::move(now);
  return delta;
}

void TrafficHistory::add(Series& s, std::size_t slot, const Totals& delta) {
  s.idle = 0;
  s.counts[slot] += static_cast<double>(delta.count);
  s.errors[slot] += static_cast<double>(delta.errors);
  if (delta.buckets.empty()) return;
  auto& h = s.histograms[slot];
  if (h.size() < delta.buckets.size()) h.resize(delta.buckets.size());
  for (std::size_t i = 0; i < delta.buckets.size(); ++i) h[i] += delta.buckets[i];
  s.p99[slot] = p99_ms(h.data(), h.size());
}

void TrafficHistory::sample() {
  // Read the counters before taking the lock: to_json() never waits behind them.
  const auto routes = plugins_.route_stats();
  const auto calls = plugins_.call_stats();
  const auto topics = plugins_.bus().topics();
  const auto key = [](std::initializer_list<std::string_view> parts) {
    std::string k;
    for (const auto p : parts) (k += p) += '\0';
    return k;
  };

  std::lock_guard lock(mutex_);
  const auto slot = taken_ % kSamples;
  const bool baseline = taken_ == 0;  // only notes where the counters stand
  ++taken_;
  // Whatever is not seen this second counts nothing in it. A series is kept when it goes, and
  // left out of to_json() after a minute unseen.
  const auto age = [slot](auto& all) {
    for (auto& [name, s] : all) {
      if (s.idle < kSamples + 1) ++s.idle;
      s.counts[slot] = s.errors[slot] = 0;
      s.p99[slot] = -1;
      s.histograms[slot].clear();
    }
  };
  age(plugins_series_);
  age(calls_);
  age(topics_);
  // Each source's increase, added to the series it shows in: a plugin's is the sum of its
  // routes', so a route a reload removes takes nothing away.
  const auto count = [&](std::string source, Totals now, Series& series) {
    const auto delta = advance(last_[source], std::move(now));
    if (!baseline) add(series, slot, delta);
    else series.idle = 0;
  };
  for (const auto& r : routes) {
    std::uint64_t answered = 0;
    for (const auto n : r.by_class) answered += n;
    count(key({"r", r.plugin, r.method, r.route}), {answered, r.by_class[4], r.buckets}, plugins_series_[r.plugin]);
  }
  for (const auto& c : calls) count(key({"c", c.caller, c.target}), {c.calls, c.errors, c.buckets}, calls_[{c.caller, c.target}]);
  for (const auto& t : topics)
    if (!t.topic.empty()) count(key({"t", t.publisher, t.topic}), {t.published, t.refused, {}}, topics_[{t.publisher, t.topic}]);
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
    if (s.idle <= kSamples) plugins[name] = {{"requests", series(s.counts, false)},
                     {"errors", series(s.errors, false)},
                     {"p99_ms", series(s.p99, true)},
                     {"p99_minute_ms", minute_p99(s)}};
  auto& calls = out["calls"] = Json::array();
  for (const auto& [key, s] : calls_)
    if (s.idle <= kSamples) calls.push_back({{"caller", key.first},
                     {"target", key.second},
                     {"calls", series(s.counts, false)},
                     {"errors", series(s.errors, false)},
                     {"p99_ms", series(s.p99, true)},
                     {"p99_minute_ms", minute_p99(s)}});
  auto& topics = out["topics"] = Json::array();
  for (const auto& [key, s] : topics_)
    if (s.idle <= kSamples) topics.push_back({{"publisher", key.first},
                      {"topic", key.second},
                      {"published", series(s.counts, false)},
                      {"refused", series(s.errors, false)}});
  return out;
}

}  // namespace keel::host::app
