// storage::Database: values, statements, errors, lockdown, stats and durability.

#include "storage/sqlite/sqlite_database.hpp"

#include <atomic>
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <sys/stat.h>

#include <SQLiteCpp/Database.h>
#include <catch2/catch.hpp>

#include "abi/current_request.hpp"
#include "storage_test_support.hpp"

using namespace keel::test::storage;
using namespace std::literals;
namespace fs = std::filesystem;

namespace {

std::string journal_mode(const fs::path& file) {
  SQLite::Database raw(file.string(), SQLite::OPEN_READONLY);
  return raw.execAndGet("PRAGMA journal_mode").getString();
}

std::string read_file(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

TEST_CASE("storage: every parameter type round-trips through SELECT and a table", "[storage][sqlite]") {
  TestDb t;
  const auto text_with_nul = "a\0b\0"s;
  const std::string utf8 = "h\xC3\xA9llo \xE2\x82\xAC \xF0\x9D\x84\x9E";  // héllo € 𝄞
  const auto blob = "\x00\xFF\x00\x01\xFE"s;
  const std::vector<keel_sql_param> params = {
      null_p(),
      int_p(std::numeric_limits<std::int64_t>::min()),
      int_p(std::numeric_limits<std::int64_t>::max()),
      real_p(-0.0),
      real_p(std::numeric_limits<double>::max()),
      real_p(std::numeric_limits<double>::denorm_min()),
      real_p(-1.5e300),
      text_p(text_with_nul),
      text_p(utf8),
      text_p(std::string_view{}),  // empty text: not NULL
      blob_p(blob),
      blob_p(std::string_view{}),  // empty blob: not NULL
  };

  auto check_row = [&](const std::vector<Value>& row) {
    REQUIRE(row.size() == params.size());
    CHECK(row[0].type == KEEL_SQL_NULL);
    CHECK(row[1].type == KEEL_SQL_INTEGER);
    CHECK(row[1].integer == std::numeric_limits<std::int64_t>::min());
    CHECK(row[2].type == KEEL_SQL_INTEGER);
    CHECK(row[2].integer == std::numeric_limits<std::int64_t>::max());
    CHECK(row[3].type == KEEL_SQL_REAL);
    CHECK(row[3].real == 0.0);
    CHECK(std::signbit(row[3].real));
    CHECK(row[4].type == KEEL_SQL_REAL);
    CHECK(row[4].real == std::numeric_limits<double>::max());
    CHECK(row[5].type == KEEL_SQL_REAL);
    CHECK(row[5].real == std::numeric_limits<double>::denorm_min());
    CHECK(row[6].type == KEEL_SQL_REAL);
    CHECK(row[6].real == -1.5e300);
    CHECK(row[7].type == KEEL_SQL_TEXT);
    CHECK(row[7].bytes == text_with_nul);
    CHECK(row[7].bytes.size() == 4);
    CHECK(row[8].type == KEEL_SQL_TEXT);
    CHECK(row[8].bytes == utf8);
    CHECK(row[9].type == KEEL_SQL_TEXT);
    CHECK(row[9].bytes.empty());
    CHECK(row[10].type == KEEL_SQL_BLOB);
    CHECK(row[10].bytes == blob);
    CHECK(row[11].type == KEEL_SQL_BLOB);
    CHECK(row[11].bytes.empty());
  };

  SECTION("bound straight into a SELECT") {
    Rows rows;
    auto res = new_result();
    REQUIRE(exec(*t, KEEL_TXN_NONE, "SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?", params, &rows, &res) == KEEL_OK);
    REQUIRE(rows.rows.size() == 1);
    check_row(rows.rows[0]);
    CHECK(res.rows == 1);
    CHECK(res.changes == 0);
  }

  SECTION("stored in untyped columns and read back (writer and reader connections)") {
    REQUIRE(exec(*t, KEEL_TXN_NONE, "CREATE TABLE v (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11)") == KEEL_OK);
    REQUIRE(exec(*t, KEEL_TXN_NONE, "INSERT INTO v VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", params) == KEEL_OK);
    Rows rows;
    REQUIRE(exec(*t, KEEL_TXN_NONE, "SELECT * FROM v", {}, &rows) == KEEL_OK);
    REQUIRE(rows.rows.size() == 1);
    check_row(rows.rows[0]);
    // The same through the writer, inside a transaction.
    keel_txn txn = 0;
    REQUIRE(t->begin(KEEL_TXN_NONE, &txn) == KEEL_OK);
    Rows in_txn;
    REQUIRE(exec(*t, txn, "SELECT * FROM v", {}, &in_txn) == KEEL_OK);
    REQUIRE(in_txn.rows.size() == 1);
    check_row(in_txn.rows[0]);
    REQUIRE(t->rollback(txn) == KEEL_OK);
    // typeof() agrees with the reported types: empty text/blob are not NULL.
    Rows types;
    REQUIRE(exec(*t, KEEL_TXN_NONE, "SELECT typeof(c0), typeof(c9), typeof(c11), length(c7) FROM v", {}, &types) ==
            KEEL_OK);
    CHECK(types.rows[0][0].bytes == "null");
    CHECK(types.rows[0][1].bytes == "text");
    CHECK(types.rows[0][2].bytes == "blob");
    CHECK(types.rows[0][3].integer == 1);  // SQL length() of text stops at the first NUL; the bytes do not
  }
}

TEST_CASE("storage: column names, row counts and ?NNN parameters", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)") == KEEL_OK);
  for (int i = 1; i <= 5; ++i) {
    const auto name = "item" + std::to_string(i);
    REQUIRE(exec(*t, 0, "INSERT INTO items (name) VALUES (?)", {text_p(name)}) == KEEL_OK);
  }
  Rows rows;
  auto res = new_result();
  REQUIRE(exec(*t, 0, "SELECT id, name AS label, id * 2 FROM items ORDER BY id", {}, &rows, &res) == KEEL_OK);
  CHECK(rows.names == std::vector<std::string>{"id", "label", "id * 2"});
  CHECK(rows.rows.size() == 5);
  CHECK(res.rows == 5);
  CHECK(res.changes == 0);
  CHECK(rows.rows[4][1].bytes == "item5");

  // No row callback: rows are still counted.
  auto res2 = new_result();
  REQUIRE(exec(*t, 0, "SELECT * FROM items", {}, nullptr, &res2) == KEEL_OK);
  CHECK(res2.rows == 5);

  // A query with no rows: the callback never runs, rows = 0.
  Rows none;
  auto res3 = new_result();
  REQUIRE(exec(*t, 0, "SELECT * FROM items WHERE id > 100", {}, &none, &res3) == KEEL_OK);
  CHECK(none.rows.empty());
  CHECK(res3.rows == 0);

  // Numbered parameters: ?2 used twice, ?1 once; the count is the highest number.
  Rows numbered;
  REQUIRE(exec(*t, 0, "SELECT ?2 || ?1 || ?2", {text_p("a"), text_p("b")}, &numbered) == KEEL_OK);
  CHECK(numbered.rows[0][0].bytes == "bab");

  // A trailing ";" and comments are fine.
  CHECK(exec(*t, 0, "  -- leading comment\n SELECT 1; /* trailing */ ;  -- done") == KEEL_OK);
}

TEST_CASE("storage: a non-zero return from the row callback stops early", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE n (x INTEGER)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO n VALUES (1), (2), (3), (4), (5), (6), (7), (8), (9), (10)") == KEEL_OK);

  SECTION("a read") {
    Rows rows;
    rows.stop_after = 3;
    auto res = new_result();
    REQUIRE(exec(*t, 0, "SELECT x FROM n ORDER BY x", {}, &rows, &res) == KEEL_OK);
    CHECK(rows.rows.size() == 3);
    CHECK(res.rows == 3);
    // The reader is released in a clean state: the next read sees everything.
    CHECK(scalar(*t, "SELECT count(*) FROM n") == 10);
  }

  SECTION("a write with RETURNING runs to completion") {
    Rows rows;
    rows.stop_after = 1;
    auto res = new_result();
    REQUIRE(exec(*t, 0, "UPDATE n SET x = x + 100 WHERE x <= 4 RETURNING x", {}, &rows, &res) == KEEL_OK);
    CHECK(rows.rows.size() == 1);
    CHECK(res.rows == 1);
    CHECK(res.changes == 4);
    CHECK(scalar(*t, "SELECT count(*) FROM n WHERE x > 100") == 4);
  }

  SECTION("inside a transaction") {
    keel_txn txn = 0;
    REQUIRE(t->begin(0, &txn) == KEEL_OK);
    Rows rows;
    rows.stop_after = 2;
    REQUIRE(exec(*t, txn, "SELECT x FROM n", {}, &rows) == KEEL_OK);
    CHECK(rows.rows.size() == 2);
    REQUIRE(exec(*t, txn, "DELETE FROM n WHERE x = 1") == KEEL_OK);
    REQUIRE(t->commit(txn) == KEEL_OK);
    CHECK(scalar(*t, "SELECT count(*) FROM n") == 9);
  }
}

TEST_CASE("storage: malformed statements and parameters are INVALID_ARGUMENT with a message", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (a, b)") == KEEL_OK);

  SECTION("wrong parameter count") {
    CHECK(exec(*t, 0, "SELECT ?", {}) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "1 parameter"));
    CHECK(contains(kst::last_error(), "0 given"));
    CHECK(exec(*t, 0, "INSERT INTO t VALUES (?, ?)", {int_p(1), int_p(2), int_p(3)}) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "3 given"));
    CHECK(exec(*t, 0, "SELECT 1", {int_p(1)}) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(scalar(*t, "SELECT count(*) FROM t") == 0);
  }

