#pragma once
// The ABI's opaque keel_host_ctx, completed: what a host function needs to find from the
// context a plugin passes back. One per plugin, owned by the plugin host.

#include <keel/plugin.h>

#include <string_view>

namespace keel::host::plugins {
struct Plugin;
}
namespace keel::host::storage {
class Database;
}
namespace keel::host::events {
class Bus;
}
namespace keel::host::plugins {
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
  std::string_view name;                              ///< the plugin's manifest name
};
