#pragma once
// The ABI's opaque keel_host_ctx, completed: what a host function needs to find from the
// context a plugin passes back. One per plugin, owned by the plugin host.

#include <keel/plugin.h>

#include <chrono>
#include <string_view>

#include "observability/log.hpp"

namespace keel::host::plugins {
struct Plugin;
}
namespace keel::host::storage {
class Database;
}
namespace keel::host::events {
class Bus;
}
namespace keel::host::isolation {
class Runner;
}
namespace keel::host::plugins {
/// What a plugin hook running on this thread serves, so call() and publish() propagate the
/// request's id, trace and deadline without the plugin passing them.
struct CurrentRequest {
  const Plugin* plugin = nullptr;
  std::chrono::steady_clock::time_point deadline;
  std::string_view request_id;
  std::string_view traceparent;
};

/// While alive, the calling thread serves `value` for `value.plugin`: what call() and publish()
/// propagate, and what its log lines carry (the views must outlive the scope). Nests.
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
}  // namespace keel::host::plugins

struct keel_host_ctx {
  keel::host::plugins::Plugin* plugin = nullptr;
  keel::host::storage::Database* storage = nullptr;  ///< the plugin's database; nullptr without ext:keel.storage/1
  keel::host::events::Bus* bus = nullptr;             ///< where the plugin's events go
  keel::host::isolation::Runner* runner = nullptr;    ///< the plugin's runner process (isolation = "process")
  std::string_view name;                              ///< the plugin's manifest name
};
