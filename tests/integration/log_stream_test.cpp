// The live log tail over the admin API (GET /admin/logs/stream as Server-Sent Events, GET
// /admin/logs) against the real keel binary: lines as they are logged, the filters, a request's
// spans by its id, the refusals, the stream limit, and a shutdown that ends open streams.
#include <catch2/catch.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::KeelHost;
using keel::test::RawClient;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;

namespace {

constexpr const char* kBearer = keel::test::kAdminBearer;

keel::test::HostOptions host_options() {
  auto o = with_plugins({example_plugin("hello"), example_plugin("relay")});
  o.env = {keel::test::kAdminTokenEnv};
  return o;
}

// Opens GET /admin/logs/stream?<query> and waits until it is live: the head, then the host's own
// "log stream opened" line, the first line every stream sees.
std::unique_ptr<RawClient> open_stream(const KeelHost& host, const std::string& query, std::string_view version = "1.1") {
  auto c = std::make_unique<RawClient>(host.port());
  REQUIRE(c->send("GET /admin/logs/stream?" + query + " HTTP/" + std::string(version) + "\r\nHost: t\r\n" + kBearer + "\r\n"));
  REQUIRE(c->read_until("\r\n\r\n"));
  return c;
}

std::string get_json_lines(const KeelHost& host, const std::string& query) {
  const auto r = simple_request(host.port(), "GET", "/admin/logs?" + query, {}, kBearer);
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return r->body;
}

}  // namespace

TEST_CASE("log stream: lines come as Server-Sent Events as they are logged", "[admin][logs][integration]") {
  KeelHost host(host_options());
  auto stream = open_stream(host, "backlog=0");
  const auto& got = stream->pending();
  CHECK(got.starts_with("HTTP/1.1 200 OK\r\n"));
  CHECK(got.find("Content-Type: text/event-stream; charset=utf-8\r\n") != std::string::npos);
  CHECK(got.find("Transfer-Encoding: chunked\r\n") != std::string::npos);
  CHECK(got.find("Cache-Control: no-store\r\n") != std::string::npos);
  CHECK(got.find("Content-Length") == std::string::npos);
  REQUIRE(stream->read_until("log stream opened"));
  CHECK(got.find("event: open\ndata: {\"newest\":") != std::string::npos);  // first, before any line

  REQUIRE(simple_request(host.port(), "GET", "/api/relay/greet/ada", {}, "X-Request-Id: tail-relay-1\r\n")->status == 200);
  REQUIRE(stream->read_until("request method=GET target=/api/relay/greet/ada status=200"));
  const auto at = stream->pending().find("request method=GET target=/api/relay/greet/ada status=200");
  while (stream->pending().find("\n\n", at) == std::string::npos) REQUIRE(stream->read_at_least(stream->pending().size() + 1));
  const auto text = stream->pending();
  // The access line of the request, one SSE event: "id: N", "data: {JSON}", an empty line.
  const auto data = text.rfind("data: ", at);
  const auto end = text.find("\n\n", at);
  const auto line = Json::parse(text.substr(data + 6, end - data - 6));
  CHECK(line["logger"] == "access");
  CHECK(line["level"] == "info");
  CHECK(line["request_id"] == "tail-relay-1");
  CHECK(line["trace_id"].get<std::string>().size() == 32);
  CHECK(line["ts"].get<std::string>().size() == 27);
  CHECK(text.rfind("id: ", data) != std::string::npos);
  // The call relay made to hello, as a span line with the same request id.
  CHECK(text.find("span kind=call caller=relay target=hello") != std::string::npos);

  // HTTP/1.0: no chunked framing, the body ends when the connection closes.
  auto old = open_stream(host, "backlog=0", "1.0");
  CHECK(old->pending().find("Transfer-Encoding") == std::string::npos);
  REQUIRE(old->read_until("log stream opened"));
  CHECK(old->pending().find("\r\n\r\nevent: open\ndata: {\"newest\":") != std::string::npos);  // unframed, right after the head
  CHECK(host.stop() == 0);
  CHECK(old->wait_closed());
  CHECK(stream->wait_closed());
}

