#pragma once
// Limits the host applies to what a plugin hands it through the ABI, in process and in a runner
// alike (docs/plugin-api.md "Limits"). Header-only, no state.

#include <cstddef>
#include <string>
#include <string_view>

namespace keel::host::abi {

/// Captures of one route template ({param}, {param:file} and the {tail...}): the router keeps
/// them in a fixed array (http::MatchScratch), and the manifest checker refuses more.
inline constexpr std::size_t kMaxRouteParams = 16;

/// A plugin's log message: the host keeps this many bytes of it and says how many it cut.
inline constexpr std::size_t kMaxLogMessageBytes = 16u << 10;

/// The longest prefix of `text` of at most `max` bytes that does not end inside a UTF-8
/// sequence (text that is not UTF-8 is cut at `max`, less at most three bytes).
[[nodiscard]] inline std::string_view utf8_prefix(std::string_view text, std::size_t max) noexcept {
  if (text.size() <= max) return text;
  std::size_t cut = max;
  for (int back = 0; back < 3 && cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0U) == 0x80U; ++back) --cut;
  return text.substr(0, cut);
}

/// What follows a log message cut by `cut` bytes ("" when nothing was cut). Short enough that
/// a message cut to kMaxLogMessageBytes - kLogCutNoteRoom keeps its note within the limit.
inline constexpr std::size_t kLogCutNoteRoom = 64;
[[nodiscard]] inline std::string log_cut_note(std::size_t cut) {
  return cut == 0 ? std::string() : " [" + std::to_string(cut) + " bytes cut: log messages keep 16 KiB]";
}

}  // namespace keel::host::abi
