// storage::pg's lexical helpers: SQLite placeholders and DDL translated for PostgreSQL 15, statement
// classification, INSERT targets, and the SQLite-only constructs a migration is warned about. The example
// plugins' real migrations are translated too (their manifests are the single source of that SQL).

#include "storage/postgres/sql_text.hpp"

#include <cstddef>
#include <cstdint>
#include <optional>
#include <regex>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../../../plugins/catalog/src/manifest.hpp"
#include "../../../plugins/notifications/src/manifest.hpp"
#include "../../../plugins/orders/src/manifest.hpp"

namespace pg = keel::host::storage::pg;
using namespace std::string_literals;

namespace {

std::string placeholders(std::string_view sql) {
  const auto p = pg::translate_placeholders(sql);
  INFO(sql);
  REQUIRE(p.error.empty());
  return p.sql;
}

std::string placeholder_error(std::string_view sql) {
  const auto p = pg::translate_placeholders(sql);
  INFO(sql);
  REQUIRE_FALSE(p.error.empty());
  return p.error;
}

bool has_word(const std::string& text, const std::string& word) {
  return std::regex_search(text, std::regex("\\b" + word + "\\b", std::regex::icase));
}

struct Migration {
  std::string plugin;
  std::int64_t version;
  std::string sql;
};

std::vector<Migration> plugin_migrations() {
  std::vector<Migration> out;
  const auto add = [&](const std::string& plugin, const char* manifest) {
    const auto parsed = nlohmann::json::parse(manifest);
    for (const auto& m : parsed.at("migrations"))
      out.push_back({plugin, m.at("version").get<std::int64_t>(), m.at("sql").get<std::string>()});
  };
  add("catalog", CATALOG_MANIFEST);
  add("orders", ORDERS_MANIFEST);
  add("notifications", NOTIFICATIONS_MANIFEST);
  return out;
}

}  // namespace

// ---- translate_placeholders ----

TEST_CASE("pg sql text: bare and numbered placeholders follow SQLite's numbering", "[storage][postgres-sql]") {
  SECTION("bare placeholders count up") {
    const auto p = pg::translate_placeholders("SELECT * FROM t WHERE a = ? AND b = ?");
    CHECK(p.error.empty());
    CHECK(p.sql == "SELECT * FROM t WHERE a = $1 AND b = $2");
    CHECK(p.count == 2);
  }
  SECTION("a bare placeholder is one more than the highest index so far") {
    const auto p = pg::translate_placeholders("?2, ?, ?1");
    CHECK(p.sql == "$2, $3, $1");
    CHECK(p.count == 3);
    CHECK(placeholders("? ?3 ? ?1 ?") == "$1 $3 $4 $1 $5");
  }
  SECTION("count is the highest index, even when lower ones are unused") {
    const auto p = pg::translate_placeholders("SELECT ?5");
    CHECK(p.sql == "SELECT $5");
    CHECK(p.count == 5);
  }
  SECTION("a repeated index is one parameter") {
    const auto p = pg::translate_placeholders("a = ?1 OR b = ?1");
    CHECK(p.sql == "a = $1 OR b = $1");
    CHECK(p.count == 1);
  }
  SECTION("leading zeros name the same index") { CHECK(placeholders("?007") == "$7"); }
  SECTION("the highest index PostgreSQL allows") {
    const auto p = pg::translate_placeholders("?65535");
    CHECK(p.sql == "$65535");
    CHECK(p.count == 65535);
  }
  SECTION("text without placeholders is unchanged") {
    const auto p = pg::translate_placeholders("SELECT 1");
    CHECK(p.sql == "SELECT 1");
    CHECK(p.count == 0);
    CHECK(pg::translate_placeholders("").sql.empty());
    CHECK(pg::translate_placeholders("").count == 0);
  }
  SECTION("placeholders without spaces around them") {
    CHECK(placeholders("VALUES(?,?,?)") == "VALUES($1,$2,$3)");
    CHECK(placeholders("a=?AND b=?") == "a=$1AND b=$2");
    CHECK(placeholders("LIMIT ?1") == "LIMIT $1");
  }
  SECTION("a placeholder glued to a word is kept apart from it") {
    // "x$1" would be one identifier to PostgreSQL.
    CHECK(placeholders("SELECT x?") == "SELECT x $1");
  }
}

