#pragma once
// keel::sdk::Event: a read-only view of one event delivered to on_event.
// @warning Valid only while on_event runs; copy what you keep.

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/http.hpp>

#include <chrono>
#include <cstdint>
#include <string_view>

namespace keel::sdk {
namespace detail {
struct EventAccess;
}  // namespace detail

/// One event whose topic matched a manifest "events.subscribes" pattern.
/// @warning Valid only during on_event; not copyable, so it cannot be captured by mistake.
class Event {
 public:
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  /// Topic it was published under, e.g. "orders.placed".
  [[nodiscard]] std::string_view topic() const noexcept { return bytes(KEEL_SDK_FIELD_OR(e_, keel_event, topic, keel_host_bytes{})); }
  /// Opaque payload bytes.
  [[nodiscard]] std::string_view payload() const noexcept { return bytes(KEEL_SDK_FIELD_OR(e_, keel_event, payload, keel_host_bytes{})); }
  /// Media type given by the publisher, e.g. "application/json".
  [[nodiscard]] std::string_view content_type() const noexcept {
    return bytes(KEEL_SDK_FIELD_OR(e_, keel_event, content_type, keel_host_bytes{}));
  }
  /// Unique per published event and stable across redeliveries: deduplicate on it.
  [[nodiscard]] std::string_view event_id() const noexcept { return bytes(KEEL_SDK_FIELD_OR(e_, keel_event, event_id, keel_host_bytes{})); }
  /// Name of the plugin that published it.
  [[nodiscard]] std::string_view publisher() const noexcept { return bytes(KEEL_SDK_FIELD_OR(e_, keel_event, publisher, keel_host_bytes{})); }
  /// 1 on first delivery, more when a durable topic redelivers after a failure.
  [[nodiscard]] std::uint32_t delivery_attempt() const noexcept {
    return KEEL_SDK_FIELD_OR(e_, keel_event, delivery_attempt, std::uint32_t{1});
  }
  /// Publish time (UTC).
  [[nodiscard]] std::chrono::system_clock::time_point timestamp() const noexcept {
    const std::int64_t ns = KEEL_SDK_FIELD_OR(e_, keel_event, timestamp_unix_ns, std::int64_t{0});
    return std::chrono::system_clock::time_point{
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds{ns})};
  }
  /// Trace context given at publish, to continue the trace.
  [[nodiscard]] TraceContext trace() const noexcept {
    return TraceContext{bytes(KEEL_SDK_FIELD_OR(e_, keel_event, traceparent, keel_host_bytes{})),
                        bytes(KEEL_SDK_FIELD_OR(e_, keel_event, tracestate, keel_host_bytes{}))};
  }

 private:
  friend struct detail::EventAccess;
  explicit Event(const keel_event* event) noexcept : e_{event} {}
  static std::string_view bytes(keel_host_bytes b) noexcept { return detail::view(b); }

  const keel_event* e_;
};

namespace detail {

/// Constructs Event views from ABI structs.
struct EventAccess {
  static Event event(const keel_event* event) noexcept { return Event{event}; }
};

}  // namespace detail
}  // namespace keel::sdk
