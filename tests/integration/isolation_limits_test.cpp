// What a plugin, or a runner taken over by one, can make the host hold (docs/isolation.md
// "Limits", docs/security.md): frames over their kind's limit end the runner, a flood of calls is
// answered busy, result sets, log messages and event payloads are bounded, and what a runner
// claims about the request it serves is checked. The rogue_runner fixture writes its own frames
// on the runner's socket, as code that took over keel-plugin-runner could.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>

#include <keel/plugin.h>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "plugin_status.hpp"
#include "raw_client.hpp"

using keel::test::eventually;
using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::plugin_entry;
using keel::test::plugin_metric;
using keel::test::runner_pid;
using keel::test::simple_request;
using Json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {


// The rogue runner writes frames of its own on the socket: the runner's pings (and their
// answers) must not interleave with them, so pings are rare.
constexpr const char* kRogueIsolated =
    "[plugin.rogue_runner]\nisolation = \"process\"\nrunner_restart_backoff_ms = 20\n"
    "runner_ping_interval_ms = 600000\nrunner_ping_timeout_ms = 1200000\n";

keel::test::HostOptions options(std::vector<fs::path> plugins, std::string config) {
  auto o = keel::test::with_plugins(std::move(plugins), std::move(config));
  o.env = {keel::test::kAdminTokenEnv};
  return o;
}

int status_of(const KeelHost& host, const std::string& method, const std::string& path, const std::string& body = {}) {
  const auto r = simple_request(host.port(), method, path, body);
  return r ? r->status : 0;
}

}  // namespace