  SECTION("unknown parameter type") {
    auto p = int_p(1);
    p.type = 7;
    CHECK(exec(*t, 0, "SELECT ?", {p}) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "unknown type 7"));
    p.type = -1;
    CHECK(exec(*t, 0, "INSERT INTO t VALUES (1, ?)", {p}) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(scalar(*t, "SELECT count(*) FROM t") == 0);
  }

  SECTION("TEXT or BLOB with a NULL pointer and a non-zero length") {
    keel_sql_param p = text_p("");
    p.bytes = {nullptr, 5};
    CHECK(exec(*t, 0, "SELECT ?", {p}) == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(!kst::last_error().empty());
    p.type = KEEL_SQL_BLOB;
    CHECK(exec(*t, 0, "SELECT ?", {p}) == KEEL_ERR_INVALID_ARGUMENT);
    // NULL with length 0 is an empty value.
    p.bytes = {nullptr, 0};
    Rows rows;
    REQUIRE(exec(*t, 0, "SELECT ?", {p}, &rows) == KEEL_OK);
    CHECK(rows.rows[0][0].type == KEEL_SQL_BLOB);
    CHECK(rows.rows[0][0].bytes.empty());
  }

  SECTION("two statements in one exec") {
    CHECK(exec(*t, 0, "INSERT INTO t VALUES (1, 1); INSERT INTO t VALUES (2, 2)") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "one statement per exec"));
    CHECK(exec(*t, 0, "SELECT 1; SELECT 2") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(exec(*t, 0, "SELECT 1; -- x\n DROP TABLE t") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(scalar(*t, "SELECT count(*) FROM t") == 0);
    // Refused inside a transaction too, and the transaction stays usable.
    keel_txn txn = 0;
    REQUIRE(t->begin(0, &txn) == KEEL_OK);
    CHECK(exec(*t, txn, "INSERT INTO t VALUES (1, 1); INSERT INTO t VALUES (2, 2)") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(exec(*t, txn, "INSERT INTO t VALUES (3, 3)") == KEEL_OK);
    REQUIRE(t->commit(txn) == KEEL_OK);
    CHECK(scalar(*t, "SELECT count(*) FROM t") == 1);
  }

  SECTION("empty SQL") {
    for (std::string_view sql : {""sv, "   "sv, ";"sv, "-- nothing\n"sv, "/* nothing */"sv}) {
      INFO("sql: '" << sql << "'");
      CHECK(exec(*t, 0, sql) == KEEL_ERR_INVALID_ARGUMENT);
      CHECK(!kst::last_error().empty());
    }
    CHECK(exec(*t, 0, std::string_view{}) == KEEL_ERR_INVALID_ARGUMENT);
  }

  SECTION("syntax errors carry SQLite's text") {
    CHECK(exec(*t, 0, "SELEC 1") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "syntax error"));
    CHECK(exec(*t, 0, "INSERT INTO t VALUES (") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "incomplete input"));
    CHECK(exec(*t, 0, "SELECT * FROM no_such_table") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "no such table"));
    CHECK(exec(*t, 0, "SELECT nope FROM t") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(contains(kst::last_error(), "no such column"));
  }

  SECTION("the last error is cleared by the next success") {
    CHECK(exec(*t, 0, "SELEC 1") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(!kst::last_error().empty());
    CHECK(exec(*t, 0, "SELECT 1") == KEEL_OK);
    CHECK(kst::last_error().empty());
  }
}

TEST_CASE("storage: constraint failures are CONFLICT, foreign keys are enforced", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT UNIQUE NOT NULL)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "CREATE TABLE orders (id INTEGER PRIMARY KEY, product INTEGER NOT NULL REFERENCES products(id))") ==
          KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO products (sku) VALUES ('a')") == KEEL_OK);

