// keel/sdk/storage.hpp against the host's real storage engine: a plugin loaded into FakeHost
// gets "keel.storage/1" from storage::TestDatabase (a real SQLite file in a temp dir).

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/storage.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "storage/testing.hpp"
#include "temp_dir.hpp"

namespace {

namespace sdk = keel::sdk;
using sdk::testing::FakeHost;

#define PROBE_MANIFEST                                                                                   \
  R"({"name": "probe", "version": "1.0.0", "abi": "1.0", "permissions": ["ext:keel.storage/1"],)"       \
  R"( "migrations": [{"version": 1, "description": "t",)"                                               \
  R"(   "sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, score REAL, data BLOB, n INTEGER);"}]})"

/// PROBE_MANIFEST with durable topics, for the transactional publishes; "orders.note" is in-memory.
#define PROBE_EVENTS_MANIFEST                                                                            \
  R"({"name": "probe", "version": "1.0.0", "abi": "1.0", "permissions": ["ext:keel.storage/1"],)"       \
  R"( "events": {"publishes": ["orders.placed", "orders.paid", "orders.note"],)"                        \
  R"(            "durable": ["orders.placed", "orders.paid"]},)"                                         \
  R"( "migrations": [{"version": 1, "description": "t",)"                                               \
  R"(   "sql": "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, score REAL, data BLOB, n INTEGER);"}]})"

/// A plugin that only holds a Database, so the tests can drive the SDK as a plugin would.
class Probe final : public sdk::Plugin {
 public:
  explicit Probe(sdk::Host& host) : db{host} { instance = this; }
  ~Probe() override { instance = nullptr; }
  sdk::Database db;
  static inline Probe* instance = nullptr;
};

struct Fixture {
  keel::test::TempDir dir;
  FakeHost host;
  keel::host::storage::TestDatabase storage{host.ctx(), dir.path() / "probe.db", PROBE_MANIFEST};
  Fixture() {
    host.add_extension(KEEL_STORAGE_EXTENSION_ID, &storage.table());
    REQUIRE(host.load<Probe>("{}", PROBE_MANIFEST).ok());
    REQUIRE(Probe::instance != nullptr);
    REQUIRE(Probe::instance->db.available());
  }
  sdk::Database& db() { return Probe::instance->db; }
};

std::int64_t count(const sdk::Database& db) {
  std::optional<std::int64_t> n;
  REQUIRE(db.query_value("SELECT count(*) FROM t", {}, n).ok());
  return n.value_or(-1);
}

}  // namespace

TEST_CASE("sdk storage: without the extension every call explains the missing permission", "[sdk][storage]") {
  FakeHost host;
  REQUIRE(host.load<Probe>("{}", R"({"name": "probe", "version": "1.0.0", "abi": "1.0"})").ok());
  auto& db = Probe::instance->db;
  CHECK_FALSE(db.available());
  const auto st = db.exec("SELECT 1");
  CHECK(st.code() == sdk::StatusCode::kPermissionDenied);
  CHECK(st.message().find("ext:keel.storage/1") != std::string::npos);
  CHECK(db.begin().status().code() == sdk::StatusCode::kPermissionDenied);
}

