#include "app/app.hpp"

#include <algorithm>
#include <atomic>
#include <csignal>
#include <fstream>
#include <pthread.h>
#include <stdexcept>
#include <system_error>

#include "app/admin.hpp"
#include "app/admin_guard.hpp"
#include "app/metrics_endpoint.hpp"
#include "app/openapi.hpp"
#include "app/traffic.hpp"
#include "cluster/cluster.hpp"
#include "common/timer_queue.hpp"
#include "common/worker_pool.hpp"
#include "http/router.hpp"
#include "http/server.hpp"
#include "http/tls.hpp"
#include "observability/log.hpp"
#include "plugins/plugin_host.hpp"

#include <nlohmann/json.hpp>

namespace keel::host::app {
namespace {

// CORS (Fetch standard, "CORS protocol"): preflight answers and response headers for allowed
// origins. Immutable after construction; shared by every I/O thread.
class Cors {
 public:
  explicit Cors(const config::CorsConfig& c)
      : cfg_(c), methods_(join(c.allowed_methods)), headers_(join(c.allowed_headers)), expose_(join(c.expose_headers)) {
    any_origin_ = std::find(c.allowed_origins.begin(), c.allowed_origins.end(), "*") != c.allowed_origins.end();
  }

  [[nodiscard]] bool enabled() const noexcept { return !cfg_.allowed_origins.empty(); }

  static bool is_preflight(const http::Request& req) {
    return req.method == "OPTIONS" && !req.header("origin").empty() && !req.header("access-control-request-method").empty();
  }

  void preflight(const http::Request& req, http::Response& res) const {
    const auto origin = req.header("origin");
    const auto method = req.header("access-control-request-method");
    if (!origin_allowed(origin)) return res.set_error(403, "forbidden", "CORS: origin not allowed");
    if (!listed(cfg_.allowed_methods, method)) return res.set_error(403, "forbidden", "CORS: method not allowed");
    for (auto rest = req.header("access-control-request-headers"); !rest.empty();) {
      const auto comma = rest.find(',');
      auto name = rest.substr(0, comma);
      while (!name.empty() && name.front() == ' ') name.remove_prefix(1);
      while (!name.empty() && name.back() == ' ') name.remove_suffix(1);
      if (!name.empty() && !listed(cfg_.allowed_headers, name))
        return res.set_error(403, "forbidden", "CORS: header '" + std::string(name) + "' not allowed");
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
    }
    res.status = 204;
    add_origin(origin, res.headers);
    res.headers.emplace_back("Access-Control-Allow-Methods", methods_);
    res.headers.emplace_back("Access-Control-Allow-Headers", headers_);
    res.headers.emplace_back("Access-Control-Max-Age", std::to_string(cfg_.max_age_s));
    res.headers.emplace_back("Vary", "Origin, Access-Control-Request-Method, Access-Control-Request-Headers");
  }

  /// Headers for an actual (non-preflight) response to `req`; none if no allowed Origin.
  void decorate(const http::Request& req, std::vector<std::pair<std::string, std::string>>& headers) const {
    const auto origin = req.header("origin");
    if (origin.empty() || !origin_allowed(origin)) return;
    add_origin(origin, headers);
    if (!expose_.empty()) headers.emplace_back("Access-Control-Expose-Headers", expose_);
    headers.emplace_back("Vary", "Origin");
  }

 private:
  static std::string join(const std::vector<std::string>& items) {
    std::string out;
    for (const auto& i : items) out += (out.empty() ? "" : ", ") + i;
    return out;
  }
  static bool listed(const std::vector<std::string>& items, std::string_view v) {
    return std::any_of(items.begin(), items.end(), [&](const std::string& i) { return http::iequals(i, v); });
  }
  // "null" is the origin of sandboxed frames, data: and file: pages and some redirects: anyone
  // can send it, so no configuration allows it (not even "*").
  bool origin_allowed(std::string_view origin) const {
    if (origin == "null") return false;
    return any_origin_ || std::find(cfg_.allowed_origins.begin(), cfg_.allowed_origins.end(), origin) != cfg_.allowed_origins.end();
  }
  void add_origin(std::string_view origin, std::vector<std::pair<std::string, std::string>>& headers) const {
    // The config refuses "*" with allow_credentials, so a wildcard never reflects an origin.
    headers.emplace_back("Access-Control-Allow-Origin", any_origin_ ? "*" : std::string(origin));
    if (cfg_.allow_credentials) headers.emplace_back("Access-Control-Allow-Credentials", "true");
  }

