// The PostgreSQL engine's own promises (docs/storage.md "PostgreSQL"): each plugin's role reaches
// only its schema, typed values and last_insert_id, SQLSTATE mapping, the pool's bounds and
// server-side timeouts, compare-and-set between hosts, and recovery from a server restart. These
// run only in the ctest "postgres:" variant, against the shared server (KEEL_TEST_POSTGRES_DIR);
// the restart test starts a server of its own.

#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "postgres_server.hpp"
#include "process.hpp"
#include "storage/migrations.hpp"
#include "storage/postgres/postgres_database.hpp"
#include "storage_test_support.hpp"

using namespace keel::test::storage;
using Clock = std::chrono::steady_clock;

namespace {

/// Skips (passes with a note) when the suite is not running against PostgreSQL.
#define REQUIRE_POSTGRES()                                                      \
  if (!on_postgres()) {                                                         \
    WARN("KEEL_SKIP: needs KEEL_TEST_POSTGRES_DIR (the ctest postgres: variant)"); \
    return;                                                                     \
  }

std::int64_t ms_since(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t).count();
}

}  // namespace

TEST_CASE("postgres engine: a plugin's role reaches only its own schema, and the server refuses the rest", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb a;
  TestDb b;
  const auto schema_a = kst::PostgresDatabase::schema_name("keel", a.options.plugin);
  REQUIRE(exec(*a, 0, "CREATE TABLE secrets (id INTEGER PRIMARY KEY, v TEXT)") == KEEL_OK);
  REQUIRE(exec(*a, 0, "INSERT INTO secrets (v) VALUES ('a''s')") == KEEL_OK);
  REQUIRE(a->kv_put(0, put_args("k", "v"), nullptr) == KEEL_OK);

  // b names a's tables outright: permission denied for schema (42501), not "no such table".
  const std::vector<std::string> foreign{"SELECT * FROM " + schema_a + ".secrets",
                                        "INSERT INTO " + schema_a + ".secrets (v) VALUES ('b')",
                                        "DELETE FROM " + schema_a + "._keel_kv", "SELECT * FROM keel.plugin_roles",
                                        "CREATE TABLE " + schema_a + ".planted (x BIGINT)"};
  for (const auto& sql : foreign) {
    INFO(sql);
    CHECK(exec(*b, 0, sql) == KEEL_ERR_PERMISSION_DENIED);
    CHECK(contains(kst::last_error(), "permission denied"));
  }
  // Roles: neither another plugin's nor the administrator's, nor new ones.
  const std::vector<std::string> roles{"SET ROLE " + schema_a, "SET ROLE postgres", "SET SESSION AUTHORIZATION postgres",
                                      "CREATE ROLE intruder", "ALTER ROLE " + schema_a + " PASSWORD 'x'"};
  for (const auto& sql : roles) {
    INFO(sql);
    CHECK(exec(*b, 0, sql) == KEEL_ERR_PERMISSION_DENIED);
  }
  // In its own schema, the host's tables are the host's: the history is append-only, and the
  // tables cannot be dropped or altered by the plugin.
  for (const char* sql : {"UPDATE _keel_migrations SET checksum = 'x'", "DELETE FROM _keel_migrations",
                          "DROP TABLE _keel_kv", "ALTER TABLE _keel_kv ADD COLUMN x BIGINT", "TRUNCATE _keel_kv"}) {
    INFO(sql);
    CHECK(exec(*a, 0, sql) == KEEL_ERR_PERMISSION_DENIED);
  }
  CHECK(scalar(*a, "SELECT count(*) FROM secrets") == 1);
  CHECK(scalar(*a, "SELECT count(*) FROM _keel_kv") == 1);
}

