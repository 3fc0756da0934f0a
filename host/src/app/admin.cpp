#include "app/admin.hpp"

#include <array>
#include <charconv>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "abi/status.hpp"
#include "app/admin_guard.hpp"
#include "app/console.hpp"
#include "app/log_stream.hpp"
#include "cluster/cluster.hpp"
#include "app/migration_report.hpp"
#include "app/plugin_upload.hpp"
#include "http/query.hpp"
#include "app/traffic.hpp"
#include "events/bus.hpp"
#include "observability/log.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::app {
namespace {

using Json = nlohmann::json;

template <typename J>
void reply(http::Response& res, unsigned status, const J& body) {
  res.set_json(status, body.dump(-1, ' ', false, J::error_handler_t::replace));
}

struct BuiltinRoute {
  std::string_view method, path, summary;
};

// The host's own endpoints, as the Dispatcher in app.cpp and handle_admin() below serve them
// (keep in step). Every GET also answers HEAD.
constexpr std::array kBuiltinRoutes{
    BuiltinRoute{"GET", "/healthz", "liveness: the process is up and serving HTTP"},
    BuiltinRoute{"GET", "/readyz", "readiness: every enabled plugin started and none reports health fail"},
    BuiltinRoute{"GET", "/metrics", "Prometheus text exposition of the host's counters"},
    BuiltinRoute{"GET", "/openapi.json", "OpenAPI document of the plugin routes"},
    BuiltinRoute{"GET", "/admin/plugins", "every plugin: state, version, ABI, manifest, health, failure reason"},
    BuiltinRoute{"POST", "/admin/plugins", "deploy a plugin file (the body): pre-flight, then install and start or reload; ?dry_run=true only checks"},
    BuiltinRoute{"POST", "/admin/plugins/{name}/disable", "stop a started plugin at run time"},
    BuiltinRoute{"POST", "/admin/plugins/{name}/enable", "start a plugin disabled through the admin API again"},
    BuiltinRoute{"POST", "/admin/plugins/{name}/reload", "replace a plugin with what its file holds now"},
    BuiltinRoute{"GET", "/admin/routes", "every route the host serves, built-in and plugin"},
    BuiltinRoute{"GET", "/admin/traffic", "the last minute per second: requests, 5xx and p99 per plugin, calls, events"},
    BuiltinRoute{"GET", "/admin/logs", "the recent log lines the live tail holds, filtered by level, plugin, request id"},
    BuiltinRoute{"GET", "/admin/logs/stream", "the live log tail as Server-Sent Events, filtered by level, plugin, request id"},
    BuiltinRoute{"GET", "/admin/ui/", "the operator's console in the browser (signs in with the admin token)"},
    BuiltinRoute{"GET", "/admin/storage", "per-plugin storage counters, latency, database and WAL size"},
    BuiltinRoute{"GET", "/admin/migrations", "per storage plugin: declared and applied migrations with state"},
    BuiltinRoute{"GET", "/admin/config", "the effective configuration, secrets redacted"},
    BuiltinRoute{"GET", "/admin/cluster", "this host's cluster link, the other hosts and the plugins each serves"},
    BuiltinRoute{"GET", "/admin/events/topics", "published and refused events per topic"},
    BuiltinRoute{"GET", "/admin/events/subscriptions", "delivery counters, queue depth and lag per subscription"},
    BuiltinRoute{"GET", "/admin/events/dead-letters", "events given up on after the last retry"},
    BuiltinRoute{"GET", "/admin/events/jetstream", "in a cluster: the JetStream stream, the relay's lag, each consumer's lag"},
    BuiltinRoute{"POST", "/admin/events/dead-letters/{kind}/{publisher}/{subscriber}/{seq}/resubmit",
                 "deliver a dead letter again"},
    BuiltinRoute{"DELETE", "/admin/events/dead-letters/{kind}/{publisher}/{subscriber}/{seq}", "discard a dead letter"},
};

nlohmann::ordered_json routes_json(const plugins::PluginHost& plugins) {
  auto out = nlohmann::ordered_json::array();
  for (const auto& r : kBuiltinRoutes)
    out.push_back({{"plugin", nullptr}, {"builtin", true}, {"method", r.method}, {"path", r.path}, {"summary", r.summary}});
  for (const auto& r : plugins.api_routes())
    out.push_back({{"plugin", r.plugin}, {"builtin", false}, {"method", r.method}, {"path", r.path}, {"summary", r.summary}});
  return out;
}

// Reads each storage plugin's _keel_migrations: a read-only connection of its own per database
// (what `keel migrate status` does against a running host), a few small rows.
nlohmann::ordered_json migrations_json(const plugins::PluginHost& plugins) {
  using OrderedJson = nlohmann::ordered_json;
  MigrationReport report;
  OrderedJson out;
  out["data_dir"] = plugins.config().server.data_dir.string();
  out["plugins"] = OrderedJson::array();
  for (const auto& p : plugins.storage_plugins()) {
    OrderedJson jp;
    jp["name"] = p.name;
    jp["state"] = plugins::to_string(p.state);
    report.add_database(jp, p.database, p.migrations);
    out["plugins"].push_back(std::move(jp));
  }
  out["summary"] = report.summary();
  out["ok"] = report.ok();
  return out;
}

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t start = 1;
  while (start <= path.size()) {
    const auto slash = path.find('/', start);
    const auto end = slash == std::string_view::npos ? path.size() : slash;
    if (end > start) out.push_back(path.substr(start, end - start));
    if (slash == std::string_view::npos) break;
    start = slash + 1;
  }
  return out;
}