  config::CorsConfig cfg_;
  std::string methods_, headers_, expose_;
  bool any_origin_ = false;
};

// Every request enters here: the host's own endpoints first, then the plugins' route table.
// Unknown paths get 404; a known path with the wrong method gets 405 with Allow (RFC 9110 §15.5.6).
class Dispatcher final : public http::Handler {
 public:
  Dispatcher(plugins::PluginHost& plugins, const config::Config& config, AdminGuard& admin,
             const TrafficHistory& traffic, const std::atomic<bool>& draining, const http::TlsContext* tls,
             cluster::Cluster* cluster)
      : plugins_(plugins),
        cors_(config.cors),
        admin_(admin),
        traffic_(traffic),
        max_upload_bytes_(config.admin.max_upload_bytes),
        admin_listener_(!config.admin.listen.empty()),
        draining_(draining),
        tls_(tls),
        cluster_(cluster) {}

  std::optional<http::Deferred> handle(const http::Request& req, http::Response& res) override {
    if (cors_.enabled()) {
      if (Cors::is_preflight(req)) {
        cors_.preflight(req, res);
        return std::nullopt;
      }
      auto deferred = route(req, res);
      if (deferred) cors_.decorate(req, deferred->reply->extra_headers);
      else cors_.decorate(req, res.headers);
      return deferred;
    }
    return route(req, res);
  }

  // What another host forwards (docs/cluster.md): only this host's plugin routes answer, and
  // CORS is the entry host's business. A handler of its own, so the client path pays nothing.
  class PluginRoutes final : public http::Handler {
   public:
    explicit PluginRoutes(Dispatcher& d) : d_(d) {}
    std::optional<http::Deferred> handle(const http::Request& req, http::Response& res) override {
      return d_.route_to_plugin(req, res);
    }

   private:
    Dispatcher& d_;
  };
  http::Handler& plugin_routes() noexcept { return plugin_routes_; }

  // Over [http] max_body_bytes: only a plugin upload, on the listener that serves /admin/.
  std::uint64_t large_body_limit(const http::Request& req, http::Response& res) override {
    if (admin_listener_ != (req.listener == http::Listener::kAdmin)) return 0;
    return admit_upload(req, res, admin_, max_upload_bytes_);
  }

 private:
  std::optional<http::Deferred> route(const http::Request& req, http::Response& res) {
    // With [admin] listen, /admin/ lives only there: the admin listener serves nothing else and
    // the public one answers /admin/ as a path that does not exist (no token is looked at).
    if (admin_listener_) {
      const bool admin_path = is_admin_path(req.path);
      if (req.listener == http::Listener::kAdmin) {
        if (admin_path) return handle_admin(req, res, admin_, plugins_, cluster_, traffic_);
        res.set_error(404, "not_found", "the admin listener serves only /admin/");
        return std::nullopt;
      }
      if (admin_path) {
        res.set_error(404, "not_found", "no route for this path");
        return std::nullopt;
      }
    }
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (req.path == "/healthz") {
      if (!get) res.set_method_not_allowed("GET, HEAD");
      else res.set_json(200, R"({"status":"alive"})");
      return std::nullopt;
    }
    if (req.path == "/readyz") {
      if (!get) res.set_method_not_allowed("GET, HEAD");
      else readiness(res);
      return std::nullopt;
    }
    if (req.path == "/openapi.json") {
      if (!get) res.set_method_not_allowed("GET, HEAD");
      else handle_openapi(res, plugins_);
      return std::nullopt;
    }
    if (req.path == "/metrics") {
      if (!get) res.set_method_not_allowed("GET, HEAD");
      else handle_metrics(res, plugins_, tls_, cluster_);
      return std::nullopt;
    }
    if (is_admin_path(req.path)) {
      return handle_admin(req, res, admin_, plugins_, cluster_, traffic_);
    }
    return route_to_plugin(req, res);
  }

