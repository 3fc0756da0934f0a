// The HTTP/1.1 server against raw bytes over loopback: framing, strictness, limits, timeouts and
// shutdown, each against the real keel binary.
#include <catch2/catch.hpp>

#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/resource.h>

#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::HostOptions;
using keel::test::KeelHost;
using keel::test::RawClient;
using keel::test::simple_request;
using namespace std::chrono_literals;

namespace {

const std::string kGet = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

// Send `request`, expect a response with `status` and then the connection closed by the server.
void expect_rejected(std::uint16_t port, const std::string& request, int status) {
  RawClient c(port);
  REQUIRE(c.send(request));
  const auto r = c.read_response();
  REQUIRE(r);
  CHECK(r->status == status);
  CHECK(r->header("Connection") == "close");
  CHECK(r->header("Content-Type") == "application/json");
  CHECK(r->body.find(R"({"error":{"code":")") == 0);
  CHECK(c.wait_closed());
}

}  // namespace

TEST_CASE("built-in endpoints answer with JSON, Date and a request id", "[http][integration]") {
  KeelHost host;
  const auto health = simple_request(host.port(), "GET", "/healthz");
  REQUIRE(health);
  CHECK(health->status == 200);
  CHECK(health->body == R"({"status":"alive"})");
  CHECK(health->header("Date").size() == 29);
  CHECK(health->header("X-Request-Id").size() == 16);

  const auto ready = simple_request(host.port(), "GET", "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 200);

  SECTION("HEAD has the GET headers and no body") {
    RawClient c(host.port());
    REQUIRE(c.send("HEAD /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + kGet));
    const auto head = c.read_response(true);
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->header("Content-Length") == std::to_string(health->body.size()));
    const auto next = c.read_response();  // proves no body bytes were sent after the HEAD response
    REQUIRE(next);
    CHECK(next->body == R"({"status":"alive"})");
  }
  SECTION("a valid X-Request-Id is echoed, an invalid one replaced") {
    const auto mine = simple_request(host.port(), "GET", "/healthz", {}, "X-Request-Id: abc-123.x\r\n");
    REQUIRE(mine);
    CHECK(mine->header("X-Request-Id") == "abc-123.x");
    const auto bad = simple_request(host.port(), "GET", "/healthz", {}, "X-Request-Id: has space\r\n");
    REQUIRE(bad);
    CHECK(bad->header("X-Request-Id") != "has space");
    CHECK(bad->header("X-Request-Id").size() == 16);
  }
  SECTION("unknown path is 404, wrong method is 405 with Allow") {
    const auto missing = simple_request(host.port(), "GET", "/nope");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    CHECK(missing->body == R"({"error":{"code":"not_found","message":"no route for this path"}})");
    const auto wrong = simple_request(host.port(), "POST", "/healthz", "x");
    REQUIRE(wrong);
    CHECK(wrong->status == 405);
    CHECK(wrong->header("Allow") == "GET, HEAD");
  }
}

TEST_CASE("keep-alive and pipelined requests are answered in order on one connection", "[http][integration]") {
  KeelHost host;
  RawClient c(host.port());
  SECTION("sequential keep-alive") {
    for (int i = 0; i < 5; ++i) {
      REQUIRE(c.send(kGet));
      const auto r = c.read_response();
      REQUIRE(r);
      CHECK(r->status == 200);
      CHECK_FALSE(r->has_header("Connection"));
    }
  }
  SECTION("pipelined in a single write") {
    REQUIRE(c.send(kGet + "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n" + "GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n" +
                   "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
    const int expected[] = {200, 404, 200, 200};
    for (int status : expected) {
      const auto r = c.read_response();
      REQUIRE(r);
      CHECK(r->status == status);
    }
    CHECK(c.wait_closed());
  }
  SECTION("HTTP/1.0 closes unless keep-alive is asked for") {
    REQUIRE(c.send("GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->header("Connection") == "keep-alive");
    REQUIRE(c.send("GET /healthz HTTP/1.0\r\n\r\n"));
    REQUIRE(c.read_response());
    CHECK(c.wait_closed());
  }
  SECTION("leading empty lines before a request are ignored") {
    REQUIRE(c.send("\r\n\r\n" + kGet));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
  }
}

TEST_CASE("request bodies: Content-Length, chunked and 100-continue", "[http][integration]") {
  KeelHost host("[http]\nmax_body_bytes = 1000\n");
  RawClient c(host.port());
  SECTION("a chunked body with extensions and trailers is consumed and the connection reused") {
    REQUIRE(c.send("POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
                   "5;name=value\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n" +
                   kGet));
    const auto first = c.read_response();
    REQUIRE(first);
    CHECK(first->status == 405);
    const auto second = c.read_response();
    REQUIRE(second);
    CHECK(second->status == 200);
  }
  SECTION("Expect: 100-continue gets an interim response before the body is sent") {
    REQUIRE(c.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"));
    const auto interim = c.read_response();
    REQUIRE(interim);
    CHECK(interim->status == 100);
    REQUIRE(c.send("body" + kGet));
    const auto final_response = c.read_response();
    REQUIRE(final_response);
    CHECK(final_response->status == 405);
    const auto next = c.read_response();
    REQUIRE(next);
    CHECK(next->status == 200);
  }
  SECTION("a too-large declared body gets 413 at once, without 100 and without reading it") {
    REQUIRE(c.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\nExpect: 100-continue\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(r->header("Connection") == "close");
    CHECK(c.wait_closed());
  }
  SECTION("a chunked body growing past the limit gets 413") {
    std::string req = "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (int i = 0; i < 11; ++i) req += "64\r\n" + std::string(100, 'a') + "\r\n";
    REQUIRE(c.send(req));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
    CHECK(c.wait_closed());
  }
  SECTION("an unsupported Expect value gets 417") {
    expect_rejected(host.port(), "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nExpect: magic\r\n\r\nx",
                    417);
  }
}

TEST_CASE("framing attacks and malformed requests are refused and the connection closed", "[http][integration][strict]") {
  KeelHost host;
  const auto port = host.port();
  struct Case {
    const char* name;
    std::string request;
    int status;
  };
  const std::vector<Case> cases = {
      {"Transfer-Encoding with Content-Length",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"Content-Length then Transfer-Encoding",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", 400},
      {"final coding not chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
      {"only an unknown coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo\r\n\r\n", 400},
      {"unknown coding before chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: foo, chunked\r\n\r\n0\r\n\r\n",
       501},
      {"gzip before chunked", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
       501},
      {"chunked twice", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, chunked\r\n\r\n0\r\n\r\n", 400},
      {"chunked on HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400},
      {"non-numeric Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400},
      {"negative Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
      {"conflicting Content-Length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
       400},
      {"conflicting Content-Length list", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1, 2\r\n\r\nab", 400},
      {"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX-A: one\r\n two\r\n\r\n", 400},
      {"bare CR in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n", 400},
      {"bare LF line ending", "GET / HTTP/1.1\nHost: x\n\n", 400},
      {"NUL in a value", std::string("GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n", 36), 400},
      {"control character in a value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01z\r\n\r\n", 400},
      {"space before the colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
      {"missing Host on HTTP/1.1", "GET / HTTP/1.1\r\nX-A: 1\r\n\r\n", 400},
      {"two Host fields", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
      {"HTTP/2.0 request line", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
      {"HTTP/0.9 style version", "GET / HTTP/0.9\r\nHost: x\r\n\r\n", 505},
      {"garbage version", "GET / FTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"relative target", "GET nope HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      // tests/fuzz/http_parser: any target holding "://" passed as absolute-form, any CONNECT target too.
      {"absolute-form without a scheme", "GET \xff://x/ HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      {"CONNECT without host:port", "CONNECT x HTTP/1.1\r\nHost: x\r\n\r\n", 400},
      // tests/fuzz/http_parser: an empty Transfer-Encoding was taken for none, beside Content-Length too.
      {"empty Transfer-Encoding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: \r\nContent-Length: 1\r\n\r\nx", 400},
      {"malformed chunk size", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n", 400},
      {"oversized chunk extension",
       "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;x=" + std::string(2000, 'a') + "\r\na\r\n0\r\n\r\n",
       400},
  };
  for (const auto& c : cases) {
    INFO(c.name);
    expect_rejected(port, c.request, c.status);
  }
  SECTION("an oversized trailer section is refused with bounded memory") {
    std::string req = "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n";
    for (int i = 0; i < 200; ++i) req += "X-T" + std::to_string(i) + ": " + std::string(100, 'v') + "\r\n";
    req += "\r\n";
    RawClient c(port);
    c.send(req);  // the server may close before everything is written
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK((r->status == 431 || r->status == 400));
    CHECK(c.wait_closed());
  }
  SECTION("an endless chunk extension is cut off") {
    RawClient c(port);
    REQUIRE(c.send("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;"));
    const std::string filler(8192, 'a');
    for (int i = 0; i < 64; ++i)
      if (!c.send(filler)) break;
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
  }
  // The server survived every case above.
  const auto alive = simple_request(port, "GET", "/healthz");
  REQUIRE(alive);
  CHECK(alive->status == 200);
}

TEST_CASE("size limits give 413, 414 and 431", "[http][integration][limits]") {
  KeelHost host("[http]\nmax_header_bytes = 16384\nmax_target_bytes = 8192\nmax_body_bytes = 64\n");
  const auto port = host.port();
  SECTION("an 8000-octet target with ordinary headers is accepted") {
    const auto r = simple_request(port, "GET", "/" + std::string(7999, 'a'), {},
                                  "User-Agent: test\r\nAccept: */*\r\nAccept-Encoding: gzip\r\n");
    REQUIRE(r);
    CHECK(r->status == 404);  // routed, not refused
  }
  SECTION("a longer target gets 414") {
    expect_rejected(port, "GET /" + std::string(9000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414);
  }
  SECTION("a target longer than the whole header limit gets 414, not 431") {
    expect_rejected(port, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n", 414);
  }
  SECTION("too many header bytes get 431") {
    std::string req = "GET / HTTP/1.1\r\nHost: x\r\n";
    for (int i = 0; i < 400; ++i) req += "X-Filler-" + std::to_string(i) + ": 0123456789012345678901234567890123\r\n";
    expect_rejected(port, req + "\r\n", 431);
  }
  SECTION("a body over the limit gets 413") {
    expect_rejected(port, "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n" + std::string(65, 'b'), 413);
  }
  SECTION("a body at the limit is accepted") {
    const auto r = simple_request(port, "POST", "/healthz", std::string(64, 'b'));
    REQUIRE(r);
    CHECK(r->status == 405);
  }
}

TEST_CASE("slow clients are cut by timeouts without delaying others", "[http][integration][timeouts]") {
  KeelHost host("[http]\nheader_read_timeout_ms = 600\nrequest_timeout_ms = 600\nidle_timeout_ms = 800\n");
  const auto port = host.port();
  SECTION("slowloris headers get 408 while a fast client is served") {
    RawClient slow(port);
    REQUIRE(slow.send("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < 20; ++i) {
      const auto r = simple_request(port, "GET", "/healthz");
      REQUIRE(r);
      CHECK(r->status == 200);
    }
    // The fast requests did not wait for the slow client's timeout.
    CHECK(std::chrono::steady_clock::now() - start < 5s);
    slow.send("X-Slow: 1\r\n");  // trickling bytes does not extend the header deadline
    const auto r = slow.read_response();
    REQUIRE(r);
    CHECK(r->status == 408);
    CHECK(slow.wait_closed());
  }
  SECTION("a slow body gets 408") {
    RawClient slow(port);
    REQUIRE(slow.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nab"));
    const auto r = slow.read_response();
    REQUIRE(r);
    CHECK(r->status == 408);
    CHECK(slow.wait_closed());
  }
  SECTION("an idle keep-alive connection is closed silently") {
    RawClient idle(port);
    REQUIRE(idle.send(kGet));
    REQUIRE(idle.read_response());
    CHECK(idle.wait_closed(5s));
    CHECK(idle.pending().empty());
  }
}

TEST_CASE("max_connections refuses extra connections with 503", "[http][integration][limits]") {
  KeelHost host("[server]\nmax_connections = 2\n");
  RawClient a(host.port());
  RawClient b(host.port());
  for (auto* c : {&a, &b}) {
    REQUIRE(c->send(kGet));
    REQUIRE(c->read_response());
  }
  RawClient third(host.port());
  const auto refused = third.read_response();
  REQUIRE(refused);
  CHECK(refused->status == 503);
  CHECK(third.wait_closed());
  // The admitted connections keep working.
  REQUIRE(a.send(kGet));
  const auto again = a.read_response();
  REQUIRE(again);
  CHECK(again->status == 200);
}

namespace {
void limit_fds() {
  rlimit lim{64, 64};
  ::setrlimit(RLIMIT_NOFILE, &lim);
}
}  // namespace

TEST_CASE("running out of file descriptors does not spin the acceptor", "[http][integration][limits]") {
  KeelHost host(HostOptions{"", {}, &limit_fds, {}, {}, {}});
  RawClient keeper(host.port());
  REQUIRE(keeper.send(kGet));
  REQUIRE(keeper.read_response());

  // Open more connections than the host has descriptors; the extra ones wait in the backlog.
  std::vector<std::unique_ptr<RawClient>> flood;
  for (int i = 0; i < 100; ++i) flood.push_back(std::make_unique<RawClient>(host.port(), 2s));
  std::this_thread::sleep_for(300ms);
  const auto cpu_before = keel::test::cpu_time(host.process().pid());
  std::this_thread::sleep_for(1500ms);
  const auto cpu_used = keel::test::cpu_time(host.process().pid()) - cpu_before;
  // A spinning acceptor would burn ~1500 ms of CPU here; backing off uses almost none.
  CHECK(cpu_used < 500ms);
  CHECK(host.process().wait_for_output("accept failed, backing off", 5s));

  // An existing connection is still served while the host is out of descriptors.
  REQUIRE(keeper.send(kGet));
  const auto r = keeper.read_response();
  REQUIRE(r);
  CHECK(r->status == 200);

  // Once descriptors are free again, new connections are accepted.
  flood.clear();
  std::optional<keel::test::RawResponse> later;
  for (int attempt = 0; attempt < 50 && !(later && later->status == 200); ++attempt) {
    std::this_thread::sleep_for(100ms);
    try {
      later = simple_request(host.port(), "GET", "/healthz");
    } catch (const std::exception&) {
      later.reset();
    }
  }
  REQUIRE(later);
  CHECK(later->status == 200);
}

TEST_CASE("SIGTERM drains: in-flight requests finish with Connection: close, idle ones close", "[http][integration][shutdown]") {
  KeelHost host("[server]\ndrain_timeout_ms = 5000\n");
  RawClient idle(host.port());
  REQUIRE(idle.send(kGet));
  REQUIRE(idle.read_response());

  RawClient busy(host.port());
  REQUIRE(busy.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n12345"));
  std::this_thread::sleep_for(200ms);  // the request is in flight: header read, body half sent
  host.process().signal(SIGTERM);

  CHECK(idle.wait_closed(3s));
  REQUIRE(busy.send("67890"));
  const auto r = busy.read_response();
  REQUIRE(r);
  CHECK(r->status == 405);
  CHECK(r->header("Connection") == "close");
  CHECK(busy.wait_closed());
  const auto code = host.process().wait(10s);
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(host.process().output().find("keel stopped") != std::string::npos);
}

TEST_CASE("the drain timeout bounds shutdown when a client never finishes", "[http][integration][shutdown]") {
  KeelHost host("[server]\ndrain_timeout_ms = 500\n[http]\nrequest_timeout_ms = 60000\n");
  RawClient stuck(host.port());
  REQUIRE(stuck.send("POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n1"));
  std::this_thread::sleep_for(200ms);
  const auto start = std::chrono::steady_clock::now();
  host.process().signal(SIGTERM);
  const auto code = host.process().wait(10s);
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
  CHECK(stuck.wait_closed(1s));
}

TEST_CASE("access log and JSON log format", "[http][integration][logging]") {
  KeelHost host("[log]\nformat = \"json\"\naccess_log = true\n");
  const auto r = simple_request(host.port(), "GET", "/healthz", {}, "X-Request-Id: trace-me-1\r\n");
  REQUIRE(r);
  REQUIRE(host.process().wait_for_output(R"("request_id":"trace-me-1")", 5s));
  const auto out = host.process().output();
  CHECK(out.find(R"("logger":"access")") != std::string::npos);
  CHECK(out.find("method=GET target=/healthz status=200") != std::string::npos);
  // Every line is one JSON object.
  std::size_t pos = 0;
  while (pos < out.size()) {
    const auto end = out.find('\n', pos);
    const auto line = out.substr(pos, end - pos);
    if (!line.empty()) {
      CHECK(line.front() == '{');
      CHECK(line.back() == '}');
    }
    if (end == std::string::npos) break;
    pos = end + 1;
  }
}

TEST_CASE("environment variables override the config file", "[http][integration][config]") {
  KeelHost host(HostOptions{"[http]\nmax_body_bytes = 1000\n", {"KEEL_HTTP_MAX_BODY_BYTES=3"}, nullptr, {}, {}, {}});
  expect_rejected(host.port(), "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nabcd", 413);
}