TEST_CASE("postgres engine: session settings a plugin changes do not outlive its statement's connection use",
          "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb t([](kst::Options& o) {
    o.postgres.pool_size = 1;  // every statement gets the same connection back
    o.transaction_timeout = std::chrono::milliseconds(4000);
  });
  auto setting = [&](const char* name) {
    Rows rows;
    REQUIRE(exec(*t, 0, std::string("SHOW ") + name, {}, &rows) == KEEL_OK);
    return rows.rows.at(0).at(0).bytes;
  };
  CHECK(setting("statement_timeout") == "4s");
  REQUIRE(exec(*t, 0, "SET statement_timeout = 0") == KEEL_OK);
  REQUIRE(exec(*t, 0, "SELECT set_config('search_path', 'public', false)") == KEEL_OK);
  CHECK(setting("statement_timeout") == "4s");
  CHECK(contains(setting("search_path"), "keel_"));
  // The plugin's "BEGIN" would leave a transaction open on a pooled connection: refused.
  CHECK(exec(*t, 0, "BEGIN") == KEEL_ERR_PERMISSION_DENIED);
  CHECK(exec(*t, 0, "COMMIT") == KEEL_ERR_PERMISSION_DENIED);
}

TEST_CASE("postgres engine: values keep their types and an INSERT reports its id through RETURNING", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE items (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT, price REAL, data BLOB)") ==
          KEEL_OK);
  auto res = new_result();
  const std::string blob("\0\x01\xff", 3);
  REQUIRE(exec(*t, 0, "INSERT INTO items (name, price, data) VALUES (?, ?, ?)",
               {text_p("tea"), real_p(2.5), blob_p(blob)}, nullptr, &res) == KEEL_OK);
  CHECK(res.last_insert_id == 1);
  CHECK(res.changes == 1);
  CHECK(res.rows == 0);
  REQUIRE(exec(*t, 0, "INSERT INTO items (name) VALUES (?);", {text_p("milk")}, nullptr, &res) == KEEL_OK);
  CHECK(res.last_insert_id == 2);
  // A RETURNING the plugin wrote is its own: the rows reach it.
  Rows returned;
  REQUIRE(exec(*t, 0, "INSERT INTO items (name) VALUES ('jam') RETURNING id, name", {}, &returned, &res) == KEEL_OK);
  CHECK(res.last_insert_id == 3);
  REQUIRE(returned.rows.size() == 1);
  CHECK(returned.names == std::vector<std::string>{"id", "name"});

  Rows rows;
  REQUIRE(exec(*t, 0, "SELECT id, name, price, data, NULL, sum(id) OVER () FROM items WHERE id = ?", {int_p(1)},
               &rows) == KEEL_OK);
  REQUIRE(rows.rows.size() == 1);
  const auto& r = rows.rows[0];
  CHECK(r[0].type == KEEL_SQL_INTEGER);
  CHECK(r[0].integer == 1);
  CHECK(r[1].type == KEEL_SQL_TEXT);
  CHECK(r[1].bytes == "tea");
  CHECK(r[2].type == KEEL_SQL_REAL);
  CHECK(r[2].real == 2.5);
  CHECK(r[3].type == KEEL_SQL_BLOB);
  CHECK(r[3].bytes == blob);
  CHECK(r[4].type == KEEL_SQL_NULL);
  CHECK(r[5].type == KEEL_SQL_INTEGER);  // an integral numeric, as SQLite's sum() of integers

  // A parameter takes the type of its place; with no place at all ("? IS NULL") its value's.
  // A bare select-list "?" is text on PostgreSQL: the portable form casts it.
  Rows echo;
  const auto echoed = exec(*t, 0, "SELECT ? IS NULL, CAST(? AS BIGINT), CAST(? AS REAL), ?",
                           {int_p(-7), int_p(42), real_p(0.25), text_p("x")}, &echo);
  INFO(kst::last_error());
  REQUIRE(echoed == KEEL_OK);
  CHECK(echo.rows.at(0).at(0).type == KEEL_SQL_INTEGER);
  CHECK(echo.rows.at(0).at(0).integer == 0);
  CHECK(echo.rows.at(0).at(1).integer == 42);
  CHECK(echo.rows.at(0).at(2).type == KEEL_SQL_REAL);
  CHECK(echo.rows.at(0).at(3).type == KEEL_SQL_TEXT);

  keel_sql_info info{};
  info.struct_size = sizeof info;
  REQUIRE(t->prepare("SELECT id, name FROM items WHERE id > ?1 AND id < ?2", &info) == KEEL_OK);
  CHECK(info.param_count == 2);
  CHECK(info.column_count == 2);
  CHECK(info.read_only == 1);
}

