#pragma once
// PluginHost owns every plugin: discovery in the plugin directory, pre-flight checks (ELF,
// manifest, ABI, names, dependencies, permissions, checksums, config schema, route conflicts),
// loading, the lifecycle (discovered -> loaded -> created -> started -> stopping -> stopped, or
// failed with a reason), the keel_host_api table plugins call, request dispatch across the ABI,
// and plugin-to-plugin calls. start()/stop() run on the control thread; everything else is
// thread-safe and called from I/O, worker and plugin-owned threads.

#include <array>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "observability/metrics.hpp"
#include "config/config.hpp"
#include "http/message.hpp"
#include "http/router.hpp"
#include "package/manifest.hpp"
#include "plugins/preflight.hpp"
#include "storage/database.hpp"

namespace keel::host {
class WorkerPool;
class TimerQueue;
}  // namespace keel::host

namespace keel::host::events {
class Bus;
}

namespace keel::host::plugins {

enum class PluginState { kDiscovered, kLoaded, kCreated, kStarted, kStopping, kStopped, kFailed, kDisabled };
[[nodiscard]] std::string_view to_string(PluginState state) noexcept;

/// Upper bounds (seconds) of the HTTP and call duration histograms; a final +Inf bucket follows.
inline constexpr const auto& kHttpBuckets = observability::kLatencyBuckets;

/// Counters of one plugin route served over HTTP (a snapshot; monotonic except in_flight).
struct RouteStats {
  std::string plugin, method, route;        ///< route = the manifest path template
  std::array<std::uint64_t, 5> by_class{};  ///< responses 1xx..5xx
  std::vector<std::uint64_t> buckets;       ///< non-cumulative counts, bounds kHttpBuckets + final +Inf
  double seconds_total = 0;
  std::uint64_t in_flight = 0, request_bytes = 0, response_bytes = 0;  ///< body bytes
};

/// Counters of plugin-to-plugin calls from one caller to one target.
struct CallStats {
  std::string caller, target;
  std::uint64_t calls = 0, errors = 0;  ///< errors: no answer (timeout, unavailable...) or a 5xx answer
  std::vector<std::uint64_t> buckets;   ///< same bounds as RouteStats
  double seconds_total = 0;
};

/// One route as the API documentation shows it.
struct ApiRoute {
  std::string plugin, plugin_version, plugin_description;
  std::string method;
  std::string path;     ///< full path template: mount + manifest path, e.g. "/api/hello/greet/{name}"
  std::string summary;
  std::uint32_t index = 0;  ///< position in the manifest's routes
  // Copies of the manifest's documentation keys (RouteDecl), so the caller holds no pointer
  // into a plugin that may be unloaded.
  std::optional<package::RequestDecl> request;
  std::vector<package::ResponseDecl> responses;
  std::vector<package::QueryParamDecl> query;
};

struct PluginStatus {
  std::string name;
  std::string version;
  std::string abi;
  std::filesystem::path file;
  PluginState state = PluginState::kDiscovered;
  std::string reason;  ///< why it failed or is disabled
  std::string mount;
  std::vector<std::string> calls;  ///< the plugins it may call: its dependencies and call: permissions
  std::string manifest_json;  ///< the manifest as found in the file; empty if it could not be read
  std::string health;         ///< "pass", "warn", "fail"; empty unless the plugin is started
  std::string health_detail;  ///< the plugin's explanation, if any
  std::uint32_t generation = 0;         ///< 1 when first loaded, +1 per reload; 0 if never loaded
  std::string sha256;                   ///< of the code the current generation runs
  std::uint64_t reloads_succeeded = 0, reloads_refused = 0;
  std::string last_reload_error;        ///< why the last reload was refused; cleared by a success
  std::vector<std::uint64_t> drain_buckets;  ///< drain durations of retired generations (kHttpBuckets + +Inf)
  double drain_seconds_total = 0;
  std::string isolation = "in-process";       ///< "in-process" or "process" (as configured now)
  // isolation = "process": its runner (docs/isolation.md).
  int runner_pid = 0;                         ///< 0 while no runner process runs
  std::string runner_state;                   ///< starting, running, restarting, quarantined, stopped; empty in process
  std::uint64_t runner_crashes = 0, runner_restarts = 0;  ///< over every generation
  std::uint64_t runner_busy = 0;  ///< the runner's host calls refused busy (the host's queue for it was full)
  std::string runner_last_crash;
  std::vector<std::string> runner_limits;
  std::string quarantine;                     ///< why it is quarantined; empty if it is not
};

class RemoteCalls;

class PluginHost {
 public:
  PluginHost(const config::Config& cfg, WorkerPool& pool, TimerQueue& timers);
  ~PluginHost();  ///< stop() if still running
  PluginHost(const PluginHost&) = delete;
  PluginHost& operator=(const PluginHost&) = delete;