Json event_json(const events::EventRecord& e) {
  return Json{{"event_id", e.event_id()},         {"topic", e.topic()},
              {"publisher", e.publisher()},       {"content_type", e.content_type()},
              {"payload", e.payload()},           {"published_unix_ns", e.published_unix_ns},
              {"traceparent", e.traceparent()},   {"request_id", e.request_id()}};
}

void events_api(const http::Request& req, http::Response& res, const std::vector<std::string_view>& seg,
                events::Bus& bus) {
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (seg.size() == 3 && seg[2] == "topics") {
    if (!get) return res.set_method_not_allowed("GET, HEAD");
    Json out = Json::array();
    for (const auto& t : bus.topics())
      out.push_back({{"publisher", t.publisher},
                     {"topic", t.topic.empty() ? Json(nullptr) : Json(t.topic)},
                     {"durable", t.durable},
                     {"published", t.published},
                     {"refused", t.refused}});
    return reply(res, 200, out);
  }
  if (seg.size() == 3 && seg[2] == "subscriptions") {
    if (!get) return res.set_method_not_allowed("GET, HEAD");
    Json out = Json::array();
    for (const auto& s : bus.subscriptions())
      out.push_back({{"kind", s.publisher.empty() ? "memory" : "durable"},
                     {"publisher", s.publisher},
                     {"subscriber", s.subscriber},
                     {"delivered", s.delivered},
                     {"failed", s.failed},
                     {"retried", s.retried},
                     {"dead_lettered", s.dead_lettered},
                     {"queued", s.queued},
                     {"lag", s.lag}});
    return reply(res, 200, out);
  }
  if (seg.size() == 3 && seg[2] == "dead-letters") {
    if (!get) return res.set_method_not_allowed("GET, HEAD");
    Json out = Json::array();
    for (const auto& d : bus.dead_letters()) {
      Json j = event_json(d.event);
      j["kind"] = d.durable ? "durable" : "memory";
      j["subscriber"] = d.subscriber;
      j["seq"] = d.seq;
      j["attempts"] = d.attempts;
      j["last_status"] = abi::status_name(d.last_status);
      j["failed_unix_ms"] = d.failed_unix_ms;
      out.push_back(std::move(j));
    }
    return reply(res, 200, out);
  }
  // /admin/events/dead-letters/{kind}/{publisher}/{subscriber}/{seq}[/resubmit]
  if ((seg.size() == 7 || seg.size() == 8) && seg[2] == "dead-letters") {
    const auto kind = seg[3];
    std::int64_t seq = 0;
    const auto [end, ec] = std::from_chars(seg[6].data(), seg[6].data() + seg[6].size(), seq);
    if ((kind != "durable" && kind != "memory") || ec != std::errc{} || end != seg[6].data() + seg[6].size())
      return res.set_error(400, "bad_request", "expected /admin/events/dead-letters/{durable|memory}/{publisher}/{subscriber}/{seq}");
    const bool durable = kind == "durable";
    keel_status st = KEEL_OK;
    if (seg.size() == 8) {
      if (seg[7] != "resubmit") return res.set_error(404, "not_found", "no such admin path");
      if (req.method != "POST") return res.set_method_not_allowed("POST");
      st = bus.resubmit(seg[4], seg[5], seq, durable);
    } else {
      if (req.method != "DELETE") return res.set_method_not_allowed("DELETE");
      st = bus.discard(seg[4], seg[5], seq, durable);
    }
    if (st == KEEL_ERR_NOT_FOUND) return res.set_error(404, "not_found", "no such dead letter");
    if (st < 0) return res.set_error(abi::http_status_for(st), "error", std::string(abi::status_name(st)));
    return reply(res, 200, Json{{"status", seg.size() == 8 ? "resubmitted" : "discarded"}});
  }
  res.set_error(404, "not_found", "no such admin path");
}

