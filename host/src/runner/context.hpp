#pragma once
// The request a runner thread serves (docs/isolation.md, "context"): set while a hook or a call
// completion runs, and written at the start of every runner -> host frame, so request ids,
// traces and deadlines propagate across the socket exactly as they do in process.
// Thread-local: each thread sees only the scope it opened itself; scopes nest.

#include <cstdint>
#include <string_view>

#include "isolation/wire.hpp"

namespace keel::host::runner {

/// CLOCK_MONOTONIC now, in nanoseconds (the clock keel_request.deadline_mono_ns uses).
[[nodiscard]] std::int64_t monotonic_ns() noexcept;

/// The CLOCK_MONOTONIC deadline `remaining_ns` after `now_ns`: 0 (none) when remaining is 0,
/// `now_ns` when it is negative (already passed), saturated instead of overflowing.
[[nodiscard]] std::int64_t deadline_after(std::int64_t now_ns, std::int64_t remaining_ns) noexcept;

/// While alive, the calling thread serves this request. The views must outlive the scope.
class ContextScope {
 public:
  ContextScope(std::string_view request_id, std::string_view traceparent, std::int64_t deadline_mono_ns) noexcept;
  ~ContextScope();
  ContextScope(const ContextScope&) = delete;
  ContextScope& operator=(const ContextScope&) = delete;

  struct Value {
    std::string_view request_id;
    std::string_view traceparent;
    std::int64_t deadline_mono_ns = 0;  ///< 0 = no deadline
  };

 private:
  Value value_;
  const Value* saved_;
};

/// The calling thread's current request (all empty outside hooks).
[[nodiscard]] ContextScope::Value current_request() noexcept;

/// The calling thread's context as it goes on the wire: remaining_ns is 0 without a deadline
/// and at least 1 once it has passed (0 would mean "none").
[[nodiscard]] isolation::Context current_context() noexcept;

/// A payload that starts with current_context(), as every runner -> host frame does.
[[nodiscard]] isolation::Writer context_writer();

}  // namespace keel::host::runner