TEST_CASE("pg sql text: placeholders in literals, identifiers and comments are untouched",
          "[storage][postgres-sql]") {
  SECTION("each kind of literal and comment") {
    CHECK(placeholders("SELECT '?', ?") == "SELECT '?', $1");
    CHECK(placeholders("SELECT 'it''s ?', ?") == "SELECT 'it''s ?', $1");
    CHECK(placeholders(R"(SELECT E'a\'?', ?)") == R"(SELECT E'a\'?', $1)");
    CHECK(placeholders(R"(SELECT e'\\', ?)") == R"(SELECT e'\\', $1)");
    CHECK(placeholders(R"(SELECT 'a\', ?)") == R"(SELECT 'a\', $1)");
    CHECK(placeholders(R"(SELECT "a""?b", ?)") == R"(SELECT "a""?b", $1)");
    CHECK(placeholders("SELECT $$ ? $$, ?") == "SELECT $$ ? $$, $1");
    CHECK(placeholders("SELECT $fn$ ? $x$ ? $fn$, ?") == "SELECT $fn$ ? $x$ ? $fn$, $1");
    CHECK(placeholders("SELECT ? -- ?\n, ?") == "SELECT $1 -- ?\n, $2");
    CHECK(placeholders("SELECT ? /* ? */, ?") == "SELECT $1 /* ? */, $2");
    CHECK(placeholders("SELECT X'3F', U&'?', U&\"?\", N'?', B'1', ?") ==
          "SELECT X'3F', U&'?', U&\"?\", N'?', B'1', $1");
  }
  SECTION("block comments nest as in PostgreSQL") {
    CHECK(placeholders("/* a /* ? */ ? */ ?") == "/* a /* ? */ ? */ $1");
  }
  SECTION("all of them in one statement") {
    const auto p = pg::translate_placeholders(
        "SELECT '?' AS \"?\", $q$?$q$ -- ?\n/* ? /* ? */ ? */ FROM t WHERE a = ? AND b = 'x?''?'");
    CHECK(p.sql == "SELECT '?' AS \"?\", $q$?$q$ -- ?\n/* ? /* ? */ ? */ FROM t WHERE a = $1 AND b = 'x?''?'");
    CHECK(p.count == 1);
  }
  SECTION("a line comment may end the text") {
    CHECK(placeholders("SELECT ? -- the end ?") == "SELECT $1 -- the end ?");
  }
}

TEST_CASE("pg sql text: casts, named parameters and existing $N are left alone", "[storage][postgres-sql]") {
  SECTION("casts") {
    CHECK(placeholders("SELECT x::int, ?::text") == "SELECT x::int, $1::text");
  }
  SECTION("SQLite's named forms are not translated") {
    const auto p = pg::translate_placeholders("SELECT :name, @name, $name, ?");
    CHECK(p.sql == "SELECT :name, @name, $name, $1");
    CHECK(p.count == 1);
  }
  SECTION("existing positional parameters count") {
    auto p = pg::translate_placeholders("SELECT $1, $2");
    CHECK(p.sql == "SELECT $1, $2");
    CHECK(p.count == 2);
    p = pg::translate_placeholders("WHERE a = $1 AND b = ?");
    CHECK(p.sql == "WHERE a = $1 AND b = $2");
    CHECK(p.count == 2);
    p = pg::translate_placeholders("WHERE a = $3 AND b = ?1");
    CHECK(p.sql == "WHERE a = $3 AND b = $1");
    CHECK(p.count == 3);
  }
  SECTION("$1 is a parameter, $a$ a dollar quote, and a '$' inside a word part of the word") {
    CHECK(placeholders("SELECT $1$a$ ? $a$, ?") == "SELECT $1$a$ ? $a$, $2");
    CHECK(placeholders("SELECT a$b$, ?") == "SELECT a$b$, $1");
    CHECK(placeholders("SELECT $ ?") == "SELECT $ $1");
  }
}

