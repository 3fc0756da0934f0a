#pragma once
// The ABI's byte views (keel/plugin.h) to and from std::string_view: one definition for the
// whole host and the runner. keel/plugin.h allows a NULL ptr only with len 0; a view that
// breaks that reads as empty rather than as a wild pointer, and empty bytes handed out are
// always {NULL, 0}.

#include <keel/plugin.h>

#include <string_view>

namespace keel::host::abi {

[[nodiscard]] inline std::string_view view(keel_plugin_bytes b) noexcept {
  return b.len == 0 || b.ptr == nullptr ? std::string_view{} : std::string_view(b.ptr, b.len);
}
[[nodiscard]] inline std::string_view view(keel_host_bytes b) noexcept {
  return b.len == 0 || b.ptr == nullptr ? std::string_view{} : std::string_view(b.ptr, b.len);
}
[[nodiscard]] inline keel_host_bytes host_bytes(std::string_view s) noexcept { return {s.empty() ? nullptr : s.data(), s.size()}; }
[[nodiscard]] inline keel_plugin_bytes plugin_bytes(std::string_view s) noexcept {
  return {s.empty() ? nullptr : s.data(), s.size()};
}

}  // namespace keel::host::abi
