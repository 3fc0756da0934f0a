// `keel migrate status` and `keel backup` against the real binary: a host runs the migrating
// fixture (ext:keel.storage/1, two migrations) and takes writes while the tools read its
// database; an applied migration edited in the database is reported as changed (exit 1) and
// refuses the plugin at the next start while the other plugins serve.
#include <catch2/catch.hpp>

#include <SQLiteCpp/SQLiteCpp.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <cstdint>
#include <filesystem>
#include <sys/stat.h>
#include <unistd.h>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "keel_host.hpp"
#include "process.hpp"
#include "raw_client.hpp"
#include "temp_dir.hpp"

using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::Process;
using keel::test::simple_request;
using keel::test::TempDir;
using keel::test::with_plugins;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Run {
  int code;
  std::string output;  // stdout and stderr
};

Run run_keel(const fs::path& dir, const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  static int runs = 0;
  Process p(KEEL_BINARY, args, dir / ("keel-cli-" + std::to_string(++runs) + ".txt"), env);
  const auto code = p.wait(30s);
  REQUIRE(code);
  return {*code, p.output()};
}

/// Runs a PostgreSQL client program (psql, pg_restore) and collects its output.
Run run_tool(const fs::path& dir, const std::string& program, const std::vector<std::string>& args) {
  static int runs = 0;
  Process p(program, args, dir / ("tool-" + std::to_string(++runs) + ".txt"));
  const auto code = p.wait(30s);
  REQUIRE(code);
  return {*code, p.output()};
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

// The JSON document printed on stdout: from the first line that starts with '{' to the last '}'
// (log lines, if any, go to stderr, which the harness captures into the same file).
nlohmann::json json_of(const std::string& output) {
  const auto begin = output.rfind('{', 0) == 0 ? 0 : output.find("\n{");
  REQUIRE(begin != std::string::npos);
  const auto end = output.rfind('}');
  REQUIRE(end != std::string::npos);
  return nlohmann::json::parse(output.substr(begin, end - begin + 1));
}

// Host config with every path in the file itself, so the tools need nothing but --config: the
// data directory given here, plugins from the host's own plugin directory next to keel.toml.
std::string storage_config(const fs::path& data_dir) {
  return "[server]\ndata_dir = '" + data_dir.string() + "'\n[plugins]\ndirectory = 'plugins'\n";
}

keel::test::HostOptions host_options(const fs::path& data_dir) {
  auto o = with_plugins({fixture("migrating"), fixture("no_op")}, storage_config(data_dir));
  o.data_dir = data_dir;
  return o;
}

std::string post_note(std::uint16_t port, const std::string& text) {
  const auto r = simple_request(port, "POST", "/api/migrating/notes", text);
  REQUIRE(r);
  REQUIRE(r->status == 201);
  return r->body;
}

std::int64_t count_rows(const fs::path& db, const char* table) {
  SQLite::Database d(db.string(), SQLite::OPEN_READONLY);
  return d.execAndGet(std::string("SELECT count(*) FROM ") + table).getInt64();
}

std::string integrity(const fs::path& db) {
  SQLite::Database d(db.string(), SQLite::OPEN_READONLY);
  return d.execAndGet("PRAGMA integrity_check").getString();
}

}  // namespace