TEST_CASE("sdk storage: parameters and typed columns round-trip", "[sdk][storage]") {
  Fixture f;
  const std::string blob("\x00\xFF\x01", 3);
  sdk::ExecResult r;
  REQUIRE(f.db().exec("INSERT INTO t (name, score, data, n) VALUES (?, ?, ?, ?)",
                      {"zoé", 2.5, sdk::Blob{blob}, std::numeric_limits<std::int64_t>::min()}, &r)
              .ok());
  CHECK(r.changes == 1);
  CHECK(r.last_insert_id == 1);
  REQUIRE(f.db().exec("INSERT INTO t (name, score, data, n) VALUES (?, ?, ?, ?)",
                      {std::string("null-row"), std::nullopt, nullptr, std::optional<int>{}})
              .ok());
  int rows = 0;
  REQUIRE(f.db()
              .query("SELECT id, name, score, data, n FROM t ORDER BY id", {},
                     [&](const sdk::Row& row) {
                       ++rows;
                       CHECK(row.size() == 5);
                       CHECK(row.name(1) == "name");
                       if (row.get<int>("id") == 1) {
                         CHECK(row.get<std::string>("name") == "zoé");
                         CHECK(row.get<double>("score") == 2.5);
                         CHECK(row.get<std::string>("data") == blob);
                         CHECK(row.type(3) == sdk::SqlType::kBlob);
                         CHECK(row.get<std::int64_t>("n") == std::numeric_limits<std::int64_t>::min());
                       } else {
                         CHECK_FALSE(row.get<std::optional<double>>("score").has_value());
                         CHECK(row.is_null(3));
                         CHECK_FALSE(row.get<std::optional<std::int64_t>>(4).has_value());
                       }
                     })
              .ok());
  CHECK(rows == 2);
  std::optional<std::string> name;
  REQUIRE(f.db().query_value("SELECT name FROM t WHERE id = ?", {2}, name).ok());
  CHECK(name == "null-row");
  REQUIRE(f.db().query_value("SELECT name FROM t WHERE id = ?", {99}, name).ok());
  CHECK_FALSE(name.has_value());
}

TEST_CASE("sdk storage: a type mismatch or a throwing callback becomes the query's Status", "[sdk][storage]") {
  Fixture f;
  REQUIRE(f.db().exec("INSERT INTO t (name, n) VALUES ('a', 300)").ok());
  auto st = f.db().query("SELECT name FROM t", {}, [](const sdk::Row& row) { static_cast<void>(row.get<std::int64_t>(0)); });
  CHECK(st.code() == sdk::StatusCode::kInternal);
  CHECK(st.message() == "column 'name' holds a value of type TEXT where INTEGER was requested");
  st = f.db().query("SELECT n FROM t", {}, [](const sdk::Row& row) { static_cast<void>(row.get<std::int8_t>(0)); });
  CHECK(st.message().find("out of range") != std::string::npos);
  st = f.db().query("SELECT n FROM t", {}, [](const sdk::Row& row) { static_cast<void>(row.get<int>("missing")); });
  CHECK(st.message().find("no column named 'missing'") != std::string::npos);
  st = f.db().query("SELECT n FROM t", {}, [](const sdk::Row&) { throw sdk::Error{sdk::Status::conflict("mine")}; });
  CHECK(st.code() == sdk::StatusCode::kConflict);
  st = f.db().query("SELECT n FROM t", {}, [](const sdk::Row&) { throw std::runtime_error("boom"); });
  CHECK(st.message() == "boom");
}

TEST_CASE("sdk storage: failures carry SQLite's message and the mapped code", "[sdk][storage][sqlite]") {
  Fixture f;
  auto st = f.db().exec("SELEC 1");
  CHECK(st.code() == sdk::StatusCode::kInvalidArgument);
  CHECK(st.message().find("syntax error") != std::string::npos);
  REQUIRE(f.db().exec("INSERT INTO t (name) VALUES ('dup')").ok());
  st = f.db().exec("INSERT INTO t (name) VALUES (?)", {"dup"});
  CHECK(st.code() == sdk::StatusCode::kConflict);
  CHECK(st.message().find("UNIQUE constraint failed: t.name") != std::string::npos);
  CHECK(f.db().exec("ATTACH DATABASE 'x.db' AS x").code() == sdk::StatusCode::kPermissionDenied);
}