  // The plugins' route table; a path no local route serves may belong to a plugin that only
  // other hosts of the cluster load. Inlined into route(): the hello path pays no extra call.
  [[gnu::always_inline]] std::optional<http::Deferred> route_to_plugin(const http::Request& req, http::Response& res) {
    thread_local http::MatchScratch scratch;
    const auto& table = plugins_.route_table_for_this_thread();  // stays alive for this request
    const auto match = table.match(req.method, req.path, scratch);
    switch (match.kind) {
      case http::MatchResult::Kind::kFound:
        return plugins_.dispatch(match, scratch, req, res);
      case http::MatchResult::Kind::kMethodNotAllowed:
        res.set_method_not_allowed(match.allow);
        break;
      case http::MatchResult::Kind::kBadPath:
        res.set_error(400, "bad_request", "malformed path: bad percent-encoding or a dot-segment");
        break;
      case http::MatchResult::Kind::kNotFound:
        if (cluster_ != nullptr) {
          bool handled = false;
          auto deferred = cluster_->forward(req, res, handled);
          if (handled) return deferred;
        }
        if (const auto failed = plugins_.failed_plugin_at(req.path); !failed.empty()) [[unlikely]] {
          // Where a plugin that failed (to start, or quarantined) would serve: an outage, not a wrong path.
          res.set_error(503, "unavailable", "plugin '" + std::string(failed) +
                                                "' is not available: it failed (the host log and GET /admin/plugins "
                                                "say why)");
          break;
        }
        res.set_error(404, "not_found", "no route for this path");
        break;
    }
    return std::nullopt;
  }

  void readiness(http::Response& res) const {
    if (draining_.load(std::memory_order_relaxed)) return res.set_error(503, "unavailable", "host is shutting down");
    if (const auto reason = plugins_.not_ready_reason(); !reason.empty())
      return res.set_error(503, "unavailable", reason);
    std::string body = R"({"status":"ready","plugins":[)";
    bool first = true;
    for (const auto& st : plugins_.statuses()) {
      body += first ? "" : ",";
      first = false;
      body += R"({"name":")";
      observability::append_json_escaped(body, st.name);
      body += R"(","state":")";
      body += plugins::to_string(st.state);
      body += "\"}";
    }
    body += "]";
    if (cluster_ != nullptr) {
      body += R"(,"cluster":)";
      body += cluster_->readiness_json();
    }
    body += "}";
    res.set_json(200, std::move(body));
  }

  plugins::PluginHost& plugins_;
  Cors cors_;
  AdminGuard& admin_;
  const TrafficHistory& traffic_;
  const std::uint64_t max_upload_bytes_;  ///< [admin] max_upload_bytes (a restart applies a change)
  const bool admin_listener_;  ///< [admin] listen is set: /admin/ only on the admin listener
  const std::atomic<bool>& draining_;
  const http::TlsContext* tls_;
  cluster::Cluster* cluster_;  ///< null when the host is in no cluster
  PluginRoutes plugin_routes_{*this};
};

http::ServerOptions server_options(const config::Config& c, std::shared_ptr<http::TlsContext> tls) {
  http::ServerOptions o;
  o.tls = std::move(tls);
  o.listen = c.server.listen;
  o.admin_listen = c.admin.listen;
  o.io_threads = c.server.io_threads;
  o.max_connections = c.server.max_connections;
  o.max_header_bytes = c.http.max_header_bytes;
  o.max_target_bytes = c.http.max_target_bytes;
  o.max_body_bytes = c.http.max_body_bytes;
  o.header_read_timeout = c.http.header_read_timeout;
  o.idle_timeout = c.http.idle_timeout;
  o.request_timeout = c.http.request_timeout;
  o.write_timeout = c.http.write_timeout;
  o.access_log = c.log.access_log;
  return o;
}

// Written to a temporary name and renamed, so a reader never sees a half-written line.
void write_small_file(const std::filesystem::path& file, const std::string& line, std::string_view what) {
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << line << '\n';
    if (!out) throw std::runtime_error("cannot write " + std::string(what) + " " + tmp.string());
  }
  std::filesystem::rename(tmp, file);
}

