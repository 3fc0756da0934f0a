#pragma once
// relay: shows a plugin-to-plugin call. GET /greet/{name} asks hello for GET /greet/{name}
// through Host::call, without blocking, and answers {"relayed":<hello's JSON>,"via":"relay"}
// from the call's completion, or 502 with the standard error body when the call fails.
// Header-only, so tests/unit/plugins/relay drives the class through FakeHost without linking
// anything; plugin.cpp only declares it.
// Thread-safety: no mutable state; each request's responder travels with its call.

#include <keel/sdk/plugin.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

/// The manifest (docs/abi.md section 7), for KEEL_PLUGIN in plugin.cpp and for the tests. One raw
/// string per line so the macro can span lines. The order of "routes" is relay::Route's order.
#define RELAY_MANIFEST                                                                               \
  R"({"name": "relay", "version": "0.1.0", "abi": "1.0",)"                                           \
  R"( "description": "example of a plugin-to-plugin call: relays hello's greeting",)"                \
  R"( "dependencies": [{"name": "hello", "version": ">=0.1.0 <1.0.0"}],)"                            \
  R"( "routes": [)"                                                                                  \
  R"(   {"method": "GET", "path": "/greet/{name}", "summary": "hello's greeting, fetched with call"}],)" \
  R"( "permissions": ["call:hello"]})"

namespace relay {

/// Index of each route in the manifest's "routes" array.
enum Route : std::uint32_t { kGreet = 0 };

/// The plugin relay calls, and the route it calls there.
inline constexpr std::string_view kTarget = "hello";

/// Percent-encodes one path segment: everything but RFC 3986 unreserved characters. hello
/// receives {name} percent-decoded, so relay must encode it again before it becomes a path.
[[nodiscard]] inline std::string encode_segment(std::string_view segment) {
  constexpr std::string_view kHex = "0123456789ABCDEF";
  std::string out;
  out.reserve(segment.size());
  for (const char ch : segment) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                            c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xF];
    }
  }
  return out;
}

/// Keel's standard error body, {"error":{"code":"...","message":"..."}}. `code` and `message`
/// are relay's own ASCII text; quotes, backslashes and control characters are still escaped.
[[nodiscard]] inline std::string error_json(std::string_view code, std::string_view message) {
  std::string out = R"({"error":{"code":")";
  const auto append = [&out](std::string_view text) {
    for (const char c : text) {
      if (c == '"' || c == '\\') {
        out += '\\';
        out += c;
      } else if (static_cast<unsigned char>(c) < 0x20) {
        out += ' ';
      } else {
        out += c;
      }
    }
  };
  append(code);
  out += R"(","message":")";
  append(message);
  out += R"("}})";
  return out;
}

/// relay's answer: {"relayed":<hello_json>,"via":"relay"}; `hello_json` is embedded verbatim.
[[nodiscard]] inline std::string relayed_json(std::string_view hello_json) {
  std::string out = R"({"relayed":)";
  out.append(hello_json);
  out += R"(,"via":"relay"})";
  return out;
}

/// True for "application/json", with or without parameters, in any case.
[[nodiscard]] inline bool is_json_media_type(std::string_view content_type) noexcept {
  constexpr std::string_view kJson = "application/json";
  if (content_type.size() < kJson.size()) return false;
  for (std::size_t i = 0; i < kJson.size(); ++i) {
    const char c = content_type[i];
    const char lower = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    if (lower != kJson[i]) return false;
  }
  const std::string_view rest = content_type.substr(kJson.size());
  return rest.empty() || rest.front() == ';' || rest.front() == ' ';
}

class RelayPlugin final : public keel::sdk::Plugin {
 public:
  explicit RelayPlugin(keel::sdk::Host& host) : host_{host} {}

  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override {
    if (req.route_index() != kGreet) return keel::sdk::Status::not_found("no handler for this route");
    const auto name = req.path_param("name");
    if (!name) return keel::sdk::Status::invalid_argument("greet: missing path parameter name");

    const std::string path = "/greet/" + encode_segment(*name);
    keel::sdk::CallRequest call;
    call.target = kTarget;
    call.method = "GET";
    call.path = path;
    call.trace = req.trace();

    // Host::call destroys the handler without running it when it refuses the call, so the
    // request's state is shared: whichever of the two paths below answers, it answers once.
    auto pending = std::make_shared<Pending>(Pending{std::move(res), std::string{req.request_id()}});
    const keel::sdk::Status sent =
        host_.call(call, [this, pending](const keel::sdk::Status& result, const keel::sdk::CallResponse& response) {
          complete(*pending, result, response);
        });
    if (sent.ok()) return {};
    return fail(*pending, "call refused", sent);
  }

 private:
  // What a request needs once hello has answered.
  struct Pending {
    keel::sdk::Responder responder;
    std::string req_id;
  };

  // Runs on a host thread once hello answered or the call failed.
  void complete(const Pending& pending, const keel::sdk::Status& result, const keel::sdk::CallResponse& response) const {
    if (!result.ok()) {
      static_cast<void>(fail(pending, "call failed", result));
      return;
    }
    if (response.status() < 200 || response.status() > 299) {
      const std::string message = "hello answered status=" + std::to_string(response.status());
      static_cast<void>(reject(pending, message));
      return;
    }
    if (!is_json_media_type(response.content_type())) {
      static_cast<void>(reject(pending, "hello answered a body that is not application/json"));
      return;
    }
    // If the client is gone the host refuses the response; there is no one left to tell.
    static_cast<void>(pending.responder.json(200, relayed_json(response.body())));
  }

  keel::sdk::Status fail(const Pending& pending, std::string_view what, const keel::sdk::Status& status) const {
    std::string message{what};
    message += " target=hello status=";
    message += keel::sdk::status_name(status.code());
    return reject(pending, message);
  }

  keel::sdk::Status reject(const Pending& pending, std::string_view message) const {
    std::string line{message};
    line += " req=";
    line += pending.req_id;
    host_.warn(line);
    return pending.responder.json(502, error_json("bad_gateway", message));
  }

  keel::sdk::Host& host_;
};

}  // namespace relay
