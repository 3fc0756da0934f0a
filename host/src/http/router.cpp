#include "http/router.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::host::http {
namespace {

constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();
constexpr std::string_view kTailSuffix = "...";
constexpr std::string_view kFileSuffix = ":file";

enum class SegmentKind : std::uint8_t { kStatic, kParam, kTail };

struct TemplateSegment {
  SegmentKind kind = SegmentKind::kStatic;
  std::string_view text;  // static text, or the parameter's name
  bool file = false;      // a {name:file} parameter: its decoded value must be a safe file name
};

struct Edge {
  std::string_view label;  // a static segment; views into RouteSpec::pattern
  std::uint32_t child = kNone;
};

// One trie node. A node is reached after consuming one path segment; `leaf` holds the routes
// whose template ends here, `tail` the node of a `{name...}` capture of everything that is left.
struct Node {
  std::vector<Edge> statics;  // sorted by shorter_or_less() once built
  std::uint32_t param = kNone;
  std::uint32_t tail = kNone;
  std::uint32_t leaf = kNone;
};

struct LeafMethod {
  std::string_view method;  // views into RouteSpec::method
  std::uint32_t route = kNone;
};

struct Leaf {
  std::vector<LeafMethod> methods;  // build order; one entry per method once conflicts are excluded
  std::uint32_t any = kNone;        // the "*" route
  std::string allow;                // "GET, HEAD, POST"
};

// Edge order: by length, then bytes. Most probes then fail on the length without a memcmp.
bool shorter_or_less(std::string_view a, std::string_view b) noexcept {
  return a.size() != b.size() ? a.size() < b.size() : a < b;
}

template <class Word>
Word load(const char* p) noexcept {
  Word w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Equality of the short texts routing compares (segments, methods) without a call into libc:
// two overlapping loads cover 4 to 16 bytes.
[[gnu::always_inline]] inline bool same_text(std::string_view a, std::string_view b) noexcept {
  const std::size_t n = a.size();
  if (n != b.size()) return false;
  const char* x = a.data();
  const char* y = b.data();
  if (n >= 8) {
    if (n > 16) return std::memcmp(x, y, n) == 0;
    return load<std::uint64_t>(x) == load<std::uint64_t>(y) && load<std::uint64_t>(x + n - 8) == load<std::uint64_t>(y + n - 8);
  }
  if (n >= 4) {
    return load<std::uint32_t>(x) == load<std::uint32_t>(y) && load<std::uint32_t>(x + n - 4) == load<std::uint32_t>(y + n - 4);
  }
  for (std::size_t i = 0; i < n; ++i)
    if (x[i] != y[i]) return false;
  return true;
}

bool is_dot_segment(std::string_view s) noexcept { return s == "." || s == ".."; }

// RFC 3986 pchar without pct-encoded: unreserved / sub-delims / ":" / "@". Templates hold the
// decoded text, so '%' cannot appear in them.
bool is_static_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("-._~!$&'()*+,;=:@").find(c) != std::string_view::npos;
}

bool is_name(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && (i == 0 || c < '0' || c > '9')) return false;
  }
  return true;
}

bool is_method(std::string_view s) noexcept {
  if (s == "*") return true;
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
  });
}

std::string describe_byte(char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  const auto u = static_cast<unsigned char>(c);
  if (u > 0x20 && u < 0x7f) return std::string("character '") + c + "'";
  return std::string("byte 0x") + kHex[u >> 4] + kHex[u & 0xf];
}

