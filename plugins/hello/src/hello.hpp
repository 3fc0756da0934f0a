#pragma once
// hello: the minimal Keel example plugin. GET /greet/{name}[?greeting=...] answers a JSON
// greeting, POST /echo returns the request body with its Content-Type. Header-only, so
// tests/unit/plugins/hello drives the class through FakeHost without linking anything;
// plugin.cpp only declares it.
// Thread-safety: the configuration is read once in the constructor and never written again,
// so on_request runs concurrently with itself without locks.

#include <keel/sdk/json.hpp>
#include <keel/sdk/plugin.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

/// The manifest (docs/abi.md section 7), for KEEL_PLUGIN in plugin.cpp and for the tests. One raw
/// string per line so the macro can span lines. The order of "routes" is hello::Route's order.
#define HELLO_MANIFEST                                                                                               \
  R"({"name": "hello", "version": "0.1.0", "abi": "1.0",)"                                                           \
  R"( "description": "minimal example plugin: greets by name and echoes request bodies",)"                           \
  R"( "routes": [)"                                                                                                  \
  R"(   {"method": "GET", "path": "/greet/{name}", "summary": "JSON greeting for {name}",)"                          \
  R"(    "query": [{"name": "greeting", "type": "string",)"                                                          \
  R"(               "description": "word put before the name in this answer, instead of the configured one"}],)"     \
  R"(    "responses": {"200": {"description": "the greeting", "schema": {)"                                          \
  R"(      "type": "object", "required": ["greeting"], "additionalProperties": false,)"                              \
  R"(      "properties": {"greeting": {"type": "string", "examples": ["Hello, Ada!"]}}}}}},)"                        \
  R"(   {"method": "POST", "path": "/echo", "summary": "the request body, with its Content-Type",)"                  \
  R"(    "request": {"content_type": "application/json", "schema": {"description": "any JSON value"},)"              \
  R"(                "description": "the body to echo; any media type is accepted and answered unchanged"},)"        \
  R"(    "responses": {"200": {"content_type": "application/json", "schema": {"description": "the request body"},)"  \
  R"(                          "description": "the request body, with its Content-Type, if it had one"}}}],)"         \
  R"( "config": {)"                                                                                                  \
  R"(   "greeting": {"type": "string", "default": "Hello", "description": "word put before the name"}}})"

namespace hello {

/// Index of each route in the manifest's "routes" array (keel::sdk::Request::route_index()).
enum Route : std::uint32_t { kGreet = 0, kEcho = 1 };

/// The body of GET /greet/{name}: {"greeting":"<greeting>, <name>!"}, both parts JSON-escaped.
[[nodiscard]] inline std::string greeting_json(std::string_view greeting, std::string_view name) {
  std::string body;
  body.reserve(greeting.size() + name.size() + 20);
  body += R"({"greeting":")";
  keel::sdk::append_json_escaped(body, greeting);
  body += ", ";
  keel::sdk::append_json_escaped(body, name);
  body += R"(!"})";
  return body;
}

class HelloPlugin final : public keel::sdk::Plugin {
 public:
  /// Reads config key "greeting" (string, default "Hello"). Refuses to load when the config
  /// is not a JSON object or "greeting" is not a string.
  explicit HelloPlugin(keel::sdk::Host& host) : greeting_{read_greeting(host.config_json())} {}

  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override {
    switch (req.route_index()) {
      case kGreet: {
        const auto name = req.path_param("name");
        if (!name) return keel::sdk::Status::invalid_argument("greet: missing path parameter name");
        // ?greeting=Hi overrides the configured word for this answer; an empty value does not.
        const auto greeting = req.query("greeting").value_or(std::string_view{});
        return res.json(200, greeting_json(greeting.empty() ? std::string_view{greeting_} : greeting, *name));
      }
      case kEcho:
        // No Content-Type in the request means none in the response (an empty content type).
        return res.respond(200, req.body(), req.header("content-type").value_or(std::string_view{}));
      default:
        return keel::sdk::Status::not_found("no handler for this route");
    }
  }

  /// The greeting in use, for tests.
  [[nodiscard]] const std::string& greeting() const noexcept { return greeting_; }

 private:
  // Refuses (the message names the key) when the config is not an object or greeting not a string.
  static std::string read_greeting(std::string_view config_json) {
    auto config = keel::sdk::JsonReader::parse(config_json, "config");
    auto greeting = config.get<std::string>("greeting", "Hello");
    if (!config.ok()) throw keel::sdk::Error{config.status()};
    return greeting;
  }

  const std::string greeting_;
};

}  // namespace hello
