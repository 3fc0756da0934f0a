#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "http/router.hpp"

// ---------------------------------------------------------------------------------------------
// Counting replacement of the global allocation functions, so a test can prove that match()
// does not allocate. It replaces them for the whole keel_unit_tests binary, so every form is
// provided ([new.delete]: plain, array, nothrow, sized, aligned) and each forwards to malloc/free
// exactly like the default. Only the calling thread's count changes.
// ---------------------------------------------------------------------------------------------
namespace {

thread_local std::size_t allocation_count = 0;

void* counted_alloc(std::size_t size) noexcept {
  ++allocation_count;
  return std::malloc(size == 0 ? 1 : size);
}

void* counted_aligned_alloc(std::size_t size, std::align_val_t align) noexcept {
  ++allocation_count;
  std::size_t alignment = static_cast<std::size_t>(align);
  if (alignment < sizeof(void*)) alignment = sizeof(void*);
  void* p = nullptr;
  return posix_memalign(&p, alignment, size == 0 ? 1 : size) == 0 ? p : nullptr;
}

void* checked(void* p) {
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

}  // namespace

void* operator new(std::size_t size) { return checked(counted_alloc(size)); }
void* operator new[](std::size_t size) { return checked(counted_alloc(size)); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept { return counted_alloc(size); }
void* operator new(std::size_t size, std::align_val_t a) { return checked(counted_aligned_alloc(size, a)); }
void* operator new[](std::size_t size, std::align_val_t a) { return checked(counted_aligned_alloc(size, a)); }
void* operator new(std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(size, a);
}
void* operator new[](std::size_t size, std::align_val_t a, const std::nothrow_t&) noexcept {
  return counted_aligned_alloc(size, a);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, const std::nothrow_t&) noexcept { std::free(p); }

using keel::host::http::MatchResult;
using keel::host::http::MatchScratch;
using keel::host::http::RouteSpec;
using keel::host::http::RouteTable;
using keel::host::http::RouteTarget;
using Kind = MatchResult::Kind;

namespace Catch {
template <>
struct StringMaker<Kind> {
  static std::string convert(Kind k) {
    switch (k) {
      case Kind::kFound: return "kFound";
      case Kind::kNotFound: return "kNotFound";
      case Kind::kMethodNotAllowed: return "kMethodNotAllowed";
      case Kind::kBadPath: return "kBadPath";
    }
    return "?";
  }
};
}  // namespace Catch

namespace {

constexpr std::uint32_t kNoRoute = 0xffffffff;

struct Decl {
  std::string method;
  std::string pattern;
  std::string owner = "test";
};

// target.route is the declaration's index, so a match can be checked against the list.
std::vector<RouteSpec> specs(std::initializer_list<Decl> decls) {
  std::vector<RouteSpec> out;
  std::uint32_t i = 0;
  for (const Decl& d : decls) out.push_back(RouteSpec{d.method, d.pattern, d.owner, RouteTarget{7, i++}});
  return out;
}

std::shared_ptr<const RouteTable> build_ok(std::initializer_list<Decl> decls) {
  auto built = RouteTable::build(specs(decls));
  if (const auto* errors = std::get_if<std::vector<keel::host::http::RouteConflict>>(&built)) {
    for (const auto& e : *errors) UNSCOPED_INFO(e.message);
  }
  REQUIRE(std::holds_alternative<std::shared_ptr<const RouteTable>>(built));
  return std::get<std::shared_ptr<const RouteTable>>(built);
}

std::vector<std::string> build_errors(std::initializer_list<Decl> decls) {
  auto built = RouteTable::build(specs(decls));
  std::vector<std::string> out;
  if (const auto* errors = std::get_if<std::vector<keel::host::http::RouteConflict>>(&built)) {
    for (const auto& e : *errors) out.push_back(e.message);
  }
  return out;
}

struct Outcome {
  Kind kind = Kind::kNotFound;
  std::uint32_t route = kNoRoute;
  std::vector<std::pair<std::string, std::string>> params;
  std::string allow;

  [[nodiscard]] std::string param(std::string_view name) const {
    for (const auto& [n, v] : params) {
      if (n == name) return v;
    }
    return "<absent>";
  }
};

Outcome lookup(const RouteTable& table, std::string_view method, std::string_view path) {
  MatchScratch scratch;
  const MatchResult r = table.match(method, path, scratch);
  Outcome o;
  o.kind = r.kind;
  if (r.kind == Kind::kFound) {
    REQUIRE(r.route != nullptr);
    CHECK(r.route->target.route == r.target.route);
    o.route = r.target.route;
    for (std::size_t i = 0; i < scratch.param_count; ++i) {
      o.params.emplace_back(std::string(scratch.params[i].name), std::string(scratch.params[i].value));
    }
  } else {
    CHECK(r.route == nullptr);
    CHECK(scratch.param_count == 0);
  }
  o.allow = std::string(r.allow);
  return o;
}

bool points_into(std::string_view inner, std::string_view outer) {
  return !inner.empty() && inner.data() >= outer.data() && inner.data() + inner.size() <= outer.data() + outer.size();
}

}  // namespace

TEST_CASE("router matches static routes, the root and significant trailing slashes", "[http][router]") {
  const auto t = build_ok({{"GET", "/"}, {"GET", "/a"}, {"GET", "/a/"}, {"GET", "/a/b"}});
  CHECK(lookup(*t, "GET", "/").route == 0);
  CHECK(lookup(*t, "GET", "/a").route == 1);
  CHECK(lookup(*t, "GET", "/a/").route == 2);
  CHECK(lookup(*t, "GET", "/a/b").route == 3);
  CHECK(lookup(*t, "GET", "/a/b/").kind == Kind::kNotFound);
  CHECK(lookup(*t, "GET", "/A").kind == Kind::kNotFound);  // case-sensitive
  CHECK(lookup(*t, "GET", "//").kind == Kind::kNotFound);
  CHECK(lookup(*t, "GET", "/a//b").kind == Kind::kNotFound);
}

TEST_CASE("router prefers a static segment over a parameter over a tail", "[http][router]") {
  const auto t = build_ok({{"GET", "/files/{path...}"}, {"GET", "/files/{id}"}, {"GET", "/files/new"}});

  SECTION("static wins") {
    const auto o = lookup(*t, "GET", "/files/new");
    CHECK(o.route == 2);
    CHECK(o.params.empty());
  }
  SECTION("parameter wins over tail for one segment") {
    const auto o = lookup(*t, "GET", "/files/42");
    CHECK(o.route == 1);
    CHECK(o.param("id") == "42");
  }
  SECTION("tail takes several segments, joined with '/'") {
    const auto o = lookup(*t, "GET", "/files/a/b/c.txt");
    CHECK(o.route == 0);
    CHECK(o.param("path") == "a/b/c.txt");
  }
  SECTION("tail keeps a trailing slash") {
    CHECK(lookup(*t, "GET", "/files/a/").param("path") == "a/");
  }
  SECTION("a tail needs at least one byte") {
    CHECK(lookup(*t, "GET", "/files/").kind == Kind::kNotFound);
    CHECK(lookup(*t, "GET", "/files").kind == Kind::kNotFound);
  }
}

TEST_CASE("router backtracks when the preferred branch fails deeper down", "[http][router]") {
  const auto t = build_ok({
      {"GET", "/files/new/a"},       // 0
      {"GET", "/files/{id}/x"},      // 1
      {"GET", "/files/{p...}"},      // 2
      {"GET", "/{section}/new/b"},   // 3
  });
  SECTION("static branch dead-ends, parameter branch matches") {
    const auto o = lookup(*t, "GET", "/files/new/x");
    CHECK(o.route == 1);
    CHECK(o.param("id") == "new");
  }
  SECTION("static and parameter branches dead-end, tail matches") {
    const auto o = lookup(*t, "GET", "/files/new/zzz");
    CHECK(o.route == 2);
    CHECK(o.param("p") == "new/zzz");
  }
  SECTION("precedence is decided at the first segment where templates differ") {
    // "files" beats {section} at the first segment, so the tail under it wins over /{section}/new/b.
    const auto o = lookup(*t, "GET", "/files/new/b");
    CHECK(o.route == 2);
    CHECK(o.param("p") == "new/b");
    CHECK(lookup(*t, "GET", "/other/new/b").param("section") == "other");
  }
  SECTION("backtracking all the way to the root's parameter") {
    const auto t2 = build_ok({{"GET", "/files/new/a"}, {"GET", "/files/{id}/x"}, {"GET", "/{section}/new/b"}});
    const auto o = lookup(*t2, "GET", "/files/new/b");
    CHECK(o.route == 2);
    CHECK(o.params.size() == 1);
    CHECK(o.param("section") == "files");
  }
  SECTION("captures of an abandoned branch do not leak") {
    const auto o = lookup(*t, "GET", "/files/new/a");
    CHECK(o.route == 0);
    CHECK(o.params.empty());
  }
}

TEST_CASE("router follows the precedence table of docs/routing.md", "[http][router]") {
  const auto t = build_ok({
      {"GET", "/files/new"},          // 0
      {"GET", "/files/new/a"},        // 1
      {"GET", "/files/{id}"},         // 2
      {"GET", "/files/{id}/x"},       // 3
      {"GET", "/files/{path...}"},    // 4
      {"GET", "/{section}/new/b"},    // 5
  });
  CHECK(lookup(*t, "GET", "/files/new").route == 0);
  CHECK(lookup(*t, "GET", "/files/42").param("id") == "42");
  CHECK(lookup(*t, "GET", "/files/new/x").route == 3);
  CHECK(lookup(*t, "GET", "/files/new/x").param("id") == "new");
  CHECK(lookup(*t, "GET", "/files/new/zzz").param("path") == "new/zzz");
  CHECK(lookup(*t, "GET", "/files/new/b").route == 4);
  CHECK(lookup(*t, "GET", "/other/new/b").param("section") == "other");
  CHECK(lookup(*t, "GET", "/files/").kind == Kind::kNotFound);
}

TEST_CASE("router names captures after the matched route", "[http][router]") {
  const auto t = build_ok({
      {"GET", "/api/orders/{id}"},
      {"DELETE", "/api/orders/{order_id}"},
      {"GET", "/api/{plugin}/items/{item}/{rest...}"},
  });
  CHECK(lookup(*t, "GET", "/api/orders/7").param("id") == "7");
  const auto del = lookup(*t, "DELETE", "/api/orders/7");
  CHECK(del.route == 1);
  CHECK(del.param("order_id") == "7");
  CHECK(del.param("id") == "<absent>");

  const auto o = lookup(*t, "GET", "/api/shop/items/9/a/b");
  REQUIRE(o.params.size() == 3);
  CHECK(o.params[0] == std::pair<std::string, std::string>{"plugin", "shop"});
  CHECK(o.params[1] == std::pair<std::string, std::string>{"item", "9"});
  CHECK(o.params[2] == std::pair<std::string, std::string>{"rest", "a/b"});
}

TEST_CASE("router percent-decodes captures and compares static segments decoded", "[http][router]") {
  const auto t = build_ok({{"GET", "/abc"}, {"GET", "/p/{v}"}, {"GET", "/t/{rest...}"}, {"GET", "/x+y"}});

  SECTION("static segments match their decoded spelling") {
    CHECK(lookup(*t, "GET", "/a%62c").route == 0);
    CHECK(lookup(*t, "GET", "/%61%62%63").route == 0);
    CHECK(lookup(*t, "GET", "/x+y").route == 3);
    CHECK(lookup(*t, "GET", "/x%2By").route == 3);
    CHECK(lookup(*t, "GET", "/x%20y").kind == Kind::kNotFound);  // '+' is not a space in paths
  }
  SECTION("captures are decoded") {
    CHECK(lookup(*t, "GET", "/p/%41").param("v") == "A");
    CHECK(lookup(*t, "GET", "/p/a+b").param("v") == "a+b");
    CHECK(lookup(*t, "GET", "/p/caf%C3%A9").param("v") == "caf\xC3\xA9");
    CHECK(lookup(*t, "GET", "/p/100%25").param("v") == "100%");
    CHECK(lookup(*t, "GET", "/t/a%20b/c%2Fd").param("rest") == "a b/c/d");
  }
  SECTION("an encoded slash inside a {param} is data") {
    const auto o = lookup(*t, "GET", "/p/a%2Fb");
    CHECK(o.route == 1);
    CHECK(o.param("v") == "a/b");
    CHECK(lookup(*t, "GET", "/p/a%2F..%2Fb").param("v") == "a/../b");
  }
  SECTION("values that need no decoding are views into the path, others into the scratch") {
    const std::string path = "/p/plain";
    MatchScratch scratch;
    REQUIRE(t->match("GET", path, scratch).kind == Kind::kFound);
    CHECK(points_into(scratch.params[0].value, path));

    const std::string mixed = "/t/plain/%41";  // the tail holds an escape: decoded copy
    REQUIRE(t->match("GET", mixed, scratch).kind == Kind::kFound);
    CHECK(scratch.params[0].value == "plain/A");
    CHECK(points_into(scratch.params[0].value, scratch.decoded));

    const std::string other = "/p%2F/x";  // escape elsewhere; this capture still views the path
    const auto t2 = build_ok({{"GET", "/{a}/{b}"}});
    REQUIRE(t2->match("GET", other, scratch).kind == Kind::kFound);
    CHECK(scratch.params[0].value == "p/");
    CHECK(points_into(scratch.params[0].value, scratch.decoded));
    CHECK(points_into(scratch.params[1].value, other));
  }
}

TEST_CASE("router rejects malformed percent-encoding anywhere in the path", "[http][router]") {
  const auto t = build_ok({{"GET", "/p/{v}"}, {"GET", "/t/{rest...}"}});
  for (const std::string_view path : {"/p/%4", "/p/%", "/p/%zz", "/p/%g0", "/p/%0g", "/p/%4/x", "/nowhere/%",
                                      "/p/ok/%x1", "/t/a/%2", "/%"}) {
    INFO(path);
    CHECK(lookup(*t, "GET", path).kind == Kind::kBadPath);
  }
}

TEST_CASE("router rejects dot-segments however they are spelled", "[http][router]") {
  const auto t = build_ok({{"GET", "/{a}/{b}"}, {"GET", "/t/{rest...}"}, {"GET", "/{a}"}});
  for (const std::string_view path : {"/..", "/.", "/a/..", "/a/.", "/../a", "/a/../b", "/./a", "/%2e%2e", "/%2E%2e/x",
                                      "/.%2e", "/%2e.", "/%2e", "/t/a/../b", "/t/%2e%2e/etc", "/nowhere/../x"}) {
    INFO(path);
    CHECK(lookup(*t, "GET", path).kind == Kind::kBadPath);
  }
  SECTION("dots that are not dot-segments are ordinary text") {
    CHECK(lookup(*t, "GET", "/...").param("a") == "...");
    CHECK(lookup(*t, "GET", "/.a").param("a") == ".a");
    CHECK(lookup(*t, "GET", "/a..").param("a") == "a..");
    CHECK(lookup(*t, "GET", "/t/a.b/..c").param("rest") == "a.b/..c");
  }
  SECTION("paths must be absolute") {
    CHECK(lookup(*t, "GET", "").kind == Kind::kBadPath);
    CHECK(lookup(*t, "GET", "a/b").kind == Kind::kBadPath);
    CHECK(lookup(*t, "GET", "*").kind == Kind::kBadPath);
    CHECK(lookup(*t, "GET", "%2Fa").kind == Kind::kBadPath);
  }
}

TEST_CASE("router rejects tail captures that could escape a directory", "[http][router]") {
  const auto t = build_ok({{"GET", "/files/{path...}"}, {"GET", "/one/{name}"}});
  for (const std::string_view path : {"/files/a%2F..%2Fb", "/files/a%2F..", "/files/..%2Fetc", "/files/a/b%2F%2E%2E",
                                      "/files/%2Fetc/passwd", "/files//etc/passwd", "/files/a%00.txt",
                                      "/files/a%5Cb", "/files/a\\b", "/files/a%2F.%2Fb"}) {
    INFO(path);
    CHECK(lookup(*t, "GET", path).kind == Kind::kBadPath);
  }
  SECTION("the same bytes in a single-segment parameter are data") {
    CHECK(lookup(*t, "GET", "/one/..%2Fetc").param("name") == "../etc");
    CHECK(lookup(*t, "GET", "/one/a%5Cb").param("name") == "a\\b");
  }
  SECTION("ordinary tails pass") {
    CHECK(lookup(*t, "GET", "/files/a/b//c").param("path") == "a/b//c");
    CHECK(lookup(*t, "GET", "/files/a%2Fb").param("path") == "a/b");
  }
}

TEST_CASE("router refuses a {name:file} capture that is not one file name, for that route only", "[http][router]") {
  const auto t = build_ok({{"GET", "/f/{name:file}/meta"}, {"DELETE", "/f/{id}/meta"}, {"GET", "/g/{a}/{b:file}"}});
  for (const std::string_view path : {"/f/..%2Fetc/meta", "/f/a%2Fb/meta", "/f/a%5Cb/meta", "/f/a\\b/meta",
                                      "/f/a%00b/meta", "/g/x/a%2F", "/g/x/%00"}) {
    INFO(path);
    CHECK(lookup(*t, "GET", path).kind == Kind::kBadPath);
  }
  SECTION("plain file names pass, decoded, under the name without :file") {
    CHECK(lookup(*t, "GET", "/f/report%20v2.txt/meta").param("name") == "report v2.txt");
    CHECK(lookup(*t, "GET", "/f/a..b/meta").param("name") == "a..b");
    CHECK(lookup(*t, "GET", "/g/a%2Fb/c.txt").param("a") == "a/b");  // only {b} is a file name
    CHECK(lookup(*t, "GET", "/g/a%2Fb/c.txt").param("b") == "c.txt");
  }
  SECTION("another route through the same node keeps its plain parameter") {
    CHECK(lookup(*t, "DELETE", "/f/a%2Fb/meta").param("id") == "a/b");
  }
  SECTION("{name:file} and {name} have the same shape: same method conflicts") {
    CHECK_FALSE(build_errors({{"GET", "/x/{a:file}"}, {"GET", "/x/{b}"}}).empty());
  }
}

TEST_CASE("router answers 405 with the leaf's methods and 404 for unknown paths", "[http][router]") {
  const auto t = build_ok({
      {"GET", "/x"},        // 0
      {"POST", "/x"},       // 1
      {"PUT", "/y"},        // 2
      {"HEAD", "/z"},       // 3
      {"GET", "/z"},        // 4
      {"DELETE", "/w"},     // 5
  });
  SECTION("405 lists the methods, sorted, with HEAD implied by GET") {
    const auto o = lookup(*t, "DELETE", "/x");
    CHECK(o.kind == Kind::kMethodNotAllowed);
    CHECK(o.allow == "GET, HEAD, POST");
    CHECK(lookup(*t, "GET", "/y").allow == "PUT");
    CHECK(lookup(*t, "POST", "/z").allow == "GET, HEAD");
    CHECK(lookup(*t, "HEAD", "/w").allow == "DELETE");
  }
  SECTION("methods are case-sensitive") { CHECK(lookup(*t, "get", "/x").kind == Kind::kMethodNotAllowed); }
  SECTION("HEAD falls back to GET, but an explicit HEAD route wins") {
    CHECK(lookup(*t, "HEAD", "/x").route == 0);
    CHECK(lookup(*t, "HEAD", "/z").route == 3);
    CHECK(lookup(*t, "GET", "/z").route == 4);
  }
  SECTION("the allow list is owned by the table") {
    MatchScratch s;
    const auto a = t->match("PATCH", "/x", s).allow;
    const auto b = t->match("PATCH", "/x", s).allow;
    CHECK(a.data() == b.data());
  }
  SECTION("404") {
    CHECK(lookup(*t, "GET", "/nope").kind == Kind::kNotFound);
    CHECK(lookup(*t, "GET", "/x/y").kind == Kind::kNotFound);
    CHECK(lookup(*t, "GET", "/nope").allow.empty());
  }
}

TEST_CASE("router picks the highest-precedence leaf that has the method", "[http][router]") {
  const auto t = build_ok({
      {"GET", "/files/new"},          // 0
      {"POST", "/files/{id}"},        // 1
      {"PUT", "/files/{rest...}"},    // 2
      {"PATCH", "/files/{rest...}"},  // 3
  });
  CHECK(lookup(*t, "GET", "/files/new").route == 0);
  CHECK(lookup(*t, "POST", "/files/new").route == 1);
  CHECK(lookup(*t, "PUT", "/files/new").route == 2);
  CHECK(lookup(*t, "PUT", "/files/new").param("rest") == "new");
  SECTION("no leaf has the method: 405 with the allow list of the most specific leaf") {
    const auto o = lookup(*t, "DELETE", "/files/new");
    CHECK(o.kind == Kind::kMethodNotAllowed);
    CHECK(o.allow == "GET, HEAD");
    CHECK(lookup(*t, "DELETE", "/files/7").allow == "POST");
    CHECK(lookup(*t, "DELETE", "/files/7/8").allow == "PATCH, PUT");
  }
  SECTION("a 405 on one branch does not hide a 200 on a later branch") {
    const auto t2 = build_ok({{"GET", "/a/b/c"}, {"POST", "/a/{x}/c"}});
    CHECK(lookup(*t2, "POST", "/a/b/c").route == 1);
  }
}

TEST_CASE("router treats * as any method", "[http][router]") {
  const auto t = build_ok({{"*", "/any"}, {"GET", "/any/{x}"}});
  CHECK(lookup(*t, "PATCH", "/any").route == 0);
  CHECK(lookup(*t, "HEAD", "/any").route == 0);
  CHECK(lookup(*t, "GET", "/any").route == 0);
  CHECK(lookup(*t, "GET", "/any/1").route == 1);
  CHECK(lookup(*t, "POST", "/any/1").allow == "GET, HEAD");
}

TEST_CASE("router reports every conflict, naming both plugins", "[http][router]") {
  SECTION("same method, same shape, different parameter names") {
    const auto errors = build_errors({{"GET", "/api/orders/{id}", "orders"}, {"GET", "/api/orders/{order_id}", "billing"}});
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] ==
          "route conflict: GET /api/orders/{id} (plugin 'orders') and GET /api/orders/{order_id} (plugin 'billing')");
  }
  SECTION("every pair is reported") {
    const auto errors = build_errors({{"GET", "/a", "p1"},
                                      {"GET", "/a", "p2"},
                                      {"POST", "/b/{x...}", "p3"},
                                      {"GET", "/a", "p4"},
                                      {"POST", "/b/{y...}", "p5"}});
    REQUIRE(errors.size() == 4);
    CHECK(errors[0] == "route conflict: GET /a (plugin 'p1') and GET /a (plugin 'p2')");
    CHECK(errors[1] == "route conflict: GET /a (plugin 'p1') and GET /a (plugin 'p4')");
    CHECK(errors[2] == "route conflict: GET /a (plugin 'p2') and GET /a (plugin 'p4')");
    CHECK(errors[3] == "route conflict: POST /b/{x...} (plugin 'p3') and POST /b/{y...} (plugin 'p5')");
  }
  SECTION("* conflicts with every method on the same shape") {
    const auto errors = build_errors({{"GET", "/a/{id}", "p1"}, {"*", "/a/{x}", "p2"}, {"POST", "/a/{y}", "p3"}});
    REQUIRE(errors.size() == 2);
    CHECK(errors[0] == "route conflict: GET /a/{id} (plugin 'p1') and * /a/{x} (plugin 'p2')");
    CHECK(errors[1] == "route conflict: * /a/{x} (plugin 'p2') and POST /a/{y} (plugin 'p3')");
  }
  SECTION("different shapes or methods do not conflict") {
    build_ok({{"GET", "/a/{id}"},
              {"GET", "/a/{id...}"},
              {"GET", "/a/b"},
              {"GET", "/a/{id}/"},
              {"HEAD", "/a/{x}"},
              {"POST", "/a/{y}"},
              {"GET", "/{a}/{b}"}});
  }
  SECTION("invalid templates and conflicts are reported together") {
    const auto errors = build_errors({{"GET", "/a", "p1"}, {"GET", "no-slash", "p2"}, {"GET", "/a", "p3"}});
    REQUIRE(errors.size() == 2);
    CHECK(errors[0] == "invalid route: GET no-slash (plugin 'p2'): pattern must start with '/'");
    CHECK(errors[1] == "route conflict: GET /a (plugin 'p1') and GET /a (plugin 'p3')");
  }
}

