#include "package/semver.hpp"

#include <charconv>
#include <limits>

namespace keel::host::package {
namespace {

bool parse_number(std::string_view s, std::uint64_t& out) {
  if (s.empty() || (s.size() > 1 && s.front() == '0')) return false;  // semver §2: no leading zeros
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc{} && end == s.data() + s.size();
}

bool all_digits(std::string_view s) {
  for (char c : s)
    if (c < '0' || c > '9') return false;
  return !s.empty();
}

// Dot-separated identifiers of [0-9A-Za-z-], none empty (semver §9, §10). Numeric identifiers in
// a pre-release must not have leading zeros (§9); build metadata may ("+001" is valid).
bool valid_identifiers(std::string_view s, bool numeric_leading_zero_allowed) {
  if (s.empty()) return false;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto dot = s.find('.', start);
    const auto id = s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (id.empty()) return false;
    for (char c : id)
      if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-')) return false;
    if (!numeric_leading_zero_allowed && id.size() > 1 && id.front() == '0' && all_digits(id)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return true;
}

// Compare dot-separated pre-release identifiers per semver §11.4.
int compare_prerelease(std::string_view a, std::string_view b) {
  if (a == b) return 0;
  if (a.empty()) return 1;  // a release outranks any pre-release
  if (b.empty()) return -1;
  while (true) {
    const auto da = a.find('.'), db = b.find('.');
    const auto ia = a.substr(0, da), ib = b.substr(0, db);
    const bool na = all_digits(ia), nb = all_digits(ib);
    int c = 0;
    if (na && nb) c = ia.size() != ib.size() ? (ia.size() < ib.size() ? -1 : 1) : ia.compare(ib);
    else if (na != nb) c = na ? -1 : 1;
    else c = ia.compare(ib);
    if (c != 0) return c < 0 ? -1 : 1;
    if (da == std::string_view::npos || db == std::string_view::npos)
      return da == db ? 0 : (da == std::string_view::npos ? -1 : 1);
    a.remove_prefix(da + 1);
    b.remove_prefix(db + 1);
  }
}

// "1", "1.2", "1.2.3", with "x"/"X"/"*" wildcards; returns the number of fixed parts (0..3).
std::optional<std::pair<Version, int>> parse_partial(std::string_view s) {
  Version v;
  if (s.empty()) return std::nullopt;  // an operator with no version after it, e.g. ">= 1.0.0"
  if (const auto plus = s.find('+'); plus != std::string_view::npos) {
    if (!valid_identifiers(s.substr(plus + 1), true)) return std::nullopt;
    s = s.substr(0, plus);
  }
  if (const auto dash = s.find('-'); dash != std::string_view::npos) {
    v.prerelease = std::string(s.substr(dash + 1));
    if (!valid_identifiers(v.prerelease, false)) return std::nullopt;
    s = s.substr(0, dash);
  }
  std::uint64_t* parts[] = {&v.major, &v.minor, &v.patch};
  int fixed = 0;
  for (int i = 0; i < 3 && !s.empty(); ++i) {
    const auto dot = s.find('.');
    const auto part = s.substr(0, dot);
    if (part == "x" || part == "X" || part == "*") {
      s = {};
      break;
    }
    if (!parse_number(part, *parts[i])) return std::nullopt;
    ++fixed;
    if (dot == std::string_view::npos) {
      s = {};
    } else {
      s = s.substr(dot + 1);
      if (s.empty()) return std::nullopt;  // trailing dot: "1.2." or "1.2.3."
    }
  }
  if (!s.empty()) return std::nullopt;
  if (!v.prerelease.empty() && fixed != 3) return std::nullopt;
  return std::pair{v, fixed};
}

// The smallest version above every version that shares v's first `level` parts (1..3), as
// "<up>-0" so that "<up>-0" as an upper bound also excludes up's pre-releases. A part that is
// already the largest number carries into the part before it ("1.<max>" -> "2.0.0-0"); nullopt
// when nothing is above.
std::optional<Version> next_above(const Version& v, int level) {
  constexpr auto kMax = std::numeric_limits<std::uint64_t>::max();
  for (; level >= 1; --level) {
    Version up;
    if (level == 1 && v.major != kMax) {
      up.major = v.major + 1;
    } else if (level == 2 && v.minor != kMax) {
      up.major = v.major;
      up.minor = v.minor + 1;
    } else if (level == 3 && v.patch != kMax) {
      up.major = v.major;
      up.minor = v.minor;
      up.patch = v.patch + 1;
    } else {
      continue;
    }
    up.prerelease = "0";
    return up;
  }
  return std::nullopt;
}

}  // namespace

std::string Version::str() const {
  auto s = std::to_string(major) + "." + std::to_string(minor) + "." + std::to_string(patch);
  if (!prerelease.empty()) s += "-" + prerelease;
  return s;
}

int compare(const Version& a, const Version& b) noexcept {
  if (a.major != b.major) return a.major < b.major ? -1 : 1;
  if (a.minor != b.minor) return a.minor < b.minor ? -1 : 1;
  if (a.patch != b.patch) return a.patch < b.patch ? -1 : 1;
  return compare_prerelease(a.prerelease, b.prerelease);
}

std::optional<Version> parse_version(std::string_view text) {
  const auto partial = parse_partial(text);
  if (!partial || partial->second != 3) return std::nullopt;
  return partial->first;
}

std::optional<VersionRange> VersionRange::parse(std::string_view text) {
  VersionRange r;
  r.text_ = std::string(text);
  std::string_view rest = text;
  while (!rest.empty()) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (rest.empty()) break;
    const auto sp = rest.find(' ');
    auto token = rest.substr(0, sp);
    rest = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp);
    if (token == "*" || token == "x" || token == "X") continue;

