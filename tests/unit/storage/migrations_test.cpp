// storage::migrate, read_migration_history and migration_status: ordered, recorded, never edited.

#include "storage/migrations.hpp"

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "package/manifest.hpp"
#include "storage/database.hpp"
#include "storage_test_support.hpp"

using namespace keel::test::storage;
using keel::host::package::MigrationDecl;
using kst::MigrationState;

namespace {

const MigrationDecl kCreate{1, "create items", "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL);"};
const MigrationDecl kSeed{2, "seed", "ALTER TABLE items ADD COLUMN price INTEGER NOT NULL DEFAULT 0;\n"
                                     "INSERT INTO items (name, price) VALUES ('a', 1), ('b', 2);"};
const MigrationDecl kIndex{3, "index names", "CREATE INDEX items_name ON items (name)"};

struct History {
  std::int64_t version;
  std::string description;
  std::string checksum;
  std::string applied_at;
};

std::vector<History> history(kst::Database& db) {
  Rows rows;
  const auto st = db.exec_host(0, "SELECT version, description, checksum, applied_at FROM _keel_migrations ORDER BY version",
                               {}, rows.sink(), nullptr);
  REQUIRE(st == KEEL_OK);
  std::vector<History> out;
  for (const auto& r : rows.rows) out.push_back({r[0].integer, r[1].bytes, r[2].bytes, r[3].bytes});
  return out;
}

/// What `keel migrate status` reports about the database `options` name, read on the side.
std::vector<kst::MigrationStatus> status_of(const kst::Options& options, const std::vector<MigrationDecl>& declared) {
  return kst::migration_status(kst::read_migration_history(options), declared);
}

std::vector<std::int64_t> versions(const std::vector<History>& h) {
  std::vector<std::int64_t> out;
  for (const auto& x : h) out.push_back(x.version);
  return out;
}

/// Whether the plugin's schema has a table or index `name`.
bool table_exists(kst::Database& db, const std::string& name) {
  Rows rows;
  const auto* sql = on_postgres() ? "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                                    " WHERE n.nspname = current_schema() AND c.relname = ?"
                                  : "SELECT count(*) FROM sqlite_schema WHERE name = ?";
  REQUIRE(exec(db, 0, sql, {text_p(name)}, &rows) == KEEL_OK);
  return rows.rows.at(0).at(0).integer == 1;
}

std::vector<std::pair<std::int64_t, MigrationState>> states(const std::vector<kst::MigrationStatus>& s) {
  std::vector<std::pair<std::int64_t, MigrationState>> out;
  for (const auto& x : s) out.emplace_back(x.version, x.state);
  return out;
}

using VS = std::vector<std::pair<std::int64_t, MigrationState>>;

}  // namespace

TEST_CASE("storage migrations: applied in order, recorded, and a re-run is a no-op", "[storage][migrations]") {
  TestDb t;
  CHECK(kst::migrate(*t, {kCreate, kSeed}) == "");
  const auto h = history(*t);
  REQUIRE(versions(h) == std::vector<std::int64_t>{1, 2});
  CHECK(h[0].description == "create items");
  CHECK(h[0].checksum == kst::migration_checksum(kCreate));
  CHECK(h[1].checksum == kst::migration_checksum(kSeed));
  CHECK(h[0].checksum.size() == 64);
  CHECK(h[0].checksum != h[1].checksum);
  CHECK(!h[0].applied_at.empty());
  CHECK(h[0].applied_at.back() == 'Z');
  CHECK(scalar(*t, "SELECT count(*) FROM items") == 2);
  CHECK(scalar(*t, "SELECT sum(price) FROM items") == 3);

  // Re-run: nothing runs again (a second seed would double the rows).
  CHECK(kst::migrate(*t, {kCreate, kSeed}) == "");
  CHECK(scalar(*t, "SELECT count(*) FROM items") == 2);
  CHECK(history(*t).size() == 2);

  // A new migration is applied on the next run; earlier records are untouched.
  CHECK(kst::migrate(*t, {kCreate, kSeed, kIndex}) == "");
  const auto h2 = history(*t);
  CHECK(versions(h2) == std::vector<std::int64_t>{1, 2, 3});
  CHECK(h2[0].applied_at == h[0].applied_at);
  CHECK(table_exists(*t, "items_name"));

  // Survives a reopen.
  t.reopen();
  CHECK(kst::migrate(*t, {kCreate, kSeed, kIndex}) == "");
  CHECK(history(*t).size() == 3);
  CHECK(states(status_of(t.options, {kCreate, kSeed, kIndex})) ==
        VS{{1, MigrationState::kApplied}, {2, MigrationState::kApplied}, {3, MigrationState::kApplied}});

  // No migrations at all: fine.
  TestDb empty;
  CHECK(kst::migrate(*empty, {}) == "");
  CHECK(history(*empty).empty());
}