TEST_CASE("router rejects malformed templates with a message naming owner and pattern", "[http][router]") {
  struct Bad {
    std::string method;
    std::string pattern;
    std::string reason;
  };
  const std::vector<Bad> cases = {
      {"GET", "", "pattern must start with '/'"},
      {"GET", "a/b", "pattern must start with '/'"},
      {"GET", "/a//b", "empty segment"},
      {"GET", "//", "empty segment"},
      {"GET", "/a?b", "character '?' is not allowed"},
      {"GET", "/a#b", "character '#' is not allowed"},
      {"GET", "/a%20b", "character '%' is not allowed"},
      {"GET", "/a b", "byte 0x20 is not allowed"},
      {"GET", "/a\tb", "byte 0x09 is not allowed"},
      {"GET", "/a/..", "'.' and '..' are not allowed"},
      {"GET", "/./a", "'.' and '..' are not allowed"},
      {"GET", "/a{id}", "must span a whole segment"},
      {"GET", "/{id}x", "must span a whole segment"},
      {"GET", "/{id", "must span a whole segment"},
      {"GET", "/{}", "invalid parameter name ''"},
      {"GET", "/{...}", "invalid parameter name ''"},
      {"GET", "/{1d}", "invalid parameter name '1d'"},
      {"GET", "/{a-b}", "invalid parameter name 'a-b'"},
      {"GET", "/{a}/{a}", "duplicate parameter name 'a'"},
      {"GET", "/{a}/{a...}", "duplicate parameter name 'a'"},
      {"GET", "/{rest...}/x", "tail parameter '{rest...}' must be the last segment"},
      {"GET", "/{rest...}/", "tail parameter '{rest...}' must be the last segment"},
      {"get", "/a", "method must be '*' or an upper-case token"},
      {"", "/a", "method must be '*' or an upper-case token"},
      {"GET POST", "/a", "method must be '*' or an upper-case token"},
  };
  for (const Bad& c : cases) {
    INFO(c.method << " " << c.pattern);
    std::vector<RouteSpec> one{RouteSpec{c.method, c.pattern, "orders", {}}};
    auto built = RouteTable::build(std::move(one));
    REQUIRE(std::holds_alternative<std::vector<keel::host::http::RouteConflict>>(built));
    const auto& errors = std::get<std::vector<keel::host::http::RouteConflict>>(built);
    REQUIRE(errors.size() == 1);
    const std::string& m = errors[0].message;
    CHECK_THAT(m, Catch::StartsWith("invalid route: " + c.method + " " + c.pattern + " (plugin 'orders'): "));
    CHECK_THAT(m, Catch::Contains(c.reason));
  }

  SECTION("valid corner cases") {
    build_ok({{"GET", "/"},
              {"GET", "/{all...}"},
              {"GET", "/a/"},
              {"GET", "/{A_b9}/"},
              {"M-SEARCH", "/a"},
              {"GET", "/a-._~!$&'()*+,;=:@"},
              {"GET", "/..."}});
  }
  SECTION("at most MatchScratch::kMaxParams captures") {
    std::string sixteen;
    std::string seventeen;
    for (std::size_t i = 0; i < MatchScratch::kMaxParams; ++i) sixteen += "/{p" + std::to_string(i) + "}";
    seventeen = sixteen + "/{last...}";
    std::vector<RouteSpec> ok{RouteSpec{"GET", sixteen, "p", {}}};
    CHECK(std::holds_alternative<std::shared_ptr<const RouteTable>>(RouteTable::build(std::move(ok))));
    std::vector<RouteSpec> too_many{RouteSpec{"GET", seventeen, "p", {}}};
    auto built = RouteTable::build(std::move(too_many));
    REQUIRE(std::holds_alternative<std::vector<keel::host::http::RouteConflict>>(built));
    CHECK_THAT(std::get<1>(built).at(0).message, Catch::Contains("more than 16 parameters"));
  }
}

