#pragma once
// W3C Trace Context (https://www.w3.org/TR/trace-context/) for the host's spans: an HTTP
// request, a plugin-to-plugin call, an event delivery. A span continues the trace of a valid
// incoming `traceparent` (same trace id, the caller's span as parent) or starts a new trace.
// Ids are lowercase hex text, kept in fixed arrays: starting a span never allocates.

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace keel::host::observability {

/// True when `traceparent` is a valid header value: version 00 exactly
/// "00-<32 hex trace id>-<16 hex parent id>-<2 hex flags>", or a later version ("01".."fe")
/// with that prefix followed by nothing or '-'; lowercase hex; trace and parent id not all zero.
[[nodiscard]] bool valid_traceparent(std::string_view traceparent) noexcept;

/// The trace id and the parent (span) id of a valid traceparent (see valid_traceparent()).
[[nodiscard]] inline std::string_view trace_id_of(std::string_view valid) noexcept { return {valid.data() + 3, 32}; }
[[nodiscard]] inline std::string_view span_id_of(std::string_view valid) noexcept { return {valid.data() + 36, 16}; }

/// 64 random bits from this thread's generator (xoshiro256**, seeded from the OS): fast, for
/// ids that must not collide, never for secrets.
[[nodiscard]] std::uint64_t random_bits() noexcept;

class Span {
 public:
  /// A new span: the child of `parent_traceparent` when it is valid, else the root of a new
  /// trace (sampled flag set). Random ids from a per-thread generator.
  [[nodiscard]] static Span start(std::string_view parent_traceparent) noexcept;

  /// "00-<trace id>-<this span's id>-<flags>": the traceparent this span's children receive.
  [[nodiscard]] std::string_view traceparent() const noexcept { return {text_, kLength}; }
  [[nodiscard]] std::string_view trace_id() const noexcept { return trace_id_of(traceparent()); }
  [[nodiscard]] std::string_view span_id() const noexcept { return span_id_of(traceparent()); }
  /// The parent span's id; empty for the root of a trace.
  [[nodiscard]] std::string_view parent_id() const noexcept { return {parent_, has_parent_ ? 16u : 0u}; }

  static constexpr std::size_t kLength = 55;

 private:
  char text_[kLength]{};
  char parent_[16]{};
  bool has_parent_ = false;
};

}  // namespace keel::host::observability
