#pragma once
// Lower-case hex digits eight at a time, with integer arithmetic and no table: for the ids
// written on hot paths (span and trace ids, request ids, event ids); header-only, no allocation.

#include <bit>
#include <cassert>
#include <cstdint>
#include <cstring>

namespace keel::host::observability {

/// The eight hex digits of `x`, most significant first, as the bytes of a word to store.
inline std::uint64_t hex8(std::uint32_t x) noexcept {
  // One nibble per byte, the least significant in the lowest byte...
  std::uint64_t y = x;
  y = (y | (y << 16)) & 0x0000FFFF0000FFFFull;
  y = (y | (y << 8)) & 0x00FF00FF00FF00FFull;
  y = (y | (y << 4)) & 0x0F0F0F0F0F0F0F0Full;
  // ...so that the most significant comes first in memory.
  if constexpr (std::endian::native == std::endian::little) y = __builtin_bswap64(y);
  // '0' + n, and 'a' - 10 + n for the nibbles of 10 and more (adding 6 carries into bit 4).
  const std::uint64_t letters = ((y + 0x0606060606060606ull) >> 4) & 0x0101010101010101ull;
  return y + 0x3030303030303030ull + letters * ('a' - '0' - 10);
}

/// Writes the low `bytes` (1 to 8) bytes of `v` as 2 × `bytes` digits at `out`, most significant first.
inline void write_hex(char* out, std::uint64_t v, int bytes) noexcept {
  assert(bytes >= 1 && bytes <= 8);
  const std::uint64_t words[2] = {hex8(static_cast<std::uint32_t>(v >> 32)), hex8(static_cast<std::uint32_t>(v))};
  std::memcpy(out, reinterpret_cast<const char*>(words) + 16 - 2 * bytes, static_cast<std::size_t>(2 * bytes));
}

}  // namespace keel::host::observability
