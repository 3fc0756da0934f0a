#include "app/metrics_endpoint.hpp"

#include <array>
#include <string_view>
#include <vector>

#include <keel/plugin.h>

#include "app/admin_guard.hpp"
#include "cluster/cluster.hpp"
#include "events/bus.hpp"
#include "http/tls.hpp"
#include "observability/log.hpp"
#include "observability/metrics.hpp"
#include "platform/process_stats.hpp"
#include "plugins/plugin_host.hpp"
#include "storage/sqlite/sqlite_database.hpp"

namespace keel::host::app {
namespace {

using observability::Exposition;
using observability::MetricType;
using plugins::PluginState;

constexpr std::array kStates{PluginState::kDiscovered, PluginState::kLoaded,  PluginState::kCreated,
                             PluginState::kStarted,    PluginState::kStopping, PluginState::kStopped,
                             PluginState::kFailed,     PluginState::kDisabled};
constexpr std::array<std::string_view, 5> kCodeClasses{"1xx", "2xx", "3xx", "4xx", "5xx"};

void build_and_process(Exposition& m) {
  static const std::string abi = std::to_string(KEEL_ABI_VERSION_MAJOR) + "." + std::to_string(KEEL_ABI_VERSION_MINOR);
  m.family("keel_build_info", MetricType::kGauge, "Always 1; the labels name the host version and its plugin ABI.");
  m.sample({{"version", KEEL_VERSION}, {"abi", abi}}, 1);

  const auto log = observability::log_stats();
  m.family("keel_log_lines_total", MetricType::kCounter, "Log lines written to the log target.");
  m.sample({}, log.lines);
  m.family("keel_log_dropped_total", MetricType::kCounter,
           "Log lines dropped because the writer's queue was full (a request never waits for the log).");
  m.sample({}, log.dropped);
  m.family("keel_log_write_errors_total", MetricType::kCounter,
           "Log lines lost to failed writes (disk full, I/O error); requests are unaffected.");
  m.sample({}, log.write_errors);
  m.family("keel_log_rotations_total", MetricType::kCounter, "Log file rotations ([log] max_file_bytes).");
  m.sample({}, log.rotations);

  const auto admin = admin_auth_stats();
  m.family("keel_admin_auth_failures_total", MetricType::kCounter,
           "Admin API requests refused: result=refused (missing or wrong token, 401) or throttled (too many failed "
           "attempts from the client's address, 429).");
  m.sample({{"result", "refused"}}, admin.refused);
  m.sample({{"result", "throttled"}}, admin.throttled);

  const auto p = platform::read_process_stats();
  if (!p) return;
  m.family("process_start_time_seconds", MetricType::kGauge,
           "Start time of the process since the Unix epoch in seconds.");
  m.sample({}, p->start_time_seconds);
  m.family("keel_uptime_seconds", MetricType::kGauge, "Seconds since the process started.");
  m.sample({}, p->uptime_seconds);
  m.family("process_cpu_seconds_total", MetricType::kCounter, "Total user and system CPU time spent in seconds.");
  m.sample({}, p->cpu_seconds);
  m.family("process_resident_memory_bytes", MetricType::kGauge, "Resident memory size in bytes.");
  m.sample({}, p->resident_bytes);
  m.family("process_virtual_memory_bytes", MetricType::kGauge, "Virtual memory size in bytes.");
  m.sample({}, p->virtual_bytes);
  m.family("process_threads", MetricType::kGauge, "Number of OS threads in the process.");
  m.sample({}, p->threads);
  if (p->open_fds) {
    m.family("process_open_fds", MetricType::kGauge, "Number of open file descriptors.");
    m.sample({}, *p->open_fds);
  }
  if (p->max_fds) {
    m.family("process_max_fds", MetricType::kGauge, "Maximum number of open file descriptors (soft RLIMIT_NOFILE).");
    m.sample({}, *p->max_fds);
  }
}

void plugin_states(Exposition& m, const std::vector<plugins::PluginStatus>& statuses) {
  // Two files may claim one name (pre-flight fails the second); one series per name keeps the
  // output valid, and the log and /readyz tell the rest.
  std::vector<std::string_view> seen;
  seen.reserve(statuses.size());
  const auto first = [&](const plugins::PluginStatus& st) {
    for (const auto s : seen)
      if (s == st.name) return false;
    seen.push_back(st.name);
    return true;
  };
  m.family("keel_plugin_state", MetricType::kGauge,
           "1 for the plugin's current lifecycle state, 0 for the other states.");
  for (const auto& st : statuses) {
    if (!first(st)) continue;
    for (const auto state : kStates)
      m.sample({{"plugin", st.name}, {"state", plugins::to_string(state)}}, state == st.state ? 1 : 0);
  }
  seen.clear();
  m.family("keel_plugin_info", MetricType::kGauge, "Always 1; the labels name the plugin's version and ABI.");
  for (const auto& st : statuses)
    if (first(st)) m.sample({{"plugin", st.name}, {"version", st.version}, {"abi", st.abi}}, 1);
  seen.clear();
  m.family("keel_plugin_generation", MetricType::kGauge,
           "Generation of the plugin's running code: 1 when first loaded, +1 per reload; 0 if never loaded.");
  for (const auto& st : statuses)
    if (first(st)) m.sample({{"plugin", st.name}}, st.generation);
  seen.clear();
  m.family("keel_plugin_reloads_total", MetricType::kCounter,
           "Reloads of the plugin by result: succeeded (a new generation serves) or refused (the old one kept serving).");
  for (const auto& st : statuses) {
    if (!first(st)) continue;
    m.sample({{"plugin", st.name}, {"result", "succeeded"}}, st.reloads_succeeded);
    m.sample({{"plugin", st.name}, {"result", "refused"}}, st.reloads_refused);
  }
  seen.clear();
  m.family("keel_plugin_runner_up", MetricType::kGauge,
           "Plugins with isolation = \"process\": 1 while a runner process serves the plugin, else 0.");
  for (const auto& st : statuses)
    if (first(st) && st.isolation == "process") m.sample({{"plugin", st.name}}, st.runner_state == "running" ? 1 : 0);
  seen.clear();
  m.family("keel_plugin_runner_crashes_total", MetricType::kCounter,
           "Runner processes of the plugin that ended unasked (crashed, killed, hung and killed).");
  for (const auto& st : statuses)
    if (first(st) && st.isolation == "process") m.sample({{"plugin", st.name}}, st.runner_crashes);
  seen.clear();
  m.family("keel_plugin_runner_restarts_total", MetricType::kCounter,
           "Runner processes started again after a crash.");
  for (const auto& st : statuses)
    if (first(st) && st.isolation == "process") m.sample({{"plugin", st.name}}, st.runner_restarts);
  seen.clear();
  m.family("keel_plugin_runner_busy_total", MetricType::kCounter,
           "Calls of the host API by the plugin's runner answered busy: the host's queue for it was full.");
  for (const auto& st : statuses)
    if (first(st) && st.isolation == "process") m.sample({{"plugin", st.name}}, st.runner_busy);
  seen.clear();
  m.family("keel_plugin_quarantined", MetricType::kGauge,
           "1 while the plugin is quarantined (runner crashes or its error budget), else 0.");
  for (const auto& st : statuses)
    if (first(st)) m.sample({{"plugin", st.name}}, st.quarantine.empty() ? 0 : 1);
  seen.clear();
  m.family("keel_plugin_drain_duration_seconds", MetricType::kHistogram,
           "Time a retired generation took from the switch until it was stopped and destroyed, in seconds.");
  for (const auto& st : statuses)
    if (first(st)) m.histogram({{"plugin", st.name}}, plugins::kHttpBuckets, st.drain_buckets, st.drain_seconds_total);
}

void http_metrics(Exposition& m, const std::vector<plugins::RouteStats>& routes) {
  m.family("keel_http_requests_total", MetricType::kCounter,
           "HTTP responses of plugin routes by status class (built-in endpoints are not counted).");
  // 2xx, 4xx and 5xx exist from the start so that rates and ratios of them are defined before
  // the first error; plugins seldom answer 1xx or 3xx, so those appear when they happen.
  for (const auto& r : routes)
    for (std::size_t c = 0; c < kCodeClasses.size(); ++c)
      if (r.by_class[c] > 0 || c == 1 || c == 3 || c == 4)
        m.sample({{"plugin", r.plugin}, {"method", r.method}, {"route", r.route}, {"code_class", kCodeClasses[c]}},
               r.by_class[c]);
  m.family("keel_http_request_duration_seconds", MetricType::kHistogram,
           "Time from routing a request to its plugin until its response was ready, in seconds.");
  for (const auto& r : routes)
    m.histogram({{"plugin", r.plugin}, {"method", r.method}, {"route", r.route}}, plugins::kHttpBuckets, r.buckets,
                r.seconds_total);
  m.family("keel_http_requests_in_flight", MetricType::kGauge, "Requests of the route being handled now.");
  for (const auto& r : routes)
    m.sample({{"plugin", r.plugin}, {"method", r.method}, {"route", r.route}}, r.in_flight);
  m.family("keel_http_request_bytes_total", MetricType::kCounter, "Request body bytes received by the route.");
  for (const auto& r : routes)
    m.sample({{"plugin", r.plugin}, {"method", r.method}, {"route", r.route}}, r.request_bytes);
  m.family("keel_http_response_bytes_total", MetricType::kCounter, "Response body bytes sent by the route.");
  for (const auto& r : routes)
    m.sample({{"plugin", r.plugin}, {"method", r.method}, {"route", r.route}}, r.response_bytes);
}

void call_metrics(Exposition& m, const std::vector<plugins::CallStats>& calls) {
  m.family("keel_plugin_calls_total", MetricType::kCounter, "Plugin-to-plugin calls from caller to target.");
  for (const auto& c : calls) m.sample({{"caller", c.caller}, {"target", c.target}}, c.calls);
  m.family("keel_plugin_call_errors_total", MetricType::kCounter,
           "Plugin-to-plugin calls that got no answer (timeout, unavailable) or a 5xx answer.");
  for (const auto& c : calls) m.sample({{"caller", c.caller}, {"target", c.target}}, c.errors);
  m.family("keel_plugin_call_duration_seconds", MetricType::kHistogram,
           "Time from a plugin-to-plugin call until its answer, in seconds.");
  for (const auto& c : calls)
    m.histogram({{"caller", c.caller}, {"target", c.target}}, plugins::kHttpBuckets, c.buckets, c.seconds_total);
}

void storage_metrics(Exposition& m, const std::vector<std::pair<std::string, storage::Stats>>& all) {
  m.family("keel_storage_statements_total", MetricType::kCounter,
           "Statements (exec, key-value and transaction control) that reached SQLite.");
  for (const auto& [plugin, st] : all) m.sample({{"plugin", plugin}}, st.statements);
  m.family("keel_storage_errors_total", MetricType::kCounter, "Statements that failed.");
  for (const auto& [plugin, st] : all) m.sample({{"plugin", plugin}}, st.errors);
  m.family("keel_storage_busy_total", MetricType::kCounter,
           "Writers that gave up waiting for the write lock (KEEL_ERR_BUSY).");
  for (const auto& [plugin, st] : all) m.sample({{"plugin", plugin}}, st.busy);
  m.family("keel_storage_full_total", MetricType::kCounter,
           "Writes refused because the disk or the plugin's quota is full.");
  for (const auto& [plugin, st] : all) m.sample({{"plugin", plugin}}, st.full);
  m.family("keel_storage_statement_duration_seconds", MetricType::kHistogram, "Statement latency in seconds.");
  for (const auto& [plugin, st] : all)
    m.histogram({{"plugin", plugin}}, storage::Stats::kBucketBounds, st.buckets, st.seconds_total);
  m.family("keel_storage_database_bytes", MetricType::kGauge, "Size of the plugin's database file in bytes.");
  for (const auto& [plugin, st] : all) m.sample({{"plugin", plugin}}, st.db_bytes);
  m.family("keel_storage_wal_bytes", MetricType::kGauge, "Size of the plugin's write-ahead log in bytes.");
  for (const auto& [plugin, st] : all) m.sample({{"plugin", plugin}}, st.wal_bytes);
  m.family("keel_storage_sqlite_memory_bytes", MetricType::kGauge,
           "Heap memory SQLite holds in this process (page caches, schemas, statements), every database together.");
  m.sample({}, storage::sqlite_memory_bytes());
}

void events_metrics(Exposition& m, const events::Bus& bus) {
  const auto topics = bus.topics();
  m.family("keel_events_published_total", MetricType::kCounter, "Events accepted for publishing.");
  for (const auto& t : topics) m.sample({{"publisher", t.publisher}, {"topic", t.topic}}, t.published);
  m.family("keel_events_refused_total", MetricType::kCounter,
           "Publishes refused: undeclared topic (topic=\"\"), a full inbox, or too large.");
  for (const auto& t : topics) m.sample({{"publisher", t.publisher}, {"topic", t.topic}}, t.refused);

  const auto subs = bus.subscriptions();
  const auto kind = [](const events::SubscriptionStats& s) -> std::string_view {
    return s.publisher.empty() ? "memory" : "durable";
  };
  const auto per_stream = [&](const char* name, const char* help, std::uint64_t events::SubscriptionStats::*field) {
    m.family(name, MetricType::kCounter, help);
    for (const auto& s : subs)
      m.sample({{"kind", kind(s)}, {"publisher", s.publisher}, {"subscriber", s.subscriber}}, s.*field);
  };
  per_stream("keel_events_delivered_total", "Events the subscriber's handler accepted.",
             &events::SubscriptionStats::delivered);
  per_stream("keel_events_failed_total", "Handler failures, one per attempt.", &events::SubscriptionStats::failed);
  per_stream("keel_events_retried_total", "Deliveries retried after a failure.", &events::SubscriptionStats::retried);
  per_stream("keel_events_dead_lettered_total", "Events given up on after the last retry.",
             &events::SubscriptionStats::dead_lettered);
  m.family("keel_events_queue_depth", MetricType::kGauge, "In-memory events waiting in the subscriber's inbox.");
  for (const auto& s : subs)
    if (s.publisher.empty()) m.sample({{"subscriber", s.subscriber}}, s.queued);
  m.family("keel_events_lag", MetricType::kGauge, "Durable events committed by the publisher but not yet delivered.");
  for (const auto& s : subs)
    if (!s.publisher.empty()) m.sample({{"publisher", s.publisher}, {"subscriber", s.subscriber}}, s.lag);
}

void tls_metrics(Exposition& m, const http::TlsContext& tls) {
  const auto s = tls.stats();
  m.family("keel_tls_handshake_failures_total", MetricType::kCounter,
           "TLS handshakes that failed (reason=\"error\": a plain-HTTP client, an old protocol version, no common "
           "cipher) or did not finish within [http] header_read_timeout_ms (reason=\"timeout\").");
  m.sample({{"reason", "error"}}, s.handshake_failures);
  m.sample({{"reason", "timeout"}}, s.handshake_timeouts);
  m.family("keel_tls_certificate_reloads_total", MetricType::kCounter,
           "Certificate and key reloads on SIGHUP; a refused one leaves the previous certificate in use.");
  m.sample({{"result", "succeeded"}}, s.reloads_succeeded);
  m.sample({{"result", "refused"}}, s.reloads_refused);
  m.family("keel_tls_certificate_expiry_timestamp_seconds", MetricType::kGauge,
           "When the certificate served to new connections expires, in seconds since the Unix epoch.");
  m.sample({}, s.not_after);
}

}  // namespace

void write_metrics(std::string& out, plugins::PluginHost& plugins, const http::TlsContext* tls,
                   const cluster::Cluster* cluster) {
  Exposition m(out);
  build_and_process(m);
  plugin_states(m, plugins.statuses());
  http_metrics(m, plugins.route_stats());
  call_metrics(m, plugins.call_stats());
  storage_metrics(m, plugins.storage_stats());
  events_metrics(m, plugins.bus());
  if (tls != nullptr) tls_metrics(m, *tls);
  if (cluster != nullptr) cluster->metrics(m);
}

void handle_metrics(http::Response& res, plugins::PluginHost& plugins, const http::TlsContext* tls,
                    const cluster::Cluster* cluster) {
  res.status = 200;
  res.content_type = observability::kExpositionContentType;
  res.body.clear();
  write_metrics(res.body, plugins, tls, cluster);
}

}  // namespace keel::host::app
