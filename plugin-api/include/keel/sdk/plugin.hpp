#pragma once
// The header plugin authors include: keel::sdk::Plugin (the base class with the hooks the host
// calls), keel::sdk::Health, and KEEL_PLUGIN, which declares the manifest and the one exported
// entry point. Authors see only C++ types; the C ABI stays inside keel/sdk/detail/.
//
//   class Greeter final : public keel::sdk::Plugin {
//    public:
//     explicit Greeter(keel::sdk::Host& host) : host_{host} {}
//     keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override {
//       return res.respond(200, "hello " + std::string{req.path_param("name").value_or("world")});
//     }
//    private:
//     keel::sdk::Host& host_;
//   };
//   KEEL_PLUGIN(Greeter, R"json({"name": "greeter", "version": "1.0.0", "abi": "1.0",
//                                "routes": [{"method": "GET", "path": "/greet/{name}"}]})json");
//
// Build plugins with -fvisibility=hidden -fvisibility-inlines-hidden (keel_add_plugin does) so
// that keel_plugin_entry_v1 is the only exported symbol.

#include <keel/plugin.h>
#include <keel/sdk/event.hpp>
#include <keel/sdk/host.hpp>
#include <keel/sdk/http.hpp>
#include <keel/sdk/log.hpp>
#include <keel/sdk/status.hpp>

#include <cstdint>
#include <string>
#include <utility>

namespace keel::sdk {

/// Health states reported by Plugin::health (IETF health-check draft names).
enum class HealthState : std::int32_t {
  kPass = KEEL_HEALTH_PASS,  ///< fully working
  kWarn = KEEL_HEALTH_WARN,  ///< degraded but serving
  kFail = KEEL_HEALTH_FAIL,  ///< not serving correctly
};

/// A health report: state plus a short explanation for operators.
struct Health {
  HealthState state = HealthState::kPass;
  std::string detail{};

  static Health pass(std::string detail = {}) { return Health{HealthState::kPass, std::move(detail)}; }
  static Health warn(std::string detail) { return Health{HealthState::kWarn, std::move(detail)}; }
  static Health fail(std::string detail) { return Health{HealthState::kFail, std::move(detail)}; }
};

/// Base class of every C++ plugin. Subclass it, give the subclass a constructor taking
/// `keel::sdk::Host&` (or a default constructor), override the hooks you need and declare it
/// with KEEL_PLUGIN. The constructor runs inside the host's create(): validate config there and
/// throw keel::sdk::Error(Status::invalid_argument(...)) to refuse to load.
/// Any exception escaping a hook is caught by the SDK, logged once, and reported to the host as
/// StatusCode::kInternal (or the Status carried by keel::sdk::Error).
class Plugin {
 public:
  Plugin() = default;
  Plugin(const Plugin&) = delete;
  Plugin& operator=(const Plugin&) = delete;
  /// Runs inside the host's destroy(); join every thread the plugin started before it returns.
  virtual ~Plugin() = default;

  /// All plugins are created: calls to other plugins and publish() work from here on.
  /// An error aborts host startup. Runs on the host's control thread.
  virtual Status start() { return {}; }

  /// No new requests or events follow; finish or abandon pending work (complete or drop
  /// responders, join threads). An error is logged; destruction still follows.
  /// Runs on the host's control thread.
  virtual Status stop() { return {}; }

  /// Handles one request for a route declared in the manifest (req.route_index() tells which).
  /// Answer now with `responder.respond(...)`, or move the responder elsewhere and answer later
  /// from any thread. Returning an error without having responded makes the host answer with
  /// the mapped HTTP status (400/403/404/413/500/501/503/504).
  /// @warning Runs on host threads, concurrently with itself and on_event unless the manifest
  /// says "concurrency": "serialized". Routes not marked "blocking" run on an I/O thread:
  /// do not block there. `req` is valid only until this returns.
  virtual Status on_request(const Request& req, Responder responder) {
    static_cast<void>(req);
    static_cast<void>(responder);
    return Status::unsupported("plugin declares no request handler");
  }

  /// Handles one event matching a manifest "events.subscribes" pattern. An error makes the
  /// host deliver it again later (Event::delivery_attempt() grows), then dead-letter it.
  /// @warning Runs on host threads, concurrently with on_request unless "serialized";
  /// events reach this plugin one at a time. `event` is valid only until this returns.
  virtual Status on_event(const Event& event) {
    static_cast<void>(event);
    return Status::unsupported("plugin declares no event handler");
  }

  /// Reports health for the host's health endpoint. Must be quick and must not block.
  /// @warning Runs on a host thread, concurrently with on_request and on_event unless
  /// "serialized", never concurrently with another health().
  virtual Health health() { return Health::pass(); }
};

}  // namespace keel::sdk

#define KEEL_SDK_PLUGIN_HPP_INCLUDED_ 1
#include <keel/sdk/detail/trampolines.hpp>

/// Declares the plugin: puts `manifest_json_literal` into the ".keel_manifest" ELF section
/// (readable without loading the plugin) and defines the single exported entry point
/// keel_plugin_entry_v1, whose table routes every hook through noexcept trampolines to
/// `Class`. Use once per plugin, at global scope, in one .cpp file, followed by a semicolon.
/// @param Class a keel::sdk::Plugin subclass constructible from keel::sdk::Host& (or default).
/// @param manifest_json_literal a string literal holding the manifest JSON (docs/abi.md).
#define KEEL_PLUGIN(Class, manifest_json_literal)                                                    \
  KEEL_PLUGIN_MANIFEST(manifest_json_literal);                                                        \
  extern "C" KEEL_EXPORT const keel_plugin* keel_plugin_entry_v1(void) {                              \
    static constexpr keel_plugin keel_plugin_table = ::keel::sdk::detail::plugin_table<Class>(keel_manifest_data); \
    return &keel_plugin_table;                                                                        \
  }                                                                                                   \
  static_assert(::keel::sdk::detail::is_json_object_text(manifest_json_literal),                     \
                "KEEL_PLUGIN: the manifest must be a JSON object literal")