  /// Discover, check, load, create and start every enabled plugin in dependency order. A plugin
  /// that fails any step is marked failed with a reason and its dependents are not started;
  /// everything else runs. Never throws for a plugin's failure.
  void start();
  /// Stop accepting work, then stop() and destroy() in reverse order, then unload. Idempotent.
  void stop();
  /// In a cluster: where calls to plugins this host does not load go (null: nowhere, they get
  /// KEEL_ERR_NOT_FOUND). Must outlive every call; set before start(), cleared after stop().
  void set_remote_calls(RemoteCalls* remote) noexcept;

  [[nodiscard]] std::vector<PluginStatus> statuses() const;
  /// statuses() plus each started plugin's health hook result (called now; never concurrently
  /// with another health call of the same plugin; a plugin without the hook passes).
  [[nodiscard]] std::vector<PluginStatus> statuses_with_health() const;
  /// Empty when every enabled plugin has started and none reports health "fail"; otherwise a
  /// human-readable reason.
  [[nodiscard]] std::string not_ready_reason() const;

  /// Route a request (already matched against route_table_for_this_thread()) to its plugin.
  std::optional<http::Deferred> dispatch(const http::MatchResult& match, const http::MatchScratch& params,
                                         const http::Request& request, http::Response& response);
  /// The current route table (immutable, replaced atomically as a whole), through a per-thread
  /// cached reference: no atomic reference counting on the request path. Valid until this
  /// thread's next call (which may switch to a newer table).
  [[nodiscard]] const http::RouteTable& route_table_for_this_thread() const;
  /// For a path no route matched: the name of a plugin that failed and is mounted where `path`
  /// lies (its routes would be there), or empty. From the same per-thread snapshot, valid as long.
  [[nodiscard]] std::string_view failed_plugin_at(std::string_view path) const;

