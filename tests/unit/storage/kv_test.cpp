// storage::Database key-value store (_keel_kv): versions, compare-and-set, TTL, listing.

#include "storage/database.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "storage_test_support.hpp"

using namespace keel::test::storage;
using namespace std::literals;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Entry {
  std::string key;
  std::string value;
  std::int64_t version = 0;
  std::int64_t expires = 0;
};

struct Listing {
  std::vector<Entry> entries;
  std::size_t stop_after = 0;  // 0 = never
  static int32_t on_entry(void* user, const keel_kv_entry* e) {
    auto& self = *static_cast<Listing*>(user);
    self.entries.push_back({str(e->key), str(e->value), e->version, e->expires_unix_ms});
    return self.stop_after != 0 && self.entries.size() >= self.stop_after ? 1 : 0;
  }
};

std::vector<std::string> keys_of(const std::vector<Entry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.key);
  return out;
}

/// kv_list into a vector; REQUIREs success.
std::vector<std::string> list(kst::Database& db, std::string_view prefix, std::string_view start_after = {},
                              std::uint32_t limit = KEEL_KV_MAX_LIST, std::uint32_t* more = nullptr,
                              keel_txn txn = KEEL_TXN_NONE) {
  Listing l;
  const auto st = db.kv_list(txn, prefix, start_after, limit, &Listing::on_entry, &l, more);
  INFO(kst::last_error());
  REQUIRE(st == KEEL_OK);
  return keys_of(l.entries);
}

keel_status put(kst::Database& db, std::string_view key, std::string_view value, std::int64_t expected = KEEL_KV_ANY_VERSION,
                std::int64_t* version = nullptr, std::int64_t ttl_ms = 0, keel_txn txn = KEEL_TXN_NONE) {
  std::int64_t ignored = 0;
  return db.kv_put(txn, put_args(key, value, expected, ttl_ms), version != nullptr ? version : &ignored);
}

}  // namespace

TEST_CASE("storage kv: get, put and delete with binary keys and values", "[storage][kv]") {
  TestDb t;
  auto e = new_entry();
  CHECK(t->kv_get(0, "missing", &e) == KEEL_ERR_NOT_FOUND);
  CHECK(!kst::last_error().empty());
  CHECK(t->kv_delete(0, "missing", KEEL_KV_ANY_VERSION) == KEEL_ERR_NOT_FOUND);

  const auto key = "\x00k\xFF\x00"s;
  const auto value = "\x00\x01\xFF\xFE\x00"s;
  std::int64_t version = 0;
  REQUIRE(put(*t, key, value, KEEL_KV_ANY_VERSION, &version) == KEEL_OK);
  CHECK(version == 1);
  REQUIRE(t->kv_get(0, key, &e) == KEEL_OK);
  CHECK(str(e.key) == key);
  CHECK(str(e.value) == value);
  CHECK(e.version == 1);
  CHECK(e.expires_unix_ms == 0);
  CHECK(e.reserved == 0);
  // A key that differs only after the NUL is a different key.
  CHECK(t->kv_get(0, "\x00k"s, &e) == KEEL_ERR_NOT_FOUND);

  // Empty value, maximum-size key.
  const std::string big_key(KEEL_KV_MAX_KEY_BYTES, '\xAB');
  REQUIRE(put(*t, big_key, "") == KEEL_OK);
  REQUIRE(t->kv_get(0, big_key, &e) == KEEL_OK);
  CHECK(str(e.value).empty());
  CHECK(e.key.len == KEEL_KV_MAX_KEY_BYTES);

  REQUIRE(t->kv_delete(0, key, KEEL_KV_ANY_VERSION) == KEEL_OK);
  CHECK(t->kv_get(0, key, &e) == KEEL_ERR_NOT_FOUND);
  CHECK(t->kv_delete(0, key, KEEL_KV_ANY_VERSION) == KEEL_ERR_NOT_FOUND);
}