TEST_CASE("postgres engine: SQLSTATEs map to the statuses plugins handle", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb t([](kst::Options& o) { o.transaction_timeout = std::chrono::milliseconds(300); });
  REQUIRE(exec(*t, 0, "CREATE TABLE p (id INTEGER PRIMARY KEY, sku TEXT UNIQUE, stock INTEGER CHECK (stock >= 0))") ==
          KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO p (sku, stock) VALUES ('a', 1), ('b', 1)") == KEEL_OK);
  CHECK(exec(*t, 0, "INSERT INTO p (sku, stock) VALUES ('a', 1)") == KEEL_ERR_CONFLICT);             // 23505
  CHECK(contains(kst::last_error(), "SQLSTATE 23505"));
  CHECK(exec(*t, 0, "UPDATE p SET stock = stock - 5 WHERE sku = 'a'") == KEEL_ERR_CONFLICT);         // 23514
  CHECK(exec(*t, 0, "SELEC 1") == KEEL_ERR_INVALID_ARGUMENT);                                       // 42601
  CHECK(exec(*t, 0, "SELECT nosuch FROM p") == KEEL_ERR_INVALID_ARGUMENT);                          // 42703
  CHECK(exec(*t, 0, "SELECT 1 / 0") == KEEL_ERR_INVALID_ARGUMENT);                                  // 22012
  CHECK(exec(*t, 0, "SELECT 1; SELECT 2") == KEEL_ERR_INVALID_ARGUMENT);                            // one per exec
  CHECK(exec(*t, 0, "SELECT ?", {}) == KEEL_ERR_INVALID_ARGUMENT);                                  // arity
  // statement_timeout, set by the host from transaction_timeout_ms: 57014.
  const auto start = Clock::now();
  CHECK(exec(*t, 0, "SELECT pg_sleep(5)") == KEEL_ERR_TIMEOUT);
  CHECK(ms_since(start) < 3000);

  // Two transactions taking two rows in opposite orders: the server breaks the deadlock (40P01)
  // and the loser gets the retryable KEEL_ERR_BUSY.
  TestDb d([](kst::Options& o) { o.transaction_timeout = std::chrono::milliseconds(20000); });
  REQUIRE(exec(*d, 0, "CREATE TABLE r (id INTEGER PRIMARY KEY, n INTEGER)") == KEEL_OK);
  REQUIRE(exec(*d, 0, "INSERT INTO r (n) VALUES (0), (0)") == KEEL_OK);
  keel_txn t1 = 0, t2 = 0;
  REQUIRE(d->begin(0, &t1) == KEEL_OK);
  REQUIRE(d->begin(0, &t2) == KEEL_OK);
  REQUIRE(exec(*d, t1, "UPDATE r SET n = n + 1 WHERE id = 1") == KEEL_OK);
  REQUIRE(exec(*d, t2, "UPDATE r SET n = n + 1 WHERE id = 2") == KEEL_OK);
  auto first = std::async(std::launch::async, [&] { return exec(*d, t1, "UPDATE r SET n = n + 1 WHERE id = 2"); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  const auto second = exec(*d, t2, "UPDATE r SET n = n + 1 WHERE id = 1");
  const auto first_st = first.get();
  CHECK(((first_st == KEEL_ERR_BUSY) != (second == KEEL_ERR_BUSY)));
  CHECK(d->rollback(t1) == KEEL_OK);
  CHECK(d->rollback(t2) == KEEL_OK);
}

TEST_CASE("postgres engine: transactions run side by side up to the pool's size, then wait up to busy_timeout",
          "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb t([](kst::Options& o) {
    o.postgres.pool_size = 2;
    o.busy_timeout = std::chrono::milliseconds(200);
  });
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn a = 0, b = 0, c = 0;
  REQUIRE(t->begin(0, &a) == KEEL_OK);
  REQUIRE(t->begin(0, &b) == KEEL_OK);  // unlike SQLite's single writer: both are open at once
  REQUIRE(exec(*t, a, "INSERT INTO t VALUES (1)") == KEEL_OK);
  REQUIRE(exec(*t, b, "INSERT INTO t VALUES (2)") == KEEL_OK);
  const auto start = Clock::now();
  CHECK(t->begin(0, &c) == KEEL_ERR_BUSY);
  CHECK(ms_since(start) >= 190);
  CHECK(contains(kst::last_error(), "postgres_pool_size"));
  CHECK(t->stats().busy >= 1);
  REQUIRE(t->commit(a) == KEEL_OK);
  REQUIRE(t->commit(b) == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 2);
}

TEST_CASE("postgres engine: an abandoned transaction is rolled back after transaction_timeout", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb t([](kst::Options& o) {
    o.postgres.pool_size = 1;
    o.transaction_timeout = std::chrono::milliseconds(300);
    o.busy_timeout = std::chrono::milliseconds(2000);
  });
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn stale = 0;
  REQUIRE(t->begin(0, &stale) == KEEL_OK);
  REQUIRE(exec(*t, stale, "INSERT INTO t VALUES (1)") == KEEL_OK);
  // The only connection is the stale transaction's; a new one gets it once the timeout passed.
  CHECK(exec(*t, 0, "INSERT INTO t VALUES (2)") == KEEL_OK);
  CHECK(exec(*t, stale, "INSERT INTO t VALUES (3)") == KEEL_ERR_TIMEOUT);
  CHECK(t->commit(stale) == KEEL_ERR_TIMEOUT);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 1);
}

