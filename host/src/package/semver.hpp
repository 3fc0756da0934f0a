#pragma once
// Semantic versions (semver.org 2.0.0) and the version ranges plugins use in their dependency
// lists: space-separated comparators that must all hold, e.g. ">=1.2.0 <2.0.0", "^1.4",
// "~1.4.2", "=1.0.0", "1.x", "*". Pure value types; thread-safe.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::host::package {

struct Version {
  std::uint64_t major = 0, minor = 0, patch = 0;
  std::string prerelease;  ///< without the '-'; empty for a release
  [[nodiscard]] std::string str() const;
  /// Precedence per semver §11 (build metadata ignored).
  friend int compare(const Version& a, const Version& b) noexcept;
  friend bool operator==(const Version& a, const Version& b) noexcept { return compare(a, b) == 0; }
  friend bool operator<(const Version& a, const Version& b) noexcept { return compare(a, b) < 0; }
};

/// Parse "MAJOR.MINOR.PATCH[-pre][+build]"; nullopt if malformed.
[[nodiscard]] std::optional<Version> parse_version(std::string_view text);

class VersionRange {
 public:
  /// Parse a range; nullopt if malformed. An empty string or "*" matches every release.
  static std::optional<VersionRange> parse(std::string_view text);
  /// True if `v` satisfies every comparator. Pre-releases match only comparators that name a
  /// pre-release of the same MAJOR.MINOR.PATCH (npm's rule), so ">=1.0.0" excludes "2.0.0-rc1".
  [[nodiscard]] bool contains(const Version& v) const;
  [[nodiscard]] const std::string& text() const noexcept { return text_; }

 private:
  enum class Op { kEq, kLt, kLe, kGt, kGe };
  struct Comparator {
    Op op;
    Version version;
  };
  std::vector<Comparator> comparators_;
  std::string text_;
};

}  // namespace keel::host::package