  /// Outcome of an admin action: an HTTP status (200, 404 unknown plugin, 409 wrong state or
  /// dependents/dependencies in the way, 500 the plugin failed) and a message for the operator.
  struct AdminResult {
    unsigned status = 200;
    std::string message;
  };
  /// Stops a started plugin at run time (admin API): its routes go away, requests already inside
  /// it finish (bounded), then stop() and destroy(); the library stays loaded and its database
  /// open. Refused while a started plugin depends on it. Blocks: never call on an I/O thread.
  AdminResult disable(std::string_view name);
  /// create() and start() again a plugin disable() stopped; its routes come back and durable
  /// event deliveries to it resume where they paused. Needs its dependencies started. Blocks.
  AdminResult enable(std::string_view name);
  /// Replaces a started plugin with what its file holds now, without dropping a request: the
  /// new generation is pre-flighted (manifest, dependencies both ways, config, routes; a
  /// storage permission must stay), loaded from a private copy, migrated, created and started
  /// while the old one serves; then routes, calls, event deliveries and its events declarations
  /// switch to it at once, and the old generation drains (bounded by [server] drain_timeout),
  /// stops, is destroyed and unmapped. Any failure leaves the old generation serving (status
  /// 409/422 with the reason). Blocks: never call on an I/O thread.
  AdminResult reload(std::string_view name);
  /// Brings the running plugins in line with the plugin directory: a changed file (new content
  /// hash) is reloaded, a removed one drained and stopped (unless started plugins depend on it),
  /// a new one or one that failed or was removed before is pre-flighted and started. Refusals
  /// are logged and counted; what runs keeps running. Called by the directory watcher and on
  /// SIGHUP. Blocks: never call on an I/O thread.
  void sync_directory();
  /// What deploy() found and did.
  struct DeployResult {
    AdminResult result;            ///< 200/201 done (or would be: dry run); otherwise refused, and why
    Candidate candidate;           ///< the file as pre-flight reads it alone (its manifest when readable)
    std::filesystem::path target;  ///< where it goes: the file of the plugin it replaces, or <directory>/<name>.so
    struct Replaced {
      std::string name, version, state, sha256;
      std::uint32_t generation = 0;
    };
    std::optional<Replaced> replaces;  ///< the plugin of the same name, if there is one
    bool installed = false;  ///< the file was put in place and started or reloaded (a refusal then put it back)
  };
  /// Deploys a plugin file put in the plugin directory under a name no scan reads (`staged`; it
  /// is moved or left for the caller to remove): pre-flights it exactly as a reload or a
  /// dropped-in file would be (as the next generation of the plugin its manifest names, or a new
  /// one, against the plugins running now) and, unless `dry_run`, renames it over that plugin's
  /// file (or <directory>/<name>.so), then reloads or starts it; a refused reload or start puts
  /// the previous file back. Refused: a disabled plugin of that name, a target file that holds
  /// another plugin. All under the admin lock, so the directory watcher never acts in between.
  /// Blocks: never call on an I/O thread.
  DeployResult deploy(const std::filesystem::path& staged, bool dry_run);
  /// Runs `job` on the admin thread (admin actions block for a drain; the worker pool must stay
  /// free for the requests being drained). False once stop() began.
  bool post_admin_job(std::function<void()> job);

  /// The event bus between the plugins (for the admin API).
  [[nodiscard]] events::Bus& bus() noexcept;
  /// Every route of every started plugin, in plugin then manifest order.
  [[nodiscard]] std::vector<ApiRoute> api_routes() const;
  /// HTTP counters of every route of every started plugin.
  [[nodiscard]] std::vector<RouteStats> route_stats() const;
  /// Plugin-to-plugin call counters, one entry per (caller, target) pair that made calls.
  [[nodiscard]] std::vector<CallStats> call_stats() const;
  /// Storage counters of every plugin that has an open database, by plugin name.
  [[nodiscard]] std::vector<std::pair<std::string, storage::Stats>> storage_stats() const;

  struct Impl;

  /// A plugin whose manifest asks for storage (ext:keel.storage/1), for GET /admin/migrations.
  struct StoragePlugin {
    std::string name;
    PluginState state = PluginState::kDiscovered;
    storage::Options database;              ///< where its database is, as the host opens it
    std::vector<package::MigrationDecl> migrations;  ///< as its manifest declares them
  };
  /// Every plugin with storage, whatever its state (the first file of a duplicated name), in
  /// directory order. Touches no database: read them with storage::read_migration_history().
  [[nodiscard]] std::vector<StoragePlugin> storage_plugins() const;
  /// Per plugin, the [plugin.<name>] keys its manifest config schema marks "secret": true.
  [[nodiscard]] config::SecretKeys secret_config_keys() const;
  /// The configuration the plugins run with (a copy: [plugin.*] sections change on SIGHUP).
  [[nodiscard]] config::Config config() const;
  /// SIGHUP with a valid config: takes the new [plugin.<name>] sections and [log] level. A
  /// started plugin whose section changed is reloaded with it (refused: the old generation
  /// keeps running), one now `enabled = false` is drained and stopped (unless started plugins
  /// depend on it), one enabled again is started. Blocks: never call on an I/O thread.
  void apply_config(const config::Config& next);

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::host::plugins
