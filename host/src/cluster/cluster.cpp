#include "cluster/cluster.hpp"

#include <algorithm>
#include <array>
#include <set>
#include <utility>

#include <unistd.h>

#include <nlohmann/json.hpp>

#include "observability/log.hpp"
#include "package/manifest.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::cluster {
namespace {

std::int64_t ms_since(Clock::time_point t, Clock::time_point now) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(now - t).count();
}

}  // namespace

std::string node_name(const std::string& configured) {
  if (!configured.empty()) return configured;
  std::array<char, 256> host{};
  std::string out;
  if (::gethostname(host.data(), host.size() - 1) == 0)
    for (const char c : std::string_view(host.data()))
      if (out.size() < kMaxNodeName) out += subject_token_char(c) ? c : '-';
  return out.empty() ? std::string("keel") : out;
}

Cluster::Cluster(const config::Config& cfg, plugins::PluginHost& plugins, TimerQueue& timers)
    : cfg_(cfg.cluster),
      node_(node_name(cfg.cluster.node)),
      plugins_(plugins),
      timers_(timers),
      access_log_(cfg.log.access_log),
      spans_(cfg.log.spans),
      directory_(node_) {
  LinkOptions o;
  o.servers = cfg_.servers();
  o.name = "keel:" + node_;
  o.token = cfg_.token;
  o.user = cfg_.user;
  o.password = cfg_.password;
  link_ = std::make_unique<NatsLink>(o, [this](bool up) {
    {
      std::lock_guard lock(mutex_);
      link_changes_.push_back(up);
      announce_now_ = true;
    }
    wake_.notify_one();
  });
  ForwarderOptions f;
  f.node = node_;
  f.prefix = cfg_.subject_prefix;
  f.request_timeout = cfg_.request_timeout;
  f.retry_after = cfg_.announce_interval;
  f.access_log = access_log_;
  f.spans = spans_;
  forwarder_ = std::make_unique<Forwarder>(std::move(f), *link_, timers_, directory_);
  observability::logger("cluster")->info("cluster member node={} servers={} subject_prefix={}", node_, o.servers.size(),
                                         cfg_.subject_prefix);
}

Cluster::~Cluster() {
  plugins_.set_remote_calls(nullptr);
  plugins_.bus().set_remote(nullptr);
  leave();
  durable_.reset();
  forwarder_.reset();  // requests still waiting for another host get 502
  link_.reset();
  NatsLink::release_library(5000);
}

void Cluster::start(http::Handler& local) {
  local_ = &local;
  const auto& p = cfg_.subject_prefix;
  announce_sub_ = link_->subscribe(p + ".announce.*", {}, [this](const Message& m) { on_announcement(m); });
  refused_sub_ = link_->subscribe(p + ".refused.*", {}, [this](const Message& m) { on_refused(m); });
  discover_sub_ = link_->subscribe(p + ".discover", {}, [this](const Message&) {
    {
      std::lock_guard lock(mutex_);
      announce_now_ = true;
    }
    wake_.notify_one();
  });
  plugins_.set_remote_calls(this);
  plugins_.bus().set_remote(this);
  durable_ = std::make_unique<DurableEvents>(plugins_.config(), node_, *link_, plugins_.bus(),
                                             [this](std::string_view plugin) { return started_here(plugin); });
  announcer_ = std::thread([this] { announce_loop(); });
}

void Cluster::leave() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_one();
  if (announcer_.joinable()) announcer_.join();
  if (durable_) durable_->stop();  // no more relaying or consuming durable events here
  {
    std::lock_guard lock(subs_mutex_);
    serving_.clear();  // waits for a forwarded request being handed to a plugin
    event_subs_.clear();
  }
  {
    std::lock_guard lock(names_mutex_);
    local_mounts_.clear();
  }
  announce_sub_.reset();
  discover_sub_.reset();
  refused_sub_.reset();
  if (link_->up()) {
    announce(true);
    link_->flush(500);
  }
  observability::logger("cluster")->info("cluster: left node={}", node_);
}