    std::string_view op;
    for (std::string_view candidate : {">=", "<=", ">", "<", "=", "^", "~"}) {
      if (token.substr(0, candidate.size()) == candidate) {
        op = candidate;
        break;
      }
    }
    const auto partial = parse_partial(token.substr(op.size()));
    if (!partial) return std::nullopt;
    // Not a structured binding: clang 14 cannot capture those in the lambdas below (P1091).
    const Version& v = partial->first;
    const int fixed = partial->second;
    auto bump = [&](int level) { return next_above(v, level); };
    // "<bump": with no bump there is no upper bound.
    auto add_below = [&](int level) {
      if (const auto up = bump(level)) r.comparators_.push_back({Op::kLt, *up});
    };
    if (op == "^") {
      // Caret: changes that do not modify the left-most non-zero part. "^*" matches anything.
      if (fixed == 0) continue;
      const int level = v.major != 0 || fixed <= 1 ? 1 : (v.minor != 0 || fixed == 2 ? 2 : 3);
      r.comparators_.push_back({Op::kGe, v});
      add_below(level);
    } else if (op == "~") {
      r.comparators_.push_back({Op::kGe, v});
      if (fixed > 0) add_below(fixed == 1 ? 1 : 2);
    } else if (fixed < 3) {
      // A partial version is a range of its own: "1.2" = ">=1.2.0 <1.3.0-0".
      if (op.empty() || op == "=") {
        if (fixed == 0) continue;
        r.comparators_.push_back({Op::kGe, v});
        add_below(fixed);
      } else if (op == ">=") {
        r.comparators_.push_back({Op::kGe, v});
      } else if (op == "<") {
        r.comparators_.push_back({Op::kLt, v});
      } else if (op == ">") {
        // ">1.2" is ">=1.3.0": a release bound, so 1.3.0's pre-releases stay excluded (npm).
        if (fixed == 0) return std::nullopt;
        auto up = bump(fixed);
        if (!up) {
          r.comparators_.push_back({Op::kLt, Version{0, 0, 0, "0"}});  // nothing is above the largest
          continue;
        }
        up->prerelease.clear();
        r.comparators_.push_back({Op::kGe, *up});
      } else {  // "<="
        if (fixed == 0) continue;
        add_below(fixed);
      }
    } else {
      const Op o = op == ">=" ? Op::kGe : op == "<=" ? Op::kLe : op == ">" ? Op::kGt : op == "<" ? Op::kLt : Op::kEq;
      r.comparators_.push_back({o, v});
    }
  }
  return r;
}

bool VersionRange::contains(const Version& v) const {
  bool prerelease_allowed = v.prerelease.empty();
  for (const auto& c : comparators_) {
    const int cmp = compare(v, c.version);
    bool ok = false;
    switch (c.op) {
      case Op::kEq: ok = cmp == 0; break;
      case Op::kLt: ok = cmp < 0; break;
      case Op::kLe: ok = cmp <= 0; break;
      case Op::kGt: ok = cmp > 0; break;
      case Op::kGe: ok = cmp >= 0; break;
    }
    if (!ok) return false;
    // npm's rule. The "<X.Y.Z-0" bounds that ranges expand to can name X.Y.Z only for versions
    // they already exclude, so they never let a pre-release in by themselves.
    const auto& cv = c.version;
    if (!cv.prerelease.empty() && cv.major == v.major && cv.minor == v.minor && cv.patch == v.patch)
      prerelease_allowed = true;
  }
  return prerelease_allowed;
}

}  // namespace keel::host::package