TEST_CASE("postgres engine: compare-and-set holds between two hosts sharing a plugin's schema", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb one;
  auto options = one.options;  // a second host: same plugin, same server, its own pool
  auto two = kst::open_database(options);
  constexpr int kPerHost = 100;
  auto increment = [](kst::Database& db) {
    int conflicts = 0;
    for (int done = 0; done < kPerHost;) {
      auto e = new_entry();
      std::int64_t version = 0, value = 0;
      if (const auto st = db.kv_get(0, "counter", &e); st == KEEL_OK) {
        version = e.version;
        value = std::stoll(std::string(e.value.ptr, e.value.len));
      }
      const auto next = std::to_string(value + 1);
      const auto st = db.kv_put(0, put_args("counter", next, version), nullptr);
      if (st == KEEL_OK) ++done;
      else if (st == KEEL_ERR_CONFLICT) ++conflicts;
      else return -1;
    }
    return conflicts;
  };
  auto other = std::async(std::launch::async, [&] { return increment(*two); });
  const auto mine = increment(*one);
  const auto theirs = other.get();
  REQUIRE(mine >= 0);
  REQUIRE(theirs >= 0);
  auto e = new_entry();
  REQUIRE(one->kv_get(0, "counter", &e) == KEEL_OK);
  CHECK(std::string(e.value.ptr, e.value.len) == std::to_string(2 * kPerHost));
  CHECK(e.version == 2 * kPerHost);
  two->close();
}