void Cluster::announce_loop() {
  auto log = observability::logger("cluster");
  bool was_up = false;
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    auto changes = std::move(link_changes_);
    link_changes_.clear();
    announce_now_ = false;
    lock.unlock();
    for (const bool up : changes) {
      if (up && !was_up) {
        directory_.touch_all(Clock::now());  // what was heard before the gap gets a fresh lease
        link_->publish(cfg_.subject_prefix + ".discover", node_);  // the others announce at once
      } else if (!up && was_up) {
        forwarder_->fail_pending("the cluster link (NATS) was lost");
      }
      was_up = up;
    }
    if (!was_up && link_->up()) {  // up before its change report reached this loop
      was_up = true;
      directory_.touch_all(Clock::now());
      link_->publish(cfg_.subject_prefix + ".discover", node_);
    }
    sync_subscriptions();
    if (link_->up()) {
      announce(false);
      for (const auto& node : directory_.expire(Clock::now()))
        log->warn("cluster host gone node={}: no announcement for {} intervals; its plugins are no longer forwarded to",
                  node, kMissedAnnouncements);
    }
    lock.lock();
    wake_.wait_for(lock, cfg_.announce_interval, [this] { return stopping_ || announce_now_; });
  }
}

void Cluster::sync_subscriptions() {
  std::map<std::string, std::string, std::less<>> started;  // name -> mount
  for (const auto& st : plugins_.statuses())
    if (st.state == plugins::PluginState::kStarted) started.emplace(st.name, st.mount);
  std::lock_guard lock(subs_mutex_);
  for (auto it = serving_.begin(); it != serving_.end();) {
    const auto now = started.find(it->first);
    if (now != started.end() && now->second == it->second.mount) {
      ++it;
    } else {
      observability::logger("cluster")->info("cluster: stopped serving plugin={} to other hosts", it->first);
      it = serving_.erase(it);
    }
  }
  for (const auto& [name, mount] : started) {
    if (serving_.contains(name)) continue;
    const auto subject = forwarder_->subject_for(name);
    try {
      auto sub = link_->subscribe(subject, subject, [this, name = name, mount = mount](const Message& m) {
        forwarder_->serve(name, mount, m, *local_);
      });
      serving_.emplace(name, Serving{mount, std::move(sub)});
      observability::logger("cluster")->info("cluster: serving plugin={} to other hosts subject={}", name, subject);
    } catch (const std::exception& e) {
      observability::logger("cluster")->error("cluster: cannot serve plugin={} to other hosts: {}", name, e.what());
    }
  }
  // In-memory events from other hosts: one queue group per subscribing plugin, so each event
  // reaches one of its replicas.
  std::set<std::string, std::less<>> subscribers;  // started ones: a stopped plugin takes no share
  for (auto& name : plugins_.bus().subscribers())
    if (started.contains(name)) subscribers.insert(std::move(name));
  std::erase_if(event_subs_, [&](const auto& e) { return !subscribers.contains(e.first); });
  for (const auto& name : subscribers) {
    if (event_subs_.contains(name)) continue;
    try {
      event_subs_.emplace(name, link_->subscribe(cfg_.subject_prefix + ".event.>", cfg_.subject_prefix + ".events." + name,
                                                 [this, name = name](const Message& m) { on_event(name, m); }));
    } catch (const std::exception& e) {
      observability::logger("cluster")->error("cluster: cannot take events from other hosts for plugin={}: {}", name,
                                              e.what());
    }
  }
  std::lock_guard names(names_mutex_);
  local_mounts_ = std::move(started);
}

bool Cluster::started_here(std::string_view plugin) const {
  std::lock_guard lock(names_mutex_);
  return local_mounts_.contains(plugin);
}

void Cluster::published(const events::EventRecord& e, const std::vector<std::string>& delivered_here) {
  if (!link_->up()) return;  // in-memory events are not kept: other hosts miss this one
  ForwardedEvent f{node_,         e.published_unix_ns, e.event_id(),   e.topic(),      e.payload(), e.content_type(),
                   e.publisher(), e.traceparent(),     e.tracestate(), e.request_id(), {}};
  // A subscriber stopped here got nothing: its replicas elsewhere take the event.
  for (const auto& name : delivered_here)
    if (started_here(name)) f.here.push_back(name);
  if (link_->publish_async(cfg_.subject_prefix + ".event." + std::string(e.topic()), encode_forwarded_event(f)))
    events_sent_.fetch_add(1, std::memory_order_relaxed);
}

