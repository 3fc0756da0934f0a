// Per-plugin storage end to end: the real keel binary, the "store" fixture plugins (their own
// SQLite databases through keel.storage/1), real HTTP. Crash safety with kill -9, a quota and a
// real full disk, isolation between two plugins' databases, compare-and-set over HTTP.
#include <catch2/catch.hpp>

#include <atomic>
#include <cstdlib>
#include <iostream>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <SQLiteCpp/Database.h>
#include <unistd.h>

#include "admin_token.hpp"
#include "keel_host.hpp"
#include "load.hpp"
#include "raw_client.hpp"

using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;

namespace {

std::string text_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->body : std::string("<no response>"); }
int status_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->status : 0; }

/// PRAGMA integrity_check and journal mode of a database file, read-only.
std::pair<std::string, std::string> inspect(const std::filesystem::path& file) {
  SQLite::Database db(file.string(), SQLite::OPEN_READONLY);
  return {db.execAndGet("PRAGMA integrity_check").getString(), db.execAndGet("PRAGMA journal_mode").getString()};
}

}  // namespace

TEST_CASE("storage: committed rows survive a restart and the database file is WAL and intact", "[storage][integration][sqlite]") {
  keel::test::TempDir data;
  auto opts = with_plugins({fixture("store")});
  opts.data_dir = data.path();
  std::vector<std::pair<std::string, std::string>> written;
  {
    KeelHost host(opts);
    for (int i = 0; i < 20; ++i) {
      const auto body = "item-" + std::to_string(i) + " \xC3\xA9";
      const auto r = simple_request(host.port(), "POST", "/api/store/items", body);
      REQUIRE(status_of(r) == 201);
      written.emplace_back(r->body, body);
    }
    REQUIRE(text_of(simple_request(host.port(), "GET", "/api/store/count")) == "20");
    REQUIRE(text_of(simple_request(host.port(), "GET", "/api/store/integrity")) == "ok");
    REQUIRE(host.stop() == 0);
    const auto [check, mode] = inspect(host.data_dir() / "store.db");
    CHECK(check == "ok");
    CHECK(mode == "wal");
  }
  KeelHost again(opts);
  for (const auto& [id, body] : written) CHECK(text_of(simple_request(again.port(), "GET", "/api/store/items/" + id)) == body);
  // Migrations were recorded once and are not re-run.
  CHECK(again.process().output().find("migration applied") == std::string::npos);
}

TEST_CASE("storage: two plugins' databases are isolated, ATTACH, VACUUM INTO and host tables are refused",
          "[storage][integration][sqlite]") {
  KeelHost host(with_plugins({fixture("store"), fixture("store_b")}));
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/store/items", "secret")) == 201);
  const auto store_db = host.data_dir() / "store.db";
  REQUIRE(std::filesystem::exists(store_db));
  REQUIRE(std::filesystem::exists(host.data_dir() / "store_b.db"));
  CHECK(text_of(simple_request(host.port(), "GET", "/api/store_b/count")) == "0");

  const auto refused = [&](const std::string& sql) {
    const auto r = simple_request(host.port(), "POST", "/api/store_b/sql", sql);
    INFO(sql << " -> " << status_of(r) << " " << text_of(r));
    CHECK(status_of(r) == 403);
  };
  refused("ATTACH DATABASE '" + store_db.string() + "' AS other");
  refused("ATTACH DATABASE 'file:" + store_db.string() + "?mode=ro' AS other");
  const auto stolen = host.dir().path() / "stolen.db";
  refused("VACUUM INTO '" + stolen.string() + "'");
  CHECK_FALSE(std::filesystem::exists(stolen));
  refused("SELECT * FROM _keel_kv");
  refused("DELETE FROM _keel_migrations");
  refused("PRAGMA journal_mode=DELETE");
  refused("PRAGMA foreign_keys=OFF");
  refused("BEGIN");
  // Its own tables work; nothing of store's data is visible.
  CHECK(status_of(simple_request(host.port(), "POST", "/api/store_b/sql", "CREATE TABLE mine (x)")) == 200);
  CHECK(text_of(simple_request(host.port(), "GET", "/api/store_b/items/1")) == "no such item");
  CHECK(text_of(simple_request(host.port(), "GET", "/api/store/items/1")) == "secret");
  CHECK(host.process().wait_for_output("not authorized", std::chrono::seconds(5)));
}