TEST_CASE("pg sql text: placeholders that cannot be translated are errors", "[storage][postgres-sql]") {
  SECTION("index 0") { CHECK_THAT(placeholder_error("SELECT ?0"), Catch::Contains("?0")); }
  SECTION("above 65535") {
    CHECK_THAT(placeholder_error("SELECT ?65536"), Catch::Contains("?65536"));
    CHECK_THAT(placeholder_error("SELECT ?99999999999999999999999999"), Catch::Contains("?9999"));
  }
  SECTION("out of range $N") {
    CHECK_THAT(placeholder_error("SELECT $0"), Catch::Contains("$0"));
    CHECK_THAT(placeholder_error("SELECT $70000"), Catch::Contains("$70000"));
  }
  SECTION("a bare placeholder after the highest index") {
    CHECK_THAT(placeholder_error("SELECT ?65535, ?"), Catch::Contains("65536"));
  }
  SECTION("unterminated literals and comments") {
    CHECK_THAT(placeholder_error("SELECT 'abc, ?"), Catch::Contains("unterminated quoted string"));
    CHECK_THAT(placeholder_error("SELECT 'it''s, ?"), Catch::Contains("unterminated quoted string"));
    CHECK_THAT(placeholder_error(R"(SELECT E'abc\', ?)"), Catch::Contains("unterminated quoted string"));
    CHECK_THAT(placeholder_error(R"(SELECT E'\)"), Catch::Contains("unterminated quoted string"));
    CHECK_THAT(placeholder_error("SELECT \"abc, ?"), Catch::Contains("unterminated quoted identifier"));
    CHECK_THAT(placeholder_error("SELECT $$abc, ?"), Catch::Contains("unterminated dollar-quoted string"));
    CHECK_THAT(placeholder_error("SELECT $a$abc$b$, ?"), Catch::Contains("unterminated dollar-quoted string"));
    CHECK_THAT(placeholder_error("SELECT ? /* abc"), Catch::Contains("unterminated block comment"));
    CHECK_THAT(placeholder_error("SELECT ? /* a /* b */ c"), Catch::Contains("unterminated block comment"));
  }
}

// ---- translate_ddl ----

