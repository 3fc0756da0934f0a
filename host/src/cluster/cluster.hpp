#pragma once
// cluster::Cluster: this host as one member of a cluster of Keel hosts over NATS
// (docs/cluster.md). It keeps the link, announces the plugins this host serves, learns what the
// others serve (Directory), answers forwarded requests for its own plugins and forwards requests
// for plugins only other hosts load (Forwarder). Exists only with [cluster] nats_url set.

#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>
#include <string>
#include <string_view>
#include <thread>

#include "cluster/directory.hpp"
#include "cluster/durable_events.hpp"
#include "cluster/forwarder.hpp"
#include "cluster/nats_link.hpp"
#include "common/timer_queue.hpp"
#include "config/config.hpp"
#include "events/bus.hpp"
#include "http/message.hpp"
#include "observability/metrics.hpp"
#include "plugins/remote_calls.hpp"

namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::cluster {

/// The node name: `configured`, or this machine's host name made a subject token.
[[nodiscard]] std::string node_name(const std::string& configured);

class Cluster final : public plugins::RemoteCalls, public events::RemoteEvents {
 public:
  /// Connects in the background (a NATS server that is down does not stop the host).
  Cluster(const config::Config& cfg, plugins::PluginHost& plugins, TimerQueue& timers);
  ~Cluster();  ///< leave() if still a member; then closes the link
  Cluster(const Cluster&) = delete;
  Cluster& operator=(const Cluster&) = delete;

  /// Starts serving `local` (this host's own routes) to the cluster and announcing.
  void start(http::Handler& local);
  /// Stops taking forwarded requests and tells the others at once; requests this host forwards
  /// keep their answers until the destructor.
  void leave();

  /// For a request the local routes do not serve: when `req.path` is under /api/<plugin>/ for a
  /// plugin only other hosts load, forwards it (a Deferred), or answers 503 in `res` when the link
  /// is down; nullopt with `handled` false when no host serves that plugin.
  std::optional<http::Deferred> forward(const http::Request& req, http::Response& res, bool& handled);

  [[nodiscard]] const std::string& node() const noexcept { return node_; }
  [[nodiscard]] bool link_up() const noexcept { return link_ && link_->up(); }
  /// {"node":..,"link":..,"nodes":N} for /readyz.
  [[nodiscard]] std::string readiness_json() const;
  /// GET /admin/cluster: this node, the link, every other host with its plugins and last sighting.
  [[nodiscard]] std::string admin_json() const;
  /// DurableEvents::admin_json() (null before start()).
  [[nodiscard]] std::string durable_events_json() const;
  /// The cluster's families for /metrics.
  void metrics(observability::Exposition& m) const;

  // plugins::RemoteCalls: calls to plugins only other hosts load.
  [[nodiscard]] std::vector<std::string> versions(std::string_view plugin) const override;
  bool send(const plugins::RemoteCall& call, std::shared_ptr<http::AsyncReply> reply) override;
  void report_refused(const plugins::RemoteCall& call) override;
  // events::RemoteEvents: in-memory events to the subscribers of other hosts.
  void published(const events::EventRecord& event, const std::vector<std::string>& delivered_here) override;

 private:
  void announce_loop();
  void announce(bool leaving);
  void sync_subscriptions();
  void on_announcement(const Message& m);
  void on_refused(const Message& m);
  void on_event(const std::string& subscriber, const Message& m);
  [[nodiscard]] bool started_here(std::string_view plugin) const;

  const config::ClusterConfig cfg_;
  const std::string node_;
  plugins::PluginHost& plugins_;
  TimerQueue& timers_;
  const bool access_log_, spans_;
  Directory directory_;
  http::Handler* local_ = nullptr;

  // What the link's callbacks touch: declared before the link, so they outlive it.
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false, announce_now_ = false;
  std::vector<bool> link_changes_;  // up/down reports not yet handled by the announcer

  std::unique_ptr<NatsLink> link_;
  std::unique_ptr<Forwarder> forwarder_;
  std::unique_ptr<DurableEvents> durable_;  // from start() on
  std::unique_ptr<NatsLink::Subscription> announce_sub_, discover_sub_, refused_sub_;
  // The plugins this host serves to others: their subscriptions (whose removal waits for a
  // request being handed to the plugin), and their names, read on I/O threads.
  std::mutex subs_mutex_;
  struct Serving {
    std::string mount;
    std::unique_ptr<NatsLink::Subscription> subscription;
  };
  std::map<std::string, Serving, std::less<>> serving_;
  // Subscribing plugins here: each takes other hosts' in-memory events in its queue group.
  std::map<std::string, std::unique_ptr<NatsLink::Subscription>, std::less<>> event_subs_;
  mutable std::mutex names_mutex_;
  std::map<std::string, std::string, std::less<>> local_mounts_;  // plugin -> its mount
  std::atomic<std::uint64_t> announcements_sent_{0}, announcements_heard_{0}, announcements_refused_{0};
  // Refused-call reports, sent and logged: at most kRefusedPerSecond each a second (a plugin
  // calling in a loop, or anyone on NATS, must not flood the logs); the rest are counted.
  struct Budget {
    std::mutex mutex;
    Clock::time_point window{};
    int used = 0;
    std::uint64_t dropped = 0;  ///< since the last window that had room
    /// True when one more fits this second; `dropped_before` gets what the last full window dropped.
    bool take(Clock::time_point now, std::uint64_t& dropped_before);
  };
  static constexpr int kRefusedPerSecond = 10;
  Budget refused_sent_, refused_logged_;
  std::atomic<std::uint64_t> events_sent_{0}, events_received_{0}, events_refused_{0};

  std::thread announcer_;
};

}  // namespace keel::host::cluster
