#pragma once
// Query strings: name=value pairs split on '&' and the first '=', as they come (the caller
// percent-decodes when it needs to: a plugin's query is decoded, the admin API's parameters are
// plain tokens checked as they are).

#include <string_view>

namespace keel::host::http {

/// Calls `fn(name, value)` for each non-empty pair of `query` in order; a pair without '=' has
/// an empty value. Stops early and returns false when `fn` returns false.
template <typename Fn>
bool for_each_query_pair(std::string_view query, Fn&& fn) {
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    if (!fn(pair.substr(0, eq), eq == std::string_view::npos ? std::string_view{} : pair.substr(eq + 1))) return false;
  }
  return true;
}

}  // namespace keel::host::http