void Cluster::on_event(const std::string& subscriber, const Message& m) {
  ForwardedEvent f;
  std::string error;
  if (!decode_forwarded_event(m.data, f, error)) {
    events_refused_.fetch_add(1, std::memory_order_relaxed);
    observability::logger("cluster")->warn("cluster: ignored an event subject={} error=\"{}\"", m.subject, error);
    return;
  }
  // Delivered on the publisher's host already: each subscribing plugin gets an event once.
  if (std::find(f.here.begin(), f.here.end(), subscriber) != f.here.end()) return;
  const events::EventRecord::Parts parts{f.event_id,  f.topic,      f.payload,    f.content_type,
                                         f.publisher, f.traceparent, f.tracestate, f.request_id};
  const auto st = plugins_.bus().deliver_remote(subscriber, parts, f.published_unix_ns);
  if (st == KEEL_OK) {
    events_received_.fetch_add(1, std::memory_order_relaxed);
  } else if (st != KEEL_ERR_NOT_FOUND) {  // not matched here: not for this plugin
    events_refused_.fetch_add(1, std::memory_order_relaxed);
    observability::logger("cluster")->warn("cluster: event from node={} dropped subscriber={} topic={} id={} status={}",
                                           directory_.knows(f.origin) ? f.origin : std::string_view("unknown"), subscriber,
                                           f.topic, f.event_id,
                                           st == KEEL_ERR_BUSY ? "busy" : "unavailable");
  }
}

void Cluster::announce(bool leaving) {
  Announcement a;
  a.node = node_;
  a.interval = cfg_.announce_interval;
  a.leaving = leaving;
  a.version = KEEL_VERSION;
  if (!leaving) {
    const auto routes = plugins_.api_routes();
    for (const auto& st : plugins_.statuses()) {
      if (st.state != plugins::PluginState::kStarted) continue;
      AnnouncedPlugin p{st.name, st.version, st.health, st.mount, {}, st.calls};
      for (const auto& r : routes)
        if (r.plugin == st.name) p.routes.emplace_back(r.method, r.path);
      a.plugins.push_back(std::move(p));
    }
  }
  if (link_->publish(cfg_.subject_prefix + ".announce." + node_, to_json(a)))
    announcements_sent_.fetch_add(1, std::memory_order_relaxed);
}

void Cluster::on_announcement(const Message& m) {
  Announcement a;
  std::string error;
  if (!parse_announcement(m.data, a, error)) {
    announcements_refused_.fetch_add(1, std::memory_order_relaxed);
    observability::logger("cluster")->warn("cluster: ignored an announcement subject={} error=\"{}\"", m.subject, error);
    return;
  }
  if (a.node == node_) return;
  if (m.subject != cfg_.subject_prefix + ".announce." + a.node) {  // one host speaking for another
    announcements_refused_.fetch_add(1, std::memory_order_relaxed);
    observability::logger("cluster")->warn("cluster: ignored an announcement for node={} sent on subject={}", a.node,
                                           m.subject);
    return;
  }
  announcements_heard_.fetch_add(1, std::memory_order_relaxed);
  const auto node = a.node;
  const auto count = a.plugins.size();
  const auto change = directory_.apply(std::move(a), Clock::now());
  if (change == "full") {
    announcements_refused_.fetch_add(1, std::memory_order_relaxed);
    observability::logger("cluster")->warn("cluster: ignored host node={}: this host already tracks {} hosts", node,
                                           kMaxNodes);
  } else if (!change.empty()) {
    observability::logger("cluster")->info("cluster host {} node={} plugins={}", change, node, count);
  }
}

std::optional<http::Deferred> Cluster::forward(const http::Request& req, http::Response& res, bool& handled) {
  handled = false;
  if (req.listener == http::Listener::kCluster) return std::nullopt;  // never forwarded twice
  {
    std::lock_guard lock(names_mutex_);
    for (const auto& [name, mount] : local_mounts_)
      if (under_mount(req.path, mount)) return std::nullopt;  // its local routes answered (404, 405)
  }
  if (!link_->up()) {
    if (!req.path.starts_with("/api/")) return std::nullopt;  // could not be a plugin's
    handled = true;
    set_unavailable(res,
                    "no plugin on this host serves " + std::string(req.path) +
                        ", and the cluster link (NATS) is down: this host cannot reach the hosts that may; retry later",
                    cfg_.announce_interval);
    return std::nullopt;
  }
  const auto plugin = directory_.plugin_at(req.path);
  if (plugin.empty()) return std::nullopt;
  handled = true;
  return forwarder_->forward(req, plugin, res);
}

