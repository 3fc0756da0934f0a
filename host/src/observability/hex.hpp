#pragma once
// Lower-case hex digits two at a time: one table load per byte. For the ids written on hot paths
// (span and trace ids, event ids); header-only, no allocation.

#include <array>
#include <cstdint>
#include <cstring>

namespace keel::host::observability {

/// The two hex digits of every byte value, "000102...feff".
inline constexpr auto kHexPairs = [] {
  std::array<char, 512> t{};
  constexpr char kDigits[] = "0123456789abcdef";
  for (int b = 0; b < 256; ++b) {
    t[static_cast<std::size_t>(2 * b)] = kDigits[b >> 4];
    t[static_cast<std::size_t>(2 * b + 1)] = kDigits[b & 0xF];
  }
  return t;
}();

/// Writes the low `bytes` bytes of `v` as 2 × `bytes` digits at `out`, most significant first.
inline void write_hex(char* out, std::uint64_t v, int bytes) noexcept {
  for (int i = bytes - 1; i >= 0; --i, v >>= 8) std::memcpy(out + 2 * i, &kHexPairs[2 * (v & 0xFF)], 2);
}

}  // namespace keel::host::observability
