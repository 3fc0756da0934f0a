#pragma once
// keel::sdk::Host: the plugin's handle on host capabilities (log, publish, call, extensions,
// config). One per plugin instance, owned by the SDK and valid until the instance is
// destroyed. Every member is const, noexcept and callable from any thread; calls to a host
// member the running host lacks return StatusCode::kUnsupported instead of crashing.

#include <keel/plugin.h>
#include <keel/sdk/detail/call.hpp>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/http.hpp>
#include <keel/sdk/log.hpp>
#include <keel/sdk/status.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace keel::sdk {
namespace detail {
struct Instance;
}  // namespace detail

/// Host capabilities available to a plugin. Passed by reference to the plugin's constructor;
/// keep the reference, it outlives the plugin object.
class Host {
 public:
  Host(const Host&) = delete;
  Host& operator=(const Host&) = delete;

  /// Writes one line to the host logger "plugin.<name>". Style: lowercase phrase then
  /// key=value fields, e.g. "order rejected id=42 req=ab12". Dropped if the host lacks log.
  void log(LogLevel level, std::string_view message) const noexcept {
    ref_.log(static_cast<keel_log_level>(level), message);
  }
  void trace(std::string_view message) const noexcept { log(LogLevel::kTrace, message); }
  void debug(std::string_view message) const noexcept { log(LogLevel::kDebug, message); }
  void info(std::string_view message) const noexcept { log(LogLevel::kInfo, message); }
  void warn(std::string_view message) const noexcept { log(LogLevel::kWarn, message); }
  void error(std::string_view message) const noexcept { log(LogLevel::kError, message); }
  void critical(std::string_view message) const noexcept { log(LogLevel::kCritical, message); }

  /// True when a line at `level` would be recorded; use it to skip expensive formatting.
  /// Assumes true when the host cannot tell.
  [[nodiscard]] bool log_enabled(LogLevel level) const noexcept {
    if (!KEEL_HAS_FN(ref_.api, keel_host_api, log_level)) return true;
    return static_cast<std::int32_t>(level) >= ref_.api->log_level(ref_.ctx);
  }

  /// Publishes an event; delivery to subscribers is asynchronous. The topic must be listed in
  /// the manifest's "events.publishes". The host copies everything before returning.
  /// @return ok; kPermissionDenied, kInvalidArgument, kBusy, kTooLarge, kUnavailable (before
  /// start or after stop), kUnsupported when the host lacks publish.
  Status publish(std::string_view topic, std::string_view payload, std::string_view content_type = kApplicationJson,
                 TraceContext trace = {}) const noexcept {
    if (!KEEL_HAS_FN(ref_.api, keel_host_api, publish)) return detail::make_status(KEEL_ERR_UNSUPPORTED, "host lacks publish");
    keel_publish_args args{};
    args.struct_size = static_cast<std::uint32_t>(sizeof(keel_publish_args));
    args.flags = 0;
    args.topic = detail::lend(topic);
    args.payload = detail::lend(payload);
    args.content_type = detail::lend(content_type);
    args.traceparent = detail::lend(trace.traceparent);
    args.tracestate = detail::lend(trace.tracestate);
    const keel_status rc = ref_.api->publish(ref_.ctx, &args);
    if (rc >= 0) return {};
    return refused("publish refused topic=", topic, rc);
  }

