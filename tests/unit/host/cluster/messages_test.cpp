// What travels between hosts (docs/cluster.md "Messages"): forwarded requests and answers in the
// runner's wire format; a message of another version or a malformed one is refused, not guessed.
#include "cluster/messages.hpp"

#include <catch2/catch.hpp>

namespace kc = keel::host::cluster;
namespace http = keel::host::http;

TEST_CASE("cluster messages: a forwarded request keeps every field", "[cluster]") {
  kc::ForwardedRequest out;
  out.context = {"req-7", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 123456789};
  out.origin = "entry";
  out.caller = "orders";
  out.method = "POST";
  out.target = "/api/orders/42?x=1";
  out.headers = {{"Accept", "application/json"}, {"X-Empty", ""}};
  out.body = std::string_view("a\0b", 3);
  out.remote_address = "10.0.0.9:5555";
  out.tracestate = "k=v";
  const auto data = kc::encode_forwarded_request(out);
  kc::ForwardedRequest f;
  std::string error;
  REQUIRE(kc::decode_forwarded_request(data, f, error));
  CHECK(f.context.request_id == "req-7");
  CHECK(f.context.traceparent == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK(f.context.remaining_ns == 123456789);
  CHECK(f.origin == "entry");
  CHECK(f.caller == "orders");
  CHECK(f.method == "POST");
  CHECK(f.target == "/api/orders/42?x=1");
  CHECK(f.remote_address == "10.0.0.9:5555");
  CHECK(f.tracestate == "k=v");
  REQUIRE(f.headers.size() == 2);
  CHECK(f.headers[1].name == "X-Empty");
  CHECK(f.body == std::string_view("a\0b", 3));

  // Every truncation is refused.
  for (std::size_t n = 0; n < data.size(); ++n) {
    CAPTURE(n);
    CHECK_FALSE(kc::decode_forwarded_request(std::string_view(data).substr(0, n), f, error));
  }
  auto other = data;
  other[0] = 2;  // another version
  CHECK_FALSE(kc::decode_forwarded_request(other, f, error));
  CHECK(error.find("cluster wire version 2") != std::string::npos);
}

TEST_CASE("cluster messages: a forwarded answer keeps status, fields and body", "[cluster]") {
  http::Response res;
  res.status = 201;
  res.content_type = "application/json";
  res.body = R"({"id":1})";
  res.headers = {{"Location", "/api/orders/1"}};
  const auto data = kc::encode_forwarded_response(res, {{"Vary", "Origin"}}, "host-b");
  http::Response back;
  std::string node, error;
  REQUIRE(kc::decode_forwarded_response(data, back, node, error));
  CHECK(node == "host-b");
  CHECK(back.status == 201);
  CHECK(back.content_type == "application/json");
  CHECK(back.body == R"({"id":1})");
  CHECK(back.headers == std::vector<std::pair<std::string, std::string>>{{"Location", "/api/orders/1"}, {"Vary", "Origin"}});
  CHECK_FALSE(kc::decode_forwarded_response(std::string_view(data).substr(0, data.size() - 1), back, node, error));
}

TEST_CASE("cluster messages: fields a client could not have sent are refused", "[cluster][attack]") {
  const auto refused = [](auto&& change, std::string_view why) {
    kc::ForwardedRequest out;
    out.context = {"req-8", {}, 1000};
    out.origin = "entry";
    out.method = "GET";
    out.target = "/api/x";
    out.headers = {{"Accept", "*/*"}};
    change(out);
    const auto data = kc::encode_forwarded_request(out);
    kc::ForwardedRequest f;
    std::string error;
    CHECK_FALSE(kc::decode_forwarded_request(data, f, error));
    CHECK(error == why);
  };
  refused([](kc::ForwardedRequest& f) { f.method = "GET /x"; }, "the method is not an HTTP token");
  refused([](kc::ForwardedRequest& f) { f.target = "/api/x\n[admin] forged"; }, "the target is not an origin-form path");
  refused([](kc::ForwardedRequest& f) { f.target = "http://elsewhere/"; }, "the target is not an origin-form path");
  refused([](kc::ForwardedRequest& f) { f.caller = "Mallory\n"; }, "the calling plugin's name is not a plugin name");
  refused([](kc::ForwardedRequest& f) { f.headers = {{"X-A", "1\r\nX-B: 2"}}; }, "a header field value holds CR, LF or NUL");
  refused([](kc::ForwardedRequest& f) { f.headers = {{"X A", "1"}}; }, "a header field name is not an HTTP token");
  refused([](kc::ForwardedRequest& f) { f.remote_address = "1.2.3.4\t"; }, "the client address holds invisible characters");
}
