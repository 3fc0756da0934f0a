#pragma once
// How the SDK turns C++ failures into ABI status codes: the catch-all used by every trampoline
// (exception -> status + one log line) and the log line for a hook that returned an error.
// Everything here is noexcept; nothing may escape into the host.

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/status.hpp>

#include <exception>
#include <string_view>

namespace keel::sdk::detail {

/// The level a request or event hook's failure is logged at: warn when the host answers it with
/// a 5xx (the operator must see why), info for a 4xx (the client's mistake; its message still
/// reaches the log at the default level).
[[nodiscard]] constexpr keel_log_level failure_level(const Status& status) noexcept {
  return http_status(status.code()) >= 500 ? KEEL_LOG_WARN : KEEL_LOG_INFO;
}

/// Maps the exception being handled to a status and logs one line through the host.
/// keel::sdk::Error keeps its status and logs at warn (or, for a request or event hook,
/// `per_request`, at failure_level()); anything else becomes KEEL_ERR_INTERNAL and logs at
/// error. Call it only from inside a catch block.
/// @param hook   the hook or callback that threw, e.g. "on_request".
/// @param req_id request id to add as req=..., or empty.
[[nodiscard]] inline keel_status status_from_exception(const HostRef& host, std::string_view hook,
                                                       std::string_view req_id = {}, bool per_request = false) noexcept {
  const std::string_view req_key = req_id.empty() ? std::string_view{} : std::string_view{" req="};
  try {
    throw;
  } catch (const Error& e) {
    log_parts(host, per_request ? failure_level(e.status()) : KEEL_LOG_WARN,
              {"hook failed hook=", hook, req_key, req_id, " status=", status_name(e.status().code()),
               " message=", e.status().message()});
    return to_c(e.status());
  } catch (const std::exception& e) {
    log_parts(host, KEEL_LOG_ERROR, {"uncaught exception hook=", hook, req_key, req_id, " what=", e.what()});
    return KEEL_ERR_INTERNAL;
  } catch (...) {
    log_parts(host, KEEL_LOG_ERROR, {"uncaught exception hook=", hook, req_key, req_id, " what=unknown"});
    return KEEL_ERR_INTERNAL;
  }
}

/// Logs a hook's non-success Status (its message never crosses the ABI otherwise) and returns
/// its ABI code. Success passes through silently.
/// @param level failure_level() for request and event hooks, warn for lifecycle hooks.
[[nodiscard]] inline keel_status report(const HostRef& host, std::string_view hook, const Status& status,
                                        keel_log_level level, std::string_view req_id = {}) noexcept {
  if (!status.ok()) {
    const std::string_view req_key = req_id.empty() ? std::string_view{} : std::string_view{" req="};
    log_parts(host, level,
              {"hook failed hook=", hook, req_key, req_id, " status=", status_name(status.code()), " message=",
               status.message()});
  }
  return to_c(status);
}

}  // namespace keel::sdk::detail