TEST_CASE("sdk storage: a Transaction rolls back unless committed, savepoints nest", "[sdk][storage]") {
  Fixture f;
  {
    auto tx = f.db().begin();
    REQUIRE(tx.ok());
    REQUIRE(tx->exec("INSERT INTO t (name) VALUES ('dropped')").ok());
  }  // destroyed without commit
  CHECK(count(f.db()) == 0);
  {
    auto tx = f.db().begin();
    REQUIRE(tx.ok());
    REQUIRE(tx->exec("INSERT INTO t (name) VALUES ('kept')").ok());
    {
      auto sp = tx->savepoint();
      REQUIRE(sp.ok());
      REQUIRE(sp->exec("INSERT INTO t (name) VALUES ('inner')").ok());
      REQUIRE(sp->rollback().ok());
    }
    {
      auto sp = tx->savepoint();
      REQUIRE(sp.ok());
      REQUIRE(sp->kv_put("k", "v").ok());
      REQUIRE(sp->commit().ok());
    }
    std::optional<std::int64_t> inside;
    REQUIRE(tx->query_value("SELECT count(*) FROM t", {}, inside).ok());
    CHECK(inside == 1);
    CHECK(count(f.db()) == 0);  // autocommit reads see only committed data
    REQUIRE(tx->commit().ok());
    CHECK(tx->commit().code() == sdk::StatusCode::kNotFound);
  }
  CHECK(count(f.db()) == 1);
  std::optional<sdk::KvEntry> kv;
  REQUIRE(f.db().kv_get("k", kv).ok());
  REQUIRE(kv);
  CHECK(kv->value == "v");
}

TEST_CASE("sdk storage: key-value get, put, compare-and-set, delete and list", "[sdk][storage]") {
  Fixture f;
  std::optional<sdk::KvEntry> e;
  REQUIRE(f.db().kv_get("absent", e).ok());
  CHECK_FALSE(e);
  std::int64_t version = 0;
  REQUIRE(f.db().kv_put("user/1", "ann", {0, {}}, &version).ok());
  CHECK(version == 1);
  CHECK(f.db().kv_put("user/1", "bob", {0, {}}).code() == sdk::StatusCode::kConflict);
  REQUIRE(f.db().kv_put("user/1", "bob", {1, {}}, &version).ok());
  CHECK(version == 2);
  CHECK(f.db().kv_put("user/1", "cy", {1, {}}).code() == sdk::StatusCode::kConflict);
  REQUIRE(f.db().kv_get("user/1", e).ok());
  REQUIRE(e);
  CHECK(e->value == "bob");
  CHECK(e->version == 2);
  for (int i = 2; i <= 5; ++i) REQUIRE(f.db().kv_put("user/" + std::to_string(i), "x").ok());
  REQUIRE(f.db().kv_put("other", "y").ok());
  std::vector<sdk::KvEntry> page;
  bool more = false;
  REQUIRE(f.db().kv_list("user/", "", 3, page, &more).ok());
  REQUIRE(page.size() == 3);
  CHECK(page.front().key == "user/1");
  CHECK(more);
  REQUIRE(f.db().kv_list("user/", page.back().key, 3, page, &more).ok());
  REQUIRE(page.size() == 2);
  CHECK(page.back().key == "user/5");
  CHECK_FALSE(more);
  CHECK(f.db().kv_delete("user/1", 1).code() == sdk::StatusCode::kConflict);
  REQUIRE(f.db().kv_delete("user/1", 2).ok());
  CHECK(f.db().kv_delete("user/1").code() == sdk::StatusCode::kNotFound);
}

TEST_CASE("sdk storage: KEEL_TRY returns the first failure", "[sdk][storage]") {
  Fixture f;
  auto run = [&]() -> sdk::Status {
    KEEL_TRY(f.db().exec("INSERT INTO t (name) VALUES ('once')"));
    KEEL_TRY(f.db().exec("INSERT INTO t (name) VALUES ('once')"));
    return sdk::Status::internal("not reached");
  };
  CHECK(run().code() == sdk::StatusCode::kConflict);
}