TEST_CASE("keel migrate status and keel backup read a running host's plugin database", "[storage][cli]") {
  TempDir work;
  const auto data = work.path() / "data";
  KeelHost host(host_options(data));
  const auto config = host.config_file().string();
  CHECK(post_note(host.port(), "first") == "1");
  CHECK(post_note(host.port(), "second") == "2");
  CHECK(post_note(host.port(), "third") == "3");
  const auto count = simple_request(host.port(), "GET", "/api/migrating/notes/count");
  REQUIRE(count);
  CHECK(count->status == 200);
  CHECK(count->body == "3");

  SECTION("migrate status: both migrations applied, exit 0") {
    const auto r = run_keel(work.path(), {"migrate", "status", "--config", config});
    INFO(r.output);
    CHECK(r.code == 0);
    CHECK(contains(r.output, "migrating: " + (data / "migrating.db").string()));
    CHECK(contains(r.output, "notes table"));
    CHECK(contains(r.output, "index on note bodies"));
    CHECK(contains(r.output, "2 migration(s) applied, 0 pending, 0 changed, 0 unknown"));
    CHECK(contains(r.output, "result: ok"));
    CHECK_FALSE(contains(r.output, "no_op"));  // no storage, nothing to report

    const auto j = run_keel(work.path(), {"migrate", "status", "--config", config, "--json"});
    INFO(j.output);
    CHECK(j.code == 0);
    const auto doc = json_of(j.output);
    CHECK(doc["ok"] == true);
    REQUIRE(doc["plugins"].size() == 1);
    const auto& p = doc["plugins"][0];
    CHECK(p["name"] == "migrating");
    CHECK(p["preflight"] == "ok");
    CHECK(p["database"] == (data / "migrating.db").string());
    CHECK(p["database_exists"] == true);
    REQUIRE(p["migrations"].size() == 2);
    for (std::size_t i = 0; i < 2; ++i) {
      const auto& m = p["migrations"][i];
      CHECK(m["version"] == i + 1);
      CHECK(m["state"] == "applied");
      CHECK(m["applied_at"].is_string());
      CHECK(m["checksum"].get<std::string>().size() == 64);
    }
    CHECK(p["migrations"][0]["description"] == "notes table");
    CHECK(doc["summary"]["applied"] == 2);
  }

  SECTION("backup: a consistent copy while the host writes; no overwrite without --force") {
    const auto out = work.path() / "backups" / "today";  // created, parents too
    const auto copy = out / "migrating.db";
    const auto r = run_keel(work.path(), {"backup", "--config", config, "--out", out.string()});
    INFO(r.output);
    REQUIRE(r.code == 0);
    CHECK(contains(r.output, "migrating: " + (data / "migrating.db").string() + " -> " + copy.string()));
    CHECK(contains(r.output, " bytes"));
    CHECK(contains(r.output, "backed up 1 database(s)"));
    REQUIRE(fs::exists(copy));
    CHECK(count_rows(copy, "notes") == 3);
    CHECK(count_rows(copy, "_keel_migrations") == 2);
    CHECK(integrity(copy) == "ok");
    CHECK_FALSE(fs::exists(out / "migrating.db.partial"));
    CHECK_FALSE(fs::exists(out / "migrating.db.partial-wal"));

    // The host is unaffected and keeps writing.
    CHECK(post_note(host.port(), "fourth") == "4");

    const auto again = run_keel(work.path(), {"backup", "--config", config, "--out", out.string()});
    INFO(again.output);
    CHECK(again.code == 1);
    CHECK(contains(again.output, copy.string() + " already exists"));
    CHECK(contains(again.output, "--force"));
    CHECK(count_rows(copy, "notes") == 3);  // untouched

    // --force replaces it, here while another thread keeps inserting.
    std::atomic<bool> stop{false};
    std::atomic<int> written{0};
    std::thread writer([&] {
      while (!stop.load()) {
        const auto w = simple_request(host.port(), "POST", "/api/migrating/notes", "concurrent");
        if (!w || w->status != 201) break;
        ++written;
      }
    });
    struct Joiner {  // also when a REQUIRE below throws
      std::atomic<bool>& stop;
      std::thread& thread;
      ~Joiner() {
        stop = true;
        if (thread.joinable()) thread.join();
      }
    } joiner{stop, writer};
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (written.load() < 5 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(5ms);
    REQUIRE(written.load() >= 5);
    const auto forced = run_keel(work.path(), {"backup", "--config", config, "--out", out.string(), "--force"});
    stop = true;
    writer.join();
    INFO(forced.output);
    CHECK(forced.code == 0);
    CHECK(integrity(copy) == "ok");
    const auto rows = count_rows(copy, "notes");
    CHECK(rows >= 4 + 5);
    CHECK(rows <= 4 + written.load());
    const auto now = simple_request(host.port(), "GET", "/api/migrating/notes/count");
    REQUIRE(now);
    CHECK(now->body == std::to_string(4 + written.load()));
  }
}

TEST_CASE("an applied migration edited in the database is changed (exit 1) and refuses the plugin", "[storage][cli]") {
  TempDir work;
  const auto data = work.path() / "data";
  const auto db = data / "migrating.db";
  {
    KeelHost first(host_options(data));
    CHECK(post_note(first.port(), "kept") == "1");
    REQUIRE(first.stop() == 0);
  }
  {
    SQLite::Database d(db.string(), SQLite::OPEN_READWRITE);
    CHECK(d.exec("UPDATE _keel_migrations SET checksum = 'x' WHERE version = 2") == 1);
  }

  KeelHost second(host_options(data));
  const auto config = second.config_file().string();

  const auto r = run_keel(work.path(), {"migrate", "status", "--config", config});
  INFO(r.output);
  CHECK(r.code == 1);
  CHECK(contains(r.output, "1 migration(s) applied, 0 pending, 1 changed, 0 unknown"));
  CHECK(contains(r.output, "result: FAILED"));
  const auto j = run_keel(work.path(), {"migrate", "status", "--config", config, "--json"});
  INFO(j.output);
  CHECK(j.code == 1);
  const auto doc = json_of(j.output);
  CHECK(doc["ok"] == false);
  REQUIRE(doc["plugins"].size() == 1);
  REQUIRE(doc["plugins"][0]["migrations"].size() == 2);
  CHECK(doc["plugins"][0]["migrations"][0]["state"] == "applied");
  CHECK(doc["plugins"][0]["migrations"][1]["state"] == "changed");

  // The host refused the plugin with the reason, and the other plugin serves.
  const auto ping = simple_request(second.port(), "GET", "/api/no_op/ping");
  REQUIRE(ping);
  CHECK(ping->status == 200);
  CHECK(ping->body == "pong");
  const auto ready = simple_request(second.port(), "GET", "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(contains(ready->body, "plugin 'migrating' is failed"));
  CHECK(contains(ready->body, "edited"));
  CHECK(second.process().wait_for_output("edited after it was applied", 5s));

  SECTION("a recorded migration the manifest does not declare is unknown") {
    REQUIRE(second.stop() == 0);
    {
      SQLite::Database d(db.string(), SQLite::OPEN_READWRITE);
      CHECK(d.exec("DELETE FROM _keel_migrations WHERE version = 2") == 1);  // v2: pending again
      SQLite::Statement copy(d, "INSERT INTO _keel_migrations (version, description, checksum, applied_at, duration_ms)"
                                " SELECT 7, 'from a newer build', checksum, applied_at, 0 FROM _keel_migrations"
                                " WHERE version = 1");
      CHECK(copy.exec() == 1);
    }
    const auto u = run_keel(work.path(), {"migrate", "status", "--config", config});
    INFO(u.output);
    CHECK(u.code == 1);
    CHECK(contains(u.output, "from a newer build"));
    CHECK(contains(u.output, "1 migration(s) applied, 1 pending, 0 changed, 1 unknown"));
  }
}

TEST_CASE("storage tools without a running host: pending migrations, config errors", "[storage][cli]") {
  TempDir work;
  fs::create_directories(work.path() / "plugins");
  fs::copy_file(fixture("migrating"), work.path() / "plugins" / "migrating.so");
  const auto config = work.write("keel.toml", "[server]\ndata_dir = 'data'\n").string();

  SECTION("no database yet: every migration is pending, exit 0, and backup skips it") {
    const auto r = run_keel(work.path(), {"migrate", "status", "--config", config});
    INFO(r.output);
    CHECK(r.code == 0);
    CHECK(contains(r.output, (work.path() / "data" / "migrating.db").string() + " (not created yet)"));
    CHECK(contains(r.output, "0 migration(s) applied, 2 pending"));
    const auto b = run_keel(work.path(), {"backup", "--config", config, "--out", (work.path() / "out").string()});
    INFO(b.output);
    CHECK(b.code == 0);
    CHECK(contains(b.output, "migrating: no database yet"));
    CHECK(contains(b.output, "backed up 0 database(s)"));
  }
  SECTION("a plugin that fails pre-flight is listed with its reason") {
    fs::copy_file(fixture("dep_missing"), work.path() / "plugins" / "dep_missing.so");
    const auto r = run_keel(work.path(), {"migrate", "status", "--config", config});
    INFO(r.output);
    CHECK(r.code == 0);
    CHECK(contains(r.output, "pre-flight failed: missing dependency 'nonexistent'"));
  }
  SECTION("config errors exit 2") {
    const auto bad = work.write("bad.toml", "[server]\nio_threads = 0\n").string();
    const auto s = run_keel(work.path(), {"migrate", "status", "--config", bad});
    CHECK(s.code == 2);
    CHECK(contains(s.output, bad + ":2:"));
    const auto b = run_keel(work.path(), {"backup", "--config", (work.path() / "nope.toml").string(), "--out", "x"});
    CHECK(b.code == 2);
    CHECK(contains(b.output, "nope.toml"));
    const auto same = run_keel(work.path(), {"backup", "--config", config, "--out", (work.path() / "data").string()});
    CHECK(same.code == 2);
    CHECK(contains(same.output, "is the data directory itself"));
  }
}

// The same tools on the PostgreSQL engine (the ctest "postgres:" variant): the history is read
// from the plugin's schema, the backup is pg_dump's archive of that schema, and pg_restore brings
// it back whole into another database.
TEST_CASE("keel migrate status, keel backup and GET /admin/migrations on PostgreSQL", "[storage][integration][postgres]") {
  const char* admin_url = std::getenv("KEEL_TEST_POSTGRES_URL");
  if (admin_url == nullptr || *admin_url == '\0') {
    WARN("KEEL_SKIP: needs KEEL_TEST_POSTGRES_DIR (the ctest postgres: variant)");
    return;
  }
  TempDir work;
  const auto data = work.path() / "data";
  auto options = host_options(data);
  options.env.push_back(keel::test::kAdminTokenEnv);
  KeelHost host(options);
  const auto& env = host.storage_env();
  REQUIRE(env.size() == 3);
  const auto prefix = env[2].substr(env[2].find('=') + 1);
  const auto schema = prefix + "_migrating";
  const auto config = host.config_file().string();
  CHECK(post_note(host.port(), "first") == "1");
  CHECK(post_note(host.port(), "second") == "2");

  const auto status = run_keel(work.path(), {"migrate", "status", "--config", config, "--json"}, env);
  INFO(status.output);
  CHECK(status.code == 0);
  auto doc = json_of(status.output);
  REQUIRE(doc["plugins"].size() == 1);
  CHECK(doc["plugins"][0]["engine"] == "postgres");
  CHECK(contains(doc["plugins"][0]["database"].get<std::string>(), "schema " + schema));
  CHECK(doc["plugins"][0]["database_exists"] == true);
  CHECK(doc["summary"]["applied"] == 2);
  CHECK_FALSE(contains(status.output, "password"));

  const auto admin = simple_request(host.port(), "GET", "/admin/migrations", {}, keel::test::kAdminBearer);
  REQUIRE(admin);
  INFO(admin->body);
  CHECK(admin->status == 200);
  const auto report = nlohmann::json::parse(admin->body);
  CHECK(report["summary"]["applied"] == 2);
  CHECK(report["plugins"][0]["engine"] == "postgres");

  const auto out = work.path() / "backups";
  const auto archive = out / "migrating.pgdump";
  const auto backup = run_keel(work.path(), {"backup", "--config", config, "--out", out.string()}, env);
  INFO(backup.output);
  REQUIRE(backup.code == 0);
  CHECK(contains(backup.output, "migrating: "));
  CHECK(contains(backup.output, "-> " + archive.string()));
  CHECK(contains(backup.output, "backed up 1 database(s)"));
  REQUIRE(fs::exists(archive));
  struct stat st {};
  REQUIRE(::stat(archive.c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK_FALSE(fs::exists(out / "migrating.pgdump.partial"));
  const auto again = run_keel(work.path(), {"backup", "--config", config, "--out", out.string()}, env);
  CHECK(again.code == 1);
  CHECK(contains(again.output, archive.string() + " already exists"));

  // Restored into a database of its own, the archive holds the notes and the history.
  const std::string bin = "/usr/lib/postgresql/15/bin/";
  const std::string url = admin_url;
  const auto restored_db = "restored_" + std::to_string(::getpid());
  const auto restored_url = url.substr(0, url.find("dbname=")) + "dbname=" + restored_db;
  auto tool = [&](const std::string& program, const std::vector<std::string>& args) {
    return run_tool(work.path(), bin + program, args);
  };
  REQUIRE(tool("psql", {url, "-v", "ON_ERROR_STOP=1", "-c", "CREATE DATABASE " + restored_db}).code == 0);
  const auto restore = tool("pg_restore", {"--no-owner", "--no-acl", "--dbname=" + restored_url, archive.string()});
  INFO(restore.output);
  CHECK(restore.code == 0);
  const auto counted = tool("psql", {restored_url, "-tAc",
                                     "SELECT (SELECT count(*) FROM " + schema + ".notes) || '/' || "
                                     "(SELECT count(*) FROM " + schema + "._keel_migrations)"});
  INFO(counted.output);
  CHECK(contains(counted.output, "2/2"));
  static_cast<void>(tool("psql", {url, "-c", "DROP DATABASE " + restored_db}));
}
