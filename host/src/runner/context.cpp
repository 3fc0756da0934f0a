// The runner's thread-local current request and its wire form (see context.hpp).
#include "runner/context.hpp"

#include <limits>

#include <time.h>

namespace keel::host::runner {
namespace {

thread_local const ContextScope::Value* tl_current = nullptr;

}  // namespace

std::int64_t monotonic_ns() noexcept {
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

std::int64_t deadline_after(std::int64_t now_ns, std::int64_t remaining_ns) noexcept {
  if (remaining_ns == 0) return 0;
  if (remaining_ns < 0) return now_ns;  // a peer bug; treat it as a deadline that has passed
  if (remaining_ns > std::numeric_limits<std::int64_t>::max() - now_ns) return std::numeric_limits<std::int64_t>::max();
  return now_ns + remaining_ns;
}

ContextScope::ContextScope(std::string_view request_id, std::string_view traceparent,
                           std::int64_t deadline_mono_ns) noexcept
    : value_{request_id, traceparent, deadline_mono_ns}, saved_(tl_current) {
  tl_current = &value_;
}

ContextScope::~ContextScope() { tl_current = saved_; }

ContextScope::Value current_request() noexcept { return tl_current != nullptr ? *tl_current : ContextScope::Value{}; }

isolation::Context current_context() noexcept {
  const auto v = current_request();
  isolation::Context c{v.request_id, v.traceparent, 0};
  if (v.deadline_mono_ns != 0) {
    const auto left = v.deadline_mono_ns - monotonic_ns();
    c.remaining_ns = left > 0 ? left : 1;
  }
  return c;
}

isolation::Writer context_writer() {
  isolation::Writer w;
  encode_context(w, current_context());
  return w;
}

}  // namespace keel::host::runner
