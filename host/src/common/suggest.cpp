#include "common/suggest.hpp"

#include <algorithm>

namespace keel::host {
namespace {

constexpr char ascii_lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

}  // namespace

std::size_t edit_distance(std::string_view a, std::string_view b) {
  const std::size_t n = a.size();
  const std::size_t m = b.size();
  std::vector<std::size_t> before_prev(m + 1);
  std::vector<std::size_t> prev(m + 1);
  std::vector<std::size_t> cur(m + 1);
  for (std::size_t j = 0; j <= m; ++j) prev[j] = j;
  for (std::size_t i = 1; i <= n; ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= m; ++j) {
      const std::size_t cost = ascii_lower(a[i - 1]) == ascii_lower(b[j - 1]) ? 0 : 1;
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
      if (i > 1 && j > 1 && ascii_lower(a[i - 1]) == ascii_lower(b[j - 2]) &&
          ascii_lower(a[i - 2]) == ascii_lower(b[j - 1])) {
        cur[j] = std::min(cur[j], before_prev[j - 2] + 1);
      }
    }
    std::swap(before_prev, prev);
    std::swap(prev, cur);
  }
  return prev[m];
}

void ClosestMatch::consider(std::string_view candidate, std::string_view shown) {
  const std::size_t d = edit_distance(word_, candidate);
  if (d > 2 || 2 * d >= std::max(word_.size(), candidate.size())) return;
  if (!best_ || d < best_distance_) {
    best_ = std::string{shown};
    best_distance_ = d;
  }
}

std::optional<std::string> closest_match(std::string_view word, const std::vector<std::string_view>& candidates) {
  ClosestMatch closest{word};
  for (const auto candidate : candidates) closest.consider(candidate);
  return closest.best();
}

}  // namespace keel::host