TEST_CASE("storage kv: invalid arguments", "[storage][kv]") {
  TestDb t;
  std::int64_t v = 0;
  CHECK(put(*t, "", "v") == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(kst::last_error(), "empty key"));
  CHECK(put(*t, std::string(KEEL_KV_MAX_KEY_BYTES + 1, 'k'), "v") == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(contains(kst::last_error(), "1025"));
  auto args = put_args("k", "v");
  args.flags = 1;
  CHECK(t->kv_put(0, args, &v) == KEEL_ERR_INVALID_ARGUMENT);
  args = put_args("k", "v", KEEL_KV_ANY_VERSION, -1);
  CHECK(t->kv_put(0, args, &v) == KEEL_ERR_INVALID_ARGUMENT);
  args = put_args("k", "v", -2);
  CHECK(t->kv_put(0, args, &v) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(t->kv_delete(0, "", KEEL_KV_ANY_VERSION) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(t->kv_get(0, "k", nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(t->kv_list(0, "", "", 0, &Listing::on_entry, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  CHECK(t->kv_list(0, "", "", 10, nullptr, nullptr, nullptr) == KEEL_ERR_INVALID_ARGUMENT);
  // A NULL out_version is fine.
  CHECK(t->kv_put(0, put_args("k", "v"), nullptr) == KEEL_OK);
  // Nothing else was written.
  CHECK(host_scalar(*t, "SELECT count(*) FROM _keel_kv") == 1);
}

TEST_CASE("storage kv: versions and compare-and-set", "[storage][kv]") {
  TestDb t;
  std::int64_t v = 0;
  auto e = new_entry();

  // expected_version 0: create only.
  REQUIRE(put(*t, "k", "one", 0, &v) == KEEL_OK);
  CHECK(v == 1);
  CHECK(put(*t, "k", "again", 0, &v) == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "exists"));
  REQUIRE(put(*t, "k", "two", KEEL_KV_ANY_VERSION, &v) == KEEL_OK);
  CHECK(v == 2);
  REQUIRE(put(*t, "k", "three", KEEL_KV_ANY_VERSION, &v) == KEEL_OK);
  CHECK(v == 3);
  REQUIRE(t->kv_get(0, "k", &e) == KEEL_OK);
  CHECK(e.version == 3);
  CHECK(str(e.value) == "three");

  // Compare-and-set.
  CHECK(put(*t, "k", "stale", 2, &v) == KEEL_ERR_CONFLICT);
  CHECK(contains(kst::last_error(), "expected version 2"));
  CHECK(put(*t, "k", "future", 4, &v) == KEEL_ERR_CONFLICT);
  REQUIRE(t->kv_get(0, "k", &e) == KEEL_OK);
  CHECK(str(e.value) == "three");
  CHECK(e.version == 3);
  REQUIRE(put(*t, "k", "four", 3, &v) == KEEL_OK);
  CHECK(v == 4);
  CHECK(put(*t, "absent", "x", 1, &v) == KEEL_ERR_CONFLICT);
  CHECK(t->kv_get(0, "absent", &e) == KEEL_ERR_NOT_FOUND);

  // Delete with a version.
  CHECK(t->kv_delete(0, "k", 3) == KEEL_ERR_CONFLICT);
  CHECK(t->kv_delete(0, "k", 0) == KEEL_ERR_CONFLICT);
  REQUIRE(t->kv_get(0, "k", &e) == KEEL_OK);
  REQUIRE(t->kv_delete(0, "k", 4) == KEEL_OK);
  CHECK(t->kv_get(0, "k", &e) == KEEL_ERR_NOT_FOUND);
  CHECK(t->kv_delete(0, "k", 4) == KEEL_ERR_NOT_FOUND);

  // Re-created: starts at version 1 again.
  REQUIRE(put(*t, "k", "reborn", 0, &v) == KEEL_OK);
  CHECK(v == 1);
}

TEST_CASE("storage kv: concurrent compare-and-set increments lose no update", "[storage][kv]") {
  TestDb t;
  constexpr int kThreads = 4;
  constexpr int kIncrements = 50;
  std::atomic<int> failures{0};
  std::atomic<int> conflicts{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&] {
      for (int n = 0; n < kIncrements; ++n) {
        for (int attempt = 0;; ++attempt) {
          if (attempt > 10000) {
            ++failures;
            break;
          }
          auto e = new_entry();
          std::int64_t expected = 0;
          std::int64_t counter = 0;
          const auto got = t->kv_get(0, "counter", &e);
          if (got == KEEL_OK) {
            expected = e.version;
            counter = std::stoll(str(e.value));
          } else if (got != KEEL_ERR_NOT_FOUND) {
            ++failures;
            break;
          }
          const auto next = std::to_string(counter + 1);
          std::int64_t v = 0;
          const auto st = t->kv_put(0, put_args("counter", next, expected), &v);
          if (st == KEEL_OK) break;
          if (st != KEEL_ERR_CONFLICT) {
            ++failures;
            break;
          }
          ++conflicts;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  CHECK(failures.load() == 0);
  auto e = new_entry();
  REQUIRE(t->kv_get(0, "counter", &e) == KEEL_OK);
  CHECK(str(e.value) == std::to_string(kThreads * kIncrements));
  CHECK(e.version == kThreads * kIncrements);
  INFO("conflicts retried: " << conflicts.load());
}

TEST_CASE("storage kv: entries with a TTL expire, vanish from list and are swept by later writes", "[storage][kv]") {
  TestDb t;
  std::int64_t v = 0;
  const auto before = now_ms();
  REQUIRE(put(*t, "short", "lived", KEEL_KV_ANY_VERSION, &v, 200) == KEEL_OK);
  const auto after = now_ms();
  REQUIRE(put(*t, "long", "lived", KEEL_KV_ANY_VERSION, &v, 60'000) == KEEL_OK);
  REQUIRE(put(*t, "forever", "x") == KEEL_OK);

  auto e = new_entry();
  REQUIRE(t->kv_get(0, "short", &e) == KEEL_OK);
  CHECK(e.expires_unix_ms >= before + 200);
  CHECK(e.expires_unix_ms <= after + 200);
  CHECK(list(*t, "") == std::vector<std::string>{"forever", "long", "short"});

  std::this_thread::sleep_for(std::chrono::milliseconds(260));
  CHECK(t->kv_get(0, "short", &e) == KEEL_ERR_NOT_FOUND);
  CHECK(list(*t, "") == std::vector<std::string>{"forever", "long"});
  CHECK(t->kv_delete(0, "short", KEEL_KV_ANY_VERSION) == KEEL_ERR_NOT_FOUND);
  CHECK(put(*t, "short", "x", 1) == KEEL_ERR_CONFLICT);  // absent: version 1 does not match
  REQUIRE(t->kv_get(0, "long", &e) == KEEL_OK);
  // Still in the table until a write sweeps it.
  CHECK(host_scalar(*t, "SELECT count(*) FROM _keel_kv") == 3);

  REQUIRE(put(*t, "other", "y") == KEEL_OK);
  CHECK(host_scalar(*t, "SELECT count(*) FROM _keel_kv") == 3);  // forever, long, other
  CHECK(host_scalar(*t, on_postgres() ? "SELECT count(*) FROM _keel_kv WHERE key = '\\x73686f7274'::bytea"
                                      : "SELECT count(*) FROM _keel_kv WHERE key = x'73686f7274'") == 0);

  // An expired key counts as absent: create-only succeeds and starts at version 1.
  REQUIRE(put(*t, "gone", "1", KEEL_KV_ANY_VERSION, &v, 1) == KEEL_OK);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  REQUIRE(put(*t, "gone", "2", 0, &v) == KEEL_OK);
  CHECK(v == 1);
  REQUIRE(t->kv_get(0, "gone", &e) == KEEL_OK);
  CHECK(e.expires_unix_ms == 0);
  CHECK(str(e.value) == "2");
  // Overwriting without a TTL clears the expiry.
  REQUIRE(put(*t, "long", "now forever") == KEEL_OK);
  REQUIRE(t->kv_get(0, "long", &e) == KEEL_OK);
  CHECK(e.expires_unix_ms == 0);
}

TEST_CASE("storage kv: list by prefix in byte order, with 0xFF bytes", "[storage][kv]") {
  TestDb t;
  const std::vector<std::string> keys = {"a", "ab", "abc", "b", "a\xFF", "a\xFF\x01", "\xFF", "\xFF\xFF", "\x00"s, "a\x00"s,
                                         "B", "\x7F", "\x80"};
  for (const auto& k : keys) REQUIRE(put(*t, k, "v:" + k) == KEEL_OK);

  CHECK(list(*t, "a") == std::vector<std::string>{"a", "a\x00"s, "ab", "abc", "a\xFF", "a\xFF\x01"});
  CHECK(list(*t, "ab") == std::vector<std::string>{"ab", "abc"});
  CHECK(list(*t, "a\xFF") == std::vector<std::string>{"a\xFF", "a\xFF\x01"});
  CHECK(list(*t, "\xFF") == std::vector<std::string>{"\xFF", "\xFF\xFF"});
  CHECK(list(*t, "\xFF\xFF") == std::vector<std::string>{"\xFF\xFF"});
  CHECK(list(*t, "\x7F").size() == 1);
  CHECK(list(*t, "zzz").empty());
  CHECK(list(*t, "") == std::vector<std::string>{"\x00"s, "B", "a", "a\x00"s, "ab", "abc", "a\xFF", "a\xFF\x01", "b",
                                                  "\x7F", "\x80", "\xFF", "\xFF\xFF"});

  // start_after: exclusive; before the prefix means "from the first"; past the range is empty.
  CHECK(list(*t, "a", "ab") == std::vector<std::string>{"abc", "a\xFF", "a\xFF\x01"});
  CHECK(list(*t, "a", "aa") == std::vector<std::string>{"ab", "abc", "a\xFF", "a\xFF\x01"});
  CHECK(list(*t, "a", "A") == std::vector<std::string>{"a", "a\x00"s, "ab", "abc", "a\xFF", "a\xFF\x01"});
  CHECK(list(*t, "a", "a") == std::vector<std::string>{"a\x00"s, "ab", "abc", "a\xFF", "a\xFF\x01"});
  CHECK(list(*t, "a", "b").empty());
  CHECK(list(*t, "\xFF", "\xFF") == std::vector<std::string>{"\xFF\xFF"});

  // Values and versions come along.
  Listing l;
  REQUIRE(t->kv_list(0, "ab", "", 10, &Listing::on_entry, &l, nullptr) == KEEL_OK);
  REQUIRE(l.entries.size() == 2);
  CHECK(l.entries[0].value == "v:ab");
  CHECK(l.entries[0].version == 1);
  CHECK(l.entries[0].expires == 0);

  // Early stop: out_more says more entries follow the last one delivered.
  Listing stop;
  stop.stop_after = 2;
  std::uint32_t more = 7;
  REQUIRE(t->kv_list(0, "", "", 100, &Listing::on_entry, &stop, &more) == KEEL_OK);
  CHECK(stop.entries.size() == 2);
  CHECK(more == 1);
  // Stopping at the very last entry: nothing follows.
  Listing last;
  last.stop_after = 2;
  REQUIRE(t->kv_list(0, "ab", "", 100, &Listing::on_entry, &last, &more) == KEEL_OK);
  CHECK(last.entries.size() == 2);
  CHECK(more == 0);
}

TEST_CASE("storage kv: pagination with start_after and out_more", "[storage][kv]") {
  TestDb t;
  std::vector<std::string> expected;
  for (int i = 0; i < 25; ++i) {
    const auto key = std::string("page/") + (i < 10 ? "0" : "") + std::to_string(i);
    expected.push_back(key);
    REQUIRE(put(*t, key, std::to_string(i)) == KEEL_OK);
  }
  REQUIRE(put(*t, "pagf", "outside") == KEEL_OK);
  REQUIRE(put(*t, "page", "outside") == KEEL_OK);

  std::vector<std::string> all;
  std::vector<std::uint32_t> mores;
  std::string cursor;
  for (int page = 0; page < 10; ++page) {
    std::uint32_t more = 7;
    const auto keys = list(*t, "page/", cursor, 10, &more);
    mores.push_back(more);
    all.insert(all.end(), keys.begin(), keys.end());
    if (more == 0) break;
    REQUIRE(!keys.empty());
    cursor = keys.back();
  }
  CHECK(mores == std::vector<std::uint32_t>{1, 1, 0});
  CHECK(all == expected);

  // Exactly the limit left: out_more is 0.
  std::uint32_t more = 7;
  CHECK(list(*t, "page/", "page/14", 10, &more).size() == 10);
  CHECK(more == 0);
  // A limit above KEEL_KV_MAX_LIST is clamped, not refused.
  CHECK(list(*t, "page/", "", 1'000'000, &more).size() == 25);
  CHECK(more == 0);
  CHECK(list(*t, "page/", "", 1, &more).size() == 1);
  CHECK(more == 1);
}

TEST_CASE("storage kv: kv operations join transactions", "[storage][kv][txn]") {
  TestDb t;
  REQUIRE(put(*t, "existing", "old") == KEEL_OK);
  auto e = new_entry();
  std::int64_t v = 0;

  SECTION("rolled back") {
    keel_txn txn = 0;
    REQUIRE(t->begin(0, &txn) == KEEL_OK);
    REQUIRE(put(*t, "new", "value", KEEL_KV_ANY_VERSION, &v, 0, txn) == KEEL_OK);
    REQUIRE(put(*t, "existing", "changed", 1, &v, 0, txn) == KEEL_OK);
    CHECK(v == 2);
    REQUIRE(t->kv_get(txn, "new", &e) == KEEL_OK);  // own uncommitted write
    CHECK(str(e.value) == "value");
    CHECK(t->kv_get(0, "new", &e) == KEEL_ERR_NOT_FOUND);  // not visible outside yet
    CHECK(list(*t, "", {}, KEEL_KV_MAX_LIST, nullptr, txn) == std::vector<std::string>{"existing", "new"});
    CHECK(list(*t, "") == std::vector<std::string>{"existing"});
    REQUIRE(t->kv_delete(txn, "existing", 2) == KEEL_OK);
    REQUIRE(t->rollback(txn) == KEEL_OK);
    CHECK(t->kv_get(0, "new", &e) == KEEL_ERR_NOT_FOUND);
    REQUIRE(t->kv_get(0, "existing", &e) == KEEL_OK);
    CHECK(str(e.value) == "old");
    CHECK(e.version == 1);
  }

  SECTION("committed, with a savepoint rolled back") {
    keel_txn txn = 0, sp = 0;
    REQUIRE(t->begin(0, &txn) == KEEL_OK);
    REQUIRE(put(*t, "kept", "1", KEEL_KV_ANY_VERSION, &v, 0, txn) == KEEL_OK);
    REQUIRE(t->begin(txn, &sp) == KEEL_OK);
    REQUIRE(put(*t, "dropped", "2", KEEL_KV_ANY_VERSION, &v, 0, sp) == KEEL_OK);
    CHECK(put(*t, "kept", "3", 0, &v, 0, sp) == KEEL_ERR_CONFLICT);  // a lost CAS leaves the txn usable
    REQUIRE(t->rollback(sp) == KEEL_OK);
    REQUIRE(t->commit(txn) == KEEL_OK);
    CHECK(list(*t, "") == std::vector<std::string>{"existing", "kept"});
  }
}

TEST_CASE("storage kv: a huge TTL does not overflow into an expired entry", "[storage][kv]") {
  TestDb t;
  std::int64_t v = 0;
  REQUIRE(put(*t, "k", "v", KEEL_KV_ANY_VERSION, &v, std::numeric_limits<std::int64_t>::max()) == KEEL_OK);
  auto e = new_entry();
  REQUIRE(t->kv_get(0, "k", &e) == KEEL_OK);
  CHECK(e.expires_unix_ms > now_ms());
  CHECK(list(*t, "") == std::vector<std::string>{"k"});
}
