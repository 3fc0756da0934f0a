// The hello example plugin, driven through its C table by FakeHost (no sockets, no dlopen).
// The plugin is header-only (plugins/hello/src), so this file needs no library: plugin.cpp,
// which defines the exported entry point, is not part of the test binary.

#include "../../../../plugins/hello/src/hello.hpp"

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <string_view>

namespace {

namespace sdk = keel::sdk;
using sdk::testing::FakeHost;
using sdk::testing::RequestSpec;

RequestSpec greet(std::string name) {
  return RequestSpec{.route_index = hello::kGreet,
                     .method = "GET",
                     .path = "/api/hello/greet/" + name,
                     .path_params = {{"name", std::move(name)}}};
}

std::string greeting_of(FakeHost& host, std::string name) {
  auto pending = host.request(greet(std::move(name)));
  REQUIRE(pending.returned().ok());
  const auto response = pending.response();
  REQUIRE(response);
  CHECK(response->status == 200);
  CHECK(response->content_type == "application/json");
  return response->body;
}

}  // namespace

TEST_CASE("hello greets by name with the default greeting", "[hello]") {
  FakeHost host;
  REQUIRE(host.load<hello::HelloPlugin>("{}", HELLO_MANIFEST).ok());
  CHECK(greeting_of(host, "world") == R"({"greeting":"Hello, world!"})");
}

TEST_CASE("hello takes its greeting from config key greeting", "[hello]") {
  FakeHost host;
  SECTION("a configured greeting replaces Hello") {
    REQUIRE(host.load<hello::HelloPlugin>(R"({"greeting": "Bonjour"})", HELLO_MANIFEST).ok());
    CHECK(greeting_of(host, "Zoé") == R"({"greeting":"Bonjour, Zoé!"})");
  }
  SECTION("escapes in the config string are decoded, then re-escaped in the answer") {
    REQUIRE(host.load<hello::HelloPlugin>(R"({"other": [1, {"x": null}], "greeting": "Gr\u00fc\u00df \"Gott\" \ud83d\ude00"})",
                                          HELLO_MANIFEST)
                .ok());
    CHECK(greeting_of(host, "you") == "{\"greeting\":\"Grüß \\\"Gott\\\" \xF0\x9F\x98\x80, you!\"}");
  }
  SECTION("the host's filled-in default is used like any value") {
    REQUIRE(host.load<hello::HelloPlugin>(R"({"greeting":"Hello"})", HELLO_MANIFEST).ok());
    CHECK(greeting_of(host, "x") == R"({"greeting":"Hello, x!"})");
  }
}

TEST_CASE("hello takes the greeting for one answer from query parameter greeting", "[hello]") {
  FakeHost host;
  REQUIRE(host.load<hello::HelloPlugin>(R"({"greeting": "Bonjour"})", HELLO_MANIFEST).ok());
  const auto greet_with = [&](std::string value) {
    auto spec = greet("Ada");
    spec.query = {{"greeting", std::move(value)}};
    auto pending = host.request(std::move(spec));
    REQUIRE(pending.returned().ok());
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->content_type == "application/json");
    return response->body;
  };
  SECTION("?greeting=Hi replaces the configured greeting") {
    CHECK(greet_with("Hi") == R"({"greeting":"Hi, Ada!"})");
    // Only for that answer: the next request without it uses the configured one again.
    CHECK(greeting_of(host, "Ada") == R"({"greeting":"Bonjour, Ada!"})");
  }
  SECTION("an empty ?greeting= keeps the configured greeting") {
    CHECK(greet_with("") == R"({"greeting":"Bonjour, Ada!"})");
  }
  SECTION("the query value is JSON-escaped like the name") {
    CHECK(greet_with(R"(Hi "there")") == R"({"greeting":"Hi \"there\", Ada!"})");
  }
}

TEST_CASE("hello refuses to load with an invalid config", "[hello]") {
  FakeHost host;
  SECTION("greeting is not a string") {
    CHECK(host.load<hello::HelloPlugin>(R"({"greeting": 42})", HELLO_MANIFEST).code() == sdk::StatusCode::kInvalidArgument);
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "config.greeting: expected a string, got an integer") == 1);
  }
  SECTION("config is not a JSON object") {
    CHECK(host.load<hello::HelloPlugin>(R"(["greeting"])", HELLO_MANIFEST).code() == sdk::StatusCode::kInvalidArgument);
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "config: expected an object, got an array") == 1);
    CHECK(host.load<hello::HelloPlugin>(R"({"greeting": "a")", HELLO_MANIFEST).code() == sdk::StatusCode::kInvalidArgument);
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "config: at byte 16: expected ',' or '}' in the object") == 1);
  }
  CHECK_FALSE(host.loaded());
}

