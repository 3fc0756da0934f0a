#pragma once
// What the calling thread serves inside a plugin hook: the plugin (by its context), the
// request's id, trace and deadline. Set by whoever runs a hook (dispatch, calls, event
// deliveries, a runner's calls into the host); read by call(), publish() and the log lines, so
// they propagate the request without the plugin passing it.

#include <keel/plugin.h>

#include <atomic>
#include <chrono>
#include <string_view>

#include "observability/log.hpp"

namespace keel::host::abi {

struct CurrentRequest {
  const keel_host_ctx* ctx = nullptr;  ///< the plugin whose hook runs
  std::chrono::steady_clock::time_point deadline;
  std::string_view request_id;
  std::string_view traceparent;
  /// Set (by another thread) once nobody waits for the answer any more: the isolated runner that
  /// asked has died. Statements it started stop at once. nullptr: only the deadline ends them.
  const std::atomic<bool>* abandoned = nullptr;
};

/// While alive, the calling thread serves `value` (the views must outlive the scope), and its
/// log lines carry the request id and trace. Nests.
class CurrentRequestScope {
 public:
  explicit CurrentRequestScope(const CurrentRequest& value) noexcept;
  ~CurrentRequestScope();
  CurrentRequestScope(const CurrentRequestScope&) = delete;
  CurrentRequestScope& operator=(const CurrentRequestScope&) = delete;

 private:
  CurrentRequest value_;
  const CurrentRequest* saved_;
  observability::LogScope log_scope_;
};

/// The hook the calling thread serves, or nullptr outside hooks.
[[nodiscard]] const CurrentRequest* current_request() noexcept;
/// The request id of the request the calling thread is serving inside a plugin hook, or empty.
[[nodiscard]] std::string_view current_request_id() noexcept;
/// The traceparent of the span the calling thread is serving inside a plugin hook, or empty.
[[nodiscard]] std::string_view current_traceparent() noexcept;

/// `args`, carrying the calling thread's current span as traceparent when the plugin gave none:
/// an event published while serving a request or an event continues that trace.
[[nodiscard]] inline keel_publish_args with_current_trace(const keel_publish_args& args) noexcept {
  keel_publish_args out = args;
  if (out.traceparent.len == 0) {
    const auto tp = current_traceparent();
    out.traceparent = {tp.data(), tp.size()};
  }
  return out;
}

}  // namespace keel::host::abi
