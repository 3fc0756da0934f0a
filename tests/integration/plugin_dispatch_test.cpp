// Requests across the ABI: responders completed later or twice, deadlines, exceptions,
// serialized and blocking plugins, plugin-to-plugin calls, request ids and CORS.
#include <catch2/catch.hpp>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::fixture;
using keel::test::HostOptions;
using keel::test::KeelHost;
using keel::test::RawClient;
using keel::test::simple_request;
using keel::test::with_plugins;
using namespace std::chrono_literals;

TEST_CASE("hello answers through the ABI with decoded path parameters", "[dispatch][integration]") {
  KeelHost host(with_plugins({example_plugin("hello"), example_plugin("relay")}));
  SECTION("percent-decoded parameter, JSON-escaped answer") {
    const auto r = simple_request(host.port(), "GET", "/api/hello/greet/%22Zo%C3%AB%22");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("Content-Type") == "application/json");
    CHECK(r->body == R"({"greeting":"Hello, \"Zoë\"!"})");
  }
  SECTION("dot-segment tricks are refused before any plugin runs") {
    for (const char* path : {"/api/hello/greet/..", "/api/hello/greet/%2e%2e", "/api/hello/../hello/greet/x"}) {
      INFO(path);
      const auto r = simple_request(host.port(), "GET", path);
      REQUIRE(r);
      CHECK(r->status == 400);
    }
  }
  SECTION("404 for an unknown path below a mount, 405 with Allow for a wrong method") {
    const auto missing = simple_request(host.port(), "GET", "/api/hello/nope");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    const auto wrong = simple_request(host.port(), "DELETE", "/api/hello/greet/x");
    REQUIRE(wrong);
    CHECK(wrong->status == 405);
    CHECK(wrong->header("Allow") == "GET, HEAD");
  }
  SECTION("POST echo returns the body") {
    const std::string body(1024, 'j');
    const auto r = simple_request(host.port(), "POST", "/api/hello/echo", body, "Content-Type: application/json\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == body);
  }
  SECTION("a plugin-to-plugin call goes through the host") {
    const auto r = simple_request(host.port(), "GET", "/api/relay/greet/Ann", {}, "X-Request-Id: relay-1\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == R"({"relayed":{"greeting":"Hello, Ann!"},"via":"relay"})");
    CHECK(r->header("X-Request-Id") == "relay-1");
  }
}

TEST_CASE("responders: completed from another thread, twice, or never", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("async_responder")}, "[plugin.async_responder]\nrequest_timeout_ms = 500\n"));
  SECTION("completed later from another thread") {
    const auto r = simple_request(host.port(), "GET", "/api/async_responder/later");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  SECTION("a second completion is refused and logged") {
    const auto r = simple_request(host.port(), "GET", "/api/async_responder/twice");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(host.process().wait_for_output("respond called again for a completed request", 5s));
  }
  SECTION("never completing ends in 504 and the connection stays usable") {
    RawClient c(host.port());
    REQUIRE(c.send("GET /api/async_responder/never HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 504);
    CHECK(r->body.find("plugin 'async_responder' did not answer within 500 ms") != std::string::npos);
    const auto next = c.read_response();
    REQUIRE(next);
    CHECK(next->status == 200);
  }
}

TEST_CASE("deadlines: per-plugin and per-route timeouts give 504, a late answer is dropped", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("slow_handler")},
                             "[plugin.slow_handler]\nroute_timeouts = { \"GET /slow\" = 300 }\n"));
  const auto start = std::chrono::steady_clock::now();
  const auto slow = simple_request(host.port(), "GET", "/api/slow_handler/slow");
  REQUIRE(slow);
  CHECK(slow->status == 504);
  CHECK(std::chrono::steady_clock::now() - start < 1900ms);  // answered before the handler finished
  const auto fast = simple_request(host.port(), "GET", "/api/slow_handler/fast");
  REQUIRE(fast);
  CHECK(fast->status == 200);
  CHECK(host.process().wait_for_output("late response dropped", 5s));
}

TEST_CASE("an exception escaping a handler gives 500 for that request only", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("throws_from_hook")}));
  const auto boom = simple_request(host.port(), "GET", "/api/throws_from_hook/boom");
  REQUIRE(boom);
  CHECK(boom->status == 500);
  const auto ok = simple_request(host.port(), "GET", "/api/throws_from_hook/ok");
  REQUIRE(ok);
  CHECK(ok->status == 200);
  CHECK(host.process().wait_for_output("[plugin.throws_from_hook]", 5s));
}