TEST_CASE("pg sql text: DDL types become PostgreSQL's", "[storage][postgres-sql]") {
  SECTION("a table with every translated type") {
    CHECK(pg::translate_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, n INT, b BLOB, r REAL, s TEXT);") ==
          "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, n BIGINT, b BYTEA, "
          "r DOUBLE PRECISION, s TEXT);");
  }
  SECTION("INTEGER PRIMARY KEY in any case and spacing, with or without AUTOINCREMENT") {
    CHECK(pg::translate_ddl("create table t (id integer\n  primary\tKEY   autoincrement, x text)") ==
          "create table t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, x text)");
    CHECK(pg::translate_ddl("CREATE TABLE t (id INTEGER PRIMARY KEY)") ==
          "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)");
    CHECK(pg::translate_ddl("CREATE TABLE t (\"Id\" Integer Primary Key NOT NULL)") ==
          "CREATE TABLE t (\"Id\" BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY NOT NULL)");
  }
  SECTION("a PRIMARY KEY constraint later in the column definition") {
    CHECK(pg::translate_ddl("CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, n INTEGER NOT NULL)") ==
          "CREATE TABLE t (id BIGINT GENERATED BY DEFAULT AS IDENTITY NOT NULL PRIMARY KEY, n BIGINT NOT NULL)");
    CHECK(pg::translate_ddl("CREATE TABLE t (n INTEGER CHECK (n > 0), PRIMARY KEY (n))") ==
          "CREATE TABLE t (n BIGINT CHECK (n > 0), PRIMARY KEY (n))");
  }
  SECTION("a column called \"type\"") {
    CHECK(pg::translate_ddl("CREATE TABLE t (type INTEGER PRIMARY KEY, as_of REAL)") ==
          "CREATE TABLE t (type BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, as_of DOUBLE PRECISION)");
    CHECK(pg::translate_ddl("ALTER TABLE t ALTER COLUMN type TYPE integer") ==
          "ALTER TABLE t ALTER COLUMN type TYPE BIGINT");
  }
  SECTION("INT PRIMARY KEY is no rowid alias in SQLite, so no identity either") {
    CHECK(pg::translate_ddl("CREATE TABLE t (id INT PRIMARY KEY)") == "CREATE TABLE t (id BIGINT PRIMARY KEY)");
  }
  SECTION("casts and added columns") {
    CHECK(pg::translate_ddl("UPDATE t SET a = CAST(b AS INTEGER), c = d::real, e = CAST(f AS blob)") ==
          "UPDATE t SET a = CAST(b AS BIGINT), c = d::DOUBLE PRECISION, e = CAST(f AS BYTEA)");
    CHECK(pg::translate_ddl("ALTER TABLE items ADD COLUMN price INTEGER NOT NULL DEFAULT 0;") ==
          "ALTER TABLE items ADD COLUMN price BIGINT NOT NULL DEFAULT 0;");
    CHECK(pg::translate_ddl("ALTER TABLE items ADD weight real") == "ALTER TABLE items ADD weight DOUBLE PRECISION");
  }
  SECTION("whole words only") {
    const std::string same =
        "CREATE TABLE t (my_integer TEXT, sINteger TEXT, integers TEXT, blobs TEXT, reals TEXT, int8 TEXT, x$int TEXT)";
    CHECK(pg::translate_ddl(same) == same);
  }
  SECTION("names that happen to be type names stay names") {
    CHECK(pg::translate_ddl("CREATE TABLE real (int INTEGER, blob BLOB, real REAL)") ==
          "CREATE TABLE real (int BIGINT, blob BYTEA, real DOUBLE PRECISION)");
    CHECK(pg::translate_ddl("CREATE INDEX i ON t (real, int)") == "CREATE INDEX i ON t (real, int)");
  }
  SECTION("literals, quoted identifiers and comments are untouched") {
    const std::string same = "CREATE TABLE t (\"INTEGER\" TEXT DEFAULT 'INTEGER PRIMARY KEY' -- x INTEGER\n"
                             ", /* y BLOB /* z REAL */ */ w TEXT DEFAULT $$ a REAL $$) -- WITHOUT ROWID";
    CHECK(pg::translate_ddl(same) == same);
  }
  SECTION("everything else is copied byte for byte") {
    const std::string same =
        "CREATE TABLE a (x TEXT NOT NULL,\r\n\ty   NUMERIC CHECK (y >= 0),  PRIMARY KEY (x, y))\n;\n"
        "CREATE INDEX a_y ON a (y) WHERE y > 1;  ";
    CHECK(pg::translate_ddl(same) == same);
    CHECK(pg::translate_ddl("").empty());
  }
}

TEST_CASE("pg sql text: SQLite's table options are removed", "[storage][postgres-sql]") {
  SECTION("WITHOUT ROWID and STRICT, alone or combined") {
    CHECK(pg::translate_ddl("CREATE TABLE t (k TEXT PRIMARY KEY) WITHOUT ROWID;") ==
          "CREATE TABLE t (k TEXT PRIMARY KEY);");
    CHECK(pg::translate_ddl("CREATE TABLE t (k TEXT) STRICT") == "CREATE TABLE t (k TEXT)");
    CHECK(pg::translate_ddl("CREATE TABLE t (k TEXT PRIMARY KEY) without  rowid , strict;") ==
          "CREATE TABLE t (k TEXT PRIMARY KEY);");
    CHECK(pg::translate_ddl("CREATE TABLE t (k TEXT PRIMARY KEY)STRICT,WITHOUT ROWID\n;") ==
          "CREATE TABLE t (k TEXT PRIMARY KEY)\n;");
  }
  SECTION("on every CREATE TABLE form") {
    CHECK(pg::translate_ddl("CREATE TEMP TABLE IF NOT EXISTS main.\"T\" (a INT, CHECK ((a) > 0)) STRICT;"
                            "CREATE TABLE u (b BLOB) WITHOUT ROWID;") ==
          "CREATE TEMP TABLE IF NOT EXISTS main.\"T\" (a BIGINT, CHECK ((a) > 0));CREATE TABLE u (b BYTEA);");
  }
  SECTION("the words elsewhere are not options") {
    const std::string same = "CREATE TABLE t (strict TEXT, rowid TEXT); SELECT strict FROM t; "
                             "CREATE INDEX strict ON t (strict);";
    CHECK(pg::translate_ddl(same) == same);
  }
  SECTION("options followed by something else are left for the database to reject") {
    const std::string same = "CREATE TABLE t (k TEXT) STRICT AS";
    CHECK(pg::translate_ddl(same) == same);
  }
}