void admin_read(const http::Request& req, http::Response& res, const std::vector<std::string_view>& seg,
                plugins::PluginHost& plugins, const cluster::Cluster* cluster, const TrafficHistory& traffic) {
  if (seg.size() == 2 && seg[1] == "traffic") {
    if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
    return reply(res, 200, traffic.to_json());
  }
  if (seg.size() == 3 && seg[1] == "events" && seg[2] == "jetstream") {
    if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
    if (cluster == nullptr)
      return reply(res, 200, Json{{"enabled", false},
                                  {"message", "this host is in no cluster: durable events stay in the outboxes "
                                              "(docs/cluster.md)"}});
    Json out{{"enabled", true}, {"durable_events", Json::parse(cluster->durable_events_json())}};
    // What the relay has not handed to JetStream yet, per publisher here.
    Json relay = Json::array();
    for (const auto& st : plugins.bus().subscriptions())
      if (st.subscriber == cluster::DurableEvents::kRelay && !st.publisher.empty())
        relay.push_back({{"publisher", st.publisher}, {"lag", st.lag}, {"relayed", st.delivered}});
    out["relay"] = std::move(relay);
    return reply(res, 200, out);
  }
  if (seg.size() >= 2 && seg[1] == "events") return events_api(req, res, seg, plugins.bus());
  if (seg.size() >= 2 && seg[1] == "logs") return logs_api(req, res, seg, plugins);
  if (seg.size() == 2 && seg[1] == "cluster") {
    if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
    if (cluster == nullptr)  // the same shape, saying so
      return reply(res, 200, Json{{"node", nullptr}, {"link", {{"state", "off"}, {"url", ""}}},
                                  {"message", "this host is in no cluster: set [cluster] nats_url (docs/cluster.md)"},
                                  {"serving", Json::array()}, {"nodes", Json::array()}});
    return res.set_json(200, cluster->admin_json());
  }
  if (seg.size() == 2 && seg[1] == "plugins") {
    if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
    Json out = Json::array();
    for (const auto& st : plugins.statuses_with_health()) {
      Json j{{"name", st.name},   {"version", st.version}, {"abi", st.abi},   {"file", st.file.string()},
             {"state", plugins::to_string(st.state)},      {"mount", st.mount}};
      if (!st.reason.empty()) j["reason"] = st.reason;
      j["generation"] = st.generation;
      if (!st.sha256.empty()) j["sha256"] = st.sha256;
      j["reloads"] = {{"succeeded", st.reloads_succeeded}, {"refused", st.reloads_refused}};
      if (!st.last_reload_error.empty()) j["reloads"]["last_error"] = st.last_reload_error;
      j["isolation"] = st.isolation;
      if (!st.runner_state.empty() || st.runner_crashes != 0) {
        auto& r = j["runner"];
        r["state"] = st.runner_state.empty() ? "stopped" : st.runner_state;
        r["pid"] = st.runner_pid == 0 ? nlohmann::json(nullptr) : nlohmann::json(st.runner_pid);
        r["crashes"] = st.runner_crashes;
        r["restarts"] = st.runner_restarts;
        r["busy"] = st.runner_busy;
        if (!st.runner_last_crash.empty()) r["last_crash"] = st.runner_last_crash;
        r["limits"] = st.runner_limits;
      }
      if (!st.quarantine.empty()) j["quarantine"] = st.quarantine;
      if (!st.health.empty()) j["health"] = {{"status", st.health}, {"detail", st.health_detail}};
      j["manifest"] = st.manifest_json.empty() ? Json(nullptr) : Json::parse(st.manifest_json, nullptr, false);
      Json routes = Json::array();  // "METHOD /full/path" as served (mount + manifest path)
      if (j["manifest"].is_object() && j["manifest"].contains("routes") && j["manifest"]["routes"].is_array())
        for (const auto& r : j["manifest"]["routes"])
          if (r.is_object() && r.value("method", "") != "" && r.value("path", "") != "")
            routes.push_back(r.value("method", "") + " " + st.mount + r.value("path", ""));
      j["routes"] = std::move(routes);
      out.push_back(std::move(j));
    }
    return reply(res, 200, out);
  }
  if (seg.size() == 2 && (seg[1] == "routes" || seg[1] == "migrations" || seg[1] == "config")) {
    if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
    if (seg[1] == "routes") return reply(res, 200, routes_json(plugins));
    return res.set_json(200, config::to_json(plugins.config(), plugins.secret_config_keys()));
  }
  if (seg.size() == 2 && seg[1] == "storage") {
    if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
    Json out = Json::array();
    for (const auto& [name, st] : plugins.storage_stats()) {
      Json buckets = Json::array();
      for (std::size_t i = 0; i < st.buckets.size(); ++i)
        buckets.push_back({{"le", i < storage::Stats::kBucketBounds.size() ? Json(storage::Stats::kBucketBounds[i]) : Json("+Inf")},
                           {"count", st.buckets[i]}});
      out.push_back({{"plugin", name},         {"statements", st.statements}, {"errors", st.errors},
                     {"busy", st.busy},        {"full", st.full},             {"seconds_total", st.seconds_total},
                     {"db_bytes", st.db_bytes}, {"wal_bytes", st.wal_bytes}, {"latency_buckets", std::move(buckets)}});
    }
    return reply(res, 200, out);
  }
  res.set_error(404, "not_found", "no such admin path");
}