std::vector<std::string> Cluster::versions(std::string_view plugin) const { return directory_.versions(plugin); }

bool Cluster::Budget::take(Clock::time_point now, std::uint64_t& dropped_before) {
  std::lock_guard lock(mutex);
  dropped_before = 0;
  if (now - window >= std::chrono::seconds(1)) {
    window = now;
    used = 0;
    dropped_before = std::exchange(dropped, 0);
  }
  if (used >= kRefusedPerSecond) {
    ++dropped;
    return false;
  }
  ++used;
  return true;
}

// A refused call's report: small, on `<prefix>.refused.<this node>`, for the hosts serving the
// target (docs/cluster.md "Calls"). Only when another host serves it; dropped when the link is
// down or past kRefusedPerSecond.
void Cluster::report_refused(const plugins::RemoteCall& call) {
  if (!link_->up() || !package::valid_plugin_name(call.target) || directory_.versions(call.target).empty()) return;
  std::uint64_t dropped = 0;
  if (!refused_sent_.take(Clock::now(), dropped)) return;
  const nlohmann::json j{{"v", 1},          {"node", node_},        {"caller", call.caller}, {"target", call.target},
                         {"method", call.method}, {"path", call.path}, {"req", call.request_id}, {"dropped", dropped}};
  static_cast<void>(link_->publish_async(cfg_.subject_prefix + ".refused." + node_,
                                         j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)));
}

