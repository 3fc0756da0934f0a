// storage::Database transactions, savepoints and the single-writer queue.

#include "storage/database.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

#include "storage_test_support.hpp"

using namespace keel::test::storage;
using Clock = std::chrono::steady_clock;

namespace {

std::int64_t count_rows(kst::Database& db, keel_txn txn = KEEL_TXN_NONE) {
  return scalar(db, "SELECT count(*) FROM t", txn);
}

std::chrono::milliseconds since(Clock::time_point start) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - start);
}

}  // namespace

TEST_CASE("storage: a transaction's writes are visible to readers only after commit", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(KEEL_TXN_NONE, &txn) == KEEL_OK);
  CHECK(txn != KEEL_TXN_NONE);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES (1)") == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES (2)") == KEEL_OK);
  CHECK(count_rows(*t, txn) == 2);  // the transaction sees its own writes
  CHECK(count_rows(*t) == 0);       // an autocommit read runs on a reader: the committed snapshot
  // A reader on another thread does not wait for the writer either.
  auto other = std::async(std::launch::async, [&] {
    Rows rows;
    const auto st = exec(*t, 0, "SELECT count(*) FROM t", {}, &rows);
    return st == KEEL_OK && rows.rows.size() == 1 ? rows.rows[0][0].integer : -1;
  });
  CHECK(other.get() == 0);
  REQUIRE(t->commit(txn) == KEEL_OK);
  CHECK(count_rows(*t) == 2);
  // Finished: the id is gone.
  CHECK(t->commit(txn) == KEEL_ERR_NOT_FOUND);
  CHECK(t->rollback(txn) == KEEL_ERR_NOT_FOUND);
  CHECK(exec(*t, txn, "SELECT 1") == KEEL_ERR_NOT_FOUND);
  CHECK(contains(kst::last_error(), std::to_string(txn)));
}

TEST_CASE("storage: rollback undoes a transaction", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES (0)") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES (1)") == KEEL_OK);
  REQUIRE(exec(*t, txn, "DELETE FROM t WHERE x = 0") == KEEL_OK);
  REQUIRE(exec(*t, txn, "CREATE TABLE u (y INTEGER)") == KEEL_OK);
  REQUIRE(t->rollback(txn) == KEEL_OK);
  CHECK(scalar(*t, "SELECT count(*) FROM t WHERE x = 0") == 1);
  CHECK(count_rows(*t) == 1);
  CHECK(exec(*t, 0, "SELECT * FROM u") == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(t->rollback(txn) == KEEL_ERR_NOT_FOUND);
}

TEST_CASE("storage: savepoints nest, rolling one back undoes only its own work", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x TEXT)") == KEEL_OK);
  keel_txn outer = 0, sp1 = 0, sp2 = 0, sp3 = 0;
  REQUIRE(t->begin(0, &outer) == KEEL_OK);
  REQUIRE(exec(*t, outer, "INSERT INTO t VALUES ('outer')") == KEEL_OK);

  REQUIRE(t->begin(outer, &sp1) == KEEL_OK);
  CHECK(sp1 != outer);
  REQUIRE(exec(*t, sp1, "INSERT INTO t VALUES ('sp1')") == KEEL_OK);
  REQUIRE(t->begin(sp1, &sp2) == KEEL_OK);
  REQUIRE(exec(*t, sp2, "INSERT INTO t VALUES ('sp2')") == KEEL_OK);
  CHECK(count_rows(*t, outer) == 3);
  // Nesting under a savepoint that is not the innermost one is refused.
  keel_txn bad = 0;
  CHECK(t->begin(outer, &bad) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(kst::last_error(), "innermost"));
  CHECK(bad == KEEL_TXN_NONE);
  CHECK(t->begin(sp1, &bad) == KEEL_ERR_INVALID_ARGUMENT);

  // Rolling back sp1 undoes sp1 and sp2 and ends both; the outer transaction stays open.
  REQUIRE(t->rollback(sp1) == KEEL_OK);
  CHECK(count_rows(*t, outer) == 1);
  CHECK(exec(*t, sp2, "SELECT 1") == KEEL_ERR_NOT_FOUND);
  CHECK(t->rollback(sp1) == KEEL_ERR_NOT_FOUND);
  CHECK(t->commit(sp2) == KEEL_ERR_NOT_FOUND);

  // A second savepoint, released into the outer transaction.
  REQUIRE(t->begin(outer, &sp3) == KEEL_OK);
  CHECK(sp3 > sp2);  // ids are never reused
  REQUIRE(exec(*t, sp3, "INSERT INTO t VALUES ('sp3')") == KEEL_OK);
  REQUIRE(t->commit(sp3) == KEEL_OK);
  CHECK(exec(*t, sp3, "SELECT 1") == KEEL_ERR_NOT_FOUND);
  CHECK(count_rows(*t) == 0);  // nothing committed yet

  REQUIRE(t->commit(outer) == KEEL_OK);
  Rows rows;
  REQUIRE(exec(*t, 0, "SELECT x FROM t ORDER BY x", {}, &rows) == KEEL_OK);
  REQUIRE(rows.rows.size() == 2);
  CHECK(rows.rows[0][0].bytes == "outer");
  CHECK(rows.rows[1][0].bytes == "sp3");
}