void log_certificate(const http::TlsContext& tls, const http::TlsCertificateInfo& info, std::string_view what) {
  auto log = observability::logger("keel");
  log->info("{} cert={} subject=\"{}\" sha256={} not_after={} min_version={}", what, tls.options().cert_file.string(),
            info.subject, info.sha256, info.not_after, http::to_string(tls.options().min_version));
  for (const auto& w : info.warnings) log->warn("tls: {}", w);
}

// SIGHUP: the certificate and key again, for new connections; open ones keep theirs.
void reload_tls(http::TlsContext& tls) {
  try {
    log_certificate(tls, tls.reload(), "SIGHUP: tls certificate reloaded");
  } catch (const http::TlsError& e) {
    observability::logger("keel")->error("SIGHUP: tls certificate not reloaded: {}; new connections keep the one "
                                         "loaded before (sha256={})",
                                         e.what(), tls.certificate().sha256);
  }
}

}  // namespace

std::shared_ptr<http::TlsContext> load_tls(const config::Config& c) {
  if (!c.server.tls()) return nullptr;
  http::TlsOptions o{c.server.tls_cert, c.server.tls_key,
                     c.server.tls_min_version == config::TlsVersion::k13 ? http::TlsMinVersion::kTls13
                                                                         : http::TlsMinVersion::kTls12};
  try {
    return std::make_shared<http::TlsContext>(std::move(o));
  } catch (const http::TlsError& e) {
    const bool key = e.which() == http::TlsError::Which::kKey;
    throw config::ConfigError({config::Diagnostic{config::SourcePos{c.source.string(), 0, 0},
                                                  std::string(key ? "[server] tls_key: " : "[server] tls_cert: ") + e.what()}});
  }
}

observability::LogOptions log_options(const config::Config& c) {
  return {c.log.level,
          c.log.format == config::LogFormat::kJson ? observability::LogFormat::kJson : observability::LogFormat::kText,
          c.log.file, c.log.max_file_bytes, c.log.max_files};
}

namespace {

// SIGHUP: the config file again. Applies what can change while running; says what cannot.
// `running` is the configuration applied last; on success it becomes the new one.
void reload_config(config::Config& running, std::optional<std::string> listen, plugins::PluginHost& plugins,
                   AdminGuard& admin) {
  auto log = observability::logger("keel");
  config::Config next;
  try {
    next = config::load(running.source, config::current_environment());
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) log->error("SIGHUP: {}", d.str());
    log->error("SIGHUP: {} has errors; the running configuration stays", running.source.string());
    return;
  } catch (const std::exception& e) {
    log->error("SIGHUP: cannot read {}: {}; the running configuration stays", running.source.string(), e.what());
    return;
  }
  if (listen) next.server.listen = *listen;
  try {
    observability::init(log_options(next));  // level, format, file (reopened: also for logrotate)
  } catch (const std::exception& e) {
    log->error("SIGHUP: {}; logging stays as it was", e.what());
  }
  // The admin tokens (file, environment as the process started with it, token_file) and the
  // failed-attempt limits apply at once; only [admin] listen waits for a restart.
  if (admin.update(next.admin))
    log->info("SIGHUP: admin tokens replaced; {} accepted now", next.admin.tokens().size());
  auto before = nlohmann::json::parse(config::to_json(running));
  auto after = nlohmann::json::parse(config::to_json(next));
  // Of [admin], the tokens and attempt limits apply now (above); the rest needs a restart.
  for (auto* admin_section : {&before["admin"], &after["admin"]})
    *admin_section = {{"listen", admin_section->value("listen", "")},
                      {"max_upload_bytes", admin_section->value("max_upload_bytes", 0)}};
  for (const auto& [section, value] : after.items())
    if (section != "plugin" && section != "log" && section != "source" && before.value(section, nlohmann::json()) != value)
      log->warn("SIGHUP: [{}] changed; restart the host to apply it", section);
  plugins.apply_config(next);
  log->info("SIGHUP: configuration {} applied", running.source.string());
  running = std::move(next);
}

}  // namespace