  /// Sends `request` to another plugin through the host and returns at once. `on_complete` is
  /// invoked exactly once, later, on a host thread, as on_complete(Status, const CallResponse&)
  /// — but only if call() returns ok; otherwise it is destroyed without being invoked. The
  /// handler may be move-only (e.g. capture a Responder); exceptions it throws are logged.
  /// Needs "call:<target>" in the manifest permissions.
  /// @return ok when dispatched; kNotFound (target not loaded), kPermissionDenied,
  /// kInvalidArgument, kBusy, kUnavailable, kUnsupported when the host lacks call.
  /// @warning on_complete may run concurrently with the code after call(); never inside it.
  template <class F>
  Status call(const CallRequest& request, F&& on_complete) const noexcept {
    using Handler = std::decay_t<F>;
    static_assert(std::is_invocable_v<Handler&, Status, const CallResponse&>,
                  "Host::call: on_complete must be callable as f(keel::sdk::Status, const keel::sdk::CallResponse&)");
    if (!KEEL_HAS_FN(ref_.api, keel_host_api, call)) return detail::make_status(KEEL_ERR_UNSUPPORTED, "host lacks call");
    try {
      std::unique_ptr<detail::CallState<Handler>> state{
          new detail::CallState<Handler>{ref_, Handler(std::forward<F>(on_complete))}};
      const detail::KvBuffer headers{request.headers};
      const auto timeout_ms = std::clamp<std::chrono::milliseconds::rep>(request.timeout.count(), 0, UINT32_MAX);
      keel_call_args args{};
      args.struct_size = static_cast<std::uint32_t>(sizeof(keel_call_args));
      args.timeout_ms = static_cast<std::uint32_t>(timeout_ms);
      args.target_plugin = detail::lend(request.target);
      args.method = detail::lend(request.method);
      args.path = detail::lend(request.path);
      args.headers = headers.list();
      args.body = detail::lend(request.body);
      args.traceparent = detail::lend(request.trace.traceparent);
      args.tracestate = detail::lend(request.trace.tracestate);
      const keel_status rc = ref_.api->call(ref_.ctx, &args, &detail::call_complete<Handler>, state.get());
      if (rc < 0) return refused("call refused target=", request.target, rc);  // state freed here
      // The host owns the state now and frees it through call_complete, possibly already.
      static_cast<void>(state.release());
      return {};
    } catch (...) {
      return detail::make_status(KEEL_ERR_INTERNAL, "call failed: could not store the completion handler");
    }
  }

  /// Looks up an optional host capability by id, e.g. "keel.storage/1", and stores its
  /// function table in `out` (valid until the plugin is destroyed). Needs "ext:<id>" in the
  /// manifest permissions.
  /// @return ok; kNotFound when the host does not offer it (or the permission is missing);
  /// kUnsupported when the host lacks get_extension. `out` is nullptr on failure.
  Status get_extension(std::string_view id, const void*& out) const noexcept {
    out = nullptr;
    if (!KEEL_HAS_FN(ref_.api, keel_host_api, get_extension)) {
      return detail::make_status(KEEL_ERR_UNSUPPORTED, "host lacks get_extension");
    }
    try {
      const std::string nul_terminated{id};
      out = ref_.api->get_extension(ref_.ctx, nul_terminated.c_str());
      if (out != nullptr) return {};
      return refused("extension not offered id=", id, KEEL_ERR_NOT_FOUND);
    } catch (...) {
      return detail::make_status(KEEL_ERR_INTERNAL, "get_extension failed: out of memory");
    }
  }

  /// The plugin's context, for the functions of an extension table from get_extension (they
  /// take it as their first argument). Opaque: never dereference it.
  [[nodiscard]] keel_host_ctx* ctx_for_extensions() const noexcept { return ref_.ctx; }

  /// The plugin's config table as JSON text ("{}" when the host config has none).
  [[nodiscard]] std::string_view config_json() const noexcept { return config_; }
  /// ABI major of the running host.
  [[nodiscard]] std::uint32_t abi_major() const noexcept { return KEEL_ABI_MAJOR(ref_.api->abi_version); }
  /// ABI minor of the running host; members newer than this are reported as kUnsupported.
  [[nodiscard]] std::uint32_t abi_minor() const noexcept { return KEEL_ABI_MINOR(ref_.api->abi_version); }

 private:
  friend struct detail::Instance;
  Host(detail::HostRef ref, std::string config_json) noexcept : ref_{ref}, config_{std::move(config_json)} {}

  static Status refused(std::string_view what, std::string_view subject, keel_status rc) noexcept {
    try {
      std::string message{what};
      message.append(subject);
      return detail::make_status(rc, message);
    } catch (...) {
      return detail::make_status(rc, {});
    }
  }

  detail::HostRef ref_;
  std::string config_;
};

}  // namespace keel::sdk
