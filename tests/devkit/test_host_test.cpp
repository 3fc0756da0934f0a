// The installed test host (keel/testing/test_host.h, libkeel-test-host.so), driven as a plugin
// author's test would drive it: through its C API and the C++ wrapper, with real plugins loaded
// from their files. Its own executable: it links the shared library only, as an author's test
// does, never keel_host_core. In the "postgres:" variant the databases are schemas on the shared
// PostgreSQL server (KEEL_TEST_POSTGRES_URL, set by tests/support/main.cpp).
#include <keel/sdk/testing/test_host.hpp>
#include <keel/testing/test_host.h>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "temp_dir.hpp"

namespace {

namespace fs = std::filesystem;
using keel::sdk::testing::TestHost;

std::string plugin(const std::string& name) { return std::string{KEEL_PLUGIN_DIR} + "/" + name + ".so"; }
std::string fixture(const std::string& name) { return std::string{KEEL_FIXTURE_DIR} + "/" + name + ".so"; }

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

/// The "postgres: " variant: the databases are schemas on the shared PostgreSQL server.
bool on_postgres() { return std::getenv("KEEL_TEST_POSTGRES_URL") != nullptr; }

/// Points TMPDIR (where the test host puts its databases) at a directory of the test's own.
class TmpDirScope {
 public:
  explicit TmpDirScope(const fs::path& dir) {
    if (const char* old = std::getenv("TMPDIR")) old_ = old;
    ::setenv("TMPDIR", dir.c_str(), 1);
  }
  ~TmpDirScope() {
    if (old_.empty()) ::unsetenv("TMPDIR");
    else ::setenv("TMPDIR", old_.c_str(), 1);
  }
  TmpDirScope(const TmpDirScope&) = delete;
  TmpDirScope& operator=(const TmpDirScope&) = delete;

 private:
  std::string old_;
};

}  // namespace

TEST_CASE("test host: routes under the mount, config checked against the schema", "[devkit]") {
  TestHost host;
  host.load_file(plugin("hello"), R"({"greeting": "Hej"})");

  auto r = host.request("GET", "/api/hello/greet/Ada");
  CHECK(r.status == 200);
  CHECK(r.content_type == "application/json");
  CHECK(r.body == R"({"greeting":"Hej, Ada!"})");
  // Query parameters reach the plugin form-decoded, as from the host.
  CHECK(host.request("GET", "/api/hello/greet/Ada?greeting=Good+day").body == R"({"greeting":"Good day, Ada!"})");
  r = host.request("POST", "/api/hello/echo", R"({"x":1})", {"Content-Type: application/json"});
  CHECK(r.body == R"({"x":1})");
  CHECK(r.content_type == "application/json");

  // No route: the C API says which routes exist and what the host would answer.
  keel_test_response out{};
  CHECK(keel_test_host_request(host.get(), "GET", "/api/hello/nope", nullptr, nullptr, &out) == KEEL_ERR_NOT_FOUND);
  CHECK(out.status == 404);
  CHECK(contains(host.error(), "routes live under /api/hello"));
  CHECK(keel_test_host_request(host.get(), "DELETE", "/api/hello/echo", nullptr, nullptr, &out) == KEEL_ERR_NOT_FOUND);
  CHECK(out.status == 405);
  CHECK(contains(host.error(), "allowed: POST"));
  CHECK_THROWS_WITH(host.request("GET", "/hello/greet/Ada"), Catch::Contains("routes live under /api/hello"));
}