TEST_CASE("postgres engine: a server restart fails calls fast, and the pool reconnects by itself", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  keel::test::PostgresServer server;
  kst::Options o;
  o.engine = kst::StorageEngine::kPostgres;
  o.plugin = "restart";
  o.postgres.url = server.admin_url();
  o.postgres.pool_size = 2;
  auto db = kst::open_database(o);
  REQUIRE(exec(*db, 0, "CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)") == KEEL_OK);
  REQUIRE(exec(*db, 0, "INSERT INTO t (v) VALUES ('before')") == KEEL_OK);
  keel_txn open = 0;
  REQUIRE(db->begin(0, &open) == KEEL_OK);
  REQUIRE(exec(*db, open, "INSERT INTO t (v) VALUES ('uncommitted')") == KEEL_OK);

  server.crash();
  auto start = Clock::now();
  CHECK(exec(*db, 0, "SELECT count(*) FROM t") == KEEL_ERR_UNAVAILABLE);
  CHECK(exec(*db, 0, "INSERT INTO t (v) VALUES ('during')") == KEEL_ERR_UNAVAILABLE);
  CHECK(exec(*db, open, "INSERT INTO t (v) VALUES ('more')") == KEEL_ERR_UNAVAILABLE);
  CHECK(db->commit(open) == KEEL_ERR_NOT_FOUND);  // the transaction ended with its connection
  CHECK(ms_since(start) < 2000);
  INFO(kst::last_error());

  server.start();
  CHECK(scalar(*db, "SELECT count(*) FROM t") == 1);  // committed before: kept; the rest: never happened
  REQUIRE(exec(*db, 0, "INSERT INTO t (v) VALUES ('after')") == KEEL_OK);
  CHECK(scalar(*db, "SELECT count(*) FROM t") == 2);
  CHECK(db->kv_put(0, put_args("k", "v"), nullptr) == KEEL_OK);
  db->close();
}

TEST_CASE("postgres engine: a role of the plugin's name that this deployment did not create is never taken over",
          "[storage][postgres]") {
  REQUIRE_POSTGRES();
  keel::test::TempDir dir;
  const auto role = "keel_squatted_" + std::to_string(::getpid());
  keel::test::Process psql("/usr/lib/postgresql/15/bin/psql",
                           {keel::test::shared_postgres_url(), "-v", "ON_ERROR_STOP=1", "-c", "CREATE ROLE " + role},
                           dir.path() / "psql.log");
  REQUIRE(psql.wait(std::chrono::seconds(20)) == 0);
  kst::Options o;
  o.engine = kst::StorageEngine::kPostgres;
  o.postgres.url = keel::test::shared_postgres_url();
  o.plugin = role.substr(5);  // "squatted_<pid>": its role would be keel_squatted_<pid>
  try {
    static_cast<void>(kst::open_database(o));
    FAIL("the existing role was taken over");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), "exists but this deployment did not create it"));
    CHECK(contains(e.what(), "postgres_prefix"));
  }
}