App::App(config::Config config) : config_(std::move(config)) {}

int App::run(const ServeOptions& options) {
  // Block the shutdown signals in every thread (the I/O threads inherit this mask); this
  // thread then takes them synchronously with sigwait, so no handler runs in signal context.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto log = observability::logger("keel");
  if (options.listen) config_.server.listen = *options.listen;
  std::atomic<bool> draining{false};
  const auto tls = load_tls(config_);  // before any plugin code runs, before anything starts
  if (tls) log_certificate(*tls, tls->certificate(), "tls certificate loaded");
  WorkerPool pool(config_.server.worker_threads, config_.server.worker_queue);
  TimerQueue timers;
  plugins::PluginHost plugins(config_, pool, timers);
  AdminGuard admin(config_.admin);
  TrafficHistory traffic(plugins, timers);
  // With [cluster]: the link connects in the background, so a NATS server that is down does not
  // keep this host from serving its own plugins.
  auto cluster = config_.cluster.enabled() ? std::make_unique<cluster::Cluster>(config_, plugins, timers) : nullptr;
  Dispatcher dispatcher(plugins, config_, admin, traffic, draining, tls.get(), cluster.get());
  // However this function ends, the cluster stops handing requests to `dispatcher` before the
  // dispatcher goes (leave() is idempotent).
  struct LeaveFirst {
    std::unique_ptr<cluster::Cluster>& c;  // empty once the normal path below is done with it
    ~LeaveFirst() {
      if (c) c->leave();
    }
  } leave_first{cluster};
  http::Server server(server_options(config_, tls), dispatcher);
  server.listen();  // fail fast (port in use) before any plugin code runs
  plugins.start();
  if (cluster) cluster->start(dispatcher.plugin_routes());
  server.start();
  // The admin address first: whoever waits for the port file finds both.
  if (options.admin_address_file) write_small_file(*options.admin_address_file, server.admin_address(), "admin address file");
  if (options.port_file) write_small_file(*options.port_file, std::to_string(server.local_port()), "port file");
  if (server.admin_address().empty())
    log->info("keel started version={} config={} address={}", KEEL_VERSION, config_.source.string(),
              server.local_address());
  else
    log->info("keel started version={} config={} address={} admin_address={}", KEEL_VERSION, config_.source.string(),
              server.local_address(), server.admin_address());

  config::Config applied = config_;  // what SIGHUP compares with; touched only by the admin thread
  int signal = 0;
  for (;;) {
    sigwait(&signals, &signal);
    if (signal != SIGHUP) break;
    if (tls) reload_tls(*tls);  // here, not behind a plugin reload's drain on the admin queue
    // SIGHUP: the config file, then the plugin directory (on a worker: both block).
    log->info("SIGHUP: re-reading {} and the plugin directory {}", config_.source.string(),
              config_.plugins.directory.string());
    if (!plugins.post_admin_job([&applied, &plugins, &admin, listen = options.listen] {
          reload_config(applied, listen, plugins, admin);
          plugins.sync_directory();
        }))
      log->warn("SIGHUP ignored: the host is shutting down");
  }
  log->info("shutdown requested signal={} drain_timeout_ms={} connections={}", strsignal(signal),
            config_.server.drain_timeout.count(), server.connection_count());
  draining.store(true);
  if (cluster) cluster->leave();  // the other hosts stop sending requests here at once
  server.shutdown(config_.server.drain_timeout);
  server.wait();
  plugins.stop();
  cluster.reset();
  log->info("keel stopped");
  return 0;
}

}  // namespace keel::host::app
