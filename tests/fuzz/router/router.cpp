// Fuzz target: the router's path decoding and matching (http/router.*). The input is lines: the
// last is the request, "METHOD PATH" (or a bare PATH for GET); the lines before it are routes,
// "METHOD PATTERN", added to a fixed table that has every kind of segment. A table that does
// not build (a conflict, a bad template) leaves the fixed table alone.
// Properties, each a trap when broken, from docs/routing.md, checked independently of the trie:
// - a path with a malformed escape or a dot-segment (raw or encoded) is kBadPath;
// - a match fits its route: the method, every static segment (decoded), every capture equal to
//   the decoded text it stands for and named as the route names it;
// - no capture holds what its kind forbids: a {param} is not empty; a {name:file} has no '/',
//   '\' or NUL; a {tail...} is not empty, not absolute, without NUL, '\', "." or ".." segments.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "http/router.hpp"

namespace {

using keel::host::http::MatchResult;
using keel::host::http::MatchScratch;
using keel::host::http::RouteSpec;
using keel::host::http::RouteTable;

void check(bool property) {
  if (!property) __builtin_trap();
}

// docs/routing.md's examples, a file name, a tail, a method wildcard and a trailing slash.
const std::vector<RouteSpec>& fixed_routes() {
  static const std::vector<RouteSpec> routes{
      {"GET", "/files/new", "fuzz", {}},          {"GET", "/files/new/a", "fuzz", {}},
      {"GET", "/files/{id}", "fuzz", {}},         {"GET", "/files/{id}/x", "fuzz", {}},
      {"GET", "/files/{path...}", "fuzz", {}},    {"GET", "/{section}/new/b", "fuzz", {}},
      {"POST", "/files/{id}", "fuzz", {}},        {"GET", "/f/{name:file}", "fuzz", {}},
      {"DELETE", "/f/{id}", "fuzz", {}},          {"*", "/any/{a}/{b}/{rest...}", "fuzz", {}},
      {"GET", "/", "fuzz", {}},                   {"PUT", "/slash/", "fuzz", {}},
  };
  return routes;
}

std::vector<std::string_view> split(std::string_view s, char by) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto at = s.find(by);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 3986 percent-decoding; nothing when an escape is malformed.
std::optional<std::string> decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size()) return std::nullopt;
    const int hi = hex(s[i + 1]), lo = hex(s[i + 2]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

bool dot_segment(std::string_view s) { return s == "." || s == ".."; }

// The path's segments, decoded; nothing when the router must refuse the path as a whole.
std::optional<std::vector<std::string>> decoded_segments(std::string_view path) {
  if (path.empty() || path.front() != '/') return std::nullopt;
  std::vector<std::string> out;
  for (const auto raw : split(path.substr(1), '/')) {
    auto text = decode(raw);
    if (!text || dot_segment(raw) || dot_segment(*text)) return std::nullopt;
    out.push_back(std::move(*text));
  }
  return out;
}

bool safe_tail(std::string_view v) {
  if (v.empty() || v.front() == '/' || v.find('\0') != std::string_view::npos || v.find('\\') != std::string_view::npos)
    return false;
  for (const auto seg : split(v, '/'))
    if (dot_segment(seg)) return false;
  return true;
}

// The match `result` for `method` and `path` against its route, segment by segment.
void check_match(std::string_view method, std::string_view path, const MatchResult& result,
                 const MatchScratch& scratch) {
  const RouteSpec& route = *result.route;
  check(route.method == method || route.method == "*" || (method == "HEAD" && route.method == "GET"));
  const auto segments = decoded_segments(path);
  check(segments.has_value());
  const auto templ = split(std::string_view(route.pattern).substr(1), '/');
  std::size_t captures = 0;
  for (std::size_t i = 0; i < templ.size(); ++i) {
    const auto t = templ[i];
    const bool param = t.size() > 2 && t.front() == '{' && t.back() == '}';
    if (!param) {
      check(i < segments->size() && (*segments)[i] == t);
      continue;
    }
    auto name = t.substr(1, t.size() - 2);
    check(captures < scratch.param_count);
    const auto& captured = scratch.params[captures++];
    std::string expected;
    if (name.ends_with("...")) {
      name.remove_suffix(3);
      check(i < segments->size());
      for (std::size_t k = i; k < segments->size(); ++k) expected += (k == i ? "" : "/") + (*segments)[k];
      check(i + 1 == templ.size() && safe_tail(captured.value));
      check(captured.value == expected && captured.name == name);
      return check(captures == scratch.param_count);
    }
    check(i < segments->size());
    expected = (*segments)[i];
    check(!captured.value.empty() && captured.value == expected);
    if (name.ends_with(":file")) {
      name.remove_suffix(5);
      check(captured.value.find_first_of(std::string_view("/\\\0", 3)) == std::string_view::npos);
    }
    check(captured.name == name);
  }
  check(templ.size() == segments->size() && captures == scratch.param_count);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static const auto fixed = std::get<std::shared_ptr<const RouteTable>>(RouteTable::build(fixed_routes()));
  static MatchScratch scratch;  // reused across inputs, as a connection reuses its own

  auto lines = split(std::string_view(reinterpret_cast<const char*>(data), size), '\n');
  const auto request = lines.back();
  lines.pop_back();
  std::shared_ptr<const RouteTable> table = fixed;
  if (!lines.empty()) {  // a table of its own; one that does not build leaves the fixed one
    auto routes = fixed_routes();
    for (const auto line : lines) {
      const auto sp = line.find(' ');
      routes.push_back({std::string(line.substr(0, sp)),
                        sp == std::string_view::npos ? "" : std::string(line.substr(sp + 1)), "fuzz", {}});
    }
    auto built = RouteTable::build(std::move(routes));
    if (auto* own = std::get_if<std::shared_ptr<const RouteTable>>(&built)) table = std::move(*own);
  }
  const RouteTable& router = *table;

  const auto sp = request.find(' ');
  const auto method = sp == std::string_view::npos ? std::string_view("GET") : request.substr(0, sp);
  const auto path = sp == std::string_view::npos ? request : request.substr(sp + 1);
  const auto result = router.match(method, path, scratch);
  if (!decoded_segments(path)) check(result.kind == MatchResult::Kind::kBadPath);
  if (result.kind == MatchResult::Kind::kFound) check_match(method, path, result, scratch);
  return 0;
}
