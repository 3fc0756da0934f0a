// GET /metrics end to end: the real keel binary with the hello and relay example plugins and the
// store and events fixtures, known traffic, then a scrape parsed by the strict exposition parser
// (tests/support/prometheus.hpp) and checked counter by counter. promtool checks the output too
// when it is installed.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <functional>
#include <regex>
#include <string>
#include <thread>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "prometheus.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::fixture;
using keel::test::eventually;
using keel::test::KeelHost;
using keel::test::RawClient;
using keel::test::simple_request;
using keel::test::with_plugins;
namespace prom = keel::test::prometheus;

namespace {

constexpr std::string_view kContentType = "text/plain; version=0.0.4; charset=utf-8";

int status_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->status : 0; }

/// One scrape, parsed strictly; fails the test on a bad status, content type or format.
prom::Scrape scrape(const KeelHost& host, std::string* raw = nullptr) {
  const auto r = simple_request(host.port(), "GET", "/metrics");
  REQUIRE(status_of(r) == 200);
  REQUIRE(r->header("Content-Type") == kContentType);
  if (raw) *raw = r->body;
  try {
    return prom::parse(r->body);
  } catch (const prom::ParseError& e) {
    INFO(r->body);
    FAIL(e.what());
  }
  return {};
}

/// What `keel --version` prints after "keel ".
std::string host_version() {
  std::string out;
  if (FILE* p = ::popen(KEEL_BINARY " --version", "r")) {
    std::array<char, 256> buf{};
    while (std::fgets(buf.data(), buf.size(), p)) out += buf.data();
    ::pclose(p);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) out.pop_back();
  return out.starts_with("keel ") ? out.substr(5) : out;
}

/// `promtool check metrics` on `text` when promtool is installed (/usr/bin/promtool, or the
/// file named by KEEL_PROMTOOL); true otherwise.
bool promtool_accepts(const KeelHost& host, const std::string& text, std::string& output) {
  const char* env = std::getenv("KEEL_PROMTOOL");
  const std::string promtool = env && *env ? env : "/usr/bin/promtool";
  if (!std::filesystem::exists(promtool)) return true;
  const auto in = host.dir().write("metrics.txt", text);
  const auto log = host.dir().path() / "promtool.txt";
  const auto cmd = "'" + promtool + "' check metrics < '" + in.string() + "' > '" + log.string() + "' 2>&1";
  const int rc = std::system(cmd.c_str());
  if (FILE* f = std::fopen(log.c_str(), "r")) {
    std::array<char, 256> buf{};
    while (std::fgets(buf.data(), buf.size(), f)) output += buf.data();
    std::fclose(f);
  }
  return rc == 0;
}