  CHECK(exec(*t, 0, "INSERT INTO products (sku) VALUES ('a')") == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "UNIQUE constraint failed: products.sku"));
  CHECK(exec(*t, 0, "INSERT INTO products (sku) VALUES (NULL)") == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "NOT NULL constraint failed"));

  CHECK(exec(*t, 0, "INSERT INTO orders (product) VALUES (42)") == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "FOREIGN KEY constraint failed"));
  REQUIRE(exec(*t, 0, "INSERT INTO orders (product) VALUES (1)") == KEEL_OK);
  CHECK(exec(*t, 0, "DELETE FROM products WHERE id = 1") == KEEL_ERR_CONFLICT);
  CHECK(scalar(*t, "SELECT count(*) FROM products") == 1);
  CHECK(scalar(*t, "SELECT count(*) FROM orders") == 1);

  // Inside a transaction: the failed statement is undone, the transaction stays usable.
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO products (sku) VALUES ('b')") == KEEL_OK);
  CHECK(exec(*t, txn, "INSERT INTO products (sku) VALUES ('b')") == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "UNIQUE constraint failed"));
  CHECK(!contains(kst::last_error(), "rolled back"));
  REQUIRE(exec(*t, txn, "INSERT INTO products (sku) VALUES ('c')") == KEEL_OK);
  REQUIRE(t->commit(txn) == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM products") == 3);
}

TEST_CASE("storage: a deferred foreign key violation fails the commit and ends the transaction", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE parent (id INTEGER PRIMARY KEY)") == KEEL_OK);
  REQUIRE(exec(*t, 0,
               "CREATE TABLE child (id INTEGER PRIMARY KEY, parent INTEGER REFERENCES parent(id)"
               " DEFERRABLE INITIALLY DEFERRED)") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO child (parent) VALUES (7)") == KEEL_OK);  // deferred: fine for now
  CHECK(t->commit(txn) == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "FOREIGN KEY constraint failed"));
  CHECK(contains(kst::last_error(), "rolled back"));
  CHECK(t->commit(txn) == KEEL_ERR_NOT_FOUND);
  CHECK(exec(*t, txn, "SELECT 1") == KEEL_ERR_NOT_FOUND);
  CHECK(scalar(*t, "SELECT count(*) FROM child") == 0);
  // The writer is free again.
  keel_txn next = 0;
  REQUIRE(t->begin(0, &next) == KEEL_OK);
  REQUIRE(t->commit(next) == KEEL_OK);
}

