#pragma once
// Query strings: name=value pairs split on '&' and the first '=', and their form decoding
// ('+' is a space, %XX a byte; an invalid escape stays as it is). The plugins' query reaches
// them decoded; the admin API decodes its parameters before checking them.

#include <string>
#include <string_view>

namespace keel::host::http {

/// Calls `fn(name, value)` for each non-empty pair of `query` in order, undecoded. A pair
/// without '=' has a value whose data() is null; "name=" has an empty one that is not. Stops
/// early and returns false when `fn` returns false.
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

/// Appends the form decoding of `text` to `out`.
inline void append_form_decoded(std::string& out, std::string_view text) {
  const auto hex = [](char h) -> int {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (c == '+') {
      out += ' ';
    } else if (c == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out += static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2]));
      i += 2;
    } else {
      out += c;
    }
  }
}

}  // namespace keel::host::http