TEST_CASE("pg sql text: the example plugins' migrations translate to PostgreSQL", "[storage][postgres-sql]") {
  const auto migrations = plugin_migrations();
  REQUIRE(migrations.size() >= 3);
  for (const auto& m : migrations) {
    INFO(m.plugin << " migration " << m.version);
    const auto ddl = pg::translate_ddl(m.sql);
    CHECK(pg::sqlite_only_constructs(m.sql).empty());
    CHECK_FALSE(has_word(ddl, "integer"));
    CHECK_FALSE(has_word(ddl, "autoincrement"));
    CHECK_FALSE(has_word(ddl, "int"));
    // Translating twice changes nothing more: the output has nothing left to translate.
    CHECK(pg::translate_ddl(ddl) == ddl);
  }
  const auto first = [&](const std::string& plugin) {
    for (const auto& m : migrations)
      if (m.plugin == plugin && m.version == 1) return pg::translate_ddl(m.sql);
    FAIL("no migration 1 for " << plugin);
    return std::string{};
  };
  CHECK_THAT(first("catalog"), Catch::StartsWith("CREATE TABLE products (id BIGINT GENERATED BY DEFAULT AS IDENTITY "
                                                 "PRIMARY KEY, sku TEXT NOT NULL UNIQUE,"));
  CHECK_THAT(first("catalog"), Catch::Contains("price_cents BIGINT NOT NULL CHECK (price_cents >= 0)"));
  CHECK_THAT(first("catalog"), Catch::Contains("line BIGINT NOT NULL, product_id BIGINT NOT NULL"));
  CHECK_THAT(first("orders"), Catch::StartsWith("CREATE TABLE orders (id BIGINT GENERATED BY DEFAULT AS IDENTITY "
                                                "PRIMARY KEY,"));
  CHECK_THAT(first("orders"), Catch::Contains("order_id BIGINT NOT NULL REFERENCES orders (id)"));
  CHECK_THAT(first("orders"), Catch::EndsWith("CREATE INDEX orders_release_due ON orders (id) WHERE release_due = 1;"));
  CHECK(first("notifications") ==
        "CREATE TABLE notifications (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, event_id TEXT NOT NULL "
        "UNIQUE, topic TEXT NOT NULL, order_id BIGINT NOT NULL, status TEXT NOT NULL, total_cents BIGINT, currency "
        "TEXT, message TEXT NOT NULL, published_at TEXT NOT NULL, created_at TEXT NOT NULL); CREATE INDEX "
        "notifications_by_order ON notifications (order_id, id);");
}

// ---- first_keyword and read_only ----

TEST_CASE("pg sql text: first keyword", "[storage][postgres-sql]") {
  CHECK(pg::first_keyword("SELECT 1") == "select");
  CHECK(pg::first_keyword("  -- note\n /* a /* nested */ one */\n\tInsert INTO t VALUES (1)") == "insert");
  CHECK(pg::first_keyword("(SELECT 1) UNION (SELECT 2)") == "select");
  CHECK(pg::first_keyword("with x AS (SELECT 1) SELECT * FROM x") == "with");
  CHECK(pg::first_keyword("").empty());
  CHECK(pg::first_keyword("  -- only a comment").empty());
  CHECK(pg::first_keyword("'SELECT'").empty());
  CHECK(pg::first_keyword("\"select\" x").empty());
  CHECK(pg::first_keyword(";").empty());
}