TEST_CASE("storage: concurrent creates of one key over HTTP: exactly one wins, the rest get 409", "[storage][integration]") {
  KeelHost host(with_plugins({fixture("store")}));
  std::atomic<int> created{0}, conflicts{0}, other{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      const auto r = simple_request(host.port(), "PUT", "/api/store/kv/lock", "owner-" + std::to_string(t),
                                    "If-None-Match: *\r\n");
      (status_of(r) == 200 ? created : status_of(r) == 409 ? conflicts : other)++;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(created == 1);
  CHECK(conflicts == 7);
  CHECK(other == 0);
  const auto r = simple_request(host.port(), "GET", "/api/store/kv/lock");
  REQUIRE(status_of(r) == 200);
  CHECK(r->header("etag") == "1");
  // Compare-and-set with the current version wins once; the stale version loses.
  CHECK(text_of(simple_request(host.port(), "PUT", "/api/store/kv/lock", "next", "If-Match: 1\r\n")) == "2");
  const auto stale = simple_request(host.port(), "PUT", "/api/store/kv/lock", "late", "If-Match: 1\r\n");
  CHECK(status_of(stale) == 409);
  CHECK(text_of(stale).find("\"code\":\"conflict\"") != std::string::npos);
}

TEST_CASE("storage: a full quota answers 507 with a JSON error, writes work again once space is freed",
          "[storage][integration][sqlite]") {
  KeelHost host(with_plugins({fixture("store")}, "[plugin.store]\nmax_db_bytes = 262144\n" KEEL_TEST_ADMIN_TOML));
  int stored = 0;
  std::optional<keel::test::RawResponse> full;
  for (int i = 0; i < 100 && !full; ++i) {
    auto r = simple_request(host.port(), "POST", "/api/store/blob/32");
    if (status_of(r) == 201) ++stored;
    else full = std::move(r);
  }
  REQUIRE(full);
  CHECK(stored > 0);
  CHECK(full->status == 507);
  CHECK(full->header("content-type") == "application/json");
  CHECK(full->body.find("\"code\":\"insufficient_storage\"") != std::string::npos);
  CHECK(host.process().wait_for_output("storage full plugin=store", std::chrono::seconds(5)));
  // The refusal is counted in the plugin's storage metrics (admin API).
  const auto stats = simple_request(host.port(), "GET", "/admin/storage", {}, keel::test::kAdminBearer);
  REQUIRE(status_of(stats) == 200);
  INFO(stats->body);
  CHECK(stats->body.find("\"plugin\":\"store\"") != std::string::npos);
  CHECK(stats->body.find("\"full\":0") == std::string::npos);
  CHECK(stats->body.find("\"statements\":0") == std::string::npos);
  // Reads still work while full; freeing space makes writes succeed again without a restart.
  CHECK(status_of(simple_request(host.port(), "GET", "/api/store/count")) == 200);
  REQUIRE(status_of(simple_request(host.port(), "DELETE", "/api/store/blob")) == 200);
  CHECK(status_of(simple_request(host.port(), "POST", "/api/store/blob/32")) == 201);
  CHECK(status_of(simple_request(host.port(), "POST", "/api/store/items", "after")) == 201);
  CHECK(text_of(simple_request(host.port(), "GET", "/api/store/integrity")) == "ok");
}

TEST_CASE("storage: a really full disk (small tmpfs) answers 507, writes resume once space is freed",
          "[storage][integration][sqlite]") {
  // A private mount namespace with a 2 MiB tmpfs as data_dir, and a ballast file filling part of
  // it. Needs unshare(1) and permission for user + mount namespaces; without them, skip loudly.
  const std::string probe = "/usr/bin/unshare --user --map-root-user --mount /bin/true 2>/dev/null";
  if (std::system(probe.c_str()) != 0) {
    WARN("KEEL_SKIP: this environment cannot create a mount namespace with a tmpfs (unshare failed); the real "
         "full-disk test did not run (the quota test covers the same code path)");
    std::cout << "KEEL_SKIP: unshare --user --mount is not permitted here" << std::endl;
    return;
  }
  keel::test::TempDir mount_point;
  auto opts = with_plugins({fixture("store")});
  opts.data_dir = mount_point.path();
  opts.wrapper = {"/usr/bin/unshare", "--user", "--map-root-user", "--mount", "/bin/sh", "-c",
                  "mount -t tmpfs -o size=2m tmpfs \"$0\" && dd if=/dev/zero of=\"$0/ballast\" bs=1024 count=512 "
                  "2>/dev/null && exec \"$@\"",
                  mount_point.path().string()};
  KeelHost host(opts);
  int stored = 0;
  std::optional<keel::test::RawResponse> full;
  for (int i = 0; i < 200 && !full; ++i) {
    auto r = simple_request(host.port(), "POST", "/api/store/blob/64");
    if (status_of(r) == 201) ++stored;
    else full = std::move(r);
  }
  REQUIRE(full);
  INFO(text_of(full));
  CHECK(stored > 0);
  CHECK((full->status == 507 || full->status == 503));
  // Free the ballast inside the host's mount namespace; the host keeps running and writes resume.
  const auto ballast = std::filesystem::path("/proc") / std::to_string(host.process().pid()) / "root" /
                       mount_point.path().relative_path() / "ballast";
  REQUIRE(std::filesystem::remove(ballast));
  bool resumed = false;
  for (int i = 0; i < 20 && !resumed; ++i) {
    resumed = status_of(simple_request(host.port(), "POST", "/api/store/blob/64")) == 201;
    if (!resumed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  CHECK(resumed);
  CHECK(status_of(simple_request(host.port(), "POST", "/api/store/items", "after")) == 201);
  CHECK(text_of(simple_request(host.port(), "GET", "/api/store/integrity")) == "ok");
}

TEST_CASE("storage: kill -9 during a write loop loses no acknowledged write", "[storage][integration]") {
  keel::test::TempDir data;
  std::mutex mutex;
  std::map<std::string, std::string> acknowledged;  // id -> body
  {
    auto opts = with_plugins({fixture("store")}, "[server]\nworker_threads = 4\n");
    opts.data_dir = data.path();
    KeelHost host(opts);
    keel::test::WriteLoop writers(
        host.port(), "/api/store/items", 4, [](int t, int i) { return "w" + std::to_string(t) + "-" + std::to_string(i); },
        [&](const std::string& body, const keel::test::RawResponse& r) {
          if (r.status != 201) return;
          std::lock_guard lock(mutex);
          acknowledged[r.body] = body;
        });
    REQUIRE(host.kill_at_random(std::chrono::milliseconds(300), std::chrono::milliseconds(800)) == 128 + SIGKILL);
    writers.stop();
  }
  REQUIRE(acknowledged.size() > 10);
  auto opts = with_plugins({fixture("store")});
  opts.data_dir = data.path();
  KeelHost again(opts);
  std::size_t missing = 0;
  for (const auto& [id, body] : acknowledged)
    if (text_of(simple_request(again.port(), "GET", "/api/store/items/" + id)) != body) ++missing;
  INFO(acknowledged.size() << " acknowledged writes");
  CHECK(missing == 0);
  if (std::getenv("KEEL_TEST_POSTGRES_URL") != nullptr) return;  // the file checks below are SQLite's
  CHECK(text_of(simple_request(again.port(), "GET", "/api/store/integrity")) == "ok");
  REQUIRE(again.stop() == 0);
  CHECK(inspect(data.path() / "store.db").first == "ok");
}

TEST_CASE("plugin health: readyz aggregates the health hooks and admin plugins shows each result",
          "[plugins][integration]") {
  KeelHost host(with_plugins({fixture("store"), fixture("store_b")}, KEEL_TEST_ADMIN_TOML));
  const std::string auth = keel::test::kAdminBearer;
  CHECK(status_of(simple_request(host.port(), "GET", "/readyz")) == 200);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/store/health/warn")) == 200);
  CHECK(status_of(simple_request(host.port(), "GET", "/readyz")) == 200);  // warn still serves
  auto plugins = simple_request(host.port(), "GET", "/admin/plugins", {}, auth);
  REQUIRE(status_of(plugins) == 200);
  CHECK(plugins->body.find(R"("health":{"detail":"marked warn by POST /health/warn","status":"warn"})") != std::string::npos);
  CHECK(plugins->body.find(R"("name":"store_b")") != std::string::npos);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/store/health/fail")) == 200);
  const auto ready = simple_request(host.port(), "GET", "/readyz");
  CHECK(status_of(ready) == 503);
  CHECK(text_of(ready).find("plugin 'store' reports health fail: marked failing") != std::string::npos);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/store/health/pass")) == 200);
  CHECK(status_of(simple_request(host.port(), "GET", "/readyz")) == 200);
  CHECK(status_of(simple_request(host.port(), "GET", "/admin/plugins")) == 401);
}

TEST_CASE("storage: a \"storage\": \"read\" route is answered on the I/O thread while every worker is busy, and "
          "cannot write",
          "[storage][sqlite]") {
  // In process on SQLite only (docs/storage.md "Routes that only read"): in a runner or on
  // PostgreSQL the route runs on the worker pool like a blocking one.
  KeelHost host(with_plugins({fixture("store"), fixture("blocking")}, "[server]\nworker_threads = 1\n"));
  const auto created = simple_request(host.port(), "POST", "/api/store/items", "hello");
  REQUIRE(status_of(created) == 201);
  // Two one-second /block requests hold the only worker for about two seconds.
  std::atomic<int> blocks_done{0};
  std::vector<std::thread> blockers;
  for (int i = 0; i < 2; ++i)
    blockers.emplace_back([&] {
      const auto r = simple_request(host.port(), "GET", "/api/blocking/block");
      CHECK(status_of(r) == 200);
      ++blocks_done;
    });
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // both are in (one runs, one waits)
  for (int i = 0; i < 5; ++i) {
    const auto r = simple_request(host.port(), "GET", "/api/store/items/" + created->body);
    REQUIRE(text_of(r) == "hello");
  }
  CHECK(blocks_done.load() == 0);  // every read was answered while the worker was still taken
  for (auto& t : blockers) t.join();

  // A write on the read route is refused (403), a read there works; the message is in the log.
  CHECK(status_of(simple_request(host.port(), "POST", "/api/store/sql-read", "SELECT 1")) == 200);
  CHECK(status_of(simple_request(host.port(), "POST", "/api/store/sql-read", "INSERT INTO items (body) VALUES ('x')")) ==
        403);
  CHECK(host.process().wait_for_output("declared \"storage\": \"read\"", std::chrono::seconds(5)));
  CHECK(text_of(simple_request(host.port(), "GET", "/api/store/count")) == "1");
}