TEST_CASE("storage: committing or rolling back the outer transaction ends its savepoints", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);

  SECTION("commit of the outer commits open savepoints' work") {
    keel_txn outer = 0, inner = 0, innermost = 0;
    REQUIRE(t->begin(0, &outer) == KEEL_OK);
    REQUIRE(t->begin(outer, &inner) == KEEL_OK);
    REQUIRE(t->begin(inner, &innermost) == KEEL_OK);
    REQUIRE(exec(*t, innermost, "INSERT INTO t VALUES (1)") == KEEL_OK);
    REQUIRE(t->commit(outer) == KEEL_OK);
    CHECK(count_rows(*t) == 1);
    for (auto id : {inner, innermost}) {
      CHECK(exec(*t, id, "INSERT INTO t VALUES (2)") == KEEL_ERR_NOT_FOUND);
      CHECK(t->commit(id) == KEEL_ERR_NOT_FOUND);
      CHECK(t->rollback(id) == KEEL_ERR_NOT_FOUND);
      keel_txn child = 0;
      CHECK(t->begin(id, &child) == KEEL_ERR_NOT_FOUND);
    }
    CHECK(count_rows(*t) == 1);
  }

  SECTION("rollback of the outer undoes everything") {
    keel_txn outer = 0, inner = 0;
    REQUIRE(t->begin(0, &outer) == KEEL_OK);
    REQUIRE(exec(*t, outer, "INSERT INTO t VALUES (1)") == KEEL_OK);
    REQUIRE(t->begin(outer, &inner) == KEEL_OK);
    REQUIRE(exec(*t, inner, "INSERT INTO t VALUES (2)") == KEEL_OK);
    REQUIRE(t->commit(inner) == KEEL_OK);  // released into outer, not durable
    REQUIRE(t->rollback(outer) == KEEL_OK);
    CHECK(count_rows(*t) == 0);
    CHECK(t->rollback(inner) == KEEL_ERR_NOT_FOUND);
  }

  SECTION("the outer id is usable while a savepoint is open; its work joins the savepoint") {
    keel_txn outer = 0, inner = 0;
    REQUIRE(t->begin(0, &outer) == KEEL_OK);
    REQUIRE(t->begin(outer, &inner) == KEEL_OK);
    REQUIRE(exec(*t, outer, "INSERT INTO t VALUES (1)") == KEEL_OK);
    REQUIRE(t->rollback(inner) == KEEL_OK);
    CHECK(count_rows(*t, outer) == 0);
    REQUIRE(t->commit(outer) == KEEL_OK);
  }
}