double now_unix() {
  timespec t{};
  clock_gettime(CLOCK_REALTIME, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

}  // namespace

TEST_CASE("metrics: the scrape is valid exposition text and its counters follow known traffic",
          "[metrics][integration]") {
  KeelHost host(with_plugins({example_plugin("hello"), example_plugin("relay"), fixture("store"), fixture("events_pub"),
                              fixture("events_sub")},
                             // The admin API is on: /metrics still needs no token.
                             KEEL_TEST_ADMIN_TOML));
  const auto before = scrape(host);

  for (int i = 0; i < 3; ++i) REQUIRE(status_of(simple_request(host.port(), "GET", "/api/hello/greet/x")) == 200);
  REQUIRE(status_of(simple_request(host.port(), "GET", "/api/hello/nope")) == 404);      // no route
  REQUIRE(status_of(simple_request(host.port(), "GET", "/api/store/items/999")) == 404);  // the plugin's 404
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/store/items", "twelve bytes")) == 201);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/events_pub/memory/3")) == 200);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/events_pub/durable/2")) == 200);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/events_pub/undeclared")) == 403);

  const prom::Labels memory_stream{{"kind", "memory"}, {"publisher", ""}, {"subscriber", "events_sub"}};
  const prom::Labels durable_stream{{"kind", "durable"}, {"publisher", "events_pub"}, {"subscriber", "events_sub"}};
  std::string raw;
  prom::Scrape s;
  // Delivery is asynchronous: scrape until the subscriber has everything.
  CHECK(eventually([&] {
    s = scrape(host, &raw);
    return s.value("keel_events_delivered_total", memory_stream) == 3 &&
           s.value("keel_events_delivered_total", durable_stream) == 2;
  }));

  {
    INFO("build info and process metrics");
    const auto* build = s.family("keel_build_info");
    REQUIRE(build);
    CHECK(build->type == "gauge");
    REQUIRE(build->samples.size() == 1);
    CHECK(build->samples[0].value == 1);
    CHECK(build->samples[0].label("version") == host_version());
    const auto abi = build->samples[0].label("abi").value_or("");
    CHECK(std::regex_match(abi, std::regex("[0-9]+\\.[0-9]+")));
    // hello is built from this tree's keel/plugin.h, so it carries the host's ABI.
    CHECK(s.value("keel_plugin_info", {{"plugin", "hello"}, {"version", "0.1.0"}, {"abi", abi}}) == 1);

    for (const char* name : {"process_resident_memory_bytes", "process_virtual_memory_bytes", "process_open_fds",
                             "process_max_fds", "process_threads", "process_start_time_seconds",
                             "keel_uptime_seconds"}) {
      INFO(name);
      REQUIRE(s.value(name));
      CHECK(*s.value(name) > 0);
      CHECK(s.family(name)->type == "gauge");
    }
    CHECK(s.family("process_cpu_seconds_total")->type == "counter");
    CHECK(s.value("process_cpu_seconds_total") >= 0);
    CHECK(*s.value("process_open_fds") <= *s.value("process_max_fds"));
    CHECK(*s.value("process_start_time_seconds") <= now_unix());
    CHECK(*s.value("process_start_time_seconds") > now_unix() - 600);
  }

  {
    INFO("plugin state and info");
    for (const char* plugin : {"hello", "relay", "store", "events_pub", "events_sub"}) {
      INFO(plugin);
      CHECK(s.value("keel_plugin_state", {{"plugin", plugin}, {"state", "started"}}) == 1);
      CHECK(s.sum("keel_plugin_state", {{"plugin", plugin}}) == 1);  // one state at a time
      CHECK(s.count("keel_plugin_state", {{"plugin", plugin}}) == 8);
      CHECK(s.count("keel_plugin_info", {{"plugin", plugin}}) == 1);
    }
  }

  {
    INFO("HTTP routes: per route and status class; unrouted requests and /metrics are not counted");
    const prom::Labels greet{{"plugin", "hello"}, {"method", "GET"}, {"route", "/greet/{name}"}};
    auto with = [](prom::Labels l, std::string k, std::string v) {
      l.emplace_back(std::move(k), std::move(v));
      return l;
    };
    CHECK(s.value("keel_http_requests_total", with(greet, "code_class", "2xx")) == 3);
    CHECK(s.value("keel_http_requests_total", with(greet, "code_class", "4xx")) == 0);
    CHECK(s.value("keel_http_requests_total", with(greet, "code_class", "5xx")) == 0);
    CHECK(s.sum("keel_http_requests_total", {{"plugin", "hello"}}) == 3);  // the 404 matched no route
    CHECK(s.sum("keel_http_requests_total") == 3 + 2 + 3);  // hello, store, events_pub; no scrapes
    CHECK(s.value("keel_http_request_duration_seconds_count", greet) == 3);
    CHECK(s.value("keel_http_request_duration_seconds_bucket", with(greet, "le", "+Inf")) == 3);
    CHECK(s.value("keel_http_request_duration_seconds_sum", greet) > 0);
    CHECK(s.value("keel_http_requests_in_flight", greet) == 0);
    CHECK(s.value("keel_http_response_bytes_total", greet) > 0);
    CHECK(s.value("keel_http_requests_total", {{"plugin", "store"}, {"method", "GET"}, {"route", "/items/{id}"},
                                               {"code_class", "4xx"}}) == 1);
    const prom::Labels items{{"plugin", "store"}, {"method", "POST"}, {"route", "/items"}};
    CHECK(s.value("keel_http_requests_total", with(items, "code_class", "2xx")) == 1);
    CHECK(s.value("keel_http_request_bytes_total", items) == 12);
    CHECK(s.family("keel_http_request_duration_seconds")->type == "histogram");
  }

  {
    INFO("plugin-to-plugin calls");
    for (int i = 0; i < 2; ++i) REQUIRE(status_of(simple_request(host.port(), "GET", "/api/relay/greet/y")) == 200);
    const auto after = scrape(host);
    const prom::Labels pair{{"caller", "relay"}, {"target", "hello"}};
    CHECK(after.value("keel_plugin_calls_total", pair) == 2);
    CHECK(after.value("keel_plugin_call_errors_total", pair) == 0);
    CHECK(after.value("keel_plugin_call_duration_seconds_count", pair) == 2);
    CHECK(after.value("keel_http_requests_total", {{"plugin", "relay"}, {"method", "GET"}, {"route", "/greet/{name}"},
                                                   {"code_class", "2xx"}}) == 2);
  }

  {
    INFO("storage");
    const prom::Labels store{{"plugin", "store"}};
    const auto statements = s.value("keel_storage_statements_total", store);
    REQUIRE(statements);
    CHECK(*statements > before.value("keel_storage_statements_total", store).value_or(0));
    CHECK(s.value("keel_storage_statement_duration_seconds_count", store) == *statements);
    CHECK(s.value("keel_storage_errors_total", store) == 0);
    CHECK(s.value("keel_storage_busy_total", store) == 0);
    CHECK(s.value("keel_storage_full_total", store) == 0);
    CHECK(s.value("keel_storage_database_bytes", store) > 0);
    CHECK(s.value("keel_storage_wal_bytes", store).has_value());
    // SQLite's heap in the host: at least the open databases' schemas and caches.
    CHECK(s.value("keel_storage_sqlite_memory_bytes", {}) > 0);
    CHECK(s.family("keel_storage_sqlite_memory_bytes")->type == "gauge");
    CHECK(s.family("keel_storage_statement_duration_seconds")->type == "histogram");
    // events_pub has a database too: its durable outbox.
    CHECK(s.value("keel_storage_statements_total", {{"plugin", "events_pub"}}) > 0);
    CHECK_FALSE(s.value("keel_storage_statements_total", {{"plugin", "hello"}}));
  }

  {
    INFO("events");
    CHECK(s.value("keel_events_published_total", {{"publisher", "events_pub"}, {"topic", "demo.memory"}}) == 3);
    CHECK(s.value("keel_events_published_total", {{"publisher", "events_pub"}, {"topic", "demo.durable"}}) == 2);
    CHECK(s.value("keel_events_refused_total", {{"publisher", "events_pub"}, {"topic", ""}}) == 1);
    CHECK(s.value("keel_events_failed_total", memory_stream) == 0);
    CHECK(s.value("keel_events_retried_total", durable_stream) == 0);
    CHECK(s.value("keel_events_dead_lettered_total", durable_stream) == 0);
    CHECK(s.value("keel_events_queue_depth", {{"subscriber", "events_sub"}}) == 0);
    CHECK(eventually([&] {
      return scrape(host).value("keel_events_lag", {{"publisher", "events_pub"}, {"subscriber", "events_sub"}}) == 0;
    }));
  }

  {
    INFO("counters never go down between scrapes");
    REQUIRE(status_of(simple_request(host.port(), "GET", "/api/hello/greet/z")) == 200);
    const auto later = scrape(host);
    for (const auto& f : s.families) {
      if (f.type != "counter" && f.type != "histogram") continue;
      for (const auto& sample : f.samples) {
        if (f.type == "histogram" && sample.name.ends_with("_sum")) continue;
        INFO(sample.name);
        const auto next = later.value(sample.name, sample.labels);
        REQUIRE(next);
        CHECK(*next >= sample.value);
      }
    }
  }

  {
    INFO("promtool, when installed, agrees");
    std::string output;
    const bool accepted = promtool_accepts(host, raw, output);
    INFO(output);
    CHECK(accepted);
  }
  CHECK(host.stop() == 0);
}

