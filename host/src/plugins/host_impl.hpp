#pragma once
// The plugin host's private parts, shared by its translation units (plugin_host.hpp is the
// public face): the record of one plugin generation, its counters, and PluginHost::Impl.
//   host_api.cpp      the keel_host_api functions plugins call
//   preflight.cpp     what can be known from the files and the config (preflight.hpp)
//   lifecycle.cpp     load, create, start, stop; start-up and shutdown of the whole set
//   reload.cpp        reload, drop-in and removal, disable/enable, SIGHUP config
//   plugin_events.cpp the plugins on the event bus, event delivery
//   dispatch.cpp      HTTP requests into a plugin
//   calls.cpp         plugin-to-plugin calls
//   plugin_status.cpp statuses, health, counters and listings for the admin API
//   placement*.cpp    where a plugin runs (placement.hpp): in this process, in a runner process

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include <keel/plugin.h>

#include "abi/bytes.hpp"
#include "abi/host_ctx.hpp"
#include "common/published.hpp"
#include "common/worker_pool.hpp"
#include "events/bus.hpp"
#include "isolation/runner.hpp"
#include "observability/log.hpp"
#include "plugins/error_budget.hpp"
#include "plugins/loader.hpp"
#include "plugins/placement.hpp"
#include "plugins/preflight.hpp"
#include "plugins/plugin_host.hpp"
#include "plugins/remote_calls.hpp"
#include "plugins/responders.hpp"
#include "plugins/watcher.hpp"
#include "storage/database.hpp"

namespace keel::host::plugins {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
using abi::host_bytes;
using abi::view;
// What a plugin file is (package/: manifest, versions) lives below storage, which runs the
// manifest's migrations; the plugin host's own files use these names unqualified.
using package::apply_config_schema;
using package::ConfigIssue;
using package::Dependency;
using package::has_permission;
using package::Manifest;
using package::ManifestError;
using package::MigrationDecl;
using package::parse_manifest;
using package::QueryParamDecl;
using package::RequestDecl;
using package::ResponseDecl;


inline std::int64_t to_mono_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}


inline // One decoded query name or value: a [begin, end) span of the storage parse_query filled.
std::string_view span_of(std::string_view storage, std::pair<std::size_t, std::size_t> span) {
  return storage.substr(span.first, span.second - span.first);
}

// Query string -> decoded name/value pairs, as [begin, end) spans of `storage` (dispatch.cpp).
void parse_query(std::string_view query, std::string& storage, std::vector<std::pair<std::size_t, std::size_t>>& spans);

// Everything a request carries, owned, for handlers that run after the I/O thread moved on
// (worker pool, serialized queue, plugin-to-plugin calls).
struct OwnedRequest {
  std::string method, path, body, remote_address, request_id, caller, traceparent, tracestate;
  std::vector<std::pair<std::string, std::string>> headers, params, query;
  std::uint32_t route_index = 0;
  Clock::time_point deadline;
};

/// Lock-free counters behind RouteStats and CallStats: relaxed atomics, recorded on the request
/// path without any shared lock.
using DurationCounters = observability::LatencyCounters;