TEST_CASE("router keeps the specs in build order", "[http][router]") {
  const auto t = build_ok({{"POST", "/b", "p1"}, {"GET", "/a", "p2"}, {"GET", "/a/{x}", "p3"}});
  const auto& routes = t->routes();
  REQUIRE(routes.size() == 3);
  CHECK(routes[0].pattern == "/b");
  CHECK(routes[1].pattern == "/a");
  CHECK(routes[2].owner_name == "p3");
  MatchScratch s;
  const auto r = t->match("GET", "/a/1", s);
  CHECK(r.route == &routes[2]);
  CHECK(r.target.owner == 7);
  CHECK(r.target.route == 2);

  SECTION("an empty table answers 404") {
    const auto empty = build_ok({});
    CHECK(empty->routes().empty());
    CHECK(lookup(*empty, "GET", "/").kind == Kind::kNotFound);
  }
}

TEST_CASE("router match does not allocate once the scratch is warm", "[http][router]") {
  const auto t = build_ok({
      {"GET", "/api/orders/{id}"},
      {"POST", "/api/orders"},
      {"GET", "/api/files/{path...}"},
      {"GET", "/api/files/new"},
      {"*", "/api/any/{x}"},
  });
  constexpr std::string_view kPaths[] = {
      "/api/orders/42",           "/api/orders/%41%42%43",       "/api/files/a/b/c", "/api/files/a%20b/c",
      "/api/files/new",           "/api/orders",                 "/nowhere",         "/api/%2e%2e",
      "/api/files/a%2F..%2Fb",    "/api/orders/%zz",             "/api/any/x",       "/api/orders/1/2",
  };
  MatchScratch scratch;
  for (const auto path : kPaths) (void)t->match("GET", path, scratch);  // warm-up: scratch.decoded grows once

  {
    // The counter must actually see allocations, or a zero below proves nothing.
    const std::size_t before = allocation_count;
    void* volatile probe = ::operator new(64);
    ::operator delete(probe);
    REQUIRE(allocation_count == before + 1);
  }

  std::size_t kinds[4] = {};
  std::size_t captured_bytes = 0;
  const std::size_t before = allocation_count;
  for (int i = 0; i < 1000; ++i) {
    for (const auto path : kPaths) {
      const MatchResult r = t->match(i % 2 == 0 ? "GET" : "DELETE", path, scratch);
      ++kinds[static_cast<std::size_t>(r.kind)];
      for (std::size_t p = 0; p < scratch.param_count; ++p) captured_bytes += scratch.params[p].value.size();
    }
  }
  const std::size_t allocations = allocation_count - before;
  CHECK(allocations == 0);
  CHECK(kinds[static_cast<std::size_t>(Kind::kFound)] > 0);
  CHECK(kinds[static_cast<std::size_t>(Kind::kNotFound)] > 0);
  CHECK(kinds[static_cast<std::size_t>(Kind::kMethodNotAllowed)] > 0);
  CHECK(kinds[static_cast<std::size_t>(Kind::kBadPath)] > 0);
  CHECK(captured_bytes > 0);
}