TEST_CASE("storage: changes and last_insert_id", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)") == KEEL_OK);
  auto res = new_result();
  REQUIRE(exec(*t, 0, "INSERT INTO t (id, v) VALUES (41, 1)", {}, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 1);
  CHECK(res.last_insert_id == 41);
  CHECK(res.rows == 0);
  CHECK(res.reserved == 0);

  res = new_result();
  REQUIRE(exec(*t, 0, "INSERT INTO t (v) VALUES (2), (3), (4)", {}, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 3);
  CHECK(res.last_insert_id == 44);

  res = new_result();
  REQUIRE(exec(*t, 0, "UPDATE t SET v = v + 1 WHERE v >= 2", {}, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 3);

  res = new_result();
  REQUIRE(exec(*t, 0, "SELECT * FROM t", {}, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 0);
  CHECK(res.rows == 4);

  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  res = new_result();
  REQUIRE(exec(*t, txn, "INSERT INTO t (v) VALUES (9)", {}, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 1);
  CHECK(res.last_insert_id == 45);
  res = new_result();
  REQUIRE(exec(*t, txn, "DELETE FROM t", {}, nullptr, &res) == KEEL_OK);
  CHECK(res.changes == 5);
  REQUIRE(t->rollback(txn) == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 4);

  // An older, shorter keel_sql_result: nothing past its struct_size is written.
  struct {
    keel_sql_result r;
    std::int64_t guard;
  } small{};
  small.r.struct_size = static_cast<std::uint32_t>(offsetof(keel_sql_result, changes) + sizeof(std::int64_t));
  small.r.last_insert_id = -5;
  small.r.rows = -6;
  small.guard = -7;
  REQUIRE(exec(*t, 0, "INSERT INTO t (v) VALUES (10)", {}, nullptr, &small.r) == KEEL_OK);
  CHECK(small.r.changes == 1);
  CHECK(small.r.last_insert_id == -5);
  CHECK(small.r.rows == -6);
  CHECK(small.guard == -7);
}

TEST_CASE("storage: prepare reports parameters, columns and read-only without running", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (a INTEGER, b TEXT)") == KEEL_OK);
  keel_sql_info info{};
  info.struct_size = sizeof(info);

  REQUIRE(t->prepare("SELECT a, b, a + 1 FROM t WHERE a = ? AND b = ?", &info) == KEEL_OK);
  CHECK(info.param_count == 2);
  CHECK(info.column_count == 3);
  CHECK(info.read_only == 1);

  REQUIRE(t->prepare("INSERT INTO t (a, b) VALUES (?1, ?3)", &info) == KEEL_OK);
  CHECK(info.param_count == 3);
  CHECK(info.column_count == 0);
  CHECK(info.read_only == 0);

  REQUIRE(t->prepare("DELETE FROM t RETURNING a", &info) == KEEL_OK);
  CHECK(info.column_count == 1);
  CHECK(info.read_only == 0);

  REQUIRE(t->prepare("CREATE TABLE u (x)", &info) == KEEL_OK);
  CHECK(info.read_only == 0);

  // Nothing ran.
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 0);
  CHECK(exec(*t, 0, "SELECT * FROM u") == KEEL_ERR_INVALID_ARGUMENT);

  CHECK(t->prepare("SELEC 1", &info) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(kst::last_error(), "syntax error"));
  CHECK(t->prepare("SELECT 1; SELECT 2", &info) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(t->prepare("", &info) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(refused(t->prepare("SELECT * FROM _keel_kv", &info)));
  CHECK(refused(t->prepare("PRAGMA journal_mode=DELETE", &info)));
  CHECK(t->prepare("SELECT 1", nullptr) == KEEL_ERR_INVALID_ARGUMENT);

  // An older keel_sql_info that ends after param_count: later members are not written.
  struct {
    keel_sql_info info;
    std::uint32_t guard;
  } small{};
  small.info.struct_size = static_cast<std::uint32_t>(offsetof(keel_sql_info, param_count) + sizeof(std::uint32_t));
  small.info.column_count = 77;
  small.info.read_only = 88;
  small.guard = 99;
  REQUIRE(t->prepare("SELECT ?, ?", &small.info) == KEEL_OK);
  CHECK(small.info.param_count == 2);
  CHECK(small.info.column_count == 77);
  CHECK(small.info.read_only == 88);
  CHECK(small.guard == 99);
}

TEST_CASE("storage: ATTACH and VACUUM cannot reach other files", "[storage][sqlite]") {
  TestDb t;
  const auto other = t.dir.path() / "other.db";

  SECTION("ATTACH of a new file creates nothing") {
    const auto sql = "ATTACH DATABASE '" + other.string() + "' AS other";
    CHECK(refused(exec(*t, 0, sql)));
    CHECK(!kst::last_error().empty());
    CHECK(!fs::exists(other));
    keel_txn txn = 0;
    REQUIRE(t->begin(0, &txn) == KEEL_OK);
    CHECK(refused(exec(*t, txn, sql)));
    REQUIRE(t->rollback(txn) == KEEL_OK);
    CHECK(!fs::exists(other));
    CHECK(refused(exec(*t, 0, "ATTACH ? AS x", {text_p(other.string())})));
    CHECK(refused(exec(*t, 0, "DETACH DATABASE other")));
    CHECK(!fs::exists(other));
  }

  SECTION("ATTACH of an existing file leaves it untouched") {
    {
      SQLite::Database raw(other.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      raw.exec("CREATE TABLE secret (v TEXT); INSERT INTO secret VALUES ('s3cr3t')");
    }
    const auto before = read_file(other);
    const auto before_time = fs::last_write_time(other);
    CHECK(refused(exec(*t, 0, "ATTACH DATABASE '" + other.string() + "' AS o")));
    CHECK(exec(*t, 0, "SELECT * FROM o.secret") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(exec(*t, 0, "INSERT INTO o.secret VALUES ('x')") == KEEL_ERR_INVALID_ARGUMENT);
    CHECK(read_file(other) == before);
    CHECK(fs::last_write_time(other) == before_time);
  }

  SECTION("VACUUM and VACUUM INTO are refused and write nothing") {
    REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
    const auto target = t.dir.path() / "copy.db";
    for (const auto& sql : {"VACUUM INTO '" + target.string() + "'", "vacuum into '" + target.string() + "'",
                            "  /* hi */ -- there\n VaCuUm INTO '" + target.string() + "'",
                            "VACUUM main INTO '" + target.string() + "'", "VACUUM"s, "VACUUM main"s}) {
      INFO(sql);
      CHECK(refused(exec(*t, 0, sql)));
      CHECK(!kst::last_error().empty());
      CHECK(!fs::exists(target));
    }
    keel_sql_info info{};
    info.struct_size = sizeof(info);
    CHECK(refused(t->prepare("VACUUM INTO '" + target.string() + "'", &info)));
    keel_txn txn = 0;
    REQUIRE(t->begin(0, &txn) == KEEL_OK);
    CHECK(refused(exec(*t, txn, "VACUUM INTO '" + target.string() + "'")));
    REQUIRE(t->rollback(txn) == KEEL_OK);
    CHECK(!fs::exists(target));
  }
}

TEST_CASE("storage: PRAGMAs that change the database are refused, read-only ones allowed", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE parent (id INTEGER PRIMARY KEY)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "CREATE TABLE child (p INTEGER REFERENCES parent(id))") == KEEL_OK);

  for (const char* sql :
       {"PRAGMA journal_mode=DELETE", "PRAGMA main.journal_mode = DELETE", "PRAGMA journal_mode", "PRAGMA writable_schema=1",
        "PRAGMA writable_schema = ON", "PRAGMA foreign_keys=OFF", "PRAGMA foreign_keys = 0", "PRAGMA synchronous=OFF",
        "PRAGMA user_version=5", "PRAGMA user_version = 5", "PRAGMA max_page_count=1000000", "PRAGMA query_only=1",
        "PRAGMA wal_checkpoint(TRUNCATE)", "PRAGMA locking_mode=EXCLUSIVE", "PRAGMA cell_size_check=OFF",
        "PRAGMA defer_foreign_keys=ON", "PRAGMA temp_store_directory='/tmp'", "PRAGMA mmap_size=0"}) {
    INFO(sql);
    CHECK(refused(exec(*t, 0, sql)));
    CHECK(!kst::last_error().empty());
  }
  // Also inside a transaction.
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  CHECK(refused(exec(*t, txn, "PRAGMA foreign_keys=OFF")));
  CHECK(refused(exec(*t, txn, "PRAGMA journal_mode=MEMORY")));
  REQUIRE(t->rollback(txn) == KEEL_OK);

  // Nothing changed: still WAL, foreign keys still enforced, user_version still 0.
  CHECK(journal_mode(t.options.file) == "wal");
  CHECK(exec(*t, 0, "INSERT INTO child VALUES (99)") == KEEL_ERR_CONFLICT);
  CHECK(scalar(*t, "PRAGMA user_version") == 0);

  // Read-only PRAGMAs work.
  Rows info;
  REQUIRE(exec(*t, 0, "PRAGMA table_info(parent)", {}, &info) == KEEL_OK);
  REQUIRE(info.rows.size() == 1);
  CHECK(std::find(info.names.begin(), info.names.end(), "name") != info.names.end());
  Rows info_txn;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "PRAGMA table_info('child')", {}, &info_txn) == KEEL_OK);
  CHECK(info_txn.rows.size() == 1);
  REQUIRE(t->commit(txn) == KEEL_OK);
  Rows fk;
  REQUIRE(exec(*t, 0, "PRAGMA foreign_key_list(child)", {}, &fk) == KEEL_OK);
  CHECK(fk.rows.size() == 1);
  Rows check;
  REQUIRE(exec(*t, 0, "PRAGMA integrity_check", {}, &check) == KEEL_OK);
  REQUIRE(check.rows.size() == 1);
  CHECK(check.rows[0][0].bytes == "ok");
  CHECK(scalar(*t, "PRAGMA page_count") > 0);
  CHECK(scalar(*t, "PRAGMA page_size") > 0);
  Rows fn_form;
  REQUIRE(exec(*t, 0, "SELECT name FROM pragma_table_info('parent')", {}, &fn_form) == KEEL_OK);
  CHECK(fn_form.rows.size() == 1);
}

TEST_CASE("storage: the host's tables are off-limits to plugin SQL", "[storage][sqlite]") {
  TestDb t;
  std::int64_t version = 0;
  REQUIRE(t->kv_put(0, put_args("k", "v"), &version) == KEEL_OK);
  REQUIRE(exec(*t, 0, "CREATE TABLE mine (x)") == KEEL_OK);

  for (const char* sql : {"SELECT * FROM _keel_kv", "SELECT count(*) FROM _keel_kv", "select * from _KEEL_KV",
                          "SELECT * FROM \"_keel_kv\"", "SELECT * FROM main._keel_kv",
                          "INSERT INTO _keel_kv (key, value, version) VALUES (x'01', x'02', 1)",
                          "UPDATE _keel_kv SET version = 100", "DELETE FROM _keel_kv", "DROP TABLE _keel_kv",
                          "ALTER TABLE _keel_kv RENAME TO stolen", "SELECT * FROM _keel_migrations",
                          "INSERT INTO _keel_migrations VALUES (1, 'x', 'y', 'z', 0)", "DELETE FROM _keel_migrations",
                          "DROP INDEX _keel_kv_expiry", "CREATE TABLE _keel_mine (x)",
                          "CREATE INDEX _keel_idx ON mine (x)", "INSERT INTO mine SELECT key FROM _keel_kv",
                          "CREATE TRIGGER steal AFTER INSERT ON _keel_kv BEGIN INSERT INTO mine VALUES (1); END",
                          "SELECT (SELECT count(*) FROM _keel_kv)"}) {
    const auto st = exec(*t, 0, sql);
    INFO(sql << " -> " << st << " " << kst::last_error());
    CHECK(refused(st));
  }

  // Indirection through a view or a trigger on a plugin table does not help either.
  const auto view_created = exec(*t, 0, "CREATE VIEW v AS SELECT * FROM _keel_kv");
  INFO("CREATE VIEW -> " << view_created);
  if (view_created == KEEL_OK) CHECK(refused(exec(*t, 0, "SELECT * FROM v")));
  const auto trigger_created =
      exec(*t, 0, "CREATE TRIGGER tr AFTER INSERT ON mine BEGIN DELETE FROM _keel_kv; END");
  INFO("CREATE TRIGGER -> " << trigger_created);
  if (trigger_created == KEEL_OK) CHECK(refused(exec(*t, 0, "INSERT INTO mine VALUES (1)")));

  // The host's own statements still see the data.
  CHECK(host_scalar(*t, "SELECT count(*) FROM _keel_kv") == 1);
  auto e = new_entry();
  CHECK(t->kv_get(0, "k", &e) == KEEL_OK);
}

TEST_CASE("storage: transaction control as SQL text and load_extension are refused", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
  for (const char* sql : {"BEGIN", "BEGIN IMMEDIATE", "BEGIN EXCLUSIVE TRANSACTION", "COMMIT", "END", "ROLLBACK",
                          "SAVEPOINT a", "RELEASE a", "RELEASE SAVEPOINT a", "ROLLBACK TO a"}) {
    INFO(sql);
    CHECK(refused(exec(*t, 0, sql)));
  }
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES (1)") == KEEL_OK);
  CHECK(refused(exec(*t, txn, "COMMIT")));
  CHECK(refused(exec(*t, txn, "SAVEPOINT s")));
  CHECK(refused(exec(*t, txn, "ROLLBACK")));
  // The transaction is exactly as it was.
  CHECK(scalar(*t, "SELECT count(*) FROM t", txn) == 1);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 0);
  REQUIRE(t->commit(txn) == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 1);

  for (const char* sql : {"SELECT load_extension('/tmp/nope')", "SELECT load_extension('/tmp/nope', 'entry')",
                          "SELECT LOAD_EXTENSION('x')"}) {
    INFO(sql);
    CHECK(exec(*t, 0, sql) < 0);
  }
}

TEST_CASE("storage: the database file is in WAL mode", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
  CHECK(journal_mode(t.options.file) == "wal");
  t.reopen();
  CHECK(journal_mode(t.options.file) == "wal");
}

TEST_CASE("storage: calling storage from a row callback is INVALID_ARGUMENT, not a deadlock", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES (1), (2)") == KEEL_OK);
  std::int64_t version = 0;
  REQUIRE(t->kv_put(0, put_args("a", "1"), &version) == KEEL_OK);

  struct Probe {
    kst::Database* db = nullptr;
    keel_txn txn = 0;
    std::vector<keel_status> results;
    std::vector<std::string> messages;
    void call_everything() {
      keel_txn inner = 0;
      auto e = new_entry();
      keel_sql_info info{};
      info.struct_size = sizeof(info);
      std::int64_t v = 0;
      auto cb = [](void*, const keel_kv_entry*) -> int32_t { return 0; };
      const keel_status all[] = {
          db->exec(txn, "SELECT 1", {}, {}, nullptr),
          db->exec(0, "INSERT INTO t VALUES (3)", {}, {}, nullptr),
          db->begin(0, &inner),
          db->begin(txn, &inner),
          db->commit(txn == 0 ? 12345 : txn),
          db->rollback(txn == 0 ? 12345 : txn),
          db->prepare("SELECT 1", &info),
          db->kv_get(txn, "a", &e),
          db->kv_put(txn, put_args("b", "2"), &v),
          db->kv_delete(txn, "a", KEEL_KV_ANY_VERSION),
          db->kv_list(txn, "", "", 10, cb, nullptr, nullptr),
      };
      for (auto st : all) {
        results.push_back(st);
        messages.push_back(kst::last_error());
      }
    }
    static int32_t on_row(void* user, const keel_sql_value*, const keel_host_bytes*, std::size_t) {
      static_cast<Probe*>(user)->call_everything();
      return 0;
    }
    static int32_t on_entry(void* user, const keel_kv_entry*) {
      static_cast<Probe*>(user)->call_everything();
      return 0;
    }
  };

  auto check_probe = [](const Probe& p, std::size_t calls) {
    REQUIRE(p.results.size() == calls * 11);
    for (std::size_t i = 0; i < p.results.size(); ++i) {
      INFO("call " << i);
      CHECK(p.results[i] == KEEL_ERR_INVALID_ARGUMENT);
      CHECK(contains(p.messages[i], "callback"));
    }
  };

  SECTION("autocommit read on a reader") {
    Probe p;
    p.db = t.db.get();
    REQUIRE(t->exec(0, "SELECT x FROM t", {}, {&Probe::on_row, &p}, nullptr) == KEEL_OK);
    check_probe(p, 2);
  }
  SECTION("inside a transaction, holding the writer") {
    Probe p;
    p.db = t.db.get();
    REQUIRE(t->begin(0, &p.txn) == KEEL_OK);
    REQUIRE(t->exec(p.txn, "SELECT x FROM t", {}, {&Probe::on_row, &p}, nullptr) == KEEL_OK);
    check_probe(p, 2);
    REQUIRE(t->commit(p.txn) == KEEL_OK);
  }
  SECTION("a write with RETURNING on the writer") {
    Probe p;
    p.db = t.db.get();
    REQUIRE(t->exec(0, "UPDATE t SET x = x + 10 RETURNING x", {}, {&Probe::on_row, &p}, nullptr) == KEEL_OK);
    check_probe(p, 2);
  }
  SECTION("kv_list's entry callback") {
    Probe p;
    p.db = t.db.get();
    REQUIRE(t->kv_list(0, "", "", 10, &Probe::on_entry, &p, nullptr) == KEEL_OK);
    check_probe(p, 1);
  }
  // Nothing the callbacks tried happened, and storage works normally afterwards.
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 2);
  auto e = new_entry();
  CHECK(t->kv_get(0, "a", &e) == KEEL_OK);
  CHECK(t->kv_get(0, "b", &e) == KEEL_ERR_NOT_FOUND);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(t->commit(txn) == KEEL_OK);
}

TEST_CASE("storage: stats count statements, errors and latency buckets", "[storage][sqlite]") {
  TestDb t;
  const auto s0 = t->stats();
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES (1)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "SELECT * FROM t") == KEEL_OK);
  REQUIRE(exec(*t, 0, "SELEC") == KEEL_ERR_INVALID_ARGUMENT);
  REQUIRE(exec(*t, 0, "SELECT * FROM missing") == KEEL_ERR_INVALID_ARGUMENT);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(t->commit(txn) == KEEL_OK);
  std::int64_t v = 0;
  REQUIRE(t->kv_put(0, put_args("k", "v"), &v) == KEEL_OK);
  auto e = new_entry();
  REQUIRE(t->kv_get(0, "k", &e) == KEEL_OK);

  const auto s1 = t->stats();
  CHECK(s1.statements >= s0.statements + 9);
  CHECK(s1.errors == s0.errors + 2);
  CHECK(s1.busy == 0);
  CHECK(s1.full == 0);
  CHECK(s1.seconds_total > 0);
  std::uint64_t sum = 0;
  for (auto b : s1.buckets) sum += b;
  CHECK(sum == s1.statements);
  CHECK(s1.db_bytes > 0);
}