struct RouteCounters {
  std::array<std::atomic<std::uint64_t>, 5> by_class{};
  DurationCounters duration;
  std::atomic<std::uint64_t> in_flight{0}, request_bytes{0}, response_bytes{0};
  void begin(std::size_t body_bytes) noexcept {
    in_flight.fetch_add(1, std::memory_order_relaxed);
    request_bytes.fetch_add(body_bytes, std::memory_order_relaxed);
  }
  void finish(Clock::time_point start, unsigned status, std::size_t body_bytes) noexcept {
    const auto cls = std::clamp<unsigned>(status / 100, 1, 5) - 1;
    by_class[cls].fetch_add(1, std::memory_order_relaxed);
    response_bytes.fetch_add(body_bytes, std::memory_order_relaxed);
    duration.observe(Clock::now() - start);
    in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
};

struct CallCounters {
  std::atomic<std::uint64_t> calls{0}, errors{0};
  DurationCounters duration;
};

struct ReloadCounters {
  std::atomic<std::uint64_t> succeeded{0}, refused{0};
  DurationCounters drain;  // retired generation: from the switch until it was destroyed
  std::string last_error;  // why the last refused reload was refused (under status_mutex)
};

struct Plugin {
  PluginHost::Impl* host = nullptr;
  std::size_t index = 0;
  std::string name;
  fs::path file;
  Manifest manifest;
  PluginState state = PluginState::kDiscovered;
  std::string reason;
  std::string mount;
  std::string config_json = "{}";
  std::chrono::milliseconds timeout{30000};
  std::vector<std::chrono::milliseconds> route_timeouts;  // per manifest route; 0 = plugin default
  /// The database once close_storage() closed it, kept until the placement is gone: an isolated
  /// plugin's runner may still be inside a storage call served on the host's threads, which then
  /// finds it closed instead of freed (declared before `placement`: destroyed after it).
  std::shared_ptr<storage::Database> closed_database;
  std::unique_ptr<Placement> placement;         // where its code runs (placement.hpp); null until loaded
  std::shared_ptr<isolation::RunnerCounters> runner_counters;  // crashes and restarts, across generations
  std::string quarantined;                      // why its runner was quarantined (state failed)
  std::shared_ptr<ErrorBudget> budget;          // [plugin.<name>] quarantine_*: null when not set
  const keel_plugin* table = nullptr;
  void* self = nullptr;
  keel_host_ctx ctx{};
  std::shared_ptr<spdlog::logger> log;
  ResponderTable responders;
  std::shared_ptr<SerialQueue> serial;
  std::mutex health_mutex;              // health() is never called concurrently for one instance
  std::shared_ptr<SerialQueue> events;  // event deliveries: one at a time (the serial queue if "serialized")
  std::atomic<bool> accepting{false};   // requests and calls may enter
  std::atomic<bool> may_call{false};    // the plugin may call others: from start() until stop() returns
  std::atomic<bool> hooks_closed{false};  // stop_plugin() began: queued work is answered, not run
  std::atomic<std::uint32_t> in_flight{0};
  std::atomic<std::uint32_t> callbacks_pending{0};
  // Calls this generation made that have not completed: stop_plugin() completes them at once
  // (KEEL_ERR_UNAVAILABLE) so every completion runs before destroy(), as plugin.h promises.
  std::mutex calls_mutex;
  std::map<std::uint64_t, std::function<void()>> live_calls;  // call id -> complete it now
  std::uint64_t next_call = 0;
  std::vector<std::size_t> dependencies;  // indices of plugins this one depends on
  // With ext:keel.storage/1: open from before the first generation's create() to after the last
  // one's destroy(); every generation of the plugin shares it.
  std::shared_ptr<storage::Database> database;
  // Counters outlive a reload: a new generation takes over the old one's (routes by method and
  // path), so Prometheus counters never go backwards.
  std::vector<std::shared_ptr<RouteCounters>> route_counters;  // one per manifest route
  std::shared_ptr<CallCounters[]> call_counters;  // one per plugin of the host, by index: calls made to it
  std::shared_ptr<ReloadCounters> reloads;

