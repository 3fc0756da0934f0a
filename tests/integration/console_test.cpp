// The console's files (/admin/ui/) and the traffic history behind its sparklines (/admin/traffic)
// against the real keel binary. The console in a browser: tests/console (ctest console.browser).
#include <catch2/catch.hpp>

#include <string>

#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::eventually;
using keel::test::example_plugin;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;

namespace {

constexpr const char* kBearer = keel::test::kAdminBearer;

keel::test::HostOptions hello_host(bool with_token) {
  auto o = with_plugins({example_plugin("hello"), example_plugin("relay")});
  if (with_token) o.env = {std::string("KEEL_ADMIN_TOKEN=") + keel::test::kAdminToken};
  return o;
}

}  // namespace

TEST_CASE("console: off without an admin token like the admin API", "[admin][console][integration]") {
  KeelHost host(hello_host(false));
  for (const char* path : {"/admin/ui/", "/admin/ui", "/admin/ui/console.js"}) {
    INFO(path);
    const auto r = simple_request(host.port(), "GET", path);
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->body.find("[admin] token") != std::string::npos);
  }
  CHECK(host.stop() == 0);
}

TEST_CASE("console: its files need no token and carry a strict policy and revalidate by ETag", "[admin][console][integration]") {
  KeelHost host(hello_host(true));
  const auto page = simple_request(host.port(), "GET", "/admin/ui/");
  REQUIRE(page);
  CHECK(page->status == 200);
  CHECK(page->header("Content-Type") == "text/html; charset=utf-8");
  const auto policy = page->header("Content-Security-Policy");
  CHECK(policy.find("default-src 'none'") != std::string::npos);
  CHECK(policy.find("script-src 'self'") != std::string::npos);
  CHECK(policy.find("connect-src 'self'") != std::string::npos);
  CHECK(policy.find("frame-ancestors 'none'") != std::string::npos);
  CHECK(policy.find("unsafe") == std::string::npos);
  CHECK(page->header("X-Content-Type-Options") == "nosniff");
  CHECK(page->header("Referrer-Policy") == "no-referrer");
  CHECK(page->body.find("<script type=\"module\" src=\"console.js\"></script>") != std::string::npos);
  // The same file by name; the other files with their types.
  CHECK(simple_request(host.port(), "GET", "/admin/ui/index.html")->body == page->body);
  CHECK(simple_request(host.port(), "GET", "/admin/ui/console.js")->header("Content-Type") == "text/javascript; charset=utf-8");
  CHECK(simple_request(host.port(), "GET", "/admin/ui/console.css")->header("Content-Type") == "text/css; charset=utf-8");
  CHECK(simple_request(host.port(), "GET", "/admin/ui/favicon.svg")->header("Content-Type") == "image/svg+xml");

  // Revalidation: the ETag back gives 304 with no body; another tag gives the file.
  const auto etag = page->header("ETag");
  REQUIRE(etag.size() == 18);
  const auto same = simple_request(host.port(), "GET", "/admin/ui/", {}, "If-None-Match: W/\"x\", " + etag + "\r\n");
  REQUIRE(same);
  CHECK(same->status == 304);
  CHECK(same->body.empty());
  CHECK(same->header("Content-Security-Policy") == policy);
  CHECK(simple_request(host.port(), "GET", "/admin/ui/", {}, "If-None-Match: \"other\"\r\n")->status == 200);

  // /admin/ui without the slash: a redirect; an unknown file, another method: refused.
  const auto bare = simple_request(host.port(), "GET", "/admin/ui");
  CHECK(bare->status == 308);
  CHECK(bare->header("Location") == "/admin/ui/");
  CHECK(simple_request(host.port(), "GET", "/admin/ui/../plugins")->status == 404);
  CHECK(simple_request(host.port(), "GET", "/admin/ui/nope.js")->status == 404);
  const auto post = simple_request(host.port(), "POST", "/admin/ui/");
  CHECK(post->status == 405);
  CHECK(post->header("Allow") == "GET, HEAD");
  // The data still needs the token.
  CHECK(simple_request(host.port(), "GET", "/admin/traffic")->status == 401);
  CHECK(host.stop() == 0);
}

TEST_CASE("console: /admin/traffic counts requests and 5xx and p99 per plugin and calls per second", "[admin][console][integration]") {
  KeelHost host(hello_host(true));
  const auto traffic = [&] {
    const auto r = simple_request(host.port(), "GET", "/admin/traffic", {}, kBearer);
    REQUIRE(r);
    REQUIRE(r->status == 200);
    return Json::parse(r->body);
  };
  const auto total = [](const Json& series) {
    std::uint64_t n = 0;
    for (const auto& v : series) n += v.get<std::uint64_t>();
    return n;
  };
  // The first sample only notes where the counters stand.
  REQUIRE(eventually([&] { return traffic()["samples"].get<int>() >= 1; }));
  for (int i = 0; i < 30; ++i) REQUIRE(simple_request(host.port(), "GET", "/api/hello/greet/x" + std::to_string(i))->status == 200);
  for (int i = 0; i < 5; ++i) REQUIRE(simple_request(host.port(), "GET", "/api/relay/greet/y")->status == 200);
  // Counted within a second or two, each request once; relay's calls to hello are calls, not requests.
  REQUIRE(eventually([&] {
    const auto t = traffic();
    return t["plugins"].contains("hello") && total(t["plugins"]["hello"]["requests"]) == 30 &&
           t["plugins"].contains("relay") && total(t["plugins"]["relay"]["requests"]) == 5 && t["calls"].size() == 1 &&
           total(t["calls"][0]["calls"]) == 5;
  }));
  const auto t = traffic();
  INFO(t.dump());
  const auto n = t["samples"].get<std::size_t>();
  CHECK(n <= 60);
  CHECK(t["interval_ms"] == 1000);
  const auto& hello = t["plugins"]["hello"];
  CHECK(hello["requests"].size() == n);
  CHECK(hello["errors"].size() == n);
  CHECK(hello["p99_ms"].size() == n);
  CHECK(total(hello["errors"]) == 0);
  REQUIRE(hello["p99_minute_ms"].is_number());
  CHECK(hello["p99_minute_ms"].get<double>() > 0);
  CHECK(t["calls"][0]["caller"] == "relay");
  CHECK(t["calls"][0]["target"] == "hello");
  CHECK(host.stop() == 0);
}

TEST_CASE("console: with [admin] listen it and uploads are only on the admin listener", "[admin][console][integration]") {
  auto o = with_plugins({example_plugin("hello")}, "[admin]\nlisten = \"127.0.0.1:0\"\n[http]\nmax_body_bytes = 1024\n");
  o.env = {std::string("KEEL_ADMIN_TOKEN=") + keel::test::kAdminToken};
  KeelHost host(o);
  REQUIRE(host.admin_port() != 0);
  CHECK(simple_request(host.admin_port(), "GET", "/admin/ui/")->status == 200);
  CHECK(simple_request(host.port(), "GET", "/admin/ui/")->status == 404);
  // An upload over max_body_bytes: taken on the admin listener, 413 on the public one (its
  // /admin/ does not exist there), whatever the token.
  const std::string big(4096, 'x');
  CHECK(simple_request(host.port(), "POST", "/admin/plugins", big, kBearer)->status == 413);
  const auto r = simple_request(host.admin_port(), "POST", "/admin/plugins", big, kBearer);
  REQUIRE(r);
  CHECK(r->status == 422);  // read, then refused by pre-flight: not a plugin
  CHECK(r->body.find("not a plugin: neither an ELF shared object") != std::string::npos);
  CHECK(host.stop() == 0);
}