TEST_CASE("storage migrations: a failing migration names its version and keeps earlier ones", "[storage][migrations]") {
  TestDb t;
  const MigrationDecl bad{3, "broken", "CREATE TABLE half (x INTEGER); INSERT INTO half VALUES (1); INSERT INTO nosuch VALUES (1);"};
  const MigrationDecl after{4, "never", "CREATE TABLE never (x INTEGER);"};
  const auto message = kst::migrate(*t, {kCreate, kSeed, bad, after});
  INFO(message);
  CHECK(contains(message, "migration 3"));
  CHECK(contains(message, "broken"));
  CHECK(contains(message, on_postgres() ? "relation \"nosuch\" does not exist" : "no such table: nosuch"));
  CHECK(versions(history(*t)) == std::vector<std::int64_t>{1, 2});
  CHECK(table_exists(*t, "items"));
  CHECK(!table_exists(*t, "half"));
  CHECK(!table_exists(*t, "never"));
  CHECK(scalar(*t, "SELECT count(*) FROM items") == 2);
  CHECK(states(status_of(t.options, {kCreate, kSeed, bad, after})) ==
          VS{{1, MigrationState::kApplied},
             {2, MigrationState::kApplied},
             {3, MigrationState::kPending},
             {4, MigrationState::kPending}});

  // The writer is free afterwards, and a fixed migration 3 applies.
  const MigrationDecl fixed{3, "fixed", "CREATE TABLE half (x INTEGER);"};
  CHECK(kst::migrate(*t, {kCreate, kSeed, fixed, after}) == "");
  CHECK(table_exists(*t, "half"));
  CHECK(table_exists(*t, "never"));
}

TEST_CASE("storage migrations: the plugin's SQL rules apply to migrations", "[storage][migrations][sqlite]") {
  for (const char* sql : {"CREATE TABLE a (x); PRAGMA foreign_keys=OFF;", "BEGIN; CREATE TABLE a (x); COMMIT;",
                          "CREATE TABLE a (x); SELECT * FROM _keel_kv;", "DELETE FROM _keel_migrations;",
                          "CREATE TABLE a (x); VACUUM;", "ATTACH DATABASE ':memory:' AS x;"}) {
    INFO(sql);
    TestDb t;
    const auto message = kst::migrate(*t, {{1, "bad", sql}});
    CHECK(contains(message, "migration 1"));
    CHECK(history(*t).empty());
    CHECK(!table_exists(*t, "a"));
  }
}

TEST_CASE("storage migrations: an edited applied migration is refused", "[storage][migrations]") {
  TestDb t;
  REQUIRE(kst::migrate(*t, {kCreate, kSeed}) == "");
  auto edited = kSeed;
  edited.sql += " -- harmless comment";
  const auto message = kst::migrate(*t, {kCreate, edited, kIndex});
  INFO(message);
  CHECK(contains(message, "edited"));
  CHECK(contains(message, "migration 2"));
  // Nothing ran: migration 3 stays pending.
  CHECK(versions(history(*t)) == std::vector<std::int64_t>{1, 2});
  CHECK(!table_exists(*t, "items_name"));
  // A changed description alone is not an edit (the checksum covers the SQL).
  auto renamed = kSeed;
  renamed.description = "seed with a new name";
  CHECK(kst::migrate(*t, {kCreate, renamed}) == "");
}

TEST_CASE("storage migrations: an applied migration missing from the manifest is refused", "[storage][migrations]") {
  TestDb t;
  REQUIRE(kst::migrate(*t, {kCreate, kSeed}) == "");
  const auto message = kst::migrate(*t, {kCreate});
  INFO(message);
  CHECK(contains(message, "migration 2"));
  CHECK(contains(message, "no longer declares"));
  // Also when a later migration is declared: nothing runs.
  CHECK(!kst::migrate(*t, {kCreate, kIndex}).empty());
  CHECK(versions(history(*t)) == std::vector<std::int64_t>{1, 2});
}