TEST_CASE("a serialized plugin is never called concurrently", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("serialized")}, "[server]\nio_threads = 2\n"));
  std::atomic<int> ok{0}, bad{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 6; ++t) {
    clients.emplace_back([&] {
      RawClient c(host.port());
      for (int i = 0; i < 5; ++i) {
        if (!c.send("GET /api/serialized/check HTTP/1.1\r\nHost: x\r\n\r\n")) break;
        const auto r = c.read_response();
        (r && r->status == 200 ? ok : bad)++;
      }
    });
  }
  for (auto& t : clients) t.join();
  CHECK(ok == 30);
  CHECK(bad == 0);
}

TEST_CASE("a blocking handler runs on the worker pool and does not stall other routes", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("blocking")}, "[server]\nio_threads = 1\n"));
  std::thread slow([&] {
    const auto r = simple_request(host.port(), "GET", "/api/blocking/block");
    CHECK((r && r->status == 200));
  });
  std::this_thread::sleep_for(100ms);
  const auto start = std::chrono::steady_clock::now();
  const auto quick = simple_request(host.port(), "GET", "/api/blocking/quick");
  const auto elapsed = std::chrono::steady_clock::now() - start;
  slow.join();
  REQUIRE(quick);
  CHECK(quick->status == 200);
  CHECK(elapsed < 700ms);  // the single I/O thread was free while /block slept for 1 s
}

TEST_CASE("plugin-to-plugin calls: declared, undeclared, deadline propagation", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("no_op"), fixture("slow_handler"), fixture("caller")}));
  SECTION("a declared dependency is reachable") {
    const auto r = simple_request(host.port(), "GET", "/api/caller/call/ping");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "pong");
  }
  SECTION("an undeclared call is refused with PERMISSION_DENIED and logged") {
    const auto r = simple_request(host.port(), "GET", "/api/caller/undeclared");
    REQUIRE(r);
    CHECK(r->body.find("-6") != std::string::npos);
    CHECK(host.process().wait_for_output("call refused: 'blocking' is not a declared dependency", 5s));
  }
  SECTION("the call's timeout bounds a slow target") {
    const auto start = std::chrono::steady_clock::now();
    const auto r = simple_request(host.port(), "GET", "/api/caller/deadline");
    REQUIRE(r);
    CHECK(r->body.find("-7") != std::string::npos);  // KEEL_ERR_TIMEOUT
    CHECK(std::chrono::steady_clock::now() - start < 1500ms);
  }
}

TEST_CASE("the caller's remaining deadline propagates into plugin calls", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("no_op"), fixture("slow_handler"), fixture("caller")},
                             "[plugin.caller]\nrequest_timeout_ms = 300\n"));
  // caller's /deadline asks for 200 ms; /deadline_default asks for none (0 = host default 30 s):
  // the caller's own 300 ms request deadline must cap it.
  const auto start = std::chrono::steady_clock::now();
  const auto r = simple_request(host.port(), "GET", "/api/caller/deadline_default");
  REQUIRE(r);
  CHECK(std::chrono::steady_clock::now() - start < 1500ms);
  CHECK((r->status == 504 || r->body.find("-7") != std::string::npos));
}