  // Generations: a reload builds a new Plugin for the same index; the old one is retired (it
  // drains, stops and is destroyed) while the new one serves.
  std::uint32_t generation = 1;
  std::atomic<bool> retired{false};  // replaced by a newer generation
  bool on_bus = false;               // the event bus has this generation's declarations
  // The topics deliver_event() checked last against this generation's subscriptions, with the
  // answers. Touched by deliveries only, which run one at a time per plugin (endpoint_of()).
  struct TopicCheck {
    static constexpr std::size_t kMaxTopic = 62;  // longer topics are not kept (keeping one never allocates)
    std::array<char, kMaxTopic> topic;
    std::uint8_t size = 0;       // 0: unused (a topic never is empty)
    bool subscribed = false;
  };
  std::array<TopicCheck, 4> topic_checks;
  std::uint8_t next_topic_check = 0;
  bool loaded = false;               // its code was loaded (it may have been unloaded since)
  std::string sha256;                // of the file this generation was loaded from
};

using Generations = std::vector<std::shared_ptr<Plugin>>;


struct CallState;  // one plugin-to-plugin call in flight (calls.cpp)

// The ABI the plugin's code was built against ("1.0"), wherever it runs; empty if not loaded.
std::string abi_of(const Plugin& p);
// The plugin named `name` in `gens` (the first: pre-flight refuses a later file with that name).
Generations::const_iterator find_named(const Generations& gens, std::string_view name);
// Counts one answer of plugin `name` against its error budget (dispatch.cpp).
void spend(const std::shared_ptr<ErrorBudget>& budget, const std::string& name, unsigned status, Clock::time_point start);
// The answer for a plugin out of its error budget (dispatch.cpp).
void set_quarantined(http::Response& response, const Plugin& p);
// What `p` publishes, as the event bus takes it; with the previous generation's (plugin_events.cpp).
events::Publisher publisher_of(const Plugin& p);
events::Publisher merged_publisher(const Plugin& old, const Plugin& next);
// The keel_host_api table every plugin gets (host_api.cpp).
keel_host_api make_host_api() noexcept;

// Placements (placement.hpp): each starts generation `p` from its code copy `code` (which the
// placement takes) or throws std::runtime_error saying why the plugin cannot run there.
using PlacementFactory = std::unique_ptr<Placement> (*)(PluginHost::Impl& host, Plugin& p, platform::CodeCopy code);
std::unique_ptr<Placement> place_in_process(PluginHost::Impl& host, Plugin& p, platform::CodeCopy code);  // placement_in_process.cpp
std::unique_ptr<Placement> place_in_runner(PluginHost::Impl& host, Plugin& p, platform::CodeCopy code);   // placement_process.cpp
/// The placement the isolation mode `mode` names (placement.cpp).
std::unique_ptr<Placement> place_plugin(std::string_view mode, PluginHost::Impl& host, Plugin& p, platform::CodeCopy code);

struct PluginHost::Impl final : isolation::RunnerListener {
  Impl(const config::Config& c, WorkerPool& p, TimerQueue& t)
      : cfg(c),
        pool(p),
        timers(t),
        log(observability::logger("plugins")),
        span_log(c.log.spans ? observability::logger("trace") : nullptr),
        bus(c.events, p, t) {}

  // A copy: the [plugin.<name>] sections change on SIGHUP (apply_config, under admin_mutex and
  // status_mutex); every other part is fixed for the process.
  config::Config cfg;
  WorkerPool& pool;
  TimerQueue& timers;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::logger> span_log;  // "trace": one line per call and event span; null when [log] spans = false
  events::Bus bus;
  // The current generation of every plugin, by index. Replaced only under admin_mutex and
  // status_mutex (a reload); readers on the request path use a RouteSnapshot instead.
  std::vector<std::shared_ptr<Plugin>> plugins;
  std::vector<std::shared_ptr<Plugin>> unmapped_later;  // retired generations whose code must stay mapped until stop()
  std::vector<std::size_t> order;  // start order (dependencies first)
  // What requests, calls and events are routed by: the route table and, by plugin index, the
  // generation its routes lead to. Replaced as a whole; a thread keeps its own reference.
  struct RouteSnapshot {
    std::shared_ptr<const http::RouteTable> table;
    std::vector<std::shared_ptr<Plugin>> gens;
    /// The mounts of plugins that failed when it was made, and their names: a request there
    /// that no route matches gets 503, not 404 (PluginHost::failed_plugin_at).
    std::vector<std::pair<std::string, std::string>> failed_mounts;
  };
  // A thread keeps the snapshot it last routed by (Published): no atomic reference counting on
  // the request path. The one it keeps holds an old snapshot (and the retired generations in
  // it, never their code: that is unloaded on its own schedule) alive until its next request.
  Published<RouteSnapshot> routes{std::make_shared<const RouteSnapshot>()};
  void publish_routes(std::shared_ptr<const http::RouteTable> table) {
    auto snap = std::make_shared<RouteSnapshot>();
    snap->table = std::move(table);
    {
      std::lock_guard lock(status_mutex);
      snap->gens = plugins;
      // Not a mount another plugin holds (a refused duplicate of a running plugin, say).
      const auto taken = [this](const Plugin& failed) {
        return std::any_of(plugins.begin(), plugins.end(), [&](const auto& q) {
          return q->state != PluginState::kFailed && q->mount == failed.mount;
        });
      };
      for (const auto& p : plugins)
        if (p->state == PluginState::kFailed && !p->mount.empty() && !taken(*p))
          snap->failed_mounts.emplace_back(p->mount, p->name);
    }
    routes.publish(std::move(snap));
  }