TEST_CASE("postgres engine: a statement prepared before another host's migration is prepared again",
          "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb one;
  auto options = one.options;
  options.postgres.pool_size = 1;  // the same connection keeps the prepared statement
  auto two = kst::open_database(options);
  REQUIRE(exec(*one, 0, "CREATE TABLE t (a INTEGER)") == KEEL_OK);
  REQUIRE(exec(*one, 0, "INSERT INTO t (a) VALUES (1)") == KEEL_OK);
  Rows before;
  REQUIRE(exec(*two, 0, "SELECT * FROM t", {}, &before) == KEEL_OK);
  CHECK(before.names.size() == 1);
  REQUIRE(exec(*one, 0, "ALTER TABLE t ADD COLUMN b INTEGER NOT NULL DEFAULT 7") == KEEL_OK);
  Rows after;
  const auto st = exec(*two, 0, "SELECT * FROM t", {}, &after);
  INFO(kst::last_error());
  REQUIRE(st == KEEL_OK);
  CHECK(after.names == std::vector<std::string>{"a", "b"});
  // Inside a transaction the failure ends it: the caller is told to run it again.
  REQUIRE(exec(*one, 0, "ALTER TABLE t ADD COLUMN c INTEGER") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(two->begin(0, &txn) == KEEL_OK);
  CHECK(exec(*two, txn, "SELECT * FROM t") == KEEL_ERR_BUSY);
  CHECK(two->rollback(txn) == KEEL_OK);
  Rows again;
  REQUIRE(exec(*two, 0, "SELECT * FROM t", {}, &again) == KEEL_OK);
  CHECK(again.names.size() == 3);
  two->close();
}

TEST_CASE("postgres engine: two hosts migrating one plugin at the same moment apply each migration once",
          "[storage][postgres]") {
  REQUIRE_POSTGRES();
  TestDb one;
  auto two = kst::open_database(one.options);
  // A slow first migration: without the lock both hosts would run it, and the second would fail
  // on "relation already exists" or on the history's key.
  const std::vector<keel::host::package::MigrationDecl> declared{
      {1, "slow table", "CREATE TABLE items (id INTEGER PRIMARY KEY); SELECT pg_sleep(0.3);"},
      {2, "a column", "ALTER TABLE items ADD COLUMN name TEXT"}};
  auto a = std::async(std::launch::async, [&] { return kst::migrate(*one, declared); });
  auto b = std::async(std::launch::async, [&] { return kst::migrate(*two, declared); });
  CHECK(a.get() == "");
  CHECK(b.get() == "");
  Rows rows;
  REQUIRE(exec(*one, 0, "SELECT version FROM _keel_migrations ORDER BY version", {}, &rows) == KEEL_OK);
  REQUIRE(rows.rows.size() == 2);
  CHECK(rows.rows[0][0].integer == 1);
  CHECK(rows.rows[1][0].integer == 2);
  // The history reads the same from the side (keel migrate status).
  const auto history = kst::read_migration_history(one.options);
  CHECK(history.exists);
  CHECK(history.recorded.size() == 2);
  two->close();
}

TEST_CASE("postgres engine: a malformed postgres_url is refused without quoting it", "[storage][postgres]") {
  REQUIRE_POSTGRES();
  kst::Options options;
  options.engine = kst::StorageEngine::kPostgres;
  options.plugin = "p";
  options.postgres.url = "host=127.0.0.1 password=s3cret-value port";  // no '=' after "port"
  try {
    static_cast<void>(kst::open_database(options));
    FAIL("opened a database with a malformed URL");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), "postgres_url is not a connection string"));
    CHECK_FALSE(contains(e.what(), "s3cret"));
  }
  try {
    static_cast<void>(kst::read_migration_history(options));
    FAIL("read a history with a malformed URL");
  } catch (const std::runtime_error& e) {
    CHECK_FALSE(contains(e.what(), "s3cret"));
  }
}

TEST_CASE("postgres engine: a server that does not answer is Unavailable, one that refuses the login is not",
          "[storage][postgres]") {
  REQUIRE_POSTGRES();
  kst::Options options;
  options.engine = kst::StorageEngine::kPostgres;
  options.plugin = "p";
  options.postgres.connect_timeout = std::chrono::milliseconds(2000);
  const auto url = keel::test::shared_postgres_url();
  // Nobody listens on port 1: the host waits for such a server.
  options.postgres.url = "host=127.0.0.1 port=1 user=postgres dbname=postgres";
  CHECK_THROWS_AS(kst::open_database(options), kst::Unavailable);
  CHECK_FALSE(kst::storage_answers(options));
  // The server answers, but there is no such database: waiting would not help.
  options.postgres.url = url.substr(0, url.find("dbname=")) + "dbname=no_such_database";
  CHECK(kst::storage_answers(options));
  try {
    static_cast<void>(kst::open_database(options));
    FAIL("opened a database that does not exist");
  } catch (const kst::Unavailable& e) {
    FAIL(std::string("a login refusal taken for an outage: ") + e.what());
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), "no_such_database"));
  }
}