TEST_CASE("CORS: preflight answers and headers on actual responses", "[dispatch][integration][cors]") {
  KeelHost host(with_plugins({example_plugin("hello")},
                             "[cors]\nallowed_origins = \"https://app.example\"\nallowed_headers = \"Content-Type, X-Request-Id\"\n"
                             "max_age_s = 120\n"));
  SECTION("an allowed preflight gets 204 with the allow lists") {
    const auto r = simple_request(host.port(), "OPTIONS", "/api/hello/echo", {},
                                  "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                                  "Access-Control-Request-Headers: content-type\r\n");
    REQUIRE(r);
    CHECK(r->status == 204);
    CHECK(r->header("Access-Control-Allow-Origin") == "https://app.example");
    CHECK(r->header("Access-Control-Allow-Methods").find("POST") != std::string::npos);
    CHECK(r->header("Access-Control-Allow-Headers") == "Content-Type, X-Request-Id");
    CHECK(r->header("Access-Control-Max-Age") == "120");
  }
  SECTION("a foreign origin or a header outside the list is refused") {
    const auto bad_origin = simple_request(host.port(), "OPTIONS", "/api/hello/echo", {},
                                           "Origin: https://evil.example\r\nAccess-Control-Request-Method: POST\r\n");
    REQUIRE(bad_origin);
    CHECK(bad_origin->status == 403);
    CHECK_FALSE(bad_origin->has_header("Access-Control-Allow-Origin"));
    const auto bad_header = simple_request(host.port(), "OPTIONS", "/api/hello/echo", {},
                                           "Origin: https://app.example\r\nAccess-Control-Request-Method: POST\r\n"
                                           "Access-Control-Request-Headers: x-secret\r\n");
    REQUIRE(bad_header);
    CHECK(bad_header->status == 403);
  }
  SECTION("an actual request from an allowed origin carries the CORS headers") {
    const auto r = simple_request(host.port(), "GET", "/api/hello/greet/x", {}, "Origin: https://app.example\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->header("Access-Control-Allow-Origin") == "https://app.example");
    CHECK(r->header("Access-Control-Expose-Headers") == "X-Request-Id");
    CHECK(r->header("Vary") == "Origin");
    const auto other = simple_request(host.port(), "GET", "/api/hello/greet/x", {}, "Origin: https://evil.example\r\n");
    REQUIRE(other);
    CHECK_FALSE(other->has_header("Access-Control-Allow-Origin"));
  }
}

TEST_CASE("CORS: the null origin is never allowed and a wildcard never reflects an origin", "[dispatch][integration][cors]") {
  for (const std::string origins : {"*", "https://app.example"}) {
    KeelHost host(with_plugins({example_plugin("hello")}, "[cors]\nallowed_origins = \"" + origins + "\"\n"));
    const auto preflight = simple_request(host.port(), "OPTIONS", "/api/hello/echo", {},
                                          "Origin: null\r\nAccess-Control-Request-Method: POST\r\n");
    REQUIRE(preflight);
    CHECK(preflight->status == 403);
    CHECK_FALSE(preflight->has_header("Access-Control-Allow-Origin"));
    const auto actual = simple_request(host.port(), "GET", "/api/hello/greet/x", {}, "Origin: null\r\n");
    REQUIRE(actual);
    CHECK(actual->status == 200);
    CHECK_FALSE(actual->has_header("Access-Control-Allow-Origin"));
    CHECK_FALSE(actual->has_header("Access-Control-Allow-Credentials"));
  }
  KeelHost wildcard(with_plugins({example_plugin("hello")}, "[cors]\nallowed_origins = \"*\"\n"));
  const auto r = simple_request(wildcard.port(), "GET", "/api/hello/greet/x", {}, "Origin: https://any.example\r\n");
  REQUIRE(r);
  CHECK(r->header("Access-Control-Allow-Origin") == "*");
  CHECK_FALSE(r->has_header("Access-Control-Allow-Credentials"));
}

TEST_CASE("a plugin's log text cannot forge log lines or drive a terminal", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("log_echo")}));
  const auto r = simple_request(host.port(), "GET",
                                "/api/log_echo/log?text=first%0A2026-12-06T00:00:00.000Z%20info%20%5Badmin%5D%20forged"
                                "%0D%1B%5B31mred%00end");
  REQUIRE(r);
  CHECK(r->status == 204);
  REQUIRE(host.process().wait_for_output(
      "first\\n2026-12-06T00:00:00.000Z info [admin] forged\\r\\x1b[31mred\\x00end", 5s));
  const auto out = host.process().output();
  CHECK(out.find("\n2026-12-06T00:00:00.000Z info [admin] forged") == std::string::npos);
  CHECK(out.find('\x1b') == std::string::npos);
}

TEST_CASE("query parameters reach the plugin decoded, in order, repeats kept", "[dispatch][integration]") {
  KeelHost host(with_plugins({fixture("no_op")}));
  const auto r = simple_request(host.port(), "GET", "/api/no_op/query?a=1&b=x+y&c=%41%2f&a=2&flag&=v&bad=%zz");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "a=1\nb=x y\nc=A/\na=2\nflag=\n=v\nbad=%zz\n");
}

TEST_CASE("a plugin's log_level raises or lowers its logger alone", "[dispatch][integration]") {
  KeelHost host(with_plugins({example_plugin("hello"), example_plugin("relay")},
                             "[log]\nlevel = \"info\"\n[plugin.relay]\nlog_level = \"debug\"\n"));
  const auto r = simple_request(host.port(), "GET", "/api/relay/greet/Ann", {}, "X-Request-Id: lvl-1\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  // relay's logger records its debug line for the call; the host's own loggers stay at info.
  CHECK(host.process().wait_for_output("[plugin.relay] call target=hello", 5s));
  CHECK(host.process().output().find("debug [plugins]") == std::string::npos);
}
