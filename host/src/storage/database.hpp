#pragma once
// storage::Database: one plugin's SQLite database, the engine behind keel/storage.h.
//
// Concurrency model (docs/storage.md): one writer connection and a pool of reader connections
// per plugin, all in WAL mode. Autocommit reads run on a free reader and never wait for writers.
// Every write (an autocommit write statement, or a whole transaction from begin to commit) owns
// the single writer: writers queue in the host instead of racing for SQLite's lock, so
// SQLITE_BUSY does not reach plugins; a writer that waits longer than busy_timeout gets
// KEEL_ERR_BUSY. Every public member is thread-safe and reports failures as a keel_status plus
// a message readable through last_error() on the same thread.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <keel/storage.h>

#include "config/config.hpp"

namespace keel::host::storage {

/// Where the host keeps `plugin`'s database: <data_dir>/<plugin>.db (plus -wal and -shm).
[[nodiscard]] inline std::filesystem::path database_file(const std::filesystem::path& data_dir, std::string_view plugin) {
  return data_dir / (std::string(plugin) + ".db");
}

/// Creates `data_dir` (and missing parents), private to the host's user (mode 0700): it holds
/// every plugin's data. An existing one keeps its mode, with a warning when other users can
/// enter it. Throws std::runtime_error naming the directory and the reason.
void prepare_data_dir(const std::filesystem::path& data_dir);

/// The message of the last failure of a Database member on this thread (empty after success).
[[nodiscard]] const std::string& last_error() noexcept;

struct Options {
  std::filesystem::path file;
  std::string plugin;  ///< for messages
  config::SyncMode synchronous = config::SyncMode::kNormal;
  std::chrono::milliseconds busy_timeout{5000};
  std::uint32_t readers = 4;
  std::uint32_t statement_cache = 128;
  std::chrono::milliseconds transaction_timeout{10000};
  std::uint64_t max_bytes = 0;  ///< 0 = no quota
};

/// Per-plugin counters for metrics (issue 8 exports them); monotonic, read without locks.
struct Stats {
  /// Upper bounds in seconds of the latency histogram buckets; the last bucket is +Inf.
  static constexpr std::array<double, 12> kBucketBounds{0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025,
                                                        0.005,   0.01,   0.025,   0.05,   0.1,   1.0};
  std::uint64_t statements = 0;  ///< exec, kv and transaction-control calls that reached SQLite
  std::uint64_t errors = 0;      ///< of which failed
  std::uint64_t busy = 0;        ///< writers that gave up waiting (KEEL_ERR_BUSY)
  std::uint64_t full = 0;        ///< writes refused for a full disk or quota
  double seconds_total = 0;      ///< summed latency
  std::array<std::uint64_t, kBucketBounds.size() + 1> buckets{};  ///< non-cumulative counts
  std::uint64_t db_bytes = 0;     ///< size of the database file now
  std::uint64_t wal_bytes = 0;    ///< size of the write-ahead log now
};

/// Row callback of exec(): mirrors keel_sql_row_fn.
struct RowSink {
  keel_sql_row_fn fn = nullptr;
  void* user = nullptr;
};

class Database {
 public:
  /// Opens (creating if needed) the database at options.file and checks WAL mode. Throws
  /// std::runtime_error with a message naming the file on failure.
  explicit Database(Options options);
  ~Database();  ///< close()
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  keel_status exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                   keel_sql_result* out);
  keel_status prepare(std::string_view sql, keel_sql_info* out);
  keel_status begin(keel_txn parent, keel_txn* out);
  keel_status commit(keel_txn txn);
  keel_status rollback(keel_txn txn);

  keel_status kv_get(keel_txn txn, std::string_view key, keel_kv_entry* out);
  keel_status kv_put(keel_txn txn, const keel_kv_put_args& args, std::int64_t* out_version);
  keel_status kv_delete(keel_txn txn, std::string_view key, std::int64_t expected_version);
  keel_status kv_list(keel_txn txn, std::string_view prefix, std::string_view start_after, std::uint32_t limit,
                      keel_kv_entry_fn fn, void* user, std::uint32_t* out_more);

  /// Runs a host-owned script (several statements, e.g. a migration) on the writer inside an
  /// open transaction, under the same statement rules as plugin SQL.
  keel_status exec_script(keel_txn txn, std::string_view sql);
  /// Runs a host statement on the writer that may touch the host's own "_keel_" tables.
  keel_status exec_host(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                        keel_sql_result* out);

  /// `fn` runs after every top-level commit of a transaction marked with notify_on_commit(),
  /// on the committing thread (keep it short). Set it before the database is shared.
  void set_commit_listener(std::function<void()> fn);
  /// Marks the open transaction `txn` (or the one its savepoint belongs to) for the listener.
  /// A rollback clears the mark.
  void notify_on_commit(keel_txn txn);

  /// Rolls back an open transaction and closes every connection; later calls get
  /// KEEL_ERR_UNAVAILABLE. Idempotent.
  void close();

  [[nodiscard]] Stats stats() const;
  [[nodiscard]] const Options& options() const noexcept { return options_; }

  struct Impl;

 private:
  Options options_;
  std::unique_ptr<Impl> impl_;
};

/// Copies the database at `source` (a live database: other processes may write it) into a new
/// file `target` with SQLite's online backup, as one consistent snapshot, then checks the copy
/// with PRAGMA integrity_check. Throws std::runtime_error naming the file on failure.
void backup(const std::filesystem::path& source, const std::filesystem::path& target);

/// PRAGMA integrity_check of the database at `file`, read-only: "ok" or the problems found.
[[nodiscard]] std::string integrity_check(const std::filesystem::path& file);

}  // namespace keel::host::storage