TEST_CASE("storage migrations: a pending version below an applied one is refused", "[storage][migrations]") {
  TestDb t;
  REQUIRE(kst::migrate(*t, {kCreate, kIndex}) == "");
  const auto message = kst::migrate(*t, {kCreate, kSeed, kIndex});
  INFO(message);
  CHECK(contains(message, "migration 2"));
  CHECK(contains(message, "3"));
  CHECK(versions(history(*t)) == std::vector<std::int64_t>{1, 3});
  CHECK(scalar(*t, "SELECT count(*) FROM items") == 0);
}

TEST_CASE("storage migrations: migration_status reports applied, pending, changed and unknown",
          "[storage][migrations][sqlite]") {
  keel::test::TempDir dir;
  // A missing file: everything pending, and the file is not created.
  const auto missing = dir.path() / "none.db";
  kst::Options at_missing;
  at_missing.file = missing;
  at_missing.plugin = "none";
  const auto none = status_of(at_missing, {kCreate, kSeed});
  CHECK(states(none) == VS{{1, MigrationState::kPending}, {2, MigrationState::kPending}});
  CHECK(none[0].checksum == kst::migration_checksum(kCreate));
  CHECK(none[0].description == "create items");
  CHECK(none[0].applied_at.empty());
  CHECK(!std::filesystem::exists(missing));
  CHECK(status_of(at_missing, {}).empty());

  TestDb t;
  REQUIRE(kst::migrate(*t, {kCreate, kSeed}) == "");
  auto edited = kCreate;
  edited.sql = "CREATE TABLE items (id INTEGER PRIMARY KEY);";
  // While the database is open and in use (WAL), status is read-only and works.
  const auto s = status_of(t.options, {edited, kIndex});
  CHECK(states(s) == VS{{1, MigrationState::kChanged}, {2, MigrationState::kUnknown}, {3, MigrationState::kPending}});
  REQUIRE(s.size() == 3);
  CHECK(!s[0].applied_at.empty());
  CHECK(s[0].checksum == kst::migration_checksum(edited));  // as declared
  CHECK(s[1].description == "seed");
  CHECK(s[1].checksum == kst::migration_checksum(kSeed));  // as recorded
  CHECK(!s[1].applied_at.empty());
  CHECK(s[2].applied_at.empty());
  CHECK(kst::to_string(MigrationState::kApplied) == "applied");
  CHECK(kst::to_string(MigrationState::kPending) == "pending");
  CHECK(kst::to_string(MigrationState::kChanged) == "changed");
  CHECK(kst::to_string(MigrationState::kUnknown) == "unknown");

  // A file that is not a database: an exception naming it.
  const auto junk = dir.write("junk.db", std::string(4096, 'x'));
  try {
    kst::Options at_junk;
    at_junk.file = junk;
    static_cast<void>(kst::read_migration_history(at_junk));
    FAIL("read migrations of a non-database file");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), junk.string()));
  }
}

TEST_CASE("storage migrations: the checksum is the SHA-256 of the SQL", "[storage][migrations]") {
  CHECK(kst::migration_checksum({1, "x", "abc"}) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  CHECK(kst::migration_checksum({1, "other description", "abc"}) == kst::migration_checksum({9, "", "abc"}));
}

TEST_CASE("storage: exec_script runs several statements inside a transaction only", "[storage][migrations]") {
  TestDb t;
  CHECK(t->exec_script(KEEL_TXN_NONE, "CREATE TABLE a (x INTEGER);") == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(!table_exists(*t, "a"));
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(t->exec_script(txn, "CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1); INSERT INTO a VALUES (2);") ==
          KEEL_OK);
  if (!on_postgres()) {  // SQLite's authorizer keeps "_keel_" names; PostgreSQL's grants: docs/storage.md
    CHECK(t->exec_script(txn, "INSERT INTO a VALUES (3); SELECT * FROM _keel_kv;") == KEEL_ERR_PERMISSION_DENIED);
    CHECK(t->exec_script(txn, "CREATE TABLE _keel_x (y);") == KEEL_ERR_PERMISSION_DENIED);
  }
  CHECK(t->exec_script(txn, "INSERT INTO a VALUES (") == KEEL_ERR_INVALID_ARGUMENT);
  if (on_postgres()) {
    // PostgreSQL ends a transaction at its first failed statement: the commit says so.
    CHECK(t->commit(txn) == KEEL_ERR_CONFLICT);
    CHECK(!table_exists(*t, "a"));
    return;
  }
  REQUIRE(t->commit(txn) == KEEL_OK);
  // A failed script statement is undone; the ones before it in the same script are kept until
  // the caller rolls back (migrate() does).
  CHECK(scalar(*t, "SELECT count(*) FROM a") == 3);
  CHECK(!table_exists(*t, "_keel_x"));
}
