// Fuzz target: what the host takes from a client's (or a runner's) X-Request-Id and
// traceparent (http/message.*, observability/trace.*). Properties, each a trap when broken:
// - valid_traceparent and valid_request_id agree with the rules of their headers (W3C Trace
//   Context, docs/http.md), restated here byte by byte;
// - a span started from a valid traceparent continues its trace: same trace id and flags, the
//   caller's span as parent; from anything else, a new trace. Either way its own traceparent
//   is valid.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/message.hpp"
#include "observability/trace.hpp"

namespace {

using keel::host::observability::Span;

void check(bool property) {
  if (!property) __builtin_trap();
}

bool lower_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}
bool all_zero(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c == '0'; });
}

// version "-" trace-id "-" parent-id "-" trace-flags: version 00 exactly that, a later version
// ("01".."fe") that prefix then nothing or '-'; lower-case hex; neither id all zeros.
bool traceparent_rule(std::string_view tp) {
  if (tp.size() < 55) return false;
  const auto version = tp.substr(0, 2);
  if (!lower_hex(version) || version == "ff") return false;
  if (version == "00" && tp.size() != 55) return false;
  if (tp.size() > 55 && tp[55] != '-') return false;
  const auto trace = tp.substr(3, 32), parent = tp.substr(36, 16), flags = tp.substr(53, 2);
  return tp[2] == '-' && tp[35] == '-' && tp[52] == '-' && lower_hex(trace) && !all_zero(trace) &&
         lower_hex(parent) && !all_zero(parent) && lower_hex(flags);
}

// 1..128 characters of [A-Za-z0-9._:-].
bool request_id_rule(std::string_view id) {
  return !id.empty() && id.size() <= 128 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("._:-").find(c) != std::string_view::npos;
  });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  check(keel::host::http::valid_request_id(value) == request_id_rule(value));
  const bool valid = keel::host::observability::valid_traceparent(value);
  check(valid == traceparent_rule(value));

  const Span span = Span::start(value);
  check(traceparent_rule(span.traceparent()));
  if (valid) {
    check(span.trace_id() == value.substr(3, 32) && span.parent_id() == value.substr(36, 16) &&
          span.traceparent().substr(53) == value.substr(53, 2));
  } else {
    check(span.parent_id().empty());
  }
  return 0;
}