TEST_CASE("test host: a config the schema refuses, or a bad file, does not load", "[devkit]") {
  SECTION("wrong type") {
    TestHost host;
    CHECK_THROWS_WITH(host.load_file(plugin("hello"), R"({"greeting": 5})"),
                      Catch::Contains("config of plugin hello") && Catch::Contains("greeting"));
    keel_test_response out{};
    CHECK(keel_test_host_request(host.get(), "GET", "/api/hello/greet/x", nullptr, nullptr, &out) == KEEL_ERR_UNAVAILABLE);
  }
  SECTION("unknown key, with a suggestion") {
    TestHost host;
    CHECK_THROWS_WITH(host.load_file(plugin("hello"), R"({"greetng": "Hi"})"), Catch::Contains("greeting"));
  }
  SECTION("not a plugin file") {
    TestHost host;
    CHECK_THROWS_WITH(host.load_file("/nonexistent/x.so"), Catch::Contains("cannot load /nonexistent/x.so"));
  }
  SECTION("a manifest other than the file's section, as the host's loader refuses") {
    TestHost host;
    CHECK_THROWS_WITH(host.load_file(fixture("manifest_mismatch")), Catch::Contains("differs from the .keel_manifest section"));
  }
  SECTION("create fails") {
    TestHost host;
    CHECK_THROWS_WITH(host.load_file(fixture("create_fails")), Catch::Contains("did not load"));
    // A failed load leaves nothing behind: the same host loads another plugin.
    host.load_file(plugin("hello"));
    CHECK(host.request("GET", "/api/hello/greet/Ada").status == 200);
  }
  SECTION("the C API refuses NULLs without crashing") {
    CHECK(keel_test_host_load(nullptr, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
    keel_test_host* host = keel_test_host_create();
    REQUIRE(host != nullptr);
    CHECK(keel_test_host_load(host, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(std::string{keel_test_host_error(host)} == "the plugin table or its manifest is NULL");
    CHECK(keel_test_host_published_count(host) == 0);
    CHECK(keel_test_host_published_topic(host, 0) == nullptr);
    CHECK(keel_test_host_query(host, "SELECT 1", nullptr) == KEEL_ERR_UNSUPPORTED);
    keel_test_host_destroy(host);
    keel_test_host_destroy(nullptr);
  }
}

TEST_CASE("test host: a real database of the plugin's own, migrated, removed with the host", "[devkit][storage]") {
  keel::test::TempDir tmp;
  const TmpDirScope scope{tmp.path()};
  {
    TestHost host;
    host.load_file(fixture("store"));
    // Migrations ran: the tables of both versions exist.
    auto r = host.request("POST", "/api/store/items", "first");
    CHECK(r.status == 201);
    CHECK(host.request("GET", "/api/store/items/" + r.body).body == "first");
    CHECK(host.query("SELECT body FROM items") == R"([{"body":"first"}])");
    CHECK(host.query("SELECT count(*) AS n FROM blobs") == R"([{"n":0}])");

    // Key-value, with compare-and-set.
    r = host.request("PUT", "/api/store/kv/colour", "blue");
    CHECK(r.status == 200);
    CHECK(r.body == "1");
    r = host.request("PUT", "/api/store/kv/colour", "red", {"If-Match: 7"});
    CHECK(r.status == 409);  // the plugin returned conflict; answered as the host would
    CHECK(contains(r.body, R"("code":"conflict")"));
    CHECK(host.request("GET", "/api/store/kv/colour").body == "blue");

    if (!on_postgres()) {
      // A "storage": "read" route only reads, as in the host (on SQLite: on PostgreSQL such a
      // route runs like any other, in the host too; docs/storage.md).
      CHECK(host.request("POST", "/api/store/sql-read", "INSERT INTO items (body) VALUES ('sneaky')").status == 403);
      CHECK(host.query("SELECT count(*) AS n FROM items") == R"([{"n":1}])");
      // Values come back as JSON whatever their type: reals round-trip, blobs as hex (x'..' is
      // SQLite's blob literal).
      CHECK(host.query("SELECT 0.1 AS r, x'00ff' AS b, NULL AS z") == R"([{"r":0.1,"b":"00ff","z":null}])");
    }

    // A failing statement from the test says why.
    CHECK_THROWS_WITH(host.query("SELECT * FROM no_such_table"), Catch::Contains("no_such_table"));
    if (!on_postgres()) CHECK_FALSE(fs::is_empty(tmp.path()));
  }
  CHECK(fs::is_empty(tmp.path()));
}

TEST_CASE("test host: two hosts never share data", "[devkit][storage]") {
  TestHost a;
  TestHost b;
  a.load_file(fixture("store"));
  b.load_file(fixture("store"));
  CHECK(a.request("POST", "/api/store/items", "only in a").status == 201);
  CHECK(a.query("SELECT count(*) AS n FROM items") == R"([{"n":1}])");
  CHECK(b.query("SELECT count(*) AS n FROM items") == R"([{"n":0}])");
}

TEST_CASE("test host: events published in a transaction count when it commits, never when it rolls back",
          "[devkit][storage]") {
  TestHost host;
  host.load_file(fixture("events_pub"));
  CHECK(host.request("POST", "/api/events_pub/txn/2/commit", "c").status == 200);
  auto events = host.published();
  REQUIRE(events.size() == 2);
  CHECK(events[0].topic == "demo.durable");
  CHECK(events[0].payload == "ctx0");
  CHECK(events[1].payload == "ctx1");

  CHECK(host.request("POST", "/api/events_pub/txn/3/rollback", "r").status == 200);
  CHECK(host.published().size() == 2);
  CHECK(host.query("SELECT count(*) AS n FROM sent") == R"([{"n":1}])");
  // A body may hold NULs.
  CHECK(host.request("POST", "/api/events_pub/deep", std::string{"a\0b", 3}).status == 200);
  CHECK(host.published().back().payload == std::string{"a\0b", 3});

  // As in the host: a topic the manifest does not declare is refused (403), and an in-memory
  // topic cannot be published inside a transaction (400).
  // The pointers the C API hands out stay valid however many events follow.
  const char* first_topic = keel_test_host_published_topic(host.get(), 0);
  const char* first_payload = keel_test_host_published_payload(host.get(), 0, nullptr);
  for (int i = 0; i < 20; ++i) CHECK(host.request("POST", "/api/events_pub/txn/1/commit", "more").status == 200);
  CHECK(keel_test_host_published_count(host.get()) == 23);
  CHECK(std::string{first_topic} == "demo.durable");
  CHECK(std::string{first_payload} == "ctx0");

  CHECK(host.request("POST", "/api/events_pub/undeclared").status == 403);
  CHECK(host.request("POST", "/api/events_pub/memory-in-txn").status == 400);
  CHECK(host.published().size() == 23);
}

TEST_CASE("test host: events are delivered to the patterns the manifest subscribes to", "[devkit]") {
  TestHost host;
  host.load_file(fixture("events_sub"));
  CHECK(host.deliver("demo.one", "p1") == KEEL_OK);
  CHECK(host.request("GET", "/api/events_sub/count").body == "1");
  CHECK_THROWS_WITH(host.deliver("other.topic", "x"), Catch::Contains("subscribes to no pattern matching other.topic"));
}

TEST_CASE("test host: answers from other threads, and the deadline", "[devkit]") {
  ::setenv("KEEL_TEST_TIMEOUT_MS", "300", 1);
  TestHost host;
  host.load_file(fixture("async_responder"));
  CHECK(host.request("GET", "/api/async_responder/later").body == "later");  // answered 50 ms later
  keel_test_response out{};
  CHECK(keel_test_host_request(host.get(), "GET", "/api/async_responder/never", nullptr, nullptr, &out) ==
        KEEL_ERR_TIMEOUT);
  CHECK(out.status == 504);
  CHECK(out.returned == KEEL_ERR_TIMEOUT);
  CHECK(std::string{out.body} == R"({"error":{"code":"timeout","message":"plugin 'async_responder' did not answer within 300 ms"}})");
  CHECK(contains(host.error(), "/api/async_responder/never"));
  ::unsetenv("KEEL_TEST_TIMEOUT_MS");
}

TEST_CASE("test host: the plugin's log lines are kept", "[devkit]") {
  TestHost host;
  host.load_file(fixture("log_echo"));
  CHECK(host.request("GET", "/api/log_echo/log?text=disk+almost+full").status == 204);
  CHECK(host.logs() == "warn disk almost full\n");
}
