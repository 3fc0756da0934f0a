#pragma once
// The syntax of the header fields the host writes for a plugin's response (keel/plugin.h
// respond: "a malformed header"), header-only so keel-plugin-runner, which links no HTTP code,
// checks a response exactly as the host would before it sends it.

#include <algorithm>
#include <string_view>

namespace keel::host::abi {

/// An HTTP token (RFC 9110 section 5.6.2): a method or a header field name.
[[nodiscard]] inline bool valid_token(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
  });
}

/// A header field value the host will write: no CR, LF or NUL.
[[nodiscard]] inline bool valid_field_value(std::string_view s) noexcept {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

}  // namespace keel::host::abi
