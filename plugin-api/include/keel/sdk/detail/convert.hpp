#pragma once
// C <-> C++ conversions used by the SDK: byte views to std::string_view and back, header
// lists, and HostRef (the host table plus context). Part of the SDK's detail layer, the only
// code that touches keel_* types; plugin authors never include it directly.

#include <keel/plugin.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

/// Reads `field` of the struct at `p` when its writer's struct_size covers it, else `fallback`.
#define KEEL_SDK_FIELD_OR(p, type, field, fallback) (KEEL_HAS_FIELD(p, type, field) ? (p)->field : (fallback))

namespace keel::sdk::detail {

/// Views host-owned bytes; valid as long as the host says the bytes are.
[[nodiscard]] inline std::string_view view(keel_host_bytes bytes) noexcept {
  return bytes.ptr == nullptr ? std::string_view{} : std::string_view{bytes.ptr, bytes.len};
}

/// Lends plugin-owned bytes to the host, which copies them before returning.
[[nodiscard]] inline keel_plugin_bytes lend(std::string_view text) noexcept {
  return keel_plugin_bytes{text.data(), text.size()};
}

[[nodiscard]] constexpr char ascii_lower(char c) noexcept {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

/// ASCII case-insensitive equality, as HTTP header names compare (RFC 9110 section 5.1).
[[nodiscard]] constexpr bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

/// Appends `value` in decimal. Used instead of std::to_string, whose libstdc++ implementation
/// adds an exported STB_GNU_UNIQUE symbol to the plugin (the entry must be the only export).
inline void append_decimal(std::string& out, std::uint64_t value) {
  char digits[20];
  std::size_t n = 0;
  do {
    digits[n++] = static_cast<char>('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (n != 0) out.push_back(digits[--n]);
}

/// The host table and this plugin's context, as received by create().
struct HostRef {
  const keel_host_api* api = nullptr;
  keel_host_ctx* ctx = nullptr;

  /// Logs through host->log when the host has it; silently drops the line otherwise.
  void log(keel_log_level level, std::string_view message) const noexcept {
    if (api != nullptr && KEEL_HAS_FN(api, keel_host_api, log)) api->log(ctx, level, lend(message));
  }
};

/// Concatenates `parts` and logs the result; if allocation fails it logs the first part alone,
/// so a failure report is never lost to a second failure.
inline void log_parts(const HostRef& host, keel_log_level level, std::initializer_list<std::string_view> parts) noexcept {
  try {
    std::size_t total = 0;
    for (std::string_view part : parts) total += part.size();
    std::string line;
    line.reserve(total);
    for (std::string_view part : parts) line.append(part);
    host.log(level, line);
  } catch (...) {
    host.log(level, parts.size() == 0 ? std::string_view{} : *parts.begin());
  }
}

/// Converts pairs with string_view-convertible `name` and `value` members into the ABI's
/// keel_plugin_kv_list. Up to kInline pairs live in the object itself (no allocation).
class KvBuffer {
 public:
  static constexpr std::size_t kInline = 8;

  /// Throws std::bad_alloc when more than kInline pairs need heap storage.
  template <class Pair>
  explicit KvBuffer(std::span<const Pair> pairs) : size_{pairs.size()} {
    keel_plugin_kv* out = inline_.data();
    if (pairs.size() > kInline) {
      heap_.resize(pairs.size());
      out = heap_.data();
    }
    for (std::size_t i = 0; i < pairs.size(); ++i) {
      out[i] = keel_plugin_kv{lend(pairs[i].name), lend(pairs[i].value)};
    }
    data_ = pairs.empty() ? nullptr : out;
  }
  KvBuffer(const KvBuffer&) = delete;
  KvBuffer& operator=(const KvBuffer&) = delete;

  /// The list to put into an ABI struct; valid while this object lives.
  [[nodiscard]] keel_plugin_kv_list list() const noexcept { return keel_plugin_kv_list{data_, size_}; }

 private:
  std::array<keel_plugin_kv, kInline> inline_{};
  std::vector<keel_plugin_kv> heap_;
  const keel_plugin_kv* data_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace keel::sdk::detail