TEST_CASE("storage: unknown transaction ids are NOT_FOUND", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  const keel_txn bogus = 987654321;
  keel_txn out = 5;
  CHECK(t->begin(bogus, &out) == KEEL_ERR_NOT_FOUND);
  CHECK(out == KEEL_TXN_NONE);
  CHECK(t->commit(bogus) == KEEL_ERR_NOT_FOUND);
  CHECK(t->rollback(bogus) == KEEL_ERR_NOT_FOUND);
  CHECK(exec(*t, bogus, "SELECT 1") == KEEL_ERR_NOT_FOUND);
  CHECK(exec(*t, bogus, "INSERT INTO t VALUES (1)") == KEEL_ERR_NOT_FOUND);
  auto e = new_entry();
  std::int64_t v = 0;
  CHECK(t->kv_get(bogus, "k", &e) == KEEL_ERR_NOT_FOUND);
  CHECK(t->kv_put(bogus, put_args("k", "v"), &v) == KEEL_ERR_NOT_FOUND);
  CHECK(t->kv_delete(bogus, "k", KEEL_KV_ANY_VERSION) == KEEL_ERR_NOT_FOUND);
  CHECK(t->kv_list(bogus, "", "", 10, [](void*, const keel_kv_entry*) -> int32_t { return 0; }, nullptr, nullptr) ==
        KEEL_ERR_NOT_FOUND);
  CHECK(t->begin(0, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  // An unknown id while another transaction is open does not disturb it.
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES (1)") == KEEL_OK);
  CHECK(t->commit(txn + 1000) == KEEL_ERR_NOT_FOUND);
  CHECK(t->rollback(txn + 1000) == KEEL_ERR_NOT_FOUND);
  REQUIRE(t->commit(txn) == KEEL_OK);
  CHECK(count_rows(*t) == 1);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == 1);
  CHECK(t->rollback(KEEL_TXN_NONE) == KEEL_ERR_NOT_FOUND);
  CHECK(t->commit(KEEL_TXN_NONE) == KEEL_ERR_NOT_FOUND);
}

TEST_CASE("storage: a transaction may be used from another thread", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  auto worker = std::async(std::launch::async, [&] {
    if (exec(*t, txn, "INSERT INTO t VALUES (1)") != KEEL_OK) return false;
    keel_txn sp = 0;
    if (t->begin(txn, &sp) != KEEL_OK) return false;
    if (exec(*t, sp, "INSERT INTO t VALUES (2)") != KEEL_OK) return false;
    return t->commit(sp) == KEEL_OK;
  });
  REQUIRE(worker.get());
  REQUIRE(t->commit(txn) == KEEL_OK);
  CHECK(count_rows(*t) == 2);
}

TEST_CASE("storage: a second writer waits for the open transaction and proceeds after commit",
          "[storage][txn][sqlite]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn first = 0;
  REQUIRE(t->begin(0, &first) == KEEL_OK);
  REQUIRE(exec(*t, first, "INSERT INTO t VALUES (1)") == KEEL_OK);

  std::atomic<bool> begun{false};
  auto second = std::async(std::launch::async, [&] {
    keel_txn txn = 0;
    auto st = t->begin(0, &txn);
    begun = true;
    const auto began_at = Clock::now();
    std::int64_t seen = -1;
    if (st == KEEL_OK) {
      Rows rows;  // no Catch assertions off the main thread
      st = exec(*t, txn, "SELECT count(*) FROM t", {}, &rows);
      if (st == KEEL_OK && rows.rows.size() == 1) seen = rows.rows[0][0].integer;  // the first one's work
      if (st == KEEL_OK) st = exec(*t, txn, "INSERT INTO t VALUES (2)");
      if (st == KEEL_OK) st = t->commit(txn);
    }
    return std::make_tuple(st, began_at, seen);
  });
  // Also an autocommit write waits.
  auto autocommit = std::async(std::launch::async, [&] { return exec(*t, 0, "INSERT INTO t VALUES (3)"); });

  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  CHECK(!begun.load());
  CHECK(autocommit.wait_for(std::chrono::milliseconds(0)) == std::future_status::timeout);
  CHECK(count_rows(*t) == 0);  // readers are not blocked meanwhile
  const auto commit_at = Clock::now();
  REQUIRE(t->commit(first) == KEEL_OK);

  const auto [st, began_at, seen] = second.get();
  CHECK(st == KEEL_OK);
  CHECK(began_at >= commit_at);  // it got the writer only once the first transaction ended
  CHECK(seen >= 1);
  CHECK(autocommit.get() == KEEL_OK);
  CHECK(count_rows(*t) == 3);
  CHECK(t->stats().busy == 0);
}

TEST_CASE("storage: a writer that waits longer than busy_timeout gets BUSY", "[storage][txn][sqlite]") {
  TestDb t([](kst::Options& o) { o.busy_timeout = std::chrono::milliseconds(100); });
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn first = 0;
  REQUIRE(t->begin(0, &first) == KEEL_OK);
  REQUIRE(exec(*t, first, "INSERT INTO t VALUES (1)") == KEEL_OK);

  auto second = std::async(std::launch::async, [&] {
    keel_txn txn = 0;
    const auto start = Clock::now();
    const auto st = t->begin(0, &txn);
    return std::make_tuple(st, since(start), txn, kst::last_error());
  });
  const auto [st, waited, txn, message] = second.get();
  CHECK(st == KEEL_ERR_BUSY);
  CHECK(waited >= std::chrono::milliseconds(90));
  CHECK(waited < std::chrono::milliseconds(2000));
  CHECK(txn == KEEL_TXN_NONE);
  CHECK(contains(message, "busy"));

  // An autocommit write gets BUSY too; an autocommit read does not wait.
  auto write = std::async(std::launch::async, [&] { return exec(*t, 0, "INSERT INTO t VALUES (2)"); });
  CHECK(write.get() == KEEL_ERR_BUSY);
  auto kv = std::async(std::launch::async, [&] {
    std::int64_t v = 0;
    return t->kv_put(0, put_args("k", "v"), &v);
  });
  CHECK(kv.get() == KEEL_ERR_BUSY);
  CHECK(count_rows(*t) == 0);
  CHECK(t->stats().busy >= 3);

  // The holder is unaffected.
  REQUIRE(exec(*t, first, "INSERT INTO t VALUES (4)") == KEEL_OK);
  REQUIRE(t->commit(first) == KEEL_OK);
  CHECK(count_rows(*t) == 2);
}

TEST_CASE("storage: a waiting writer reclaims a transaction older than transaction_timeout",
          "[storage][txn][sqlite]") {
  TestDb t([](kst::Options& o) {
    o.busy_timeout = std::chrono::milliseconds(2000);
    o.transaction_timeout = std::chrono::milliseconds(100);
  });
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x TEXT)") == KEEL_OK);
  keel_txn stale = 0, stale_sp = 0;
  const auto stale_began = Clock::now();  // the host's open_since is at or after this
  REQUIRE(t->begin(0, &stale) == KEEL_OK);
  REQUIRE(t->begin(stale, &stale_sp) == KEEL_OK);
  REQUIRE(exec(*t, stale, "INSERT INTO t VALUES ('stale')") == KEEL_OK);

  auto waiter = std::async(std::launch::async, [&] {
    keel_txn txn = 0;
    const auto start = Clock::now();
    auto st = t->begin(0, &txn);
    const auto got = Clock::now();
    if (st == KEEL_OK) st = exec(*t, txn, "INSERT INTO t VALUES ('fresh')");
    if (st == KEEL_OK) st = t->commit(txn);
    return std::make_tuple(st, start, got);
  });
  const auto [st, start, got] = waiter.get();
  CHECK(st == KEEL_OK);
  CHECK(got - stale_began >= std::chrono::milliseconds(100));  // not before transaction_timeout
  CHECK(got - start < std::chrono::milliseconds(1500));         // reclaimed, not timed out by busy_timeout

  // The stale ids now report TIMEOUT, and their work is gone.
  CHECK(exec(*t, stale, "INSERT INTO t VALUES ('late')") == KEEL_ERR_TIMEOUT);
  CHECK(contains(kst::last_error(), "transaction_timeout"));
  CHECK(t->commit(stale) == KEEL_ERR_TIMEOUT);
  CHECK(t->rollback(stale) == KEEL_ERR_TIMEOUT);
  CHECK(t->commit(stale_sp) == KEEL_ERR_TIMEOUT);
  Rows rows;
  REQUIRE(exec(*t, 0, "SELECT x FROM t", {}, &rows) == KEEL_OK);
  REQUIRE(rows.rows.size() == 1);
  CHECK(rows.rows[0][0].bytes == "fresh");

  // Without a waiting writer, an old transaction is left alone.
  keel_txn lonely = 0;
  REQUIRE(t->begin(0, &lonely) == KEEL_OK);
  std::this_thread::sleep_for(std::chrono::milliseconds(150));
  REQUIRE(exec(*t, lonely, "INSERT INTO t VALUES ('slow but fine')") == KEEL_OK);
  REQUIRE(t->commit(lonely) == KEEL_OK);
  CHECK(count_rows(*t) == 2);
}

