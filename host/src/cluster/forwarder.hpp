#pragma once
// cluster::Forwarder: HTTP requests between hosts (docs/cluster.md "Requests"). The entry side
// sends a request for a plugin this host does not load to `<prefix>.http.<plugin>` (NATS
// request-reply; every host that loads the plugin subscribes in one queue group, so replicas
// share the load) and completes the client's reply when the answer comes back. The serving side
// runs a request it receives through this host's own plugin routes, as if a client had sent it
// here, and answers with the response. Neither side ever blocks an I/O thread. Thread-safe.

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "cluster/directory.hpp"
#include "cluster/messages.hpp"
#include "cluster/nats_link.hpp"
#include "common/timer_queue.hpp"
#include "http/message.hpp"
#include "observability/metrics.hpp"
#include "observability/trace.hpp"
#include "plugins/remote_calls.hpp"

namespace keel::host::cluster {

/// A 503 with a JSON error saying `message` and Retry-After: `retry_after` in whole seconds
/// (rounded up, at least 1).
void set_unavailable(http::Response& res, std::string_view message, std::chrono::milliseconds retry_after);

/// Counters of one (plugin, peer host) pair, on one side of the link.
struct PeerCounters {
  std::atomic<std::uint64_t> requests{0}, errors{0};
  observability::LatencyCounters duration;
};

/// Counters per (plugin, peer) for /metrics: `forwarded` on the entry side (peer = the host that
/// answered, "none" when none did), `served` on the serving side (peer = the entry host).
class ForwardStats {
 public:
  PeerCounters& forwarded(std::string_view plugin, std::string_view peer) { return get(forwarded_, plugin, peer); }
  PeerCounters& served(std::string_view plugin, std::string_view peer) { return get(served_, plugin, peer); }
  /// Visits every pair: fn(plugin, peer, counters).
  template <class F>
  void each_forwarded(F&& fn) const { each(forwarded_, fn); }
  template <class F>
  void each_served(F&& fn) const { each(served_, fn); }

 private:
  using Map = std::map<std::pair<std::string, std::string>, std::unique_ptr<PeerCounters>>;
  PeerCounters& get(Map& m, std::string_view plugin, std::string_view peer);
  template <class F>
  void each(const Map& m, F& fn) const {
    std::lock_guard lock(mutex_);
    for (const auto& [key, c] : m) fn(key.first, key.second, *c);
  }
  mutable std::mutex mutex_;
  Map forwarded_, served_;
};

struct ForwarderOptions {
  std::string node;    ///< this host's node name
  std::string prefix;  ///< [cluster] subject_prefix
  std::chrono::milliseconds request_timeout{10000};
  std::chrono::milliseconds retry_after{1000};  ///< what a 503 suggests (the announcement interval)
  bool access_log = true;  ///< [log] access_log: one line per forwarded request served here
  bool spans = false;      ///< [log] spans: one span line per hop
};

class Forwarder {
 public:
  /// `directory`: who the other hosts are and what their plugins may call (outlives this).
  Forwarder(ForwarderOptions o, NatsLink& link, TimerQueue& timers, const Directory& directory);
  ~Forwarder();
  Forwarder(const Forwarder&) = delete;
  Forwarder& operator=(const Forwarder&) = delete;

  /// The subject and queue group of `plugin`'s requests.
  [[nodiscard]] std::string subject_for(std::string_view plugin) const;

  /// Entry side: sends `req` to a host serving `plugin`. A Deferred the answer completes, or
  /// nullopt with `res` filled (503) when the link cannot take it.
  std::optional<http::Deferred> forward(const http::Request& req, std::string_view plugin, http::Response& res);
  /// Entry side: a plugin-to-plugin call for a plugin another host serves; `reply` gets the
  /// answer. False (nothing sent) when the link cannot take it.
  bool call(const plugins::RemoteCall& c, std::shared_ptr<http::AsyncReply> reply);
  /// Entry side: every request waiting for another host's answer gets 502 now (the link is lost).
  void fail_pending(std::string_view why);

  /// Serving side: one request or call for `plugin` (whose routes live under `mount` here) from
  /// another host, run through `local` (this host's own routes); the answer goes to the
  /// message's reply subject. A call is refused (403) unless its caller's host announced that
  /// the caller may call `plugin`.
  void serve(std::string_view plugin, std::string_view mount, const Message& m, http::Handler& local);

  [[nodiscard]] const ForwardStats& stats() const noexcept { return stats_; }
  [[nodiscard]] std::size_t pending() const;

 private:
  struct Pending;

 public:
  struct Shared;  // with the callbacks that may outlive this object (forwarder.cpp)

 private:
  void on_reply(const Message& m);
  // Sends `f` to `plugin`'s hosts; `reply` is completed by the answer, fail_pending(), a failed
  // publish (503) or, at the deadline, by whoever expires it. Else 0 and nothing pending: 413
  // over the server's max_payload, 503 when the link cannot take it.
  unsigned send(std::string_view plugin, ForwardedRequest f, Clock::time_point deadline, observability::Span span,
                std::shared_ptr<http::AsyncReply> reply);
  // A peer name fit for a metric label: a host this one knows, else "unknown".
  [[nodiscard]] std::string peer_label(std::string_view node) const;
  // `now`: publish on this thread (a delivery thread answering at once); else through the link's
  // sender thread (a plugin or timer thread answering later must not wait for the network).
  void reply_to(const std::string& subject, const http::Response& res,
                const std::vector<std::pair<std::string, std::string>>& extra, bool now = false);

  ForwarderOptions opts_;
  NatsLink& link_;
  TimerQueue& timers_;
  const Directory& directory_;
  ForwardStats stats_;
  std::shared_ptr<Shared> shared_;  // the waiting requests; also held by their replies' callbacks
  std::string inbox_;               // "<_INBOX.random>": answers come to inbox_.<id>
  std::unique_ptr<NatsLink::Subscription> inbox_sub_;
};

}  // namespace keel::host::cluster
