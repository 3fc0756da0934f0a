// Tracing and logs end to end: the real keel binary with the trace_front and trace_back fixtures.
// A request to trace_front calls trace_back and then publishes an event trace_back receives;
// neither plugin passes a trace on, so every hop is the host's doing. The test reads the
// traceparents the plugins saw and the span lines the host logged, and checks they form one
// tree: client span -> request span -> call span, and request span -> event delivery span.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <filesystem>
#include <functional>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "eventually.hpp"
#include "keel_host.hpp"
#include "prometheus.hpp"
#include "raw_client.hpp"

using keel::test::fixture;
using keel::test::eventually;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;

namespace {

constexpr std::string_view kClientTrace = "4bf92f3577b34da6a3ce929d0e0e4736";
constexpr std::string_view kClientSpan = "00f067aa0ba902b7";
const std::regex kTraceparent("00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})");

struct Ids {
  std::string trace, span;
};

Ids ids_of(const std::string& traceparent) {
  std::smatch m;
  INFO("traceparent: " << traceparent);
  REQUIRE(std::regex_match(traceparent, m, kTraceparent));
  return {m[1], m[2]};
}

std::vector<std::string> lines_with(const std::string& text, const std::string& needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

/// The one line of the host's output containing every string of `needles`.
std::string line_with_all(KeelHost& host, const std::vector<std::string>& needles) {
  std::string found;
  const bool ok = eventually([&] {
    auto lines = lines_with(host.process().output(), needles.front());
    for (const auto& l : lines) {
      bool all = true;
      for (const auto& n : needles) all = all && l.find(n) != std::string::npos;
      if (all) {
        found = l;
        return true;
      }
    }
    return false;
  });
  INFO(host.process().output());
  for (const auto& n : needles) INFO("wanted: " << n);
  REQUIRE(ok);
  return found;
}

struct Chain {
  Ids front, back, event;
  std::string request_id;
};

// One GET /chain with `headers`; returns what each hop received.
Chain run_chain(KeelHost& host, const std::string& headers) {
  const auto r = simple_request(host.port(), "GET", "/api/trace_front/chain", {}, headers);
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto nl = r->body.find('\n');
  REQUIRE(nl != std::string::npos);
  Chain c;
  c.front = ids_of(r->body.substr(0, nl));
  const auto back_tp = r->body.substr(nl + 1);
  c.back = ids_of(back_tp);
  c.request_id = std::string(r->header("X-Request-Id"));
  std::string events;
  REQUIRE(eventually([&] {
    const auto e = simple_request(host.port(), "GET", "/api/trace_back/events");
    if (!e || e->status != 200) return false;
    for (const auto& line : lines_with(e->body, " " + back_tp)) events = line;
    return !events.empty();
  }));
  c.event = ids_of(events.substr(0, events.find(' ')));
  return c;
}

}  // namespace

TEST_CASE("a client's traceparent runs through the request, the plugin call and the event", "[tracing]") {
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")}));
  const auto chain = run_chain(host, "traceparent: 00-" + std::string(kClientTrace) + "-" + std::string(kClientSpan) +
                                         "-01\r\ntracestate: vendor=1\r\n");
  // Every hop is in the client's trace, each with its own span.
  CHECK(chain.front.trace == kClientTrace);
  CHECK(chain.back.trace == kClientTrace);
  CHECK(chain.event.trace == kClientTrace);
  CHECK(chain.front.span != kClientSpan);
  CHECK(chain.back.span != chain.front.span);
  CHECK(chain.event.span != chain.front.span);
  CHECK(chain.event.span != chain.back.span);

  const auto trace = "trace_id=" + std::string(kClientTrace);
  // The request span: the client's span is its parent.
  const auto access = line_with_all(host, {"[access] request", "target=/api/trace_front/chain", trace});
  CHECK(access.find("span_id=" + chain.front.span) != std::string::npos);
  CHECK(access.find("parent_id=" + std::string(kClientSpan)) != std::string::npos);
  CHECK(access.find("req=" + chain.request_id) != std::string::npos);
  CHECK(access.find("duration_us=") != std::string::npos);
  // The call span: child of the request span; trace_back's handler ran in it.
  const auto call = line_with_all(host, {"span kind=call", "caller=trace_front", "target=trace_back", trace});
  CHECK(call.find("span_id=" + chain.back.span) != std::string::npos);
  CHECK(call.find("parent_id=" + chain.front.span) != std::string::npos);
  CHECK(call.find("status=200") != std::string::npos);
  CHECK(call.find("req=" + chain.request_id) != std::string::npos);
  // The event delivery span: published from the call's completion, which continues the request
  // span, so that span is its parent.
  const auto event = line_with_all(host, {"span kind=event", "topic=trace.done", "subscriber=trace_back", trace});
  CHECK(event.find("span_id=" + chain.event.span) != std::string::npos);
  CHECK(event.find("parent_id=" + chain.front.span) != std::string::npos);
  CHECK(event.find("status=ok") != std::string::npos);
  CHECK(event.find("req=" + chain.request_id) != std::string::npos);
  // The plugins' own log lines carry the span they ran in and the request id.
  const auto front_log = line_with_all(host, {"[plugin.trace_front] front handling", trace});
  CHECK(front_log.find("span_id=" + chain.front.span) != std::string::npos);
  CHECK(front_log.find("req=" + chain.request_id) != std::string::npos);
  const auto back_log = line_with_all(host, {"[plugin.trace_back] back working", trace});
  CHECK(back_log.find("span_id=" + chain.back.span) != std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("with span lines off an event's handler continues the publisher's span", "[tracing]") {
  // Nothing would record a delivery span, so none is made: the handler gets the publisher's.
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")}, "[log]\nspans = false\n"));
  const auto chain = run_chain(host, "traceparent: 00-" + std::string(kClientTrace) + "-" + std::string(kClientSpan) + "-01\r\n");
  CHECK(chain.event.trace == kClientTrace);
  CHECK(chain.event.span == chain.front.span);
  CHECK(lines_with(host.process().output(), "span kind=").empty());
  CHECK(host.stop() == 0);
}

TEST_CASE("without a valid traceparent the host starts one trace per request", "[tracing]") {
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")}));
  const auto plain = run_chain(host, "");
  CHECK(plain.back.trace == plain.front.trace);
  CHECK(plain.event.trace == plain.front.trace);
  const auto access = line_with_all(host, {"[access] request", "trace_id=" + plain.front.trace});
  CHECK(access.find("parent_id=") == std::string::npos);  // the root of its trace

  // Invalid: upper-case hex, a zero trace id, two traceparent fields. Each gets a new trace.
  for (const std::string bad : {"traceparent: 00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01\r\n",
                                "traceparent: 00-00000000000000000000000000000000-00f067aa0ba902b7-01\r\n",
                                "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"
                                "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n"}) {
    const auto chain = run_chain(host, bad);
    CHECK(chain.front.trace != kClientTrace);
    CHECK(chain.front.trace != plain.front.trace);
    CHECK(chain.back.trace == chain.front.trace);
  }
  CHECK(host.stop() == 0);
}

TEST_CASE("JSON logs carry the request id, trace id and span id as fields", "[tracing]") {
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")}, "[log]\nformat = \"json\"\n"));
  const auto chain = run_chain(host, "traceparent: 00-" + std::string(kClientTrace) + "-" + std::string(kClientSpan) + "-01\r\n");
  auto json_line = [&](const std::vector<std::string>& needles) {
    const auto parsed = nlohmann::json::parse(line_with_all(host, needles), nullptr, false);
    REQUIRE_FALSE(parsed.is_discarded());
    return parsed;
  };
  const auto back = json_line({"\"logger\":\"plugin.trace_back\"", "back working"});
  CHECK(back["msg"] == "back working");
  CHECK(back["trace_id"] == kClientTrace);
  CHECK(back["span_id"] == chain.back.span);
  CHECK(back["request_id"] == chain.request_id);
  const auto access = json_line({"\"logger\":\"access\"", "/api/trace_front/chain"});
  CHECK(access["trace_id"] == kClientTrace);
  CHECK(access["span_id"] == chain.front.span);
  CHECK(access["request_id"] == chain.request_id);
  const auto call = json_line({"\"logger\":\"trace\"", "span kind=call"});
  CHECK(call["span_id"] == chain.back.span);
  CHECK(host.stop() == 0);
}

TEST_CASE("[log] spans = false leaves the span lines out", "[tracing]") {
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")}, "[log]\nspans = false\n"));
  const auto chain = run_chain(host, "");
  line_with_all(host, {"[access] request", "trace_id=" + chain.front.trace});
  CHECK(lines_with(host.process().output(), "span kind=").empty());
  CHECK(host.stop() == 0);
}

TEST_CASE("a log file that cannot be written never fails a request", "[tracing]") {
  if (!std::filesystem::exists("/dev/full")) return;
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")}, "[log]\nfile = \"/dev/full\"\n"));
  for (int i = 0; i < 50; ++i) {
    const auto r = simple_request(host.port(), "GET", "/api/trace_front/chain");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  // The writer thread fails behind the requests' backs: an access line and a span line per
  // request at least, each counted once the writer tried it.
  CHECK(eventually([&] {
    const auto metrics = simple_request(host.port(), "GET", "/metrics");
    if (!metrics || metrics->status != 200) return false;
    return keel::test::prometheus::parse(metrics->body).value("keel_log_write_errors_total").value_or(0) >= 100;
  }));
  CHECK(host.process().wait_for_output("write failed (No space left on device)", std::chrono::seconds(5)));
  CHECK(host.stop() == 0);
}

TEST_CASE("the log file rotates at max_file_bytes and keeps max_files", "[tracing]") {
  KeelHost host(with_plugins({fixture("trace_front"), fixture("trace_back")},
                             "[log]\nfile = \"logs/keel.log\"\nmax_file_bytes = 8192\nmax_files = 2\n"));
  const auto dir = host.dir().path() / "logs";
  for (int i = 0; i < 200; ++i) REQUIRE(simple_request(host.port(), "GET", "/api/trace_front/chain"));
  CHECK(host.stop() == 0);
  CHECK(std::filesystem::file_size(dir / "keel.log") <= 8192);
  CHECK(std::filesystem::file_size(dir / "keel.log.1") <= 8192);
  CHECK(std::filesystem::file_size(dir / "keel.log.2") <= 8192);
  CHECK_FALSE(std::filesystem::exists(dir / "keel.log.3"));
}
