#pragma once
// What every storage engine shares (storage/sqlite/, storage/postgres/): the thread's last error,
// the guard against calling storage from inside a row callback, and the key-value store's rules
// that do not depend on where the entries live. Private to storage/.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

#include <keel/storage.h>

#include "storage/database.hpp"

namespace keel::host::storage {

/// The calling thread's last-error text, for engines that add to a message already set.
[[nodiscard]] std::string& error_text() noexcept;

/// While alive, the calling thread is inside a row or entry callback: a storage call from there
/// would wait for the connection the callback is running on.
class CallbackScope {
 public:
  CallbackScope() noexcept;
  ~CallbackScope();
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

/// Start of every public Database member: clears the last error; refuses a call made from
/// inside a row or entry callback.
[[nodiscard]] keel_status enter_call();

[[nodiscard]] std::int64_t now_unix_ms();

/// The counters behind Stats, updated without locks by every call that reached the engine.
class Counters {
 public:
  /// One call: its latency since `start` and whether it failed (KEEL_ERR_STORAGE_FULL counts as full).
  void record(std::chrono::steady_clock::time_point start, keel_status st) noexcept;
  void count_busy() noexcept { busy_.fetch_add(1, std::memory_order_relaxed); }
  /// Everything but the engine's sizes (db_bytes, wal_bytes).
  [[nodiscard]] Stats snapshot() const noexcept;

 private:
  std::atomic<std::uint64_t> statements_{0}, errors_{0}, busy_{0}, full_{0}, nanos_{0};
  std::array<std::atomic<std::uint64_t>, Stats::kBucketBounds.size() + 1> buckets_{};
};

// --- key-value store ---

/// A key's current (unexpired) row, as read before a write.
struct KvRow {
  bool found = false;
  std::int64_t version = 0;
  std::int64_t expires = 0;
};

/// Checks a kv_put's arguments; on success `key` views the key.
[[nodiscard]] keel_status check_kv_put(const keel_kv_put_args& args, std::string_view& key);
[[nodiscard]] keel_status check_kv_key(std::string_view key);
/// Compare-and-set: whether `row` satisfies `expected` (KEEL_KV_ANY_VERSION, 0 = absent, or a version).
[[nodiscard]] keel_status check_kv_version(const KvRow& row, std::int64_t expected, std::string_view what);
/// The Unix-millisecond expiry of an entry written at `now` with `ttl_ms` (0 = never, saturating).
[[nodiscard]] std::int64_t kv_expiry(std::int64_t now, std::int64_t ttl_ms) noexcept;

/// The range of keys kv_list reads, as its statement's parameters ?1..?6 (lower bound, whether it
/// is exclusive, whether there is an upper bound, the upper bound, now, limit + 1) and the per-row
/// callback state.
struct KvListing {
  KvListing(std::string_view prefix, std::string_view start_after, std::uint32_t limit, keel_kv_entry_fn fn,
            void* user);
  std::string upper;  ///< successor of the prefix; empty: no upper bound
  std::string_view lower;
  bool exclusive = false;
  keel_kv_entry_fn fn;
  void* user;
  std::uint32_t limit;
  std::uint32_t seen = 0;
  bool more = false;
  bool stopped = false;  ///< the callback asked to stop: the next row only sets `more`
  /// Row callback for columns (key, value, version, expires_at).
  static int32_t on_row(void* self, const keel_sql_value* v, const keel_host_bytes*, std::size_t);
};

// The key-value statements, in the SQL both engines read (?N placeholders; PostgreSQL's engine
// translates them; every parameter's type follows from its place, which PostgreSQL needs). Table _keel_kv (key, value, version, expires_at); keys compare as bytes.
inline constexpr std::string_view kKvGet =
    "SELECT value, version, expires_at FROM _keel_kv WHERE key = ?1 AND (expires_at = 0 OR expires_at > ?2)";
inline constexpr std::string_view kKvCurrent =
    "SELECT version, expires_at FROM _keel_kv WHERE key = ?1 AND (expires_at = 0 OR expires_at > ?2)";
inline constexpr std::string_view kKvUpsert =
    "INSERT INTO _keel_kv (key, value, version, expires_at) VALUES (?1, ?2, ?3, ?4)"
    " ON CONFLICT (key) DO UPDATE SET value = excluded.value, version = excluded.version,"
    " expires_at = excluded.expires_at";
/// Expired entries are invisible already; each write also removes a few of them.
inline constexpr std::string_view kKvSweep =
    "DELETE FROM _keel_kv WHERE key IN (SELECT key FROM _keel_kv WHERE expires_at > 0 AND"
    " expires_at <= ?1 LIMIT 16)";
inline constexpr std::string_view kKvDelete = "DELETE FROM _keel_kv WHERE key = ?1";
inline constexpr std::string_view kKvList =
    "SELECT key, value, version, expires_at FROM _keel_kv WHERE (key > ?1 OR (?2 = 0 AND key = ?1))"
    " AND (?3 = 0 OR key < ?4) AND (expires_at = 0 OR expires_at > ?5) ORDER BY key LIMIT ?6";

}  // namespace keel::host::storage
