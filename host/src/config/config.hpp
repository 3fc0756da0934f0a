#pragma once
// Host configuration: the typed result of parsing a TOML file plus KEEL_<SECTION>_<KEY>
// environment overrides. Plugin tables stay opaque (JSON text) for the plugin layer to validate.
// Plain values; safe to copy and to read from any thread once built.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace keel::host::config {

/// Where a value came from, for error messages ("keel.toml:12:5" or "env KEEL_HTTP_MAX_BODY_BYTES").
struct SourcePos {
  std::string file;  ///< config file path, or "env KEEL_..." for an environment override
  std::uint32_t line = 0;
  std::uint32_t column = 0;
  [[nodiscard]] std::string str() const;
};

struct Diagnostic {
  SourcePos where;
  std::string message;  ///< what is wrong and what to do, e.g. "unknown key 'max_bodys' (did you mean 'max_body_bytes'?)"
  [[nodiscard]] std::string str() const { return where.str() + ": " + message; }
};

/// Thrown by load() when the file cannot be read or has errors; carries every diagnostic found.
class ConfigError : public std::runtime_error {
 public:
  explicit ConfigError(std::vector<Diagnostic> diagnostics);
  [[nodiscard]] const std::vector<Diagnostic>& diagnostics() const noexcept { return diagnostics_; }

 private:
  std::vector<Diagnostic> diagnostics_;
};

enum class LogFormat { kText, kJson };
enum class SyncMode { kNormal, kFull };
enum class StorageEngine { kSqlite, kPostgres };  ///< in kStorageEngines order ("sqlite", "postgres")
enum class TlsVersion { k12, k13 };  ///< lowest TLS version a listener accepts

struct ServerConfig {
  std::uint32_t worker_threads = 4;      ///< pool for blocking/serialized plugin handlers and plugin calls
  std::uint32_t worker_queue = 1024;     ///< queued jobs beyond which requests get 503
  std::string listen = "127.0.0.1:8080";          ///< HOST:PORT; port 0 picks an ephemeral port
  std::uint32_t io_threads = 1;                   ///< threads running the HTTP event loops (1..256)
  std::uint32_t max_connections = 10000;          ///< open client connections; more are refused with 503
  std::chrono::milliseconds drain_timeout{10000}; ///< graceful-shutdown budget for in-flight requests
  std::filesystem::path data_dir = "data";        ///< per-plugin databases live here (relative to the config file)
  /// PEM certificate chain and private key (relative to the config file); both set = every
  /// connection is TLS, both empty = plain HTTP. Re-read on SIGHUP (docs/security.md "TLS").
  std::filesystem::path tls_cert;
  std::filesystem::path tls_key;
  TlsVersion tls_min_version = TlsVersion::k12;   ///< "1.2" or "1.3"
  [[nodiscard]] bool tls() const noexcept { return !tls_cert.empty(); }
};

struct HttpConfig {
  std::uint32_t max_header_bytes = 16384;               ///< request line + fields; more gives 431 (414 for the target)
  std::uint32_t max_target_bytes = 8192;                ///< request-target length; more gives 414
  std::uint64_t max_body_bytes = 1048576;               ///< declared or received body; more gives 413
  std::chrono::milliseconds header_read_timeout{10000}; ///< first byte to end of header; then 408 + close
  std::chrono::milliseconds idle_timeout{60000};        ///< keep-alive wait for the next request; then close
  std::chrono::milliseconds request_timeout{30000};     ///< end of header to response ready (body read + handler)
  std::chrono::milliseconds write_timeout{30000};       ///< sending one response
};

struct LogConfig {
  std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::kText;
  bool access_log = true;      ///< one line per request on logger "access"
  bool spans = true;           ///< one line per plugin call and event delivery on logger "trace"
  std::filesystem::path file;  ///< log file (relative to the config file); empty = standard error
  std::uint64_t max_file_bytes = 0;  ///< rotate the file before it grows past this; 0 = never
  std::uint32_t max_files = 5;       ///< rotated files kept: <file>.1 .. <file>.<max_files>
};

/// Shortest admin token accepted (from the file, the environment or token_file): 32 characters,
/// e.g. `openssl rand -hex 32` (64). Shorter ones are refused at start, by `keel config check` and on SIGHUP.
inline constexpr std::size_t kMinAdminTokenLength = 32;