TEST_CASE("sdk storage: a test database hands transactional publishes to the fake host on commit only",
          "[sdk][storage]") {
  keel::test::TempDir dir;
  FakeHost host;
  keel::host::storage::TestDatabase storage{host.ctx(), dir.path() / "probe.db", PROBE_EVENTS_MANIFEST, &host.api()};
  host.add_extension(KEEL_STORAGE_EXTENSION_ID, &storage.table());
  REQUIRE(host.load<Probe>("{}", PROBE_EVENTS_MANIFEST).ok());
  auto& db = Probe::instance->db;
  auto topics = [&] {
    std::string out;
    for (const auto& e : host.published()) out += e.topic + "=" + e.payload + ";";
    return out;
  };

  {  // committed: published after the commit, not before
    auto tx = db.begin();
    REQUIRE(tx.ok());
    REQUIRE(tx->exec("INSERT INTO t (name) VALUES ('a')").ok());
    REQUIRE(tx->publish("orders.placed", "1", "text/plain").ok());
    CHECK(host.published().empty());
    REQUIRE(tx->commit().ok());
    CHECK(topics() == "orders.placed=1;");
  }
  {  // rolled back: never published
    auto tx = db.begin();
    REQUIRE(tx.ok());
    REQUIRE(tx->publish("orders.placed", "2", "text/plain").ok());
    REQUIRE(tx->rollback().ok());
    CHECK(topics() == "orders.placed=1;");
  }
  {  // savepoints: a released one's events go with the outer commit, a rolled-back one's never
    auto tx = db.begin();
    REQUIRE(tx.ok());
    {
      auto kept = tx->savepoint();
      REQUIRE(kept.ok());
      REQUIRE(kept->publish("orders.paid", "3", "text/plain").ok());
      REQUIRE(kept->commit().ok());
    }
    {
      auto dropped = tx->savepoint();
      REQUIRE(dropped.ok());
      REQUIRE(dropped->publish("orders.paid", "4", "text/plain").ok());
      REQUIRE(dropped->rollback().ok());
    }
    CHECK(topics() == "orders.placed=1;");
    REQUIRE(tx->commit().ok());
    CHECK(topics() == "orders.placed=1;orders.paid=3;");
  }
  {  // destroyed without commit: the RAII rollback drops the event too
    auto tx = db.begin();
    REQUIRE(tx.ok());
    REQUIRE(tx->publish("orders.placed", "5", "text/plain").ok());
  }
  CHECK(topics() == "orders.placed=1;orders.paid=3;");
  {  // as the host's bus: an undeclared topic is refused, an in-memory one has no place in a transaction
    auto tx = db.begin();
    REQUIRE(tx.ok());
    const auto undeclared = tx->publish("orders.secret", "6", "text/plain");
    CHECK(undeclared.code() == sdk::StatusCode::kPermissionDenied);
    CHECK_THAT(undeclared.message(), Catch::Contains("events.publishes"));
    const auto in_memory = tx->publish("orders.note", "7", "text/plain");
    CHECK(in_memory.code() == sdk::StatusCode::kInvalidArgument);
    CHECK_THAT(in_memory.message(), Catch::Contains("in-memory"));
    REQUIRE(tx->commit().ok());
  }
  CHECK(topics() == "orders.placed=1;orders.paid=3;");
  // Outside a transaction an in-memory topic is fine: it is published at once, like
  // keel_host_api.publish.
  keel_publish_args note{};
  note.struct_size = sizeof note;
  note.topic = {"orders.note", 11};
  note.payload = {"8", 1};
  CHECK(storage.table().publish(host.ctx(), KEEL_TXN_NONE, &note) == KEEL_OK);
  CHECK(topics() == "orders.placed=1;orders.paid=3;orders.note=8;");
}

TEST_CASE("sdk storage: without a publish receiver a transactional publish is unsupported", "[sdk][storage]") {
  Fixture f;
  auto tx = f.db().begin();
  REQUIRE(tx.ok());
  const auto st = tx->publish("orders.placed", "1");
  CHECK(st.code() == sdk::StatusCode::kUnsupported);
  CHECK(st.message().find("publish receiver") != std::string::npos);
}