TEST_CASE("storage: committed data survives close and reopen, close rolls back an open transaction", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x TEXT)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES ('autocommit')") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES ('committed')") == KEEL_OK);
  REQUIRE(t->commit(txn) == KEEL_OK);
  std::int64_t v = 0;
  REQUIRE(t->kv_put(0, put_args("key", "value"), &v) == KEEL_OK);

  keel_txn open_txn = 0;
  REQUIRE(t->begin(0, &open_txn) == KEEL_OK);
  REQUIRE(exec(*t, open_txn, "INSERT INTO t VALUES ('left open')") == KEEL_OK);
  REQUIRE(t->kv_put(open_txn, put_args("key2", "value2"), &v) == KEEL_OK);
  t->close();
  t->close();  // idempotent

  // After close every call is UNAVAILABLE.
  CHECK(exec(*t, 0, "SELECT 1") == KEEL_ERR_UNAVAILABLE);
  CHECK(exec(*t, 0, "INSERT INTO t VALUES ('late')") == KEEL_ERR_UNAVAILABLE);
  CHECK(exec(*t, open_txn, "SELECT 1") == KEEL_ERR_UNAVAILABLE);
  keel_txn late = 0;
  CHECK(t->begin(0, &late) == KEEL_ERR_UNAVAILABLE);
  CHECK(t->commit(open_txn) == KEEL_ERR_UNAVAILABLE);
  auto e = new_entry();
  CHECK(t->kv_get(0, "key", &e) == KEEL_ERR_UNAVAILABLE);
  CHECK(t->kv_put(0, put_args("k", "v"), &v) == KEEL_ERR_UNAVAILABLE);
  keel_sql_info info{};
  info.struct_size = sizeof(info);
  CHECK(t->prepare("SELECT 1", &info) == KEEL_ERR_UNAVAILABLE);
  CHECK(!kst::last_error().empty());

  // The checkpoint at close leaves one file.
  const auto wal = fs::path(t.options.file.string() + "-wal");
  CHECK((!fs::exists(wal) || fs::file_size(wal) == 0));
  CHECK(kst::integrity_check(t.options.file) == "ok");

  t.db.reset();
  t.db = kst::open_database(t.options);
  Rows rows;
  REQUIRE(exec(*t, 0, "SELECT x FROM t ORDER BY rowid", {}, &rows) == KEEL_OK);
  REQUIRE(rows.rows.size() == 2);
  CHECK(rows.rows[0][0].bytes == "autocommit");
  CHECK(rows.rows[1][0].bytes == "committed");
  REQUIRE(t->kv_get(0, "key", &e) == KEEL_OK);
  CHECK(str(e.value) == "value");
  CHECK(t->kv_get(0, "key2", &e) == KEEL_ERR_NOT_FOUND);
  // Transaction ids of the old Database mean nothing here.
  CHECK(t->commit(open_txn) == KEEL_ERR_NOT_FOUND);
}

