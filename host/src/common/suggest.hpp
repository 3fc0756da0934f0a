#pragma once
// "Did you mean ...?" suggestions for unknown names in config files and plugin manifests: a
// case-insensitive edit distance and a picker that keeps the closest plausible candidate.
// Pure functions and a small value type; thread-safe.

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::host {

/// Optimal-string-alignment distance (Damerau-Levenshtein where no substring is edited twice)
/// between `a` and `b`, ignoring ASCII case, so "HTTP" is 0 away from "http".
[[nodiscard]] std::size_t edit_distance(std::string_view a, std::string_view b);

/// Keeps the closest candidate to `word`. A candidate is plausible when its distance is at most
/// 2 and less than half the longer of the two words, so short unrelated names ("foo" vs "log")
/// are not offered as corrections. Of equally close candidates the first one considered wins.
class ClosestMatch {
 public:
  /// `word` must outlive this object.
  explicit ClosestMatch(std::string_view word) : word_{word} {}

  /// Consider `candidate`; if it becomes the best, best() returns `shown` (e.g. the candidate
  /// with its section, "'listen' in [server]").
  void consider(std::string_view candidate, std::string_view shown);
  void consider(std::string_view candidate) { consider(candidate, candidate); }

  [[nodiscard]] const std::optional<std::string>& best() const noexcept { return best_; }

 private:
  std::string_view word_;
  std::optional<std::string> best_;
  std::size_t best_distance_ = 0;
};

/// The plausible candidate closest to `word` (ClosestMatch's rules), or nullopt.
[[nodiscard]] std::optional<std::string> closest_match(std::string_view word,
                                                       const std::vector<std::string_view>& candidates);

}  // namespace keel::host
