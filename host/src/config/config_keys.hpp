#pragma once
// The host's config keys, declared once (config.cpp reads and checks them, config_json.cpp
// writes them for /admin/config). Private to config/.

#include <array>
#include <chrono>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"

namespace keel::host::config::detail {

constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr std::array<std::string_view, 7> kLogLevels{"trace", "debug", "info", "warn", "error", "critical", "off"};
constexpr std::array<std::string_view, 2> kLogFormats{"text", "json"};  // in LogFormat order
constexpr std::array<std::string_view, 2> kSyncModes{"normal", "full"};  // in SyncMode order
constexpr std::array<std::string_view, 2> kIsolationModes{"in-process", "process"};
constexpr std::array<std::string_view, 2> kStorageEngines{"sqlite", "postgres"};  // in StorageEngine order
constexpr std::array<std::string_view, 2> kTlsVersions{"1.2", "1.3"};  // in TlsVersion order

// A day is far beyond any sane I/O timeout, and the cap keeps `steady_clock::now() + timeout`
// (nanosecond ticks) from overflowing when the server arms its timers.
constexpr std::int64_t kMaxDurationMs = 86'400'000;
// Retention is not a timer: it only dates rows for deletion, so it may exceed the timer cap (a year).
constexpr std::int64_t kMaxRetentionMs = 31'536'000'000;
constexpr std::int64_t kUnbounded = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t kMaxUint32 = std::numeric_limits<std::uint32_t>::max();

/// Why a [server] listen value is not HOST:PORT, or nothing.
std::optional<std::string> listen_problem(std::string_view listen);
/// Why an [admin] listen value is neither HOST:PORT nor unix:PATH, or nothing ("" is fine: unset).
std::optional<std::string> admin_listen_problem(std::string_view listen);

/// Why a [storage] postgres_prefix cannot start PostgreSQL role and schema names, or nothing.
std::optional<std::string> postgres_prefix_problem(std::string_view prefix);

/// Why a [cluster] nats_url is not a list of nats://HOST:PORT servers, or nothing.
std::optional<std::string> nats_url_problem(std::string_view url);
/// Why a cluster node name or subject prefix is not made of NATS subject tokens, or nothing.
std::optional<std::string> node_name_problem(std::string_view node);
std::optional<std::string> subject_prefix_problem(std::string_view prefix);

/// A problem with the [admin] settings as a whole, blamed on `key` of [admin] (admin_keys.cpp).
struct AdminProblem {
  std::string_view key;
  std::string message;  ///< without the "[admin] key: " prefix
};
/// After the keys are applied: resolves token_file and the unix socket path against `base`,
/// reads token_file into token/token_next, and checks lengths and combinations. Never puts a
/// token's text into a message.
std::vector<AdminProblem> check_admin(AdminConfig& admin, const std::filesystem::path& base);


// Every key of the host's sections, declared once and in order (suggestions prefer the first of
// equally close candidates): its type, range or allowed values, and the field it fills. V is
// KeyCollector (names and types: unknown keys, KEEL_<SECTION>_<KEY>), Applier (checks and stores
// the settings) or Dumper (/admin/config); C is Config or const Config.
template <typename V, typename C>
void visit_keys(V& v, C& c) {
  v.section("server");
  v.text("listen", c.server.listen, listen_problem);
  v.integer("io_threads", c.server.io_threads, 1, 256);
  v.integer("max_connections", c.server.max_connections, 1, kMaxUint32);
  v.duration("drain_timeout_ms", c.server.drain_timeout);
  v.path("data_dir", c.server.data_dir);
  v.integer("worker_threads", c.server.worker_threads, 1, 256);
  v.integer("worker_queue", c.server.worker_queue, 1, 1000000);
  v.path("tls_cert", c.server.tls_cert);  // both or neither: apply() names the missing one
  v.path("tls_key", c.server.tls_key);
  v.choice("tls_min_version", c.server.tls_min_version, kTlsVersions);
  v.section("http");
  v.integer("max_header_bytes", c.http.max_header_bytes, 1024, 1048576);
  // At most max_header_bytes as just applied; apply() reports a default above a lowered header limit.
  v.integer("max_target_bytes", c.http.max_target_bytes, 16, c.http.max_header_bytes, "max_header_bytes");
  v.integer("max_body_bytes", c.http.max_body_bytes, 0, kUnbounded);
  v.duration("header_read_timeout_ms", c.http.header_read_timeout);
  v.duration("idle_timeout_ms", c.http.idle_timeout);
  v.duration("request_timeout_ms", c.http.request_timeout);
  v.duration("write_timeout_ms", c.http.write_timeout);
  v.section("log");
  v.choice("level", c.log.level, kLogLevels);
  v.choice("format", c.log.format, kLogFormats);
  v.flag("access_log", c.log.access_log);
  v.flag("spans", c.log.spans);
  v.path("file", c.log.file);  // "" = standard error
  v.integer("max_file_bytes", c.log.max_file_bytes, 0, kUnbounded);
  v.integer("max_files", c.log.max_files, 0, 1000);
  v.section("admin");
  v.secret("token", c.admin.token);
  v.secret("token_next", c.admin.token_next);
  v.path("token_file", c.admin.token_file);
  v.text("listen", c.admin.listen, admin_listen_problem);
  v.integer("max_failed_attempts", c.admin.max_failed_attempts, 1, 1000000);
  v.duration("failed_attempts_window_ms", c.admin.failed_attempts_window, 1000, kMaxDurationMs);
  v.integer("max_upload_bytes", c.admin.max_upload_bytes, 0, std::int64_t{1} << 30);
  v.section("plugins");
  v.path("directory", c.plugins.directory);
  v.flag("watch", c.plugins.watch);
  v.duration("watch_debounce_ms", c.plugins.watch_debounce, 0, 60000);
  v.duration("watch_rescan_ms", c.plugins.watch_rescan, 100, 3600000);
  v.choice("isolation", c.plugins.isolation, kIsolationModes);
  v.path("runner", c.plugins.runner);
  v.flag("require_sha256", c.plugins.require_sha256);
  v.section("cors");
  v.list("allowed_origins", c.cors.allowed_origins);
  v.list("allowed_methods", c.cors.allowed_methods);
  v.list("allowed_headers", c.cors.allowed_headers);
  v.list("expose_headers", c.cors.expose_headers);
  v.integer("max_age_s", c.cors.max_age_s, 0, 86400);
  v.flag("allow_credentials", c.cors.allow_credentials);
  v.section("storage");
  v.choice("synchronous", c.storage.synchronous, kSyncModes);
  // 0 is allowed: fail at once instead of waiting when the database is locked.
  v.duration("busy_timeout_ms", c.storage.busy_timeout, 0, 600000);
  v.integer("readers", c.storage.readers, 1, 64);
  v.integer("statement_cache", c.storage.statement_cache, 0, 10000);
  v.duration("transaction_timeout_ms", c.storage.transaction_timeout, 100, 3600000);
  v.integer("max_db_bytes", c.storage.max_db_bytes, 0, kUnbounded);
  v.choice("engine", c.storage.engine, kStorageEngines);
  v.conninfo("postgres_url", c.storage.postgres_url);
  v.text("postgres_prefix", c.storage.postgres_prefix, &postgres_prefix_problem);
  v.integer("postgres_pool_size", c.storage.postgres_pool_size, 1, 1000);
  v.duration("postgres_connect_timeout_ms", c.storage.postgres_connect_timeout, 100, 600000);
  v.section("events");
  v.integer("queue_capacity", c.events.queue_capacity, 1, 10000000);
  v.integer("max_attempts", c.events.max_attempts, 1, 1000);
  v.duration("retry_base_ms", c.events.retry_base, 1, 600000);
  // The cap may not undercut the first delay as just applied; apply() reports a default below a
  // raised retry_base_ms.
  v.duration("retry_max_ms", c.events.retry_max, c.events.retry_base.count(), 3600000, "retry_base_ms");
  // 0 is allowed: delete a durable event as soon as every subscriber has it.
  v.duration("retention_ms", c.events.retention, 0, kMaxRetentionMs);
  v.integer("batch", c.events.batch, 1, 100000);
  v.integer("dead_letter_capacity", c.events.dead_letter_capacity, 0, 1000000);
  v.integer("max_payload_bytes", c.events.max_payload_bytes, 1, 67108864);
  v.section("cluster");
  v.text("nats_url", c.cluster.nats_url, nats_url_problem);
  v.text("node", c.cluster.node, node_name_problem);
  v.text("subject_prefix", c.cluster.subject_prefix, subject_prefix_problem);
  v.secret("token", c.cluster.token);
  v.text("user", c.cluster.user);
  v.secret("password", c.cluster.password);
  v.duration("announce_interval_ms", c.cluster.announce_interval, 50, 600000);
  v.duration("request_timeout_ms", c.cluster.request_timeout, 1, kMaxDurationMs);
  v.integer("durable_batch", c.cluster.durable_batch, 1, 10000);
}

// The limits of a [plugin.<name>] table (its runner process, its error budget), declared once
// in /admin/config order. V is PluginLimitParser or PluginLimitDumper; S is (const) PluginSection.
template <typename V, typename S>
void visit_plugin_limits(V& v, S& s) {
  auto& r = s.runner;
  v.integer("runner_threads", r.threads, 1, 256, "number of threads");
  v.integer("runner_memory_bytes", r.memory_bytes, 0, kUnbounded, "number of bytes (0 = no limit)");
  v.integer("runner_cpu_seconds", r.cpu_seconds, 0, kMaxDurationMs / 1000, "number of seconds (0 = no limit)");
  v.integer("runner_cpu_percent", r.cpu_percent, 0, 100000, "percentage of one CPU (0 = no limit)");
  v.integer("runner_cgroup_memory_bytes", r.cgroup_memory_bytes, 0, kUnbounded, "number of bytes (0 = no limit)");
  v.integer("runner_open_files", r.open_files, 0, 1048576, "number of descriptors (0 = the host's)");
  v.user("runner_user", r.user);
  v.flag("runner_allow_root", r.allow_root);
  v.flag("runner_network", r.network);
  v.millis("runner_restart_backoff_ms", r.restart_backoff, 1, kMaxDurationMs);
  v.millis("runner_restart_backoff_max_ms", r.restart_backoff_max, 1, kMaxDurationMs);
  v.integer("runner_max_crashes", r.max_crashes, 1, 1000000, "number of crashes");
  v.millis("runner_crash_window_ms", r.crash_window, 1, kMaxDurationMs);
  v.millis("runner_ping_interval_ms", r.ping_interval, 10, kMaxDurationMs);
  v.millis("runner_ping_timeout_ms", r.ping_timeout, 10, kMaxDurationMs);
  v.millis("runner_hook_timeout_ms", r.hook_timeout, 1, kMaxDurationMs);
  v.rate("quarantine_error_rate", s.budget.max_error_rate);
  v.millis("quarantine_p99_ms", s.budget.max_p99, 0, kMaxDurationMs);
  v.millis("quarantine_window_ms", s.budget.window, 1000, 3600000);
  v.integer("quarantine_min_requests", s.budget.min_requests, 1, 100000000, "number of requests");
}

}  // namespace keel::host::config::detail