TEST_CASE("metrics: HEAD has the headers only, other methods get 405, no token is needed", "[metrics][integration]") {
  KeelHost host(with_plugins({example_plugin("hello")}, KEEL_TEST_ADMIN_TOML));
  RawClient c(host.port());
  REQUIRE(c.send("HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
  const auto head = c.read_response(true);
  REQUIRE(head);
  CHECK(head->status == 200);
  CHECK(head->header("Content-Type") == kContentType);
  CHECK(std::stoul(head->header("Content-Length")) > 0);
  CHECK(head->body.empty());
  const auto next = c.read_response();  // proves no body bytes followed the HEAD response
  REQUIRE(next);
  CHECK(next->body == R"({"status":"alive"})");

  const auto post = simple_request(host.port(), "POST", "/metrics", "x");
  CHECK(status_of(post) == 405);
  CHECK(post->header("Allow") == "GET, HEAD");
  const auto query = simple_request(host.port(), "GET", "/metrics?name=keel_build_info");
  CHECK(status_of(query) == 200);  // the query is ignored: the whole exposition
  CHECK(host.stop() == 0);
}

TEST_CASE("metrics: failed plugins and two files claiming one name keep the exposition valid",
          "[metrics][integration]") {
  KeelHost host(
      with_plugins({fixture("no_op"), fixture("create_fails"), fixture("dup_name_a"), fixture("dup_name_b")}));
  const auto s = scrape(host);
  CHECK(s.value("keel_plugin_state", {{"plugin", "no_op"}, {"state", "started"}}) == 1);
  CHECK(s.value("keel_plugin_state", {{"plugin", "create_fails"}, {"state", "failed"}}) == 1);
  CHECK(s.sum("keel_plugin_state", {{"plugin", "create_fails"}}) == 1);
  // One series per name (the first file's), not a duplicate the parser would refuse.
  CHECK(s.count("keel_plugin_state", {{"plugin", "dup"}}) == 8);
  CHECK(s.count("keel_plugin_info", {{"plugin", "dup"}}) == 1);
  CHECK(host.stop() == 0);
}
