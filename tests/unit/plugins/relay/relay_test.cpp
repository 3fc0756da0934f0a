// The relay example plugin, driven through its C table by FakeHost (no sockets, no dlopen).
// FakeHost queues call completions and runs them in deliver_calls(), never inside call(), as
// the real host does, so these tests also show that relay answers asynchronously. The last
// case wires relay to a second FakeHost running the real hello plugin.

#include "../../../../plugins/hello/src/hello.hpp"
#include "../../../../plugins/relay/src/relay.hpp"

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <string_view>

namespace {

namespace sdk = keel::sdk;
using sdk::testing::CallReply;
using sdk::testing::FakeHost;
using sdk::testing::RecordedCall;
using sdk::testing::RequestSpec;

RequestSpec greet(std::string name) {
  return RequestSpec{.route_index = relay::kGreet,
                     .method = "GET",
                     .path = "/api/relay/greet/" + name,
                     .path_params = {{"name", std::move(name)}},
                     .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"};
}

// What relay answers when hello's reply is `reply`.
sdk::testing::Response relayed(const CallReply& reply) {
  FakeHost host;
  REQUIRE(host.load<relay::RelayPlugin>("{}", RELAY_MANIFEST).ok());
  host.on_call([&reply](const RecordedCall&) { return reply; });
  auto pending = host.request(greet("bob"));
  REQUIRE(pending.returned().ok());
  host.deliver_calls();
  const auto response = pending.response();
  REQUIRE(response);
  return *response;
}

std::string percent_decode(std::string_view in) {
  std::string out;
  for (std::size_t i = 0; i < in.size(); ++i) {
    if (in[i] == '%' && i + 2 < in.size()) {
      out += static_cast<char>(std::stoi(std::string{in.substr(i + 1, 2)}, nullptr, 16));
      i += 2;
    } else {
      out += in[i];
    }
  }
  return out;
}

}  // namespace

TEST_CASE("relay asks hello through Host::call and answers from the completion", "[relay]") {
  FakeHost host;
  REQUIRE(host.load<relay::RelayPlugin>("{}", RELAY_MANIFEST).ok());
  host.on_call([](const RecordedCall&) {
    return CallReply{.status = 200, .content_type = "application/json", .body = R"({"greeting":"Hello, bob!"})"};
  });

  auto pending = host.request(greet("bob"));
  CHECK(pending.returned().ok());
  CHECK_FALSE(pending.completed());  // on_request returned without answering: the call is in flight

  const auto calls = host.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].target == "hello");
  CHECK(calls[0].method == "GET");
  CHECK(calls[0].path == "/greet/bob");
  CHECK(calls[0].timeout == std::chrono::milliseconds{0});  // the host's default
  CHECK(calls[0].traceparent == "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");

  REQUIRE(host.deliver_calls() == 1);
  const auto response = pending.response();
  REQUIRE(response);
  CHECK(response->status == 200);
  CHECK(response->content_type == "application/json");
  CHECK(response->body == R"({"relayed":{"greeting":"Hello, bob!"},"via":"relay"})");
  CHECK(host.logs().empty());
}

TEST_CASE("relay percent-encodes the decoded name again for hello's path", "[relay]") {
  FakeHost host;
  REQUIRE(host.load<relay::RelayPlugin>("{}", RELAY_MANIFEST).ok());
  host.on_call([](const RecordedCall&) { return CallReply{.body = "{}"}; });
  host.request(greet("a b/ü?x=1&%"));
  const auto calls = host.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].path == "/greet/a%20b%2F%C3%BC%3Fx%3D1%26%25");
  CHECK(relay::encode_segment("Az09-._~") == "Az09-._~");
}