TEST_CASE("storage: 8 writer threads and concurrent readers never see BUSY", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (id INTEGER PRIMARY KEY, thread INTEGER, n INTEGER)") == KEEL_OK);
  constexpr int kWriters = 8;
  constexpr int kInserts = 200;
  std::atomic<int> errors{0};
  std::atomic<int> read_errors{0};
  std::atomic<int> went_backwards{0};
  std::atomic<int> reads{0};
  std::atomic<int> writers_done{0};
  std::string first_error;
  std::mutex error_mutex;

  std::vector<std::thread> threads;
  for (int w = 0; w < kWriters; ++w) {
    threads.emplace_back([&, w] {
      for (int i = 0; i < kInserts; ++i) {
        keel_status st = KEEL_OK;
        if (i % 10 == 9) {
          // Every tenth insert goes through an explicit transaction.
          keel_txn txn = 0;
          st = t->begin(0, &txn);
          if (st == KEEL_OK) st = exec(*t, txn, "INSERT INTO t (thread, n) VALUES (?, ?)", {int_p(w), int_p(i)});
          if (st == KEEL_OK) st = t->commit(txn);
        } else {
          st = exec(*t, 0, "INSERT INTO t (thread, n) VALUES (?, ?)", {int_p(w), int_p(i)});
        }
        if (st != KEEL_OK) {
          ++errors;
          const std::lock_guard lock(error_mutex);
          if (first_error.empty()) first_error = std::to_string(st) + " " + kst::last_error();
        }
      }
      ++writers_done;
    });
  }
  for (int r = 0; r < 3; ++r) {
    threads.emplace_back([&] {
      std::int64_t last = 0;
      while (writers_done.load() < kWriters) {
        Rows rows;
        if (exec(*t, 0, "SELECT count(*) FROM t", {}, &rows) != KEEL_OK || rows.rows.size() != 1) {
          ++read_errors;
          continue;
        }
        const auto n = rows.rows[0][0].integer;
        if (n < last) ++went_backwards;
        last = n;
        ++reads;
      }
    });
  }
  for (auto& th : threads) th.join();
  INFO(first_error);
  CHECK(errors.load() == 0);
  CHECK(read_errors.load() == 0);
  CHECK(went_backwards.load() == 0);
  CHECK(reads.load() > 0);
  CHECK(scalar(*t, "SELECT count(*) FROM t") == kWriters * kInserts);
  CHECK(scalar(*t, "SELECT count(DISTINCT thread * 1000 + n) FROM t") == kWriters * kInserts);
  CHECK(t->stats().busy == 0);
  CHECK(t->stats().errors == 0);
}