TEST_CASE("pg sql text: read-only statements", "[storage][postgres-sql]") {
  SECTION("reads") {
    for (const char* sql : {"SELECT 1", "select * from t where id = $1", "VALUES (1), (2)", "TABLE t",
                            "SHOW search_path", "WITH x AS (SELECT 1) SELECT * FROM x", "EXPLAIN SELECT * FROM t",
                            "(SELECT 1) UNION (SELECT 2)", "  /* c */ SELECT updated_at, created_by FROM t;",
                            "SELECT 'DELETE FROM t', \"update\", $$DROP TABLE t$$ FROM t -- INSERT",
                            "SELECT 1; SELECT 2;", "SELECT * FROM t ORDER BY id LIMIT 10 OFFSET 5",
                            "SELECT substring(x FROM 1 FOR 2) FROM t"}) {
      INFO(sql);
      CHECK(pg::read_only(sql));
    }
  }
  SECTION("writes and locks") {
    for (const char* sql :
         {"INSERT INTO t VALUES (1)", "UPDATE t SET a = 1", "DELETE FROM t", "CREATE TABLE t (a INT)",
          "WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d", "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x",
          "EXPLAIN ANALYZE DELETE FROM t", "SELECT * FROM t FOR UPDATE", "SELECT * FROM t FOR NO KEY UPDATE",
          "SELECT * FROM t FOR SHARE", "select * from t for key share", "SELECT * FROM t FOR UPDATE OF t SKIP LOCKED",
          "SELECT * INTO t2 FROM t", "SELECT 1; DELETE FROM t", "SELECT 1; VACUUM", "MERGE INTO t USING u ON true",
          "SELECT 1 FROM t; LOCK TABLE t", "TRUNCATE t", "COPY t TO STDOUT", "BEGIN", "PRAGMA user_version", "",
          "  -- nothing", ";", "'SELECT'", "GRANT SELECT ON t TO u", "SELECT 1 /* unterminated"}) {
      INFO(sql);
      CHECK_FALSE(pg::read_only(sql));
    }
  }
}

// ---- insert_without_returning ----

TEST_CASE("pg sql text: the target of an INSERT without RETURNING", "[storage][postgres-sql]") {
  const auto target = [](std::string_view sql) {
    const auto t = pg::insert_without_returning(sql);
    INFO(sql);
    REQUIRE(t.has_value());
    return t->schema + "|" + t->table;
  };
  SECTION("names as PostgreSQL folds them") {
    CHECK(target("INSERT INTO items (name) VALUES (?)") == "|items");
    CHECK(target("insert into Items VALUES ($1)") == "|items");
    CHECK(target("INSERT INTO ITEMS DEFAULT VALUES;") == "|items");
    CHECK(target("INSERT INTO \"Items\" VALUES (1)") == "|Items");
    CHECK(target("INSERT INTO \"a \"\"quoted\"\" name\" VALUES (1)") == "|a \"quoted\" name");
    CHECK(target("INSERT INTO t_1$x(a) VALUES (1)") == "|t_1$x");
  }
  SECTION("schema-qualified names") {
    CHECK(target("INSERT INTO Shop.Items VALUES (1)") == "shop|items");
    CHECK(target("INSERT INTO \"My Schema\" . \"T\" VALUES (1)") == "My Schema|T");
    CHECK(target("INSERT INTO db.s.t VALUES (1)") == "s|t");
  }
  SECTION("clauses, literals and comments that do not matter") {
    CHECK(target("  -- c\n/* d */ INSERT INTO t AS x (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET a = x.a") == "|t");
    CHECK(target("INSERT INTO t (a) VALUES ('RETURNING') -- RETURNING id") == "|t");
    CHECK(target("INSERT INTO t (\"returning\") SELECT \"returning\" FROM u") == "|t");
    CHECK(target("INSERT INTO t OVERRIDING SYSTEM VALUE VALUES (1)") == "|t");
    CHECK(target("INSERT INTO t SELECT * FROM u") == "|t");
  }
  SECTION("not an INSERT without RETURNING") {
    for (const char* sql :
         {"INSERT INTO t (a) VALUES (1) RETURNING id", "insert into t values (1) returning *",
          "INSERT OR IGNORE INTO t VALUES (1)", "INSERT OR REPLACE INTO t VALUES (1)", "REPLACE INTO t VALUES (1)",
          "WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "SELECT 1", "UPDATE t SET a = 1", "", "INSERT",
          "INSERT INTO", "INSERT INTO t", "INSERT INTO (a) VALUES (1)", "INSERT INTO \"\" VALUES (1)",
          "INSERT INTO \"t VALUES (1)", "INSERT INTO a.b.c.d VALUES (1)", "INSERT INTO t. VALUES (1)",
          "INSERT INTO t VALUES (1); INSERT INTO u VALUES (2)", "INSERT INTO 'x' VALUES (1)",
          "INSERT INTO U&\"d\\0061t\" VALUES (1)", "INSERT INTO t x VALUES (1)", "INSERT INTO t VALUES ('a",
          "INSERT INTO values VALUES (1)"}) {
      INFO(sql);
      CHECK_FALSE(pg::insert_without_returning(sql).has_value());
    }
  }
}

