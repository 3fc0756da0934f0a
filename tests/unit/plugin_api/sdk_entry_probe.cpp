// A complete plugin built with KEEL_PLUGIN as a MODULE (keel_sdk_entry_probe), so ctest can
// check what the macro really produces in a shared object: exactly one exported dynamic symbol,
// keel_plugin_entry_v1, and the manifest in the .keel_manifest section, readable without
// loading the file (check_plugin_exports.cmake). Not part of keel_unit_tests: a test binary may
// define keel_plugin_entry_v1 at most once.

#include <keel/sdk/plugin.hpp>

#include <atomic>
#include <cstdint>
#include <string>

namespace {

class EchoProbe final : public keel::sdk::Plugin {
 public:
  explicit EchoProbe(keel::sdk::Host& host) : host_{host} {}

  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder responder) override {
    requests_.fetch_add(1, std::memory_order_relaxed);
    const std::string_view type = req.header("content-type").value_or(keel::sdk::kTextPlain);
    return responder.respond(200, req.body(), type, {{"x-echo-route", req.route_index() == 0 ? "echo" : "other"}});
  }

  keel::sdk::Status on_event(const keel::sdk::Event& event) override {
    return host_.publish("echo_probe.echoed", event.payload(), event.content_type(), event.trace());
  }

  keel::sdk::Health health() override {
    return requests_.load(std::memory_order_relaxed) == 0 ? keel::sdk::Health::pass("idle")
                                                          : keel::sdk::Health::pass("serving");
  }

 private:
  keel::sdk::Host& host_;
  std::atomic<std::uint64_t> requests_{0};
};

}  // namespace

KEEL_PLUGIN(EchoProbe, R"json({
  "name": "echo_probe", "version": "1.0.0", "abi": "1.0",
  "description": "echoes the request body; checks what KEEL_PLUGIN exports",
  "routes": [{"method": "POST", "path": "/echo", "summary": "echo the body", "blocking": false}],
  "concurrency": "parallel",
  "events": {"publishes": ["echo_probe.echoed"], "subscribes": ["orders.*"]},
  "permissions": [],
  "config": {}
})json");