// Splits `pattern` into segments (views into it). Returns an error text, empty on success.
std::string parse_template(std::string_view pattern, std::vector<TemplateSegment>& out) {
  out.clear();
  if (pattern.empty() || pattern.front() != '/') return "pattern must start with '/'";
  std::size_t captures = 0;
  std::size_t pos = 1;
  for (;;) {
    const std::size_t slash = pattern.find('/', pos);
    const bool last = slash == std::string_view::npos;
    const std::string_view seg = pattern.substr(pos, last ? std::string_view::npos : slash - pos);
    if (seg.empty()) {
      // Only the last segment may be empty: "/" itself, or a significant trailing slash.
      if (!last) return "empty segment ('//'); only a trailing '/' may end in an empty segment";
      out.push_back({SegmentKind::kStatic, seg});
    } else if (seg.front() == '{') {
      if (seg.back() != '}') return "a parameter must span a whole segment: '{name}' or '{name...}'";
      std::string_view name = seg.substr(1, seg.size() - 2);
      SegmentKind kind = SegmentKind::kParam;
      bool file = false;
      if (name.ends_with(kTailSuffix)) {
        name.remove_suffix(kTailSuffix.size());
        kind = SegmentKind::kTail;
        if (!last) return "tail parameter '{" + std::string(name) + "...}' must be the last segment";
      } else if (name.ends_with(kFileSuffix)) {
        name.remove_suffix(kFileSuffix.size());
        file = true;
      }
      if (!is_name(name)) {
        return "invalid parameter name '" + std::string(name) + "' (expected [A-Za-z_][A-Za-z0-9_]*)";
      }
      for (const TemplateSegment& prev : out) {
        if (prev.kind != SegmentKind::kStatic && prev.text == name) {
          return "duplicate parameter name '" + std::string(name) + "'";
        }
      }
      if (++captures > MatchScratch::kMaxParams) {
        return "more than " + std::to_string(MatchScratch::kMaxParams) + " parameters";
      }
      out.push_back({kind, name, file});
    } else {
      for (const char c : seg) {
        if (c == '{' || c == '}') return "a parameter must span a whole segment: '{name}' or '{name...}'";
        if (!is_static_char(c)) return describe_byte(c) + " is not allowed in a static segment";
      }
      if (is_dot_segment(seg)) return "'.' and '..' are not allowed as segments";
      out.push_back({SegmentKind::kStatic, seg});
    }
    if (last) return {};
    pos = slash + 1;
  }
}

