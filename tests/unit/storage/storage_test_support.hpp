#pragma once
// Helpers shared by the storage unit tests (tests/unit/storage/*_test.cpp): a Database in a
// temporary directory, parameter builders and a row collector.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <unistd.h>

#include <catch2/catch.hpp>
#include <keel/storage.h>

#include "postgres_server.hpp"
#include "storage/database.hpp"
#include "temp_dir.hpp"

namespace keel::test::storage {

namespace kst = keel::host::storage;
using namespace std::chrono_literals;

inline keel_sql_param null_p() { return keel_sql_param{KEEL_SQL_NULL, 0, 0, 0.0, {nullptr, 0}}; }
inline keel_sql_param int_p(std::int64_t v) { return keel_sql_param{KEEL_SQL_INTEGER, 0, v, 0.0, {nullptr, 0}}; }
inline keel_sql_param real_p(double v) { return keel_sql_param{KEEL_SQL_REAL, 0, 0, v, {nullptr, 0}}; }
/// The view must outlive the exec call.
inline keel_sql_param text_p(std::string_view v) { return keel_sql_param{KEEL_SQL_TEXT, 0, 0, 0.0, {v.data(), v.size()}}; }
inline keel_sql_param blob_p(std::string_view v) { return keel_sql_param{KEEL_SQL_BLOB, 0, 0, 0.0, {v.data(), v.size()}}; }

inline keel_plugin_bytes pb(std::string_view s) { return keel_plugin_bytes{s.data(), s.size()}; }
inline std::string str(keel_host_bytes b) { return b.len == 0 ? std::string{} : std::string(b.ptr, b.len); }

/// One column value copied out of a row callback.
struct Value {
  keel_sql_type type = KEEL_SQL_NULL;
  std::int64_t integer = 0;
  double real = 0;
  std::string bytes;
};

/// Collects rows (and the column names of the first row); stops after `stop_after` rows when >= 0.
struct Rows {
  std::vector<std::string> names;
  std::vector<std::vector<Value>> rows;
  int stop_after = -1;

  static int32_t collect(void* user, const keel_sql_value* columns, const keel_host_bytes* column_names,
                         std::size_t column_count) {
    auto& self = *static_cast<Rows*>(user);
    if (self.names.empty())
      for (std::size_t i = 0; i < column_count; ++i) self.names.push_back(str(column_names[i]));
    std::vector<Value> row;
    for (std::size_t i = 0; i < column_count; ++i) {
      const auto& c = columns[i];
      Value v;
      v.type = c.type;
      v.integer = c.integer;
      v.real = c.real;
      if (c.type == KEEL_SQL_TEXT || c.type == KEEL_SQL_BLOB) v.bytes = str(c.bytes);
      row.push_back(std::move(v));
    }
    self.rows.push_back(std::move(row));
    return self.stop_after >= 0 && self.rows.size() >= static_cast<std::size_t>(self.stop_after) ? 1 : 0;
  }
  kst::RowSink sink() { return kst::RowSink{&Rows::collect, this}; }
};

inline keel_sql_result new_result() {
  keel_sql_result r{};
  r.struct_size = sizeof(keel_sql_result);
  r.changes = r.last_insert_id = r.rows = -99;
  return r;
}

inline keel_status exec(kst::Database& db, keel_txn txn, std::string_view sql,
                        std::vector<keel_sql_param> params = {}, Rows* rows = nullptr, keel_sql_result* out = nullptr) {
  return db.exec(txn, sql, std::span<const keel_sql_param>(params.data(), params.size()),
                 rows != nullptr ? rows->sink() : kst::RowSink{}, out);
}

/// Runs `sql` and returns the first column of its first row as an integer; fails the test otherwise.
inline std::int64_t scalar(kst::Database& db, std::string_view sql, keel_txn txn = KEEL_TXN_NONE) {
  Rows rows;
  const auto st = exec(db, txn, sql, {}, &rows);
  INFO(sql << " -> " << st << " " << kst::last_error());
  REQUIRE(st == KEEL_OK);
  REQUIRE(!rows.rows.empty());
  REQUIRE(rows.rows[0].size() >= 1);
  REQUIRE(rows.rows[0][0].type == KEEL_SQL_INTEGER);
  return rows.rows[0][0].integer;
}

/// Same, through exec_host (may read the host's "_keel_" tables).
inline std::int64_t host_scalar(kst::Database& db, std::string_view sql, keel_txn txn = KEEL_TXN_NONE) {
  Rows rows;
  const auto st = db.exec_host(txn, sql, {}, rows.sink(), nullptr);
  INFO(sql << " -> " << st << " " << kst::last_error());
  REQUIRE(st == KEEL_OK);
  REQUIRE(!rows.rows.empty());
  REQUIRE(rows.rows[0][0].type == KEEL_SQL_INTEGER);
  return rows.rows[0][0].integer;
}

/// The engine the suite runs on: SQLite, or (with KEEL_TEST_POSTGRES_DIR set by the ctest
/// "postgres:" variants) the shared PostgreSQL server, under a plugin name of its own per
/// database so that tests never see each other's data.
inline void use_test_engine(kst::Options& options) {
  static const std::string url = keel::test::shared_postgres_url();
  if (url.empty()) return;
  static int databases = 0;
  options.engine = kst::StorageEngine::kPostgres;
  options.postgres.url = url;
  options.plugin += "_" + std::to_string(::getpid()) + "_" + std::to_string(++databases);
}

/// True when the suite runs on PostgreSQL.
inline bool on_postgres() { return !keel::test::shared_postgres_url().empty(); }

/// A plugin database "p" in a fresh temporary directory.
struct TestDb {
  keel::test::TempDir dir;
  kst::Options options;
  std::unique_ptr<kst::Database> db;

  explicit TestDb(const std::function<void(kst::Options&)>& tune = {}) {
    options.file = dir.path() / "p.db";
    options.plugin = "p";
    use_test_engine(options);
    if (tune) tune(options);
    db = kst::open_database(options);
  }
  kst::Database& operator*() { return *db; }
  kst::Database* operator->() { return db.get(); }
  void reopen() {
    db->close();
    db.reset();
    db = kst::open_database(options);
  }
};

/// A refused statement (ATTACH, VACUUM, forbidden PRAGMA, reserved table, BEGIN, ...):
/// KEEL_ERR_PERMISSION_DENIED, as docs/storage.md "Errors" documents (HTTP 403).
inline bool refused(keel_status st) { return st == KEEL_ERR_PERMISSION_DENIED; }

inline bool contains(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

inline keel_kv_put_args put_args(std::string_view key, std::string_view value,
                                 std::int64_t expected = KEEL_KV_ANY_VERSION, std::int64_t ttl_ms = 0) {
  keel_kv_put_args a{};
  a.struct_size = sizeof(keel_kv_put_args);
  a.key = pb(key);
  a.value = pb(value);
  a.expected_version = expected;
  a.ttl_ms = ttl_ms;
  return a;
}

inline keel_kv_entry new_entry() {
  keel_kv_entry e{};
  e.struct_size = sizeof(keel_kv_entry);
  return e;
}

}  // namespace keel::test::storage