TEST_CASE("hello JSON-escapes the name so the answer is always valid JSON", "[hello]") {
  FakeHost host;
  REQUIRE(host.load<hello::HelloPlugin>("{}", HELLO_MANIFEST).ok());
  CHECK(greeting_of(host, R"(a"b\c)") == R"({"greeting":"Hello, a\"b\\c!"})");
  CHECK(greeting_of(host, "line\nbreak\ttab") == R"({"greeting":"Hello, line\nbreak\ttab!"})");
  CHECK(greeting_of(host, std::string{"nul\x01\x1f", 5}) == R"({"greeting":"Hello, nul\u0001\u001f!"})");
  CHECK(greeting_of(host, "</script>") == R"({"greeting":"Hello, </script>!"})");
  SECTION("bytes that are not UTF-8 become U+FFFD") {
    CHECK(greeting_of(host, "bad\xff") == R"({"greeting":"Hello, bad\ufffd!"})");
    CHECK(greeting_of(host, "cut\xc3") == R"({"greeting":"Hello, cut\ufffd!"})");
    CHECK(greeting_of(host, "overlong\xc0\xaf") == R"({"greeting":"Hello, overlong\ufffd\ufffd!"})");
    CHECK(greeting_of(host, "surrogate\xed\xa0\x80") == R"({"greeting":"Hello, surrogate\ufffd\ufffd\ufffd!"})");
  }
  SECTION("valid UTF-8 passes through unchanged") {
    CHECK(greeting_of(host, "日本 \xF0\x9F\x91\x8B") == "{\"greeting\":\"Hello, 日本 \xF0\x9F\x91\x8B!\"}");
  }
}

TEST_CASE("hello echoes the request body with its content type", "[hello]") {
  FakeHost host;
  REQUIRE(host.load<hello::HelloPlugin>("{}", HELLO_MANIFEST).ok());

  SECTION("a 1 KiB JSON body, as in the echo benchmark") {
    std::string body = R"({"data":")";
    body.append(1024 - body.size() - 2, 'x');
    body += "\"}";
    REQUIRE(body.size() == 1024);
    auto pending = host.request({.route_index = hello::kEcho,
                                 .method = "POST",
                                 .path = "/api/hello/echo",
                                 .headers = {{"Content-Type", "application/json"}},
                                 .body = body});
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->content_type == "application/json");
    CHECK(response->body == body);
  }
  SECTION("no Content-Type in, none out") {
    auto pending = host.request({.route_index = hello::kEcho, .method = "POST", .path = "/api/hello/echo", .body = "raw"});
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->content_type.empty());
    CHECK(response->body == "raw");
  }
  SECTION("an empty body") {
    auto pending = host.request({.route_index = hello::kEcho,
                                 .method = "POST",
                                 .path = "/api/hello/echo",
                                 .headers = {{"content-type", "text/plain"}}});
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->content_type == "text/plain");
    CHECK(response->body.empty());
  }
}

TEST_CASE("hello answers an unknown route index with not found", "[hello]") {
  FakeHost host;
  REQUIRE(host.load<hello::HelloPlugin>("{}", HELLO_MANIFEST).ok());
  auto pending = host.request({.route_index = 7});
  CHECK(pending.returned().code() == sdk::StatusCode::kNotFound);
  CHECK_FALSE(pending.completed());
}

TEST_CASE("hello's manifest matches the code", "[hello]") {
  constexpr std::string_view manifest = HELLO_MANIFEST;
  STATIC_REQUIRE(sdk::detail::is_json_object_text(manifest));
  CHECK(manifest.find(R"("name": "hello")") != std::string_view::npos);
  CHECK(manifest.find(R"("version": "0.1.0")") != std::string_view::npos);
  CHECK(manifest.find(R"("abi": "1.0")") != std::string_view::npos);
  // Route indices are positions in "routes": greet first, echo second.
  const auto greet_at = manifest.find(R"({"method": "GET", "path": "/greet/{name}")");
  const auto echo_at = manifest.find(R"({"method": "POST", "path": "/echo")");
  REQUIRE(greet_at != std::string_view::npos);
  REQUIRE(echo_at != std::string_view::npos);
  CHECK(greet_at < echo_at);
  CHECK(hello::kGreet == 0u);
  CHECK(hello::kEcho == 1u);
  // The schema's default is the plugin's own default.
  CHECK(manifest.find(R"("greeting": {"type": "string", "default": "Hello")") != std::string_view::npos);
  auto parsed = sdk::JsonReader::parse(manifest, "manifest");
  CHECK(parsed.required<std::string>("name") == "hello");
  CHECK(parsed.ok());
}