  /// Lets one request, call or event delivery into generation `p`: true when it may run; the
  /// caller then holds one in_flight count until the work is done. A generation that stopped
  /// accepting (stopping, disabled, or retired by a reload) admits nothing. The count is taken
  /// before `accepting` is read (both sequentially consistent), so a drain that cleared
  /// `accepting` and then sees in_flight == 0 knows nothing can still enter.
  static bool admit(Plugin& p) {
    p.in_flight.fetch_add(1);
    if (p.accepting.load()) return true;
    p.in_flight.fetch_sub(1);
    return false;
  }
  /// Releases an admission when it goes out of scope, unless transferred to a job.
  struct Admission {
    Plugin* p;
    explicit Admission(Plugin* admitted) : p(admitted) {}
    ~Admission() {
      if (p != nullptr) p->in_flight.fetch_sub(1);
    }
    Admission(const Admission&) = delete;
    Admission& operator=(const Admission&) = delete;
    Plugin* transfer() { return std::exchange(p, nullptr); }
  };
  mutable std::mutex status_mutex;
  bool stopped = false;
  keel_host_api api{};

  /// A copy of `plugins` (the current generations), for readers off the control thread.
  std::vector<std::shared_ptr<Plugin>> current_generations() const {
    std::lock_guard lock(status_mutex);
    return plugins;
  }

  Plugin* find(std::string_view name) {
    const auto it = find_named(plugins, name);
    return it == plugins.end() ? nullptr : it->get();
  }

  void fail(Plugin& p, std::string reason) {
    {
      std::lock_guard lock(status_mutex);
      p.state = PluginState::kFailed;
      p.reason = std::move(reason);
    }
    log->error("plugin failed name={} file={} reason=\"{}\"", p.name, p.file.string(), p.reason);
  }
  void set_state(Plugin& p, PluginState s) {
    std::lock_guard lock(status_mutex);
    p.state = s;
  }

  /// Opens and migrates the plugin's database when its manifest asks for storage. False (the
  /// plugin failed) when that is impossible; when the database's server cannot be reached, the
  /// plugin also waits for it (waiting_for_storage) and is started again once it can.
  bool open_storage(Plugin& p);

  // Plugins whose database server did not answer when they were to start, and the plugins that
  // depend on them: failed, with the reason, and started again on a timer with backoff until
  // they start (docs/storage.md "Deadlines, migrations and start-up"). Under admin_mutex (or in
  // start(), before anything else runs).
  std::set<std::string> waiting_for_storage;
  // The retry timer's state, shared with its callback so that a callback running while the host
  // stops never touches a destroyed Impl.
  struct StorageRetry {
    std::mutex mutex;
    bool off = false;          // stop() was called
    bool armed = false;        // a timer or a queued pass is pending
    std::uint64_t timer = 0;
    std::chrono::milliseconds delay{250};
  };
  std::shared_ptr<StorageRetry> storage_retry = std::make_shared<StorageRetry>();
  static constexpr std::chrono::milliseconds kStorageRetryMax{4000};
  std::function<void()> sync_directory;  // PluginHost::sync_directory, set by start()
  /// Arms the retry timer unless it is armed already: after the current delay, doubled each
  /// time up to kStorageRetryMax.
  void schedule_storage_retry();
  /// On the admin queue: starts each waiting plugin again, dependencies first, while their
  /// servers answer.
  void retry_waiting_plugins();
  void close_storage(Plugin& p) {
    p.ctx.storage = nullptr;
    if (p.database) p.database->close();
    std::lock_guard lock(status_mutex);  // storage_stats() reads p.database under it
    p.closed_database = std::move(p.database);
  }
  void load_and_create(Plugin& p);
  bool create_plugin(Plugin& p);
  void configure(Plugin& p);
  std::shared_ptr<spdlog::logger> plugin_logger(const std::string& name) const;
  PluginHost::AdminResult install(const std::shared_ptr<Plugin>& old, const fs::path& file);
  struct Refusal {
    unsigned status = 409;
    std::string why;
  };
  std::variant<Candidate, Refusal> preflight_next(const std::shared_ptr<Plugin>& old, const fs::path& file,
                                                  const Generations& gens) const;
  std::shared_ptr<Plugin> next_generation(const std::shared_ptr<Plugin>& old, const fs::path& file, const Manifest& m,
                                          const Generations& gens);
  void remove(const std::shared_ptr<Plugin>& p, PluginState final_state, const std::string& reason);
  void drain(Plugin& p, Clock::time_point since) const;
  /// Runs `action(plugin)` for the admin API under admin_mutex: 503 once the host is stopping,
  /// 404 for a name no plugin has.
  template <class F>
  PluginHost::AdminResult with_plugin(std::string_view name, F&& action) {
    std::lock_guard admin(admin_mutex);
    if (stopped) return {503, "the host is shutting down"};
    Plugin* p = find(name);
    if (p == nullptr) return {404, "no plugin named '" + std::string(name) + "'"};
    return action(*p);
  }
  void unload(const std::shared_ptr<Plugin>& p);
  std::string started_dependents(const Plugin& p) const;
  // Plugins added at run time get an index below this (call counters are sized by it).
  static constexpr std::size_t kMaxPlugins = 256;
  std::unique_ptr<DirectoryWatcher> watcher;