std::string describe(const RouteSpec& r) {
  return r.method + " " + r.pattern + " (plugin '" + r.owner_name + "')";
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// A tail capture is handed to plugins that typically join it onto a directory, so the decoded
// value must not climb out of it ("..", also when spelled "%2e%2e" or hidden behind "%2F"),
// must not be absolute ("//etc", "%2Fetc"), and must not carry NUL or a Windows separator.
bool is_safe_tail(std::string_view value) noexcept {
  if (value.empty() || value.front() == '/') return false;
  if (value.find('\0') != std::string_view::npos || value.find('\\') != std::string_view::npos) return false;
  std::size_t pos = 0;
  for (;;) {
    const std::size_t slash = value.find('/', pos);
    if (is_dot_segment(value.substr(pos, slash == std::string_view::npos ? std::string_view::npos : slash - pos))) {
      return false;
    }
    if (slash == std::string_view::npos) return true;
    pos = slash + 1;
  }
}

// A {name:file} capture names one file: besides the dot-segments refused for every path, its
// decoded value must not hold a separator ("%2F", "%5C") or NUL.
bool is_safe_file_name(std::string_view value) noexcept {
  return value.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos;
}

struct Trie {
  std::vector<Node> nodes;  // nodes[0] is the root, before the first segment
  std::vector<Leaf> leaves;
  std::vector<std::vector<std::string_view>> param_names;  // per route, in capture order
  std::vector<std::uint16_t> file_params;  // per route: bit i set when capture i is {name:file}

  // Edges are ordered by length first: a binary search on the length alone (once there are many,
  // as under "/api/" with a plugin each), then the few edges of that length one by one.
  [[nodiscard]] static std::uint32_t find_static(const Node& node, std::string_view label) noexcept {
    auto it = node.statics.begin();
    const auto end = node.statics.end();
    if (node.statics.size() > 8) {
      it = std::partition_point(it, end, [n = label.size()](const Edge& e) { return e.label.size() < n; });
    }
    for (; it != end && it->label.size() <= label.size(); ++it)
      if (same_text(it->label, label)) return it->child;
    return kNone;
  }
};

// One match() call: a depth-first search in precedence order (static, param, tail). The trie is a
// tree and the path fixes the segment at every depth, so backtracking visits each node at most
// once per request: the cost is bounded by the table's size, never exponential in the path.
class Matcher {
 public:
  enum class Step { kNoMatch, kFound, kBad };

  Matcher(const Trie& trie, std::string_view method, std::string_view path, std::string_view decoded,
          MatchScratch& scratch) noexcept
      : trie_{trie}, method_{method}, path_{path}, decoded_{decoded}, scratch_{scratch} {}

  // `raw` indexes the start of the next segment in the path, `dec` the same point in the decoded
  // copy (which keeps the path's own '/' separators, so segments line up one to one).
  Step walk(std::uint32_t node_index, std::size_t raw, std::size_t dec) noexcept {
    const Node& node = trie_.nodes[node_index];
    if (raw > path_.size()) return at_leaf(node.leaf);  // every segment consumed

    // Segments are short: a loop beats a call to memchr.
    std::size_t end = raw;
    while (end < path_.size() && path_[end] != '/') ++end;
    const std::string_view raw_segment = path_.substr(raw, end - raw);
    std::string_view text = raw_segment;
    std::size_t decoded_size = raw_segment.size();
    if (!decoded_.empty()) {
      // Escapes were validated up front, so each '%' shrinks the segment by exactly two bytes.
      const auto escapes = static_cast<std::size_t>(std::count(raw_segment.begin(), raw_segment.end(), '%'));
      if (escapes != 0) {
        decoded_size -= 2 * escapes;
        text = decoded_.substr(dec, decoded_size);
      }
    }
    const std::size_t next_raw = end + 1;
    const std::size_t next_dec = dec + decoded_size + 1;

    if (const std::uint32_t child = trie_.find_static(node, text); child != kNone) {
      if (const Step s = walk(child, next_raw, next_dec); s != Step::kNoMatch) return s;
    }
    if (node.param != kNone && !text.empty() && scratch_.param_count < MatchScratch::kMaxParams) {
      const std::size_t slot = scratch_.param_count++;
      scratch_.params[slot].value = text;
      if (const Step s = walk(node.param, next_raw, next_dec); s != Step::kNoMatch) return s;
      scratch_.param_count = slot;
    }
    if (node.tail != kNone && scratch_.param_count < MatchScratch::kMaxParams) {
      const std::string_view rest = path_.substr(raw);
      if (!rest.empty()) {  // a tail captures at least one byte: "/files/" does not match "/files/{p...}"
        const std::string_view value =
            rest.find('%') == std::string_view::npos ? rest : decoded_.substr(dec);
        if (!is_safe_tail(value)) return Step::kBad;
        const std::size_t slot = scratch_.param_count++;
        scratch_.params[slot].value = value;
        if (const Step s = at_leaf(trie_.nodes[node.tail].leaf); s != Step::kNoMatch) return s;
        scratch_.param_count = slot;
      }
    }
    return Step::kNoMatch;
  }

  [[nodiscard]] std::uint32_t route() const noexcept { return route_; }
  [[nodiscard]] std::uint32_t first_path_match() const noexcept { return first_path_match_; }

 private:
  Step at_leaf(std::uint32_t leaf_index) noexcept {
    if (leaf_index == kNone) return Step::kNoMatch;
    const Leaf& leaf = trie_.leaves[leaf_index];
    std::uint32_t found = kNone;
    for (const LeafMethod& m : leaf.methods) {
      if (same_text(m.method, method_)) {
        found = m.route;
        break;
      }
    }
    if (found == kNone && same_text(method_, "HEAD")) {
      for (const LeafMethod& m : leaf.methods) {
        if (same_text(m.method, "GET")) {
          found = m.route;
          break;
        }
      }
    }
    if (found == kNone) found = leaf.any;
    if (found == kNone) {
      if (first_path_match_ == kNone) first_path_match_ = leaf_index;
      return Step::kNoMatch;
    }
    // Which captures must be file names is the route's too: "GET /f/{n:file}" and "DELETE /f/{n}"
    // share a node.
    if (const std::uint16_t files = trie_.file_params[found]; files != 0) {
      for (std::size_t i = 0; i < scratch_.param_count; ++i)
        if ((files & (1U << i)) != 0 && !is_safe_file_name(scratch_.params[i].value)) return Step::kBad;
    }
    // Capture names come from the route, not the trie: "GET /o/{id}" and "DELETE /o/{oid}" share a node.
    const std::vector<std::string_view>& names = trie_.param_names[found];
    for (std::size_t i = 0; i < scratch_.param_count && i < names.size(); ++i) scratch_.params[i].name = names[i];
    route_ = found;
    return Step::kFound;
  }

  const Trie& trie_;
  std::string_view method_;
  std::string_view path_;
  std::string_view decoded_;  // empty when the path has no '%'
  MatchScratch& scratch_;
  std::uint32_t route_ = kNone;
  std::uint32_t first_path_match_ = kNone;  // leaf of the highest-precedence path match, for 405
};

}  // namespace