TEST_CASE("isolation: a request id or traceparent a runner forges never reaches a log line",
          "[isolation][integration][attack]") {
  KeelHost host(options({fixture("rogue_runner")}, kRogueIsolated));
  CHECK(status_of(host, "GET", "/api/rogue_runner/forge-log") == 204);
  REQUIRE(host.process().wait_for_output("rogue-runner-forged-context", 5s));
  const auto out = host.process().output();
  CHECK(out.find("forged-by-runner") == std::string::npos);
  CHECK(out.find("forged-trace") == std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("isolation: a frame over its kind's limit ends the runner before its payload is read",
          "[isolation][integration][attack]") {
  KeelHost host(options({fixture("rogue_runner")}, kRogueIsolated));
  const int first = plugin_entry(host, "rogue_runner")["runner"]["pid"].get<int>();
  // A log frame declaring 200 MiB: the host reads no payload, ends the runner and answers the
  // request in flight 502; a new runner serves the next one.
  CHECK(status_of(host, "GET", "/api/rogue_runner/huge-frame") == 502);
  Json entry;
  CHECK(eventually([&] {
    entry = plugin_entry(host, "rogue_runner");
    return entry["runner"]["pid"].is_number() && entry["runner"]["pid"].get<int>() != first &&
           entry["runner"]["state"] == "running";
  }));
  const auto last = entry["runner"]["last_crash"].get<std::string>();
  INFO(last);
  CHECK(last.find("broke the frame protocol") != std::string::npos);
  CHECK(last.find("a log frame of 209715200 payload bytes is over its limit of 81920") != std::string::npos);
  CHECK(status_of(host, "GET", "/api/rogue_runner/forge-log") == 204);
  CHECK(host.stop() == 0);
}

TEST_CASE("isolation: a runner flooding the host with calls is answered busy, and keeps running",
          "[isolation][integration][attack]") {
  // 1,200 statements at once, each running until its 300 ms deadline on one of 4 readers or
  // giving up on a reader after 300 ms: more than the 1,024 calls the host holds for a runner.
  KeelHost host(options({fixture("rogue_runner")},
                        std::string(kRogueIsolated) + "[storage]\nbusy_timeout_ms = 300\nreaders = 4\n"));
  const int pid = plugin_entry(host, "rogue_runner")["runner"]["pid"].get<int>();
  CHECK(status_of(host, "GET", "/api/rogue_runner/flood/1200") == 200);
  CHECK(eventually([&] { return plugin_metric(host, "keel_plugin_runner_busy_total", "rogue_runner") > 0; }));
  const auto entry = plugin_entry(host, "rogue_runner");
  CHECK(entry["runner"]["busy"].get<int>() > 0);
  CHECK(entry["runner"]["pid"].get<int>() == pid);  // within every limit: nothing to end it for
  CHECK(entry["runner"]["crashes"] == 0);
  CHECK(status_of(host, "GET", "/api/rogue_runner/forge-log") == 204);
  CHECK(host.stop() == 0);
}

TEST_CASE("isolation: a malformed respond frame is answered 502 at once, and the runner keeps serving",
          "[isolation][integration][attack]") {
  KeelHost host(options({fixture("rogue_runner")}, kRogueIsolated));
  const int pid = plugin_entry(host, "rogue_runner")["runner"]["pid"].get<int>();
  // respond has no reply (docs/isolation.md): a broken one cannot be refused to the runner, so
  // the host answers its responder rather than leave the client waiting for the deadline.
  const auto started = std::chrono::steady_clock::now();
  const auto r = simple_request(host.port(), "GET", "/api/rogue_runner/bad-respond");
  REQUIRE(r);
  CHECK(r->status == 502);
  CHECK(r->body.find("sent a malformed response") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - started < 5s);
  CHECK(host.process().wait_for_output("plugin runner sent a malformed respond frame plugin=rogue_runner", 5s));
  // Not a broken stream (the frame's length was right): the same runner answers the next one.
  CHECK(status_of(host, "GET", "/api/rogue_runner/forge-log") == 204);
  const auto entry = plugin_entry(host, "rogue_runner");
  CHECK(entry["runner"]["pid"].get<int>() == pid);
  CHECK(entry["runner"]["crashes"] == 0);
  CHECK(host.stop() == 0);
}

TEST_CASE("isolation: the runner refuses a response the host would refuse, since respond has no reply",
          "[isolation][integration]") {
  KeelHost host(options({fixture("rogue_runner")}, std::string(kRogueIsolated) + "[http]\nmax_body_bytes = 1024\n"));
  const auto r = simple_request(host.port(), "GET", "/api/rogue_runner/respond-checks");
  REQUIRE(r);
  CHECK(r->status == 200);
  // A status of 42 and a header name with a space: invalid; 2048 body bytes over 1024: too large.
  CHECK(r->body == std::to_string(KEEL_ERR_INVALID_ARGUMENT) + " " + std::to_string(KEEL_ERR_INVALID_ARGUMENT) + " " +
                       std::to_string(KEEL_ERR_TOO_LARGE));
  CHECK(host.stop() == 0);
}

TEST_CASE("limits: a log message keeps 16 KiB, in process and in a runner", "[isolation][integration]") {
  for (const std::string mode : {"in-process", "process"}) {
    DYNAMIC_SECTION(mode) {
      KeelHost host(options({fixture("log_echo")}, "[plugin.log_echo]\nisolation = \"" + mode + "\"\n"));
      // 32 KiB in one message.
      CHECK(status_of(host, "GET", "/api/log_echo/log?text=abcdefgh&repeat=4096") == 204);
      REQUIRE(host.process().wait_for_output("bytes cut: log messages keep 16 KiB]", 5s));
      const auto out = host.process().output();
      const auto at = out.find("abcdefgh");
      REQUIRE(at != std::string::npos);
      const auto line_end = out.find('\n', at);
      CHECK(line_end - at <= 16 * 1024 + 256);  // the message, the note, the line's fields
      CHECK(host.stop() == 0);
    }
  }
}

TEST_CASE("limits: an event payload over [events] max_payload_bytes is refused, nothing published",
          "[isolation][integration]") {
  for (const std::string mode : {"in-process", "process"}) {
    DYNAMIC_SECTION(mode) {
      KeelHost host(options({fixture("events_pub")}, "[events]\nmax_payload_bytes = 1024\n[plugin.events_pub]\n"
                                                      "isolation = \"" + mode + "\"\n"));
      const std::string big(2000, 'p');
      CHECK(status_of(host, "POST", "/api/events_pub/memory/1", big) == 413);
      CHECK(status_of(host, "POST", "/api/events_pub/durable/1", big) == 413);
      CHECK(status_of(host, "POST", "/api/events_pub/txn/1/commit", big) == 413);
      CHECK(status_of(host, "POST", "/api/events_pub/memory/1", std::string(1000, 'p')) == 200);
      CHECK(host.stop() == 0);
    }
  }
}

TEST_CASE("limits: a result set over 64 MiB reaches an isolated plugin as too large, not as host memory",
          "[isolation][integration][storage]") {
  for (const std::string mode : {"in-process", "process"}) {
    DYNAMIC_SECTION(mode) {
      KeelHost host(options({fixture("store")}, "[plugin.store]\nisolation = \"" + mode + "\"\n"));
      for (int i = 0; i < 66; ++i) REQUIRE(status_of(host, "POST", "/api/store/blob/1024") == 201);
      const auto r = simple_request(host.port(), "GET", "/api/store/blobs");
      REQUIRE(r);
      if (mode == "in-process") {
        CHECK(r->status == 200);  // rows stream to the plugin one at a time
        CHECK(r->body == std::to_string(66 * 1024 * 1024));
      } else {
        CHECK(r->status == 413);  // KEEL_ERR_TOO_LARGE, the plugin told to read in pages
      }
      CHECK(host.stop() == 0);
    }
  }
}

TEST_CASE("limits: a statement an isolated plugin left running stops when its runner dies",
          "[isolation][integration][storage][attack][sqlite]") {
  // Neither the request's deadline nor transaction_timeout_ms would stop it for ten minutes.
  KeelHost host(options({fixture("store")}, "[http]\nrequest_timeout_ms = 600000\n"
                                            "[storage]\ntransaction_timeout_ms = 600000\n"
                                            "[plugin.store]\nisolation = \"process\"\n"));
  const int pid = runner_pid(host, "store");
  REQUIRE(pid > 0);
  std::optional<keel::test::RawResponse> answer;
  std::thread client([&] {
    answer = simple_request(host.port(), "POST", "/api/store/sql",
                            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c");
  });
  // The statement runs on the host, on the runner's behalf: the host's CPU time grows.
  const auto cpu_before = keel::test::cpu_time(host.process().pid());
  REQUIRE(eventually([&] { return keel::test::cpu_time(host.process().pid()) - cpu_before > 300ms; }, 10s));
  REQUIRE(::kill(pid, SIGKILL) == 0);
  client.join();
  REQUIRE(answer);
  CHECK(answer->status == 502);
  CHECK(host.process().wait_for_output("stopped a statement whose plugin runner is gone plugin=store", 10s));
  CHECK(host.stop() == 0);  // close() has no statement to wait for
}
