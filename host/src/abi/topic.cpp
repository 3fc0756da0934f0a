#include "abi/topic.hpp"

#include <algorithm>
#include <cstddef>

namespace keel::host::abi {
namespace {

// Walks the dot-separated segments of a string without allocating. Empty segments are kept, so
// callers can reject "a..b": "" has one empty segment, "a." has "a" and "".
class Segments {
 public:
  explicit Segments(std::string_view text) noexcept : rest_{text} {}

  [[nodiscard]] bool done() const noexcept { return done_; }

  // The next segment; call only while !done().
  std::string_view next() noexcept {
    const auto dot = rest_.find('.');
    if (dot == std::string_view::npos) {
      done_ = true;
      return rest_;
    }
    const auto segment = rest_.substr(0, dot);
    rest_.remove_prefix(dot + 1);
    return segment;
  }

 private:
  std::string_view rest_;
  bool done_ = false;
};

bool topic_segment(std::string_view s) noexcept {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

std::string in_quotes(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

}  // namespace

bool valid_topic(std::string_view topic) noexcept {
  Segments segments{topic};
  std::size_t count = 0;
  while (!segments.done()) {
    if (!topic_segment(segments.next())) return false;
    ++count;
  }
  return count >= 2;
}

std::optional<std::string> pattern_problem(std::string_view pattern) {
  Segments segments{pattern};
  std::size_t count = 0;
  std::string_view last;
  while (!segments.done()) {
    const auto segment = segments.next();
    ++count;
    last = segment;
    if (segment == "*" || topic_segment(segment)) continue;
    if (segment == "#") {
      if (segments.done()) continue;
      return std::string{"'#' may only be the last segment"};
    }
    if (segment.empty()) return std::string{"empty segment"};
    return "segment " + in_quotes(segment) + " is not [a-z0-9_]+, '*' or a final '#'";
  }
  if (count < 2 && last != "#") {
    return std::string{"matches no topic: topics have at least two segments, e.g. 'orders.*'"};
  }
  return std::nullopt;
}

bool topic_matches(std::string_view pattern, std::string_view topic) noexcept {
  Segments want{pattern};
  Segments have{topic};
  while (!want.done()) {
    const auto segment = want.next();
    // A final '#' takes whatever is left of the topic, including nothing.
    if (segment == "#" && want.done()) return true;
    if (have.done()) return false;
    const auto word = have.next();
    // A '#' elsewhere (an invalid pattern) is compared literally and never equals a topic segment.
    if (segment != "*" && segment != word) return false;
  }
  return have.done();
}

bool matches_any(const std::vector<std::string>& patterns, std::string_view topic) noexcept {
  return std::any_of(patterns.begin(), patterns.end(), [&](const std::string& p) { return topic_matches(p, topic); });
}

}  // namespace keel::host::abi