TEST_CASE("relay answers 502 with the standard error body when the call fails", "[relay]") {
  SECTION("call() is refused: hello is not loaded") {
    FakeHost host;
    REQUIRE(host.load<relay::RelayPlugin>("{}", RELAY_MANIFEST).ok());  // no on_call handler: NOT_FOUND
    auto pending = host.request(greet("bob"));
    CHECK(pending.returned().ok());
    const auto response = pending.response();  // answered at once, no completion involved
    REQUIRE(response);
    CHECK(response->status == 502);
    CHECK(response->content_type == "application/json");
    CHECK(response->body == R"({"error":{"code":"bad_gateway","message":"call refused target=hello status=not_found"}})");
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "call refused target=hello status=not_found req=req-1") == 1);
    CHECK(host.pending_calls() == 0);
  }
  SECTION("call() is refused: permission denied") {
    const auto response = relayed(CallReply{.refuse = sdk::StatusCode::kPermissionDenied});
    CHECK(response.status == 502);
    CHECK(response.body ==
          R"({"error":{"code":"bad_gateway","message":"call refused target=hello status=permission_denied"}})");
  }
  SECTION("the call times out") {
    const auto response = relayed(CallReply{.result = sdk::StatusCode::kTimeout});
    CHECK(response.status == 502);
    CHECK(response.body == R"({"error":{"code":"bad_gateway","message":"call failed target=hello status=timeout"}})");
  }
  SECTION("hello answers with an error status") {
    const auto response = relayed(CallReply{.status = 500, .body = R"({"error":{"code":"internal","message":"x"}})"});
    CHECK(response.status == 502);
    CHECK(response.body == R"({"error":{"code":"bad_gateway","message":"hello answered status=500"}})");
  }
  SECTION("hello answers something that is not JSON") {
    const auto response = relayed(CallReply{.status = 200, .content_type = "text/plain", .body = "hi"});
    CHECK(response.status == 502);
    CHECK(response.body ==
          R"({"error":{"code":"bad_gateway","message":"hello answered a body that is not application/json"}})");
  }
  SECTION("JSON with parameters and in upper case is JSON") {
    const auto response = relayed(CallReply{.status = 200, .content_type = "Application/JSON; charset=utf-8", .body = "[]"});
    CHECK(response.status == 200);
    CHECK(response.body == R"({"relayed":[],"via":"relay"})");
  }
}

TEST_CASE("relay's pending calls complete with unavailable when it is unloaded", "[relay]") {
  FakeHost host;
  REQUIRE(host.load<relay::RelayPlugin>("{}", RELAY_MANIFEST).ok());
  host.on_call([](const RecordedCall&) { return CallReply{.body = "{}"}; });
  auto pending = host.request(greet("bob"));
  REQUIRE(host.pending_calls() == 1);
  REQUIRE(host.unload().ok());  // stop, then every outstanding completion as UNAVAILABLE, then destroy
  const auto response = pending.response();
  REQUIRE(response);
  CHECK(response->status == 502);
  CHECK(response->body == R"({"error":{"code":"bad_gateway","message":"call failed target=hello status=unavailable"}})");
}

TEST_CASE("relay and hello work together", "[relay][hello]") {
  FakeHost hello_host;
  REQUIRE(hello_host.load<hello::HelloPlugin>(R"({"greeting":"Hi"})", HELLO_MANIFEST).ok());
  FakeHost relay_host;
  REQUIRE(relay_host.load<relay::RelayPlugin>("{}", RELAY_MANIFEST).ok());
  // Route relay's calls to the hello instance, as the host's router would.
  relay_host.on_call([&hello_host](const RecordedCall& call) {
    REQUIRE(call.target == "hello");
    REQUIRE(call.path.starts_with("/greet/"));
    const std::string name = percent_decode(std::string_view{call.path}.substr(7));
    auto answer = hello_host.request({.route_index = hello::kGreet,
                                      .method = call.method,
                                      .path = "/api/hello" + call.path,
                                      .path_params = {{"name", name}},
                                      .caller_plugin = "relay"});
    const auto response = answer.response();
    REQUIRE(response);
    return CallReply{.status = response->status, .content_type = response->content_type, .body = response->body};
  });

  auto pending = relay_host.request(greet("Zoé \"Z\""));
  relay_host.deliver_calls();
  const auto response = pending.response();
  REQUIRE(response);
  CHECK(response->status == 200);
  CHECK(response->body == R"({"relayed":{"greeting":"Hi, Zoé \"Z\"!"},"via":"relay"})");
}

TEST_CASE("relay's manifest declares the dependency and permission it uses", "[relay]") {
  constexpr std::string_view manifest = RELAY_MANIFEST;
  STATIC_REQUIRE(sdk::detail::is_json_object_text(manifest));
  CHECK(manifest.find(R"("name": "relay")") != std::string_view::npos);
  CHECK(manifest.find(R"("dependencies": [{"name": "hello", "version": ">=0.1.0 <1.0.0"}])") != std::string_view::npos);
  CHECK(manifest.find(R"("permissions": ["call:hello"])") != std::string_view::npos);
  CHECK(manifest.find(R"({"method": "GET", "path": "/greet/{name}")") != std::string_view::npos);
  CHECK(relay::kTarget == "hello");
}