// ---- sqlite_only_constructs ----

TEST_CASE("pg sql text: SQLite-only constructs are reported once each, in order", "[storage][postgres-sql]") {
  SECTION("a script with many of them") {
    const auto found = pg::sqlite_only_constructs(
        "PRAGMA foreign_keys = ON;\n"
        "INSERT OR IGNORE INTO t VALUES (1); insert or ignore into t values (2);\n"
        "INSERT OR REPLACE INTO t VALUES (3);\n"
        "REPLACE INTO t VALUES (4);\n"
        "SELECT strftime('%s', 'now'), ifnull(a, 0), group_concat(b) FROM t WHERE name GLOB 'a*';\n"
        "SELECT name FROM sqlite_master; SELECT * FROM main.sqlite_sequence;\n"
        "ATTACH DATABASE 'x.db' AS x; DETACH x; VACUUM; pragma user_version = 2;");
    const std::vector<std::string> expected{
        "PRAGMA (PostgreSQL: SET, server settings, or the system catalogs)",
        "INSERT OR IGNORE (PostgreSQL: INSERT ... ON CONFLICT DO NOTHING)",
        "INSERT OR REPLACE (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)",
        "REPLACE INTO (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)",
        "strftime() (PostgreSQL: to_char())",
        "ifnull() (PostgreSQL: coalesce())",
        "group_concat() (PostgreSQL: string_agg())",
        "GLOB (PostgreSQL: LIKE, SIMILAR TO or ~ regular expressions)",
        "sqlite_master (PostgreSQL: information_schema or pg_catalog)",
        "sqlite_sequence (PostgreSQL: identity sequences, pg_get_serial_sequence() and setval())",
        "ATTACH DATABASE (PostgreSQL: no equivalent; one database per connection, use schemas)",
        "DETACH DATABASE (PostgreSQL: no equivalent)",
        "VACUUM (PostgreSQL: cannot run inside a transaction block, so not in a migration)",
    };
    CHECK(found == expected);
  }
  SECTION("every INSERT OR conflict clause, and UPDATE OR") {
    const auto found = pg::sqlite_only_constructs(
        "INSERT OR ABORT INTO t VALUES (1); INSERT OR FAIL INTO t VALUES (1); INSERT OR ROLLBACK INTO t VALUES (1);"
        "UPDATE OR IGNORE t SET a = 1");
    REQUIRE(found.size() == 4);
    CHECK_THAT(found[0], Catch::StartsWith("INSERT OR ABORT ("));
    CHECK_THAT(found[1], Catch::StartsWith("INSERT OR FAIL ("));
    CHECK_THAT(found[2], Catch::StartsWith("INSERT OR ROLLBACK ("));
    CHECK_THAT(found[3], Catch::StartsWith("UPDATE OR IGNORE ("));
  }
  SECTION("each listed function, when called") {
    for (const char* name : {"strftime", "datetime", "date", "time", "julianday", "unixepoch", "ifnull",
                             "group_concat", "typeof", "randomblob", "zeroblob", "last_insert_rowid", "changes",
                             "total_changes", "printf", "instr", "hex"}) {
      INFO(name);
      const auto found = pg::sqlite_only_constructs(std::string("SELECT ") + name + " ( x ) FROM t");
      REQUIRE(found.size() == 1);
      CHECK_THAT(found[0], Catch::StartsWith(std::string(name) + "() (PostgreSQL: "));
    }
    CHECK(pg::sqlite_only_constructs("SELECT DATETIME('now'), DateTime('now')").size() == 1);
    CHECK(pg::sqlite_only_constructs("SELECT sqlite_schema.name FROM \"sqlite_schema\"").size() == 1);
  }
  SECTION("not reported") {
    for (const char* sql :
         {"CREATE TABLE t (id INTEGER PRIMARY KEY AUTOINCREMENT, date TEXT, time TEXT, hex BLOB) WITHOUT ROWID, STRICT",
          "SELECT date, time, changes FROM t", "SELECT s.date(1)",
          "SELECT 'strftime(', \"ifnull(\" FROM t -- PRAGMA x\n /* VACUUM; GLOB */",
          "SELECT $$ group_concat(x) $$", "ALTER TABLE t DETACH PARTITION p", "ALTER TABLE t ATTACH PARTITION p",
          "CREATE OR REPLACE VIEW v AS SELECT replace(a, 'x', 'y') FROM t", "SELECT coalesce(a, 0) FROM t",
          "INSERT INTO t VALUES (1) ON CONFLICT DO NOTHING", "SELECT my_date(x), datetimes(y) FROM t", ""}) {
      INFO(sql);
      CHECK(pg::sqlite_only_constructs(sql).empty());
    }
  }
}