TEST_CASE("log stream: filters by plugin and level and request id and a request's lines by its id", "[admin][logs][integration]") {
  KeelHost host(host_options());
  auto hello_only = open_stream(host, "plugin=hello&backlog=0");
  auto warn_only = open_stream(host, "level=warn&backlog=0");
  auto one_request = open_stream(host, "request_id=tail-two&backlog=0");
  REQUIRE(simple_request(host.port(), "GET", "/api/relay/greet/x", {}, "X-Request-Id: tail-one\r\n")->status == 200);
  REQUIRE(simple_request(host.port(), "GET", "/api/hello/greet/y", {}, "X-Request-Id: tail-two\r\n")->status == 200);
  REQUIRE(simple_request(host.port(), "GET", "/admin/plugins", {}, "X-Request-Id: tail-three\r\n")->status == 401);

  // hello: the call relay made to it, and its own request; not relay's request line.
  REQUIRE(hello_only->read_until("target=/api/hello/greet/y"));
  CHECK(hello_only->pending().find("span kind=call caller=relay target=hello") != std::string::npos);
  CHECK(hello_only->pending().find("target=/api/relay/greet/x") == std::string::npos);
  CHECK(hello_only->pending().find("tail-three") == std::string::npos);
  // warn and above: the refused admin request only.
  REQUIRE(warn_only->read_until("tail-three"));
  CHECK(warn_only->pending().find("\"level\":\"warn\"") != std::string::npos);
  CHECK(warn_only->pending().find("\"level\":\"info\"") == std::string::npos);
  // One request id: that request's lines only.
  REQUIRE(one_request->read_until("target=/api/hello/greet/y"));
  CHECK(one_request->pending().find("tail-one") == std::string::npos);
  CHECK(one_request->pending().find("tail-three") == std::string::npos);

  // What the tail holds for a request: its span and its access line, oldest first.
  const auto lines = Json::parse(get_json_lines(host, "request_id=tail-one&level=trace"));
  CHECK(lines["recording"] == true);
  REQUIRE(lines["lines"].size() == 2);
  CHECK(lines["lines"][0]["logger"] == "trace");
  CHECK(lines["lines"][0]["msg"].get<std::string>().starts_with("span kind=call caller=relay target=hello"));
  CHECK(lines["lines"][1]["logger"] == "access");
  CHECK(lines["lines"][0]["trace_id"] == lines["lines"][1]["trace_id"]);
  CHECK(Json::parse(get_json_lines(host, "request_id=tail-one&limit=1"))["lines"].size() == 1);
  // Parameters are form-decoded: a request id with ':' as a browser sends it.
  REQUIRE(simple_request(host.port(), "GET", "/api/hello/greet/w", {}, "X-Request-Id: svc:42\r\n")->status == 200);
  REQUIRE(hello_only->read_until("target=/api/hello/greet/w"));
  const auto colon = Json::parse(get_json_lines(host, "request_id=svc%3A42"));
  REQUIRE(colon["lines"].size() == 1);
  CHECK(colon["lines"][0]["request_id"] == "svc:42");
  // A new stream gets the matching lines from before it opened (backlog), then follows.
  auto late = open_stream(host, "request_id=tail-one&backlog=10");
  REQUIRE(late->read_until("target=/api/relay/greet/x"));
  CHECK(host.stop() == 0);
}

TEST_CASE("log stream: refusals name what is wrong", "[admin][logs][integration]") {
  KeelHost host(host_options());
  const auto status = [&](const std::string& target, std::string_view method = "GET", std::string_view auth = kBearer) {
    const auto r = simple_request(host.port(), method, target, {}, auth);
    REQUIRE(r);
    return std::make_pair(r->status, r->body);
  };
  CHECK(status("/admin/logs/stream", "GET", "").first == 401);
  CHECK(status("/admin/logs", "GET", "").first == 401);
  CHECK(status("/admin/logs/stream", "POST").first == 405);
  CHECK(status("/admin/logs/other").first == 404);
  const auto level = status("/admin/logs/stream?level=loud");
  CHECK(level.first == 400);
  CHECK(level.second.find("level must be one of trace, debug, info, warn, error, critical") != std::string::npos);
  const auto plugin = status("/admin/logs/stream?plugin=nope");
  CHECK(plugin.first == 404);
  CHECK(plugin.second.find("no plugin named 'nope'") != std::string::npos);
  CHECK(status("/admin/logs/stream?backlog=5000").first == 400);
  CHECK(status("/admin/logs/stream?limit=5").first == 400);  // limit is the snapshot's
  CHECK(status("/admin/logs?backlog=5").first == 400);       // and backlog the stream's
  CHECK(status("/admin/logs?limit=0").first == 400);
  CHECK(status("/admin/logs?request_id=bad%20id").first == 400);
  const auto unknown = status("/admin/logs?colour=red");
  CHECK(unknown.first == 400);
  CHECK(unknown.second.find("unknown query parameter 'colour'") != std::string::npos);
  // Without a stream open nothing is recorded.
  CHECK(Json::parse(status("/admin/logs").second)["recording"] == false);
  CHECK(host.stop() == 0);
}

TEST_CASE("log stream: at most 8 at once and a shutdown ends every open stream", "[admin][logs][integration]") {
  KeelHost host(host_options());
  std::vector<std::unique_ptr<RawClient>> streams;
  // A filter nothing matches: the host writes nothing to these streams.
  for (int i = 0; i < 8; ++i) streams.push_back(open_stream(host, "request_id=nobody&backlog=0"));
  const auto refused = simple_request(host.port(), "GET", "/admin/logs/stream", {}, kBearer);
  REQUIRE(refused);
  CHECK(refused->status == 503);
  CHECK(refused->header("Retry-After") == "5");
  CHECK(refused->body.find("too many log streams are open (8)") != std::string::npos);

  // A client that goes away frees its place at once: the host watches the connection, it does
  // not wait for its next write.
  streams.pop_back();
  bool reopened = false;
  for (int i = 0; i < 100 && !reopened; ++i) {
    auto c = std::make_unique<RawClient>(host.port());
    REQUIRE(c->send(std::string("GET /admin/logs/stream?backlog=0 HTTP/1.1\r\nHost: t\r\n") + kBearer + "\r\n"));
    REQUIRE(c->read_until("\r\n\r\n"));
    reopened = c->pending().starts_with("HTTP/1.1 200");
    if (reopened) streams.push_back(std::move(c));
    else std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(reopened);

  CHECK(host.stop() == 0);
  for (auto& s : streams) {
    CHECK(s->wait_closed());
    CHECK(s->pending().ends_with("\r\n0\r\n\r\n"));  // the last chunk: the stream ended cleanly
  }
}