struct AdminConfig {
  std::string token;       ///< bearer token for /admin; empty disables the admin API (env KEEL_ADMIN_TOKEN)
  std::string token_next;  ///< a second accepted token while clients move to it (rotation); needs `token`
  /// File holding the token (first line) and optionally the next one (second line), read at start
  /// and on SIGHUP; must not be readable or writable by group or others. Excludes token/token_next.
  std::filesystem::path token_file;
  /// Where /admin/* is served: "" = on [server] listen; "HOST:PORT" or "unix:/path" = only there.
  std::string listen;
  std::uint32_t max_failed_attempts = 10;  ///< failed bearer tokens from one client address per window ...
  std::chrono::milliseconds failed_attempts_window{60000};  ///< ... then 429 until the window ends
  /// Largest plugin file POST /admin/plugins takes (the console's deploy); 0 = no uploads.
  std::uint64_t max_upload_bytes = 64 * 1024 * 1024;
  /// Every token a request may present: token, then token_next when set.
  [[nodiscard]] std::vector<std::string> tokens() const {
    std::vector<std::string> out;
    if (!token.empty()) out.push_back(token);
    if (!token_next.empty()) out.push_back(token_next);
    return out;
  }
};

struct PluginsConfig {
  std::filesystem::path directory = "plugins";  ///< scanned for *.so (relative to the config file)
  bool watch = true;                            ///< follow the directory: start, reload and stop plugins as files change
  std::chrono::milliseconds watch_debounce{500};  ///< quiet time after a change before acting on it
  std::chrono::milliseconds watch_rescan{2000};   ///< full scan interval (the poll interval without inotify)
  std::string isolation = "in-process";  ///< default of [plugin.<name>] isolation: "in-process" | "process"
  std::filesystem::path runner;          ///< keel-plugin-runner; empty = next to the keel binary
  bool require_sha256 = false;           ///< load only plugins pinned by [plugin.<name>] sha256
};