  // Admin actions (reload, disable, enable, SIGHUP) block for a drain: they run on a thread of
  // their own, not on the worker pool whose queued requests the drain waits for.
  struct AdminQueue {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;
    std::thread thread;
  } admin_queue;
  bool post_admin(std::function<void()> job) {
    auto& q = admin_queue;
    std::lock_guard lock(q.mutex);
    if (q.stopping) return false;
    q.jobs.push_back(std::move(job));
    if (!q.thread.joinable()) {
      q.thread = std::thread([&q] {
        std::unique_lock l(q.mutex);
        for (;;) {
          q.ready.wait(l, [&q] { return q.stopping || !q.jobs.empty(); });
          if (q.jobs.empty()) return;  // stopping, and every job ran
          auto next = std::move(q.jobs.front());
          q.jobs.pop_front();
          l.unlock();
          next();
          l.lock();
        }
      });
    }
    q.ready.notify_one();
    return true;
  }
  void stop_admin_queue() {
    {
      std::lock_guard lock(admin_queue.mutex);
      admin_queue.stopping = true;
    }
    admin_queue.ready.notify_one();
    if (admin_queue.thread.joinable()) admin_queue.thread.join();
  }
  void start_plugin(Plugin& p, bool publish_routes = true);
  void stop_plugin(Plugin& p, bool keep_storage = false);
  std::mutex admin_mutex;  // one disable/enable at a time
  void rebuild_routes();

  void connect_events();
  events::Endpoint endpoint_of(Plugin& p);
  /// The plugin's isolation mode as configured now ([plugin.<name>] isolation, else [plugins]).
  [[nodiscard]] const std::string& isolation_mode(const Plugin& p) const;
  void runner_restarted(const std::string& plugin) override;
  void runner_quarantined(const std::string& plugin, const std::string& reason) override;
  keel_status deliver_event(std::size_t index, const events::EventRecord& e, std::uint32_t attempt);
  keel_status run_handler(Plugin& p, const keel_request& req, keel_responder id, bool deferred);
  std::optional<http::Deferred> dispatch_owned(Plugin& p, std::shared_ptr<OwnedRequest> owned,
                                               std::shared_ptr<http::AsyncReply> reply, keel_responder id);
  keel_status call(Plugin& caller, const keel_call_args* args, keel_call_callback cb, void* user);
  void complete_call(const std::shared_ptr<CallState>& state, keel_status result, std::shared_ptr<http::Response> response);
  /// What a call sets up whichever host serves it (calls.cpp): its state (deadline, request id,
  /// span), its registration with the caller, and the reply its answer or its timeout completes.
  struct CallTarget {
    std::string name;
    CallCounters* counters = nullptr;  // null: another host's plugin (counted by the cluster)
    std::shared_ptr<ErrorBudget> budget;
    std::string span_path;  // the path the span line shows (under the target's mount when known)
  };
  std::pair<std::shared_ptr<CallState>, std::shared_ptr<http::AsyncReply>> begin_call(
      Plugin& caller, const keel_call_args& args, keel_call_callback cb, void* user, CallTarget target);
  keel_status call_remote(Plugin& caller, const keel_call_args& args, keel_call_callback cb, void* user);
  std::atomic<RemoteCalls*> remote_calls{nullptr};  // set_remote_calls(): a cluster's
};

}  // namespace keel::host::plugins