struct RouteTable::Impl {
  std::vector<RouteSpec> routes;  // never resized once built: the trie holds views into it
  Trie trie;
};

RouteTable::RouteTable() = default;
RouteTable::~RouteTable() = default;

const std::vector<RouteSpec>& RouteTable::routes() const noexcept { return impl_->routes; }

std::variant<std::shared_ptr<const RouteTable>, std::vector<RouteConflict>> RouteTable::build(
    std::vector<RouteSpec> routes) {
  auto impl = std::make_unique<Impl>();
  impl->routes = std::move(routes);
  // From here on impl->routes is never resized: the trie's labels and methods are views into it.
  const std::vector<RouteSpec>& specs = impl->routes;
  std::vector<Node>& nodes = impl->trie.nodes;
  std::vector<Leaf>& leaves = impl->trie.leaves;
  std::vector<std::vector<std::string_view>>& param_names = impl->trie.param_names;
  nodes.emplace_back();
  param_names.resize(specs.size());
  impl->trie.file_params.assign(specs.size(), 0);

  std::vector<RouteConflict> errors;
  std::vector<TemplateSegment> segments;
  for (std::size_t i = 0; i < specs.size(); ++i) {
    const RouteSpec& spec = specs[i];
    const auto route_index = static_cast<std::uint32_t>(i);
    std::string problem = parse_template(spec.pattern, segments);
    if (!is_method(spec.method)) {
      problem = "method must be '*' or an upper-case token [A-Z0-9_-]" + (problem.empty() ? "" : "; " + problem);
    }
    if (!problem.empty()) {
      errors.push_back({"invalid route: " + describe(spec) + ": " + problem});
      continue;
    }

    std::uint32_t at = 0;
    for (const TemplateSegment& seg : segments) {
      std::uint32_t next = kNone;
      switch (seg.kind) {
        case SegmentKind::kStatic: {
          for (const Edge& e : nodes[at].statics) {
            if (e.label == seg.text) next = e.child;
          }
          if (next == kNone) {
            next = static_cast<std::uint32_t>(nodes.size());
            nodes[at].statics.push_back({seg.text, next});
            nodes.emplace_back();  // invalidates references into nodes: indices only
          }
          break;
        }
        case SegmentKind::kParam:
        case SegmentKind::kTail: {
          const bool tail = seg.kind == SegmentKind::kTail;
          next = tail ? nodes[at].tail : nodes[at].param;
          if (next == kNone) {
            next = static_cast<std::uint32_t>(nodes.size());
            (tail ? nodes[at].tail : nodes[at].param) = next;
            nodes.emplace_back();
          }
          if (seg.file) impl->trie.file_params[i] |= static_cast<std::uint16_t>(1U << param_names[i].size());
          param_names[i].push_back(seg.text);
          break;
        }
      }
      at = next;
    }

    if (nodes[at].leaf == kNone) {
      nodes[at].leaf = static_cast<std::uint32_t>(leaves.size());
      leaves.emplace_back();
    }
    Leaf& leaf = leaves[nodes[at].leaf];
    // Reaching the same leaf means the same shape: equal statics, params at the same positions
    // (names are irrelevant to matching), the same tail.
    for (const LeafMethod& other : leaf.methods) {
      if (other.method == spec.method || other.method == "*" || spec.method == "*") {
        errors.push_back({"route conflict: " + describe(specs[other.route]) + " and " + describe(spec)});
      }
    }
    leaf.methods.push_back({spec.method, route_index});
    if (spec.method == "*" && leaf.any == kNone) leaf.any = route_index;
  }
  if (!errors.empty()) return errors;

  for (Node& node : nodes) {
    std::sort(node.statics.begin(), node.statics.end(),
              [](const Edge& a, const Edge& b) { return shorter_or_less(a.label, b.label); });
  }
  for (Leaf& leaf : leaves) {
    std::vector<std::string_view> allowed;
    for (const LeafMethod& m : leaf.methods) {
      if (m.method == "*") continue;
      allowed.push_back(m.method);
      if (m.method == "GET") allowed.emplace_back("HEAD");  // served through the GET fallback
    }
    std::sort(allowed.begin(), allowed.end());
    allowed.erase(std::unique(allowed.begin(), allowed.end()), allowed.end());
    for (const std::string_view m : allowed) {
      if (!leaf.allow.empty()) leaf.allow += ", ";
      leaf.allow += m;
    }
  }

  std::shared_ptr<RouteTable> table(new RouteTable());
  table->impl_ = std::move(impl);
  return std::shared_ptr<const RouteTable>(std::move(table));
}