// ---- robustness ----

TEST_CASE("pg sql text: every prefix of tricky text lexes without reading past its end", "[storage][postgres-sql]") {
  const std::string tricky =
      "INSERT INTO \"a\"\"b\".t (x) VALUES (E'\\'?', $q$ ? $q$, ?2, ?, $1, 'it''s') -- ?\n"
      "/* a /* b */ ? */ ; CREATE TABLE u (id INTEGER PRIMARY KEY, r REAL) WITHOUT ROWID, STRICT;"
      " SELECT x::int, $ FROM t FOR KEY SHARE; PRAGMA x; SELECT U&\"?\", X'00', 1.5e-3, .5";
  for (std::size_t n = 0; n <= tricky.size(); ++n) {
    // A copy of exactly n bytes, so that a read past the end is a sanitizer error rather than a silent one.
    const std::string prefix = tricky.substr(0, n);
    const std::string_view sql{prefix.data(), n};
    INFO(prefix);
    const auto p = pg::translate_placeholders(sql);
    CHECK((p.error.empty() || p.error.find("unterminated") != std::string::npos));
    (void)pg::translate_ddl(sql);
    (void)pg::first_keyword(sql);
    (void)pg::read_only(sql);
    (void)pg::insert_without_returning(sql);
    (void)pg::sqlite_only_constructs(sql);
  }
  SECTION("odd bytes") {
    // NUL bytes, a UTF-8-like word and a dollar quote whose tag is a high byte.
    const auto odd = "\0?'\0'\xff? $\x80$?$\x80$"s;
    const auto p = pg::translate_placeholders(odd);
    CHECK(p.error.empty());
    CHECK(p.sql == "\0$1'\0'\xff $2 $\x80$?$\x80$"s);
    CHECK(pg::translate_ddl(odd) == odd);
  }
}