// Another host's report of a call it refused to a plugin served here: logged, so the attempt
// shows on both hosts. Every field reaches a log line, so anything out of grammar, or from a
// host this one does not know, drops the report.
void Cluster::on_refused(const Message& m) {
  const auto j = nlohmann::json::parse(m.data, nullptr, false);
  if (!j.is_object()) return;
  const auto number = [&](const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_number_unsigned() ? it->get<std::uint64_t>() : std::uint64_t{0};
  };
  const auto text = [&](const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  const auto node = text("node"), caller = text("caller"), target = text("target"), method = text("method"),
             path = text("path"), req = text("req");
  constexpr std::size_t kMaxMethod = 32, kMaxPath = 1024;
  if (number("v") != 1 || node == node_ || m.subject != cfg_.subject_prefix + ".refused." + node ||
      !directory_.knows(node) || !package::valid_plugin_name(caller) || !package::valid_plugin_name(target) ||
      method.size() > kMaxMethod || !http::valid_token(method) || path.empty() || path.front() != '/' ||
      path.size() > kMaxPath || !std::all_of(path.begin(), path.end(), [](char c) { return c > ' ' && c < 0x7f && c != '"'; }) ||
      (!req.empty() && !http::valid_request_id(req)) || !started_here(target))
    return;
  auto log = observability::logger("cluster");
  std::uint64_t dropped_here = 0;
  if (!refused_logged_.take(Clock::now(), dropped_here)) return;
  if (dropped_here > 0) log->warn("cluster: {} more reports of refused calls were not logged (at most {} a second)",
                                  dropped_here, kRefusedPerSecond);
  log->warn("call refused by host {}: its plugin '{}' has not declared '{}' (served here) as a dependency method={} "
            "path={} req={}{}",
            node, caller, target, method, path, req,
            number("dropped") > 0 ? " (that host also left " + std::to_string(number("dropped")) + " more unreported)" : "");
}

bool Cluster::send(const plugins::RemoteCall& call, std::shared_ptr<http::AsyncReply> reply) {
  return link_->up() && forwarder_->call(call, std::move(reply));
}

std::string Cluster::readiness_json() const {
  nlohmann::json j{{"node", node_}, {"link", link_up() ? "up" : "down"}, {"nodes", directory_.size()}};
  return j.dump();
}

std::string Cluster::durable_events_json() const { return durable_ ? durable_->admin_json() : "null"; }

std::string Cluster::admin_json() const {
  const auto now = Clock::now();
  nlohmann::json nodes = nlohmann::json::array();
  for (const auto& n : directory_.nodes()) {
    nlohmann::json plugins = nlohmann::json::array();
    for (const auto& p : n.last.plugins) {
      nlohmann::json routes = nlohmann::json::array();
      for (const auto& [method, path] : p.routes) routes.push_back({{"method", method}, {"path", path}});
      plugins.push_back({{"name", p.name},
                         {"version", p.version},
                         {"health", p.health},
                         {"mount", p.mount},
                         {"calls", p.calls},
                         {"routes", std::move(routes)}});
    }
    nodes.push_back({{"node", n.last.node},
                     {"keel", n.last.version},
                     {"last_seen_ms_ago", ms_since(n.last_seen, now)},
                     {"announce_interval_ms", n.last.interval.count()},
                     {"announcements", n.announcements},
                     {"plugins", std::move(plugins)}});
  }
  std::vector<std::string> serving;
  {
    std::lock_guard lock(names_mutex_);
    for (const auto& [name, mount] : local_mounts_) serving.push_back(name);
  }
  return nlohmann::json{{"node", node_},
                        {"link", {{"state", link_up() ? "up" : "down"}, {"url", link_->connected_url()}}},
                        {"subject_prefix", cfg_.subject_prefix},
                        {"announce_interval_ms", cfg_.announce_interval.count()},
                        {"serving", serving},
                        {"forwarding", {{"waiting", forwarder_->pending()}}},
                        {"durable_events", durable_ ? nlohmann::json::parse(durable_->admin_json()) : nlohmann::json(nullptr)},
                        {"nodes", std::move(nodes)}}
      .dump();
}

void Cluster::metrics(observability::Exposition& m) const {
  using observability::MetricType;
  m.family("keel_cluster_link_up", MetricType::kGauge, "1 while this host's link to NATS is up.");
  m.sample({{"node", node_}}, link_up() ? 1 : 0);
  m.family("keel_cluster_nodes", MetricType::kGauge, "Other hosts of the cluster this host hears announce.");
  m.sample({}, directory_.size());
  m.family("keel_cluster_events_total", MetricType::kCounter,
           "In-memory events sent to other hosts, received from them for a plugin here, and dropped (malformed, or "
           "the subscriber's queue full).");
  m.sample({{"direction", "sent"}}, events_sent_.load(std::memory_order_relaxed));
  m.sample({{"direction", "received"}}, events_received_.load(std::memory_order_relaxed));
  m.sample({{"direction", "refused"}}, events_refused_.load(std::memory_order_relaxed));
  m.family("keel_cluster_announcements_total", MetricType::kCounter,
           "Announcements sent by this host, heard from others, and ignored as malformed.");
  m.sample({{"direction", "sent"}}, announcements_sent_.load(std::memory_order_relaxed));
  m.sample({{"direction", "heard"}}, announcements_heard_.load(std::memory_order_relaxed));
  m.sample({{"direction", "refused"}}, announcements_refused_.load(std::memory_order_relaxed));

  const auto& stats = forwarder_->stats();
  std::vector<std::uint64_t> buckets;
  double seconds = 0;
  const auto side = [&](const char* what, const char* peer_label, const char* help, auto each) {
    const std::string base = std::string("keel_cluster_") + what;
    m.family(base + "_requests_total", MetricType::kCounter, help);
    each([&](const std::string& plugin, const std::string& peer, const PeerCounters& c) {
      m.sample({{"plugin", plugin}, {peer_label, peer}}, c.requests.load(std::memory_order_relaxed));
    });
    m.family(base + "_errors_total", MetricType::kCounter, "Of those, answered 5xx or not at all.");
    each([&](const std::string& plugin, const std::string& peer, const PeerCounters& c) {
      m.sample({{"plugin", plugin}, {peer_label, peer}}, c.errors.load(std::memory_order_relaxed));
    });
    m.family(base + "_duration_seconds", MetricType::kHistogram, "Time until the answer.");
    each([&](const std::string& plugin, const std::string& peer, const PeerCounters& c) {
      c.duration.snapshot(buckets, seconds);
      m.histogram({{"plugin", plugin}, {peer_label, peer}}, observability::kLatencyBuckets, buckets, seconds);
    });
  };
  side("forwarded", "peer", "Requests this host forwarded to another host, by the host that answered (none: no answer).",
       [&](auto fn) { stats.each_forwarded(fn); });
  side("served", "origin", "Requests other hosts forwarded to this host, by the host that received them.",
       [&](auto fn) { stats.each_served(fn); });
}

}  // namespace keel::host::cluster