MatchResult RouteTable::match(std::string_view method, std::string_view path, MatchScratch& scratch) const noexcept {
  MatchResult result;
  scratch.param_count = 0;
  if (path.empty() || path.front() != '/') {
    result.kind = MatchResult::Kind::kBadPath;
    return result;
  }

  // Validate the whole path before routing, so a malformed escape or a dot-segment is a 400 no
  // matter which routes exist. Dot-segments are refused rather than resolved (RFC 3986 §5.2.4):
  // a client that sends them is probing, and resolving them would let "/a/../admin" reach a
  // route the path does not spell.
  const bool encoded = path.find('%') != std::string_view::npos;
  std::string& decoded = scratch.decoded;
  decoded.clear();
  if (encoded) {
    // Decoding never grows the text, so one reservation keeps every view stable; after the first
    // request of a connection the capacity is reused. (bad_alloc here ends the process: noexcept.)
    decoded.reserve(path.size());
    decoded.push_back('/');
  }
  // Without an escape, only a path with a '.' can hold a dot-segment: most paths have neither
  // and need no pass of their own.
  const bool checked = encoded || path.find('.') != std::string_view::npos;
  for (std::size_t pos = 1; checked;) {
    std::size_t end = path.find('/', pos);
    const bool last = end == std::string_view::npos;
    if (last) end = path.size();
    const std::string_view segment = path.substr(pos, end - pos);
    if (is_dot_segment(segment)) {
      result.kind = MatchResult::Kind::kBadPath;
      return result;
    }
    if (encoded) {
      const std::size_t start = decoded.size();
      for (std::size_t i = 0; i < segment.size(); ++i) {
        if (segment[i] != '%') {
          decoded.push_back(segment[i]);  // '+' stays '+': form encoding does not apply to paths
          continue;
        }
        const int hi = i + 2 < segment.size() ? hex_value(segment[i + 1]) : -1;
        const int lo = hi >= 0 ? hex_value(segment[i + 2]) : -1;
        if (lo < 0) {
          result.kind = MatchResult::Kind::kBadPath;
          return result;
        }
        decoded.push_back(static_cast<char>(hi * 16 + lo));
        i += 2;
      }
      if (is_dot_segment(std::string_view(decoded).substr(start))) {
        result.kind = MatchResult::Kind::kBadPath;
        return result;
      }
    }
    if (last) break;
    if (encoded) decoded.push_back('/');
    pos = end + 1;
  }

  Matcher matcher(impl_->trie, method, path, encoded ? std::string_view(decoded) : std::string_view(), scratch);
  switch (matcher.walk(0, 1, 1)) {
    case Matcher::Step::kFound: {
      const RouteSpec& spec = impl_->routes[matcher.route()];
      result.kind = MatchResult::Kind::kFound;
      result.route = &spec;
      result.target = spec.target;
      return result;
    }
    case Matcher::Step::kBad:
      scratch.param_count = 0;
      result.kind = MatchResult::Kind::kBadPath;
      return result;
    case Matcher::Step::kNoMatch:
      break;
  }
  scratch.param_count = 0;
  if (matcher.first_path_match() != kNone) {
    result.kind = MatchResult::Kind::kMethodNotAllowed;
    result.allow = impl_->trie.leaves[matcher.first_path_match()].allow;
  }
  return result;
}

}  // namespace keel::host::http
