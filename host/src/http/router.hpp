#pragma once
// Route table: METHOD + path template -> target, for every plugin route (mounted under its
// prefix) and the host's own routes. Pure and immutable once built: the host builds a new table
// on any change and swaps it in atomically, so match() runs lock-free from every I/O thread.
// match() performs no heap allocation: captures are views into the request path, or into the
// caller's MatchScratch when percent-decoding changed them.

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "abi/limits.hpp"

namespace keel::host::http {

/// What a route leads to; opaque to the router.
struct RouteTarget {
  std::uint32_t owner = 0;  ///< e.g. plugin slot index
  std::uint32_t route = 0;  ///< e.g. index into the plugin manifest's "routes"
};

struct RouteSpec {
  std::string method;   ///< upper-case token, e.g. "GET"; "*" matches any method
  std::string pattern;  ///< absolute template: "/api/orders/{id}", "/files/{path...}"
  std::string owner_name;  ///< for conflict messages, e.g. "orders"
  RouteTarget target;
};

struct RouteConflict {
  std::string message;  ///< names both owners, both patterns and the method
};

struct PathParam {
  std::string_view name;
  std::string_view value;  ///< percent-decoded
};

/// Reusable per-connection storage for decoded captures; keeps match() allocation-free in steady state.
struct MatchScratch {
  static constexpr std::size_t kMaxParams = abi::kMaxRouteParams;
  std::array<PathParam, kMaxParams> params{};
  std::size_t param_count = 0;
  std::string decoded;  ///< backing store for decoded values (capacity reused)
};

struct MatchResult {
  enum class Kind {
    kFound,            ///< target/params valid
    kNotFound,         ///< no template matches the path (404)
    kMethodNotAllowed, ///< the path matches, the method does not (405); `allow` lists methods
    kBadPath,          ///< malformed percent-encoding or a dot-segment ("..", "%2e%2e") (400)
  };
  Kind kind = Kind::kNotFound;
  RouteTarget target;
  const RouteSpec* route = nullptr;  ///< kFound: the matched spec (stable while the table lives)
  std::string_view allow;            ///< kMethodNotAllowed: "GET, HEAD, POST" (owned by the table)
};

class RouteTable {
 public:
  /// Build from `routes`. Errors: malformed templates, and conflicts — two routes with the same
  /// method and equivalent templates (same shape regardless of parameter names).
  static std::variant<std::shared_ptr<const RouteTable>, std::vector<RouteConflict>> build(std::vector<RouteSpec> routes);

  /// Match `path` (percent-encoded, no query) for `method`. HEAD falls back to GET routes.
  /// Precedence per segment: a static segment beats a {param}, which beats a {tail...}.
  MatchResult match(std::string_view method, std::string_view path, MatchScratch& scratch) const noexcept;

  [[nodiscard]] const std::vector<RouteSpec>& routes() const noexcept;
  ~RouteTable();

 private:
  RouteTable();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::host::http