TEST_CASE("storage: opening a database in a missing directory throws with the file name", "[storage][sqlite]") {
  keel::test::TempDir dir;
  kst::Options o;
  o.file = dir.path() / "no" / "such" / "dir" / "p.db";
  o.plugin = "p";
  try {
    kst::SqliteDatabase db(o);
    FAIL("opened a database in a missing directory");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), o.file.string()));
  }
}

TEST_CASE("storage: a tiny statement cache still runs every statement correctly", "[storage][sqlite]") {
  for (std::uint32_t cache : {0u, 1u, 2u}) {
    INFO("statement_cache=" << cache);
    TestDb t([&](kst::Options& o) { o.statement_cache = cache; });
    REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
    for (int i = 0; i < 20; ++i) {
      const std::string sql = "INSERT INTO t VALUES (" + std::to_string(i % 5) + ")";
      REQUIRE(exec(*t, 0, sql) == KEEL_OK);
      std::int64_t v = 0;
      REQUIRE(t->kv_put(0, put_args("k" + std::to_string(i % 3), "v"), &v) == KEEL_OK);
    }
    CHECK(scalar(*t, "SELECT count(*) FROM t") == 20);
    CHECK(scalar(*t, "SELECT sum(x) FROM t") == 40);
    CHECK(host_scalar(*t, "SELECT count(*) FROM _keel_kv") == 3);
  }
}

