#include "abi/current_request.hpp"

#include "observability/trace.hpp"

namespace keel::host::abi {
namespace {

thread_local const CurrentRequest* tl_current = nullptr;

// The trace and span ids inside a valid traceparent (the host only hands out valid ones).
observability::LogContext log_context(std::string_view request_id, std::string_view traceparent) noexcept {
  if (traceparent.size() < observability::Span::kLength) return {request_id, {}, {}};
  return {request_id, traceparent.substr(3, 32), traceparent.substr(36, 16)};
}

}  // namespace

CurrentRequestScope::CurrentRequestScope(const CurrentRequest& v) noexcept
    : value_(v), saved_(tl_current), log_scope_(log_context(v.request_id, v.traceparent)) {
  tl_current = &value_;
}
CurrentRequestScope::~CurrentRequestScope() { tl_current = saved_; }

const CurrentRequest* current_request() noexcept { return tl_current; }
std::string_view current_request_id() noexcept { return tl_current != nullptr ? tl_current->request_id : std::string_view{}; }
std::string_view current_traceparent() noexcept { return tl_current != nullptr ? tl_current->traceparent : std::string_view{}; }

}  // namespace keel::host::abi