/// Cross-origin resource sharing for browser clients; off while allowed_origins is empty.
struct CorsConfig {
  std::vector<std::string> allowed_origins;  ///< exact origins ("https://app.example") or "*"
  std::vector<std::string> allowed_methods{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"};
  std::vector<std::string> allowed_headers{"Content-Type", "Authorization", "X-Request-Id"};
  std::vector<std::string> expose_headers{"X-Request-Id"};
  std::uint32_t max_age_s = 600;  ///< how long a browser may cache a preflight answer
  bool allow_credentials = false;
};

/// Per-plugin databases (docs/config.md [storage]): a SQLite file per plugin under
/// server.data_dir, or a schema and a role per plugin on a PostgreSQL server.
struct StorageConfig {
  StorageEngine engine = StorageEngine::kSqlite;  ///< [plugin.<name>] storage_engine overrides it
  /// libpq connection string (key=value or postgresql:// URI) of the administrative role that
  /// creates each plugin's schema and role. Holds a secret: never logged, redacted in /admin/config.
  std::string postgres_url;
  /// The host's schema, and the start of each plugin's schema and role ("<prefix>_<plugin>"):
  /// deployments sharing a PostgreSQL cluster need different ones (role names are cluster-wide).
  std::string postgres_prefix = "keel";
  std::uint32_t postgres_pool_size = 8;  ///< range 1..1000: connections per plugin at most
  /// Key postgres_connect_timeout_ms, range 100..600000: how long opening a connection may take.
  std::chrono::milliseconds postgres_connect_timeout{3000};
  /// "normal" (WAL: survives process crash, kill -9) | "full" (also survives power loss; fsync per commit).
  SyncMode synchronous = SyncMode::kNormal;
  /// Key busy_timeout_ms, range 0..600000: how long a writer waits for the database lock / writer slot.
  std::chrono::milliseconds busy_timeout{5000};
  std::uint32_t readers = 4;            ///< range 1..64: reader connections per plugin database
  std::uint32_t statement_cache = 128;  ///< range 0..10000: prepared statements kept per connection
  /// Key transaction_timeout_ms, range 100..3600000: an open transaction older than this may be
  /// rolled back by the host when another writer waits.
  std::chrono::milliseconds transaction_timeout{10000};
  /// 0 = unlimited; otherwise the database file may not grow beyond this (SQLite max_page_count);
  /// writes beyond fail with "storage full". [plugin.<name>] max_db_bytes overrides it.
  std::uint64_t max_db_bytes = 0;
};

/// The event bus (docs/config.md [events]): per-subscriber queues, retries, dead letters, and the
/// retention of durable (outbox) events.
struct EventsConfig {
  /// Range 1..10000000: events waiting per subscriber (in-memory topics); a publish that would
  /// exceed it gets KEEL_ERR_BUSY.
  std::uint32_t queue_capacity = 10000;
  /// Range 1..1000: deliveries of one event to one subscriber before it is dead-lettered.
  std::uint32_t max_attempts = 5;
  /// Key retry_base_ms, range 1..600000: first retry delay; doubles per attempt.
  std::chrono::milliseconds retry_base{100};
  /// Key retry_max_ms, range 1..3600000: cap of the retry delay (must be >= retry_base_ms: error otherwise).
  std::chrono::milliseconds retry_max{30000};
  /// Key retention_ms, range 0..31536000000: delivered durable events are kept this long after
  /// they were published, then deleted (0 = delete once every subscriber has it).
  std::chrono::milliseconds retention{86400000};
  std::uint32_t batch = 256;  ///< range 1..100000: durable events read and acknowledged per delivery batch
  /// Range 0..1000000: dead letters of in-memory topics kept (oldest dropped).
  std::uint32_t dead_letter_capacity = 1000;
  /// Range 1..67108864: largest event payload a publish may carry; more gets KEEL_ERR_TOO_LARGE.
  std::uint32_t max_payload_bytes = 1048576;
};

/// One [plugin.<name>] table. Host-owned keys are typed; the rest is handed to the plugin.
/// How a plugin with isolation = "process" runs (docs/isolation.md): [plugin.<name>] runner_* keys.
struct RunnerSettings {
  std::uint32_t threads = 4;          ///< runner_threads 1..256: hooks running at once in the runner
  std::uint64_t memory_bytes = 0;     ///< runner_memory_bytes: address-space limit (RLIMIT_AS); 0 = none
  std::uint64_t cpu_seconds = 0;      ///< runner_cpu_seconds: CPU time per runner process (RLIMIT_CPU); 0 = none
  std::uint32_t cpu_percent = 0;      ///< runner_cpu_percent: cgroup CPU quota, percent of one CPU; 0 = none
  std::uint64_t cgroup_memory_bytes = 0;  ///< runner_cgroup_memory_bytes: cgroup memory ceiling; 0 = none
  std::uint64_t open_files = 0;       ///< runner_open_files: RLIMIT_NOFILE; 0 = the host's
  std::string user;                   ///< runner_user: run as this user when the host runs as root
  /// runner_allow_root: a host running as root may run this runner as root (runner_user absent or
  /// naming uid 0); without it such a runner gets a dynamic unprivileged uid, or is refused.
  bool allow_root = false;
  /// runner_network: false = the runner gets a network namespace with only loopback.
  bool network = true;
  std::chrono::milliseconds restart_backoff{100};       ///< runner_restart_backoff_ms: first restart delay
  std::chrono::milliseconds restart_backoff_max{30000}; ///< runner_restart_backoff_max_ms
  std::uint32_t max_crashes = 5;                        ///< runner_max_crashes: then quarantined
  std::chrono::milliseconds crash_window{60000};        ///< runner_crash_window_ms: ... within this window
  std::chrono::milliseconds ping_interval{1000};        ///< runner_ping_interval_ms
  std::chrono::milliseconds ping_timeout{5000};         ///< runner_ping_timeout_ms: no answer: killed, restarted
  std::chrono::milliseconds hook_timeout{30000};        ///< runner_hook_timeout_ms: create/start/stop/on_event
  bool operator==(const RunnerSettings&) const = default;
};

/// Opt-in quarantine of a plugin whose answers go bad (both isolation modes): [plugin.<name>] quarantine_* keys.
struct ErrorBudget {
  double max_error_rate = 0;                  ///< quarantine_error_rate 0..1: share of 5xx answers; 0 = off
  std::chrono::milliseconds max_p99{0};       ///< quarantine_p99_ms: 99th percentile latency; 0 = off
  std::chrono::milliseconds window{30000};    ///< quarantine_window_ms 1000..3600000
  std::uint32_t min_requests = 20;            ///< quarantine_min_requests: judged only with this many in the window
  [[nodiscard]] bool enabled() const noexcept { return max_error_rate > 0 || max_p99.count() > 0; }
  bool operator==(const ErrorBudget&) const = default;
};

struct PluginSection {
  std::string name;
  bool enabled = true;
  std::string mount;                    ///< URL prefix of its routes; empty = "/api/<name>"
  std::string sha256;                   ///< if set, the .so must have this SHA-256 (lowercase hex)
  std::string log_level;                ///< level of logger plugin.<name>; empty = [log] level
  std::optional<std::chrono::milliseconds> request_timeout;  ///< overrides [http] request_timeout_ms
  std::map<std::string, std::chrono::milliseconds> route_timeouts;  ///< "GET /greet/{name}" -> timeout
  std::optional<std::uint64_t> max_db_bytes;  ///< overrides [storage] max_db_bytes for this plugin; 0 = unlimited
  std::string isolation;                      ///< "in-process" | "process"; empty = [plugins] isolation
  std::string storage_engine;                 ///< "sqlite" | "postgres"; empty = [storage] engine
  RunnerSettings runner;
  ErrorBudget budget;
  SourcePos where;                              ///< position of the table header
  std::string settings_json = "{}";             ///< plugin-owned keys as a JSON object
  std::map<std::string, SourcePos> key_positions;  ///< plugin-owned key -> where it was written
};

/// Several hosts over NATS (docs/cluster.md); off while nats_url is empty, and then the host
/// needs no NATS at all.
struct ClusterConfig {
  std::string nats_url;  ///< comma-separated "nats://HOST:PORT" servers; "" = no cluster
  std::string node;      ///< this host's name in the cluster; "" = the machine's host name
  std::string subject_prefix = "keel";  ///< first tokens of every subject (several clusters on one NATS)
  std::string token;     ///< NATS authentication token (secret); excludes user/password
  std::string user;      ///< NATS user ...
  std::string password;  ///< ... and password (secret)
  std::chrono::milliseconds announce_interval{1000};  ///< how often this host announces its plugins
  std::chrono::milliseconds request_timeout{10000};   ///< longest wait for another host's answer
  /// Durable events a subscribing plugin's consumer has in flight (fetched, not acknowledged);
  /// 1 keeps one event at a time in order across the plugin's replicas on several hosts.
  std::uint32_t durable_batch = 256;
  [[nodiscard]] bool enabled() const noexcept { return !nats_url.empty(); }
  /// The servers of nats_url, in order, each trimmed (cluster_keys.cpp).
  [[nodiscard]] std::vector<std::string> servers() const;
};

struct Config {
  std::filesystem::path source;  ///< the file this was loaded from (empty for defaults)
  ServerConfig server;
  HttpConfig http;
  LogConfig log;
  AdminConfig admin;
  PluginsConfig plugins;
  CorsConfig cors;
  StorageConfig storage;
  EventsConfig events;
  ClusterConfig cluster;
  std::map<std::string, PluginSection> plugin_sections;
};

/// A process environment as name -> value (tests pass their own; main passes environ).
using Environment = std::map<std::string, std::string>;
[[nodiscard]] Environment current_environment();

/// Parse and validate `file`, apply KEEL_* overrides from `env`, resolve relative paths against
/// the file's directory. Throws ConfigError listing every problem found (not just the first).
[[nodiscard]] Config load(const std::filesystem::path& file, const Environment& env);

/// Same as load() but from text; `name` is used in diagnostics and to resolve relative paths.
[[nodiscard]] Config parse(std::string_view text, const std::filesystem::path& name, const Environment& env);

/// What to_json() writes instead of a secret value.
inline constexpr std::string_view kRedacted = "<redacted>";

/// True when a setting's name suggests a secret: it contains, ignoring case, password, passwd,
/// secret, token, api_key, apikey, private_key or credential, or it ends in _key, _pass, _pwd or
/// _auth after a prefix (stripe_key, smtp_pass).
[[nodiscard]] bool looks_secret(std::string_view key) noexcept;

/// Per plugin name, the [plugin.<name>] keys whose manifest config schema says "secret": true.
using SecretKeys = std::map<std::string, std::vector<std::string>, std::less<>>;

/// `config` as one JSON object (compact text) with a member per section and key, as the file and
/// docs/config.md name them: durations as integer `_ms`, lists as arrays, enums as their names,
/// resolved paths, and under "plugin" one object per [plugin.<name>] table (host-owned keys, null
/// when unset, then the plugin-owned keys as written). Secret values become kRedacted (an empty
/// string stays ""): [admin] token; plugin-owned keys listed in `secret_keys` for that plugin;
/// plugin-owned keys, at any depth, whose name looks_secret(); and the password of every URL in a
/// plugin-owned string ("scheme://user:<redacted>@host/...").
[[nodiscard]] std::string to_json(const Config& config, const SecretKeys& secret_keys = {});

}  // namespace keel::host::config
