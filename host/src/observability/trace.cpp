#include "observability/trace.hpp"

#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <random>
#include <thread>

#include "observability/hex.hpp"

namespace keel::host::observability {
namespace {

// 1 for '0'-'9' and 'a'-'f': one load per character instead of four comparisons (every event
// delivery and every call checks a traceparent).
constexpr auto kLowerHex = [] {
  std::array<unsigned char, 256> t{};
  for (char c = '0'; c <= '9'; ++c) t[static_cast<unsigned char>(c)] = 1;
  for (char c = 'a'; c <= 'f'; ++c) t[static_cast<unsigned char>(c)] = 1;
  return t;
}();

bool lower_hex(std::string_view s) noexcept {
  unsigned ok = 1;
  for (const char c : s) ok &= kLowerHex[static_cast<unsigned char>(c)];
  return ok != 0;
}

// Eight characters at once: 0 when every byte of `w` is '0'-'9' or 'a'-'f'. Each test adds a
// constant that carries a byte over 0x7f exactly when it is at or above a bound; bytes with the
// top bit set are refused first, so no sum carries into its neighbour.
std::uint64_t not_lower_hex8(std::uint64_t w) noexcept {
  constexpr std::uint64_t kOnes = 0x0101010101010101ull, kTop = kOnes * 0x80;
  const std::uint64_t at_least_0 = w + kOnes * (0x80 - '0');
  const std::uint64_t above_9 = w + kOnes * (0x80 - '9' - 1);
  const std::uint64_t at_least_a = w + kOnes * (0x80 - 'a');
  const std::uint64_t above_f = w + kOnes * (0x80 - 'f' - 1);
  const std::uint64_t digit = at_least_0 & ~above_9, letter = at_least_a & ~above_f;
  return (w & kTop) | (((digit | letter) & kTop) ^ kTop);
}

std::uint64_t load8(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

// `N` (a multiple of 8) lower-case hex digits at `p`, not all '0'.
template <std::size_t N>
bool hex_id(const char* p) noexcept {
  constexpr std::uint64_t kZeros = 0x3030303030303030ull;
  std::uint64_t bad = 0, nonzero = 0;
  for (std::size_t i = 0; i < N; i += 8) {
    const std::uint64_t w = load8(p + i);
    bad |= not_lower_hex8(w);
    nonzero |= w ^ kZeros;
  }
  return bad == 0 && nonzero != 0;
}

// xoshiro256** seeded per thread from the OS: fast, and ids from two threads never share a stream.
class IdGenerator {
 public:
  IdGenerator() {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(),
                      static_cast<unsigned>(std::hash<std::thread::id>{}(std::this_thread::get_id())),
                      static_cast<unsigned>(std::chrono::steady_clock::now().time_since_epoch().count())};
    std::uint32_t words[8];
    seq.generate(std::begin(words), std::end(words));
    for (int i = 0; i < 4; ++i) s_[i] = (std::uint64_t{words[2 * i]} << 32) | words[2 * i + 1];
    if ((s_[0] | s_[1] | s_[2] | s_[3]) == 0) s_[0] = 1;
  }
  std::uint64_t next() noexcept {
    const auto result = rotl(s_[1] * 5, 7) * 9;
    const auto t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // A non-zero 64-bit id (W3C: an all-zero id is invalid).
  std::uint64_t nonzero() noexcept {
    for (;;)
      if (const auto v = next(); v != 0) return v;
  }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

thread_local IdGenerator tl_ids;

}  // namespace

std::uint64_t random_bits() noexcept { return tl_ids.next(); }

bool valid_traceparent(std::string_view tp) noexcept {
  if (tp.size() < Span::kLength) return false;
  const auto version = tp.substr(0, 2);
  if (!lower_hex(version) || version == "ff") return false;
  if (version == "00" ? tp.size() != Span::kLength : tp.size() > Span::kLength && tp[Span::kLength] != '-') return false;
  if (tp[2] != '-' || tp[35] != '-' || tp[52] != '-') return false;
  return lower_hex(tp.substr(53, 2)) && hex_id<32>(tp.data() + 3) && hex_id<16>(tp.data() + 36);
}

Span Span::start(std::string_view parent) noexcept {
  Span s;
  std::memcpy(s.text_, "00-", 3);
  s.text_[35] = '-';
  s.text_[52] = '-';
  if (valid_traceparent(parent)) {
    std::memcpy(s.text_ + 3, parent.data() + 3, 32);   // same trace
    std::memcpy(s.parent_, parent.data() + 36, 16);     // the caller's span is the parent
    std::memcpy(s.text_ + 53, parent.data() + 53, 2);   // flags as received (version 00 layout)
    s.has_parent_ = true;
  } else {
    write_hex(s.text_ + 3, tl_ids.nonzero(), 8);
    write_hex(s.text_ + 19, tl_ids.next(), 8);
    std::memcpy(s.text_ + 53, "01", 2);  // the host records every span: sampled
  }
  write_hex(s.text_ + 36, tl_ids.nonzero(), 8);
  return s;
}

}  // namespace keel::host::observability