// True for an allowed admin request; otherwise fills `res` with the refusal: 404 (the API is
// off), 429 (throttled, with Retry-After) or 401 (with WWW-Authenticate).
bool allowed(const AdminGuard::Result& check, http::Response& res) {
  switch (check.verdict) {
    case AdminGuard::Verdict::kAllowed:
      return true;
    case AdminGuard::Verdict::kOff:
      res.set_error(404, "not_found", "the admin API is off: set [admin] token (or KEEL_ADMIN_TOKEN) to enable it");
      break;
    case AdminGuard::Verdict::kThrottled:
      res.set_error(429, "too_many_requests",
                    "too many failed admin attempts from this address; try again after Retry-After seconds");
      res.headers.emplace_back("Retry-After", std::to_string(check.retry_after_s));
      break;
    case AdminGuard::Verdict::kRefused:
      res.set_error(401, "unauthorized", "send Authorization: Bearer <[admin] token>");
      res.headers.emplace_back("WWW-Authenticate", "Bearer realm=\"keel-admin\"");
      break;
  }
  return false;
}

// Runs `work` (it blocks: plugin hooks, database round trips) on the admin queue of the worker
// pool and answers through a Deferred with the response it makes.
std::optional<http::Deferred> answer_later(const http::Request& req, http::Response& res, plugins::PluginHost& plugins,
                                           std::string timeout_message, std::function<http::Response()> work) {
  auto reply_later = std::make_shared<http::AsyncReply>();
  reply_later->timeout_message = std::move(timeout_message);
  const bool queued = plugins.post_admin_job([reply_later, work = std::move(work)] { reply_later->complete(work()); });
  if (!queued) {
    res.set_error(503, "unavailable", "the host is shutting down");
    return std::nullopt;
  }
  return http::Deferred{std::move(reply_later), req.deadline};
}

// POST /admin/plugins[?dry_run=true]: the body is a plugin file (app/plugin_upload.hpp). Blocks
// (file writes, a reload's drain): on the admin queue, like the other plugin actions.
std::optional<http::Deferred> plugin_upload(const http::Request& req, http::Response& res, plugins::PluginHost& plugins) {
  bool dry_run = false;
  const bool known = http::for_each_query_pair(req.query, [&](std::string_view name, std::string_view value) {
    if (name != "dry_run") return false;
    if (value.data() == nullptr || value == "true" || value == "1") dry_run = true;  // "?dry_run" alone
    else if (value == "false" || value == "0") dry_run = false;
    else return false;
    return true;
  });
  if (!known) {
    res.set_error(400, "bad_request", "bad query '" + std::string(req.query.substr(0, 64)) +
                                          "': POST /admin/plugins takes only dry_run=true|false");
    return std::nullopt;
  }
  auto log = observability::logger("admin");
  log->info("admin upload{} bytes={} from={} req={}", dry_run ? " (dry run)" : "", req.body.size(), req.remote_address,
            req.request_id);
  return answer_later(req, res, plugins, "the plugin upload did not finish in time; see the log",
                      [&plugins, bytes = std::string(req.body), dry_run] {
                        const auto result = upload_plugin(bytes, dry_run, plugins);
                        http::Response out;
                        out.set_json(result.status, result.body.dump(-1, ' ', false, Json::error_handler_t::replace));
                        return out;
                      });
}