TEST_CASE("storage: a cached statement recompiled after a schema change is checked again", "[storage][sqlite]") {
  TestDb t;
  std::int64_t version = 0;
  REQUIRE(t->kv_put(0, put_args("secret", "value"), &version) == KEEL_OK);
  REQUIRE(exec(*t, 0, "CREATE TABLE mine (key BLOB, value BLOB, version INTEGER, expires_at INTEGER)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "CREATE VIEW v AS SELECT * FROM mine") == KEEL_OK);
  // Cache "SELECT * FROM v" on the readers and on the writer.
  Rows rows;
  REQUIRE(exec(*t, 0, "SELECT * FROM v", {}, &rows) == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "SELECT * FROM v", {}, &rows) == KEEL_OK);
  REQUIRE(t->commit(txn) == KEEL_OK);
  // Point the view at the host's table: the cached statement must not read it.
  REQUIRE(exec(*t, 0, "DROP VIEW v") == KEEL_OK);
  REQUIRE(exec(*t, 0, "CREATE VIEW v AS SELECT * FROM _keel_kv") == KEEL_OK);
  Rows leaked;
  CHECK(refused(exec(*t, 0, "SELECT * FROM v", {}, &leaked)));
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  CHECK(refused(exec(*t, txn, "SELECT * FROM v", {}, &leaked)));
  REQUIRE(t->rollback(txn) == KEEL_OK);
  CHECK(leaked.rows.empty());
}

TEST_CASE("storage: the last error is empty after a call that succeeded around failed nested calls", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES (1)") == KEEL_OK);
  struct Nested {
    kst::Database* db;
    keel_status inner = KEEL_OK;
    static int32_t on_row(void* user, const keel_sql_value*, const keel_host_bytes*, std::size_t) {
      auto& self = *static_cast<Nested*>(user);
      self.inner = self.db->exec(0, "SELECT 1", {}, {}, nullptr);
      return 0;
    }
  } nested{t.db.get()};
  REQUIRE(t->exec(0, "SELECT x FROM t", {}, {&Nested::on_row, &nested}, nullptr) == KEEL_OK);
  CHECK(nested.inner == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(kst::last_error().empty());  // keel/storage.h error_message: "empty after a success"
}

TEST_CASE("storage: opening a file that is not a database throws with the file name", "[storage][sqlite]") {
  keel::test::TempDir dir;
  kst::Options o;
  o.file = dir.write("p.db", std::string(8192, 'x'));
  o.plugin = "p";
  try {
    kst::SqliteDatabase db(o);
    FAIL("opened a file that is not a database");
  } catch (const std::runtime_error& e) {
    CHECK(contains(e.what(), o.file.string()));
  }
}

TEST_CASE("storage: a table cannot be renamed onto the host's names, however the name is written", "[storage][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE mine (x)") == KEEL_OK);
  for (const char* sql : {"ALTER TABLE mine RENAME TO _keel_kv2", "alter table mine rename to _KEEL_shadow",
                          "ALTER TABLE mine RENAME TO \"_keel_quoted\"", "ALTER TABLE mine RENAME TO '_keel_string'",
                          "ALTER TABLE mine RENAME TO [_keel_bracket]", "ALTER TABLE mine RENAME TO `_keel_tick`",
                          "ALTER TABLE mine RENAME /* c */ TO -- c\n _keel_commented"}) {
    const auto st = exec(*t, 0, sql);
    INFO(sql << " -> " << st << " " << kst::last_error());
    CHECK(st == KEEL_ERR_PERMISSION_DENIED);
  }
  CHECK(scalar(*t, "SELECT count(*) FROM mine") == 0);  // still there under its name
  // Renames that keep clear of the host's names work as before.
  CHECK(exec(*t, 0, "ALTER TABLE mine RENAME COLUMN x TO _keel_column_is_fine") == KEEL_OK);
  CHECK(exec(*t, 0, "ALTER TABLE mine RENAME TO yours") == KEEL_OK);
  CHECK(exec(*t, 0, "ALTER TABLE yours RENAME TO \"my_keel_notes\"") == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM my_keel_notes") == 0);
}

TEST_CASE("storage: fts3_tokenizer() is refused: it hands out and takes C pointers", "[storage][sqlite]") {
  TestDb t;
  for (const char* sql : {"SELECT fts3_tokenizer('simple')", "SELECT FTS3_TOKENIZER('porter')",
                          "SELECT fts3_tokenizer('mine', x'0000000000000000')"}) {
    const auto st = exec(*t, 0, sql);
    INFO(sql << " -> " << st << " " << kst::last_error());
    CHECK(st < 0);
    CHECK(st != KEEL_OK);
  }
}

TEST_CASE("storage: the data directory and every database file are private from their first byte", "[storage][sqlite]") {
  const auto saved = ::umask(022);  // what a service usually runs with: new files 0644 by default
  keel::test::TempDir dir;
  const auto data = dir.path() / "data" / "nested";
  kst::prepare_data_dir(data);
  CHECK((fs::status(data).permissions() & fs::perms::all) == fs::perms::owner_all);
  {
    kst::Options o;
    o.file = data / "p.db";
    o.plugin = "p";
    kst::SqliteDatabase db(o);
    REQUIRE(exec(db, 0, "CREATE TABLE t (x)") == KEEL_OK);
    REQUIRE(exec(db, 0, "INSERT INTO t VALUES ('fresh row')") == KEEL_OK);
    for (const char* name : {"p.db", "p.db-wal", "p.db-shm"}) {
      INFO(name);
      REQUIRE(fs::exists(data / name));
      CHECK((fs::status(data / name).permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    }
  }
  // An existing directory keeps its mode (a mount point, say); a database file an older version
  // left readable by others is narrowed when it is opened again.
  const auto open_dir = fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec | fs::perms::others_read |
                        fs::perms::others_exec;
  fs::permissions(data, open_dir);
  fs::permissions(data / "p.db", fs::perms::owner_read | fs::perms::owner_write | fs::perms::others_read);
  kst::prepare_data_dir(data);
  CHECK((fs::status(data).permissions() & fs::perms::all) == open_dir);
  kst::Options o;
  o.file = data / "p.db";
  o.plugin = "p";
  kst::SqliteDatabase again(o);
  CHECK((fs::status(data / "p.db").permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
  ::umask(saved);
}

TEST_CASE("storage: a runaway statement stops at its deadline, and close() waits for it no longer", "[storage]") {
  constexpr std::string_view kForever =
      "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
  using Clock = std::chrono::steady_clock;
  SECTION("outside a request: transaction_timeout") {
    TestDb t([](kst::Options& o) { o.transaction_timeout = std::chrono::milliseconds(200); });
    const auto start = Clock::now();
    CHECK(exec(*t, 0, kForever) == KEEL_ERR_TIMEOUT);
    // PostgreSQL's statement_timeout, or SQLite's progress handler.
    CHECK(kst::last_error().find(on_postgres() ? "statement timeout" : "statement stopped at its deadline") !=
          std::string::npos);
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(exec(*t, 0, "SELECT 1") == KEEL_OK);  // the connection serves on
  }
  SECTION("inside a request: the request's deadline") {
    TestDb t([](kst::Options& o) { o.transaction_timeout = std::chrono::minutes(10); });
    const auto start = Clock::now();
    {
      const keel::host::abi::CurrentRequestScope scope({nullptr, start + std::chrono::milliseconds(150), "req-1", {}});
      CHECK(exec(*t, 0, kForever) == KEEL_ERR_TIMEOUT);
      CHECK(kst::last_error().find("statement stopped at its deadline") != std::string::npos);
    }
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(exec(*t, 0, "SELECT 1") == KEEL_OK);  // the connection serves on
  }
  SECTION("abandoned: whoever asked is gone (an isolated plugin's runner died)") {
    TestDb t([](kst::Options& o) { o.transaction_timeout = std::chrono::minutes(10); });
    std::atomic<bool> gone{false};
    keel_status result = KEEL_OK;
    std::string error;
    const auto start = Clock::now();
    std::thread runaway([&] {
      const keel::host::abi::CurrentRequestScope scope({nullptr, start + std::chrono::minutes(10), "req-2", {}, &gone});
      result = exec(*t, 0, kForever);
      error = kst::last_error();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    gone.store(true);
    runaway.join();
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(result == KEEL_ERR_UNAVAILABLE);
    CHECK(error.find("the plugin runner that asked for it is gone") != std::string::npos);
    CHECK(exec(*t, 0, "SELECT 1") == KEEL_OK);  // the next statement, with no flag, runs
  }
  SECTION("close() while a statement runs") {
    TestDb t([](kst::Options& o) { o.transaction_timeout = std::chrono::milliseconds(300); });
    keel_status result = KEEL_OK;
    std::thread runaway([&] { result = exec(*t, 0, kForever); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    const auto start = Clock::now();
    t->close();
    runaway.join();
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(result == KEEL_ERR_TIMEOUT);
  }
}

TEST_CASE("storage: a read-only run reads through its reserved reader and refuses every write", "[storage][sqlite]") {
  if (on_postgres()) return;  // PostgreSQL reads may wait on the network: it never begins one (below)
  TestDb t([](kst::Options& o) { o.readers = 1; });
  REQUIRE(t->exec(KEEL_TXN_NONE, "CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT)", {}, {}, nullptr) == KEEL_OK);
  REQUIRE(t->exec(KEEL_TXN_NONE, "INSERT INTO items (body) VALUES ('a')", {}, {}, nullptr) == KEEL_OK);
  {
    kst::ReadOnlyScope run;
    run.begin(*t, /*reserve_reader=*/true);
    REQUIRE(run.active());
    CHECK(scalar(*t, "SELECT count(*) FROM items") == 1);
    keel_kv_entry e = new_entry();
    CHECK(t->kv_get(KEEL_TXN_NONE, "k", &e) == KEEL_ERR_NOT_FOUND);
    CHECK(refused(t->exec(KEEL_TXN_NONE, "INSERT INTO items (body) VALUES ('b')", {}, {}, nullptr)));
    CHECK(contains(kst::last_error(), "\"storage\": \"read\""));
    keel_txn txn = KEEL_TXN_NONE;
    CHECK(refused(t->begin(KEEL_TXN_NONE, &txn)));
    CHECK(refused(t->kv_put(KEEL_TXN_NONE, put_args("k", "v"), nullptr)));
    CHECK(refused(t->kv_delete(KEEL_TXN_NONE, "k", KEEL_KV_ANY_VERSION)));
    CHECK(refused(t->commit(txn + 1)));  // not even a transaction another thread opened
    CHECK(refused(t->rollback(txn + 1)));
    // The only reader is this thread's: another thread cannot reserve it, and its own reads
    // wait for it (here: until the run ends).
    std::atomic<bool> other_reserved{true};
    std::thread([&] {
      kst::ReadOnlyScope other;
      other.begin(*t, true);
      other_reserved = other.active();
    }).join();
    CHECK_FALSE(other_reserved.load());
    // One run per thread.
    kst::ReadOnlyScope nested;
    nested.begin(*t, true);
    CHECK_FALSE(nested.active());
  }
  // Ended: writes work again on this thread, and the reader is free for others.
  CHECK(t->exec(KEEL_TXN_NONE, "INSERT INTO items (body) VALUES ('c')", {}, {}, nullptr) == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM items") == 2);
  std::atomic<bool> reserved{false};
  std::thread([&] {
    kst::ReadOnlyScope other;
    other.begin(*t, true);
    reserved = other.active();
  }).join();
  CHECK(reserved.load());
  // Without a reserved reader (a "storage": "read" route on the worker pool) writes are refused
  // all the same, and reads lease readers as usual.
  {
    kst::ReadOnlyScope run;
    run.begin(*t, /*reserve_reader=*/false);
    REQUIRE(run.active());
    CHECK(scalar(*t, "SELECT count(*) FROM items") == 2);
    CHECK(refused(t->exec(KEEL_TXN_NONE, "DELETE FROM items", {}, {}, nullptr)));
  }
}

TEST_CASE("storage: PostgreSQL never runs a route's reads on the calling thread", "[storage]") {
  if (!on_postgres()) return;
  TestDb t;
  kst::ReadOnlyScope run;
  run.begin(*t, true);
  CHECK_FALSE(run.active());
}