TEST_CASE("storage: close() wakes a writer waiting for the transaction", "[storage][txn][sqlite]") {
  TestDb t;
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  auto waiter = std::async(std::launch::async, [&] {
    keel_txn other = 0;
    return t->begin(0, &other);
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  const auto start = Clock::now();
  t->close();
  CHECK(waiter.get() == KEEL_ERR_UNAVAILABLE);
  CHECK(since(start) < std::chrono::milliseconds(2000));
}

TEST_CASE("storage: with one reader connection concurrent reads queue and all succeed", "[storage][txn]") {
  TestDb t([](kst::Options& o) { o.readers = 1; });
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES (1), (2), (3)") == KEEL_OK);
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([&] {
      for (int n = 0; n < 50; ++n) {
        Rows rows;
        if (exec(*t, 0, "SELECT x FROM t WHERE x < 4", {}, &rows) != KEEL_OK || rows.rows.size() != 3) ++failures;
        if (exec(*t, 0, "INSERT INTO t VALUES (4)") != KEEL_OK) ++failures;  // autocommit writes lease a reader too
        if (exec(*t, 0, "DELETE FROM t WHERE x = 4") != KEEL_OK) ++failures;
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  CHECK(count_rows(*t) == 3);
}

TEST_CASE("storage: close() lets a read in progress finish", "[storage][txn]") {
  TestDb t;
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  REQUIRE(exec(*t, 0, "INSERT INTO t VALUES (1), (2), (3)") == KEEL_OK);
  std::atomic<bool> reading{false};
  struct Slow {
    std::atomic<bool>* reading;
    int rows = 0;
    static int32_t on_row(void* user, const keel_sql_value*, const keel_host_bytes*, std::size_t) {
      auto& self = *static_cast<Slow*>(user);
      *self.reading = true;
      std::this_thread::sleep_for(std::chrono::milliseconds(30));
      ++self.rows;
      return 0;
    }
  } slow{&reading};
  auto reader = std::async(std::launch::async,
                           [&] { return t->exec(0, "SELECT x FROM t", {}, {&Slow::on_row, &slow}, nullptr); });
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!reading.load() && Clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  REQUIRE(reading.load());
  t->close();
  CHECK(reader.get() == KEEL_OK);
  CHECK(slow.rows == 3);
  CHECK(exec(*t, 0, "SELECT 1") == KEEL_ERR_UNAVAILABLE);
}

TEST_CASE("storage: synchronous=FULL databases work the same", "[storage][txn]") {
  TestDb t([](kst::Options& o) { o.synchronous = keel::host::config::SyncMode::kFull; });
  REQUIRE(exec(*t, 0, "CREATE TABLE t (x INTEGER)") == KEEL_OK);
  keel_txn txn = 0;
  REQUIRE(t->begin(0, &txn) == KEEL_OK);
  REQUIRE(exec(*t, txn, "INSERT INTO t VALUES (1)") == KEEL_OK);
  REQUIRE(t->commit(txn) == KEEL_OK);
  t.reopen();
  CHECK(count_rows(*t) == 1);
}