// POST /admin/plugins/{name}/disable|enable|reload: blocks (drains, runs the plugin's hooks).
std::optional<http::Deferred> plugin_action(const http::Request& req, http::Response& res, std::string name,
                                            std::string action, plugins::PluginHost& plugins) {
  auto log = observability::logger("admin");
  log->info("admin {} plugin={} from={} req={}", action, name, req.remote_address, req.request_id);
  return answer_later(
      req, res, plugins, "the admin action on plugin '" + name + "' did not finish in time; see the log",
      [&plugins, log, name, action] {
        const auto result = action == "disable" ? plugins.disable(name)
                            : action == "enable" ? plugins.enable(name)
                                                 : plugins.reload(name);
        http::Response out;
        if (result.status == 200) {
          Json body{{"name", name}, {"message", result.message}};
          for (const auto& st : plugins.statuses()) {
            if (st.name != name) continue;
            body["state"] = plugins::to_string(st.state);
            body["version"] = st.version;
            body["generation"] = st.generation;
          }
          out.set_json(200, body.dump());
          log->info("admin {} done plugin={} message=\"{}\"", action, name, result.message);
        } else {
          out.set_error(result.status, http::error_code_for(result.status), result.message);
          log->warn("admin {} refused plugin={} status={} reason=\"{}\"", action, name, result.status, result.message);
        }
        return out;
      });
}

}  // namespace

bool constant_time_equals(std::string_view a, std::string_view b) noexcept {
  // Compare over the longer length so the time does not reveal where the first difference is.
  const std::size_t n = a.size() > b.size() ? a.size() : b.size();
  unsigned diff = a.size() == b.size() ? 0u : 1u;
  for (std::size_t i = 0; i < n; ++i) {
    const auto x = i < a.size() ? static_cast<unsigned char>(a[i]) : 0u;
    const auto y = i < b.size() ? static_cast<unsigned char>(b[i]) : 0u;
    diff |= x ^ y;
  }
  return diff == 0;
}

std::uint64_t admit_upload(const http::Request& req, http::Response& res, AdminGuard& guard,
                           std::uint64_t max_upload_bytes) {
  if (!is_upload(req) || max_upload_bytes == 0) return 0;
  return allowed(guard.check(req), res) ? max_upload_bytes : 0;
}

std::optional<http::Deferred> handle_admin(const http::Request& req, http::Response& res, AdminGuard& guard,
                                           plugins::PluginHost& plugins, const cluster::Cluster* cluster,
                                           const TrafficHistory& traffic) {
  // The console's files hold no data: served without a token (a browser cannot send one when it
  // opens a page), but only while the API is on. Its data comes from the API below.
  if (is_console_path(req.path)) {
    serve_console(req, res, guard.enabled());
    return std::nullopt;
  }
  if (!allowed(guard.check(req), res)) return std::nullopt;
  const auto seg = segments(req.path);
  if (is_upload(req)) return plugin_upload(req, res, plugins);
  if (seg.size() == 4 && seg[1] == "plugins" && (seg[3] == "disable" || seg[3] == "enable" || seg[3] == "reload")) {
    if (req.method != "POST") {
      res.set_method_not_allowed("POST");
      return std::nullopt;
    }
    return plugin_action(req, res, std::string(seg[2]), std::string(seg[3]), plugins);
  }
  // Reading the migration history may be a database round trip (PostgreSQL): off the I/O thread.
  if (seg.size() == 2 && seg[1] == "migrations" && (req.method == "GET" || req.method == "HEAD"))
    return answer_later(req, res, plugins, "reading the migration history did not finish in time; see the log",
                        [&plugins, deadline = req.deadline] {
                          http::Response out;
                          // Its client got 504 already: no read for nobody (a poller must not
                          // stack reads on the admin queue while a server does not answer).
                          if (deadline != std::chrono::steady_clock::time_point{} &&
                              std::chrono::steady_clock::now() >= deadline)
                            return out;
                          reply(out, 200, migrations_json(plugins));
                          return out;
                        });
  admin_read(req, res, seg, plugins, cluster, traffic);
  return std::nullopt;
}

}  // namespace keel::host::app
