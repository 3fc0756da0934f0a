#pragma once
// storage::Database: one plugin's database behind keel/storage.h, whatever engine holds it.
//
// An engine is a subclass in a folder of its own: storage/sqlite/ (the default: a file per plugin
// in data_dir, one writer and a pool of readers) and storage/postgres/ (a schema and a role per
// plugin on a PostgreSQL server, a pool of connections). open_database() picks one from
// Options::engine; nothing else in the host names an engine. Every public member is thread-safe
// and reports failures as a keel_status plus a message readable through last_error() on the
// same thread.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
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
/// Sets the thread's last error to `message` and returns `status` (for engines).
keel_status fail(keel_status status, std::string message);
/// Clears the thread's last error (for engines, on entry to a public member).
void clear_error() noexcept;

using config::StorageEngine;

/// Where and how a PostgreSQL engine reaches its server (docs/storage.md "PostgreSQL").
struct PostgresOptions {
  std::string url;  ///< libpq connection string of the administrative role (holds a secret)
  /// Names the host's schema and starts every plugin's schema and role ("<prefix>_<plugin>").
  std::string prefix = "keel";
  std::uint32_t pool_size = 8;                   ///< connections of this plugin's role at most
  std::chrono::milliseconds connect_timeout{3000};
};

struct Options {
  StorageEngine engine = StorageEngine::kSqlite;
  std::filesystem::path file;  ///< SQLite: the database file
  std::string plugin;          ///< whose data it is (PostgreSQL: names its schema and role)
  config::SyncMode synchronous = config::SyncMode::kNormal;
  std::chrono::milliseconds busy_timeout{5000};
  std::uint32_t readers = 4;
  std::uint32_t statement_cache = 128;
  std::chrono::milliseconds transaction_timeout{10000};
  std::uint64_t max_bytes = 0;  ///< 0 = no quota (SQLite)
  PostgresOptions postgres;
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
  std::uint64_t db_bytes = 0;     ///< SQLite: size of the database file now (0 elsewhere)
  std::uint64_t wal_bytes = 0;    ///< SQLite: size of the write-ahead log now (0 elsewhere)
};

/// Row callback of exec(): mirrors keel_sql_row_fn.
struct RowSink {
  keel_sql_row_fn fn = nullptr;
  void* user = nullptr;
};

class Database {
 public:
  virtual ~Database() = default;
  Database(const Database&) = delete;
  Database& operator=(const Database&) = delete;

  virtual keel_status exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                           keel_sql_result* out) = 0;
  virtual keel_status prepare(std::string_view sql, keel_sql_info* out) = 0;
  virtual keel_status begin(keel_txn parent, keel_txn* out) = 0;
  virtual keel_status commit(keel_txn txn) = 0;
  virtual keel_status rollback(keel_txn txn) = 0;

  /// One engine-neutral read of the key-value table (through exec_host); the entry's bytes stay
  /// valid on this thread until its next kv_get.
  keel_status kv_get(keel_txn txn, std::string_view key, keel_kv_entry* out);
  virtual keel_status kv_put(keel_txn txn, const keel_kv_put_args& args, std::int64_t* out_version) = 0;
  virtual keel_status kv_delete(keel_txn txn, std::string_view key, std::int64_t expected_version) = 0;
  /// Engine-neutral too: one range read of the key-value table.
  keel_status kv_list(keel_txn txn, std::string_view prefix, std::string_view start_after, std::uint32_t limit,
                      keel_kv_entry_fn fn, void* user, std::uint32_t* out_more);

  /// Runs a host-owned script (several statements, e.g. a migration) inside an open
  /// transaction, under the same rules as plugin SQL.
  virtual keel_status exec_script(keel_txn txn, std::string_view sql) = 0;
  /// Runs a host statement that may touch the host's own "_keel_" tables.
  virtual keel_status exec_host(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params,
                                RowSink rows, keel_sql_result* out) = 0;

  /// Runs the host's INSERT `sql` into `table`, an append-only table numbered by an automatic
  /// key (the event outbox), in `txn` or on its own, so that keys are taken in commit order: a
  /// reader that remembers the last key it saw never misses a row committed later with a smaller one.
  virtual keel_status append_in_commit_order(keel_txn txn, std::string_view table, std::string_view sql,
                                             std::span<const keel_sql_param> params) = 0;

  /// Inside `txn`, waits until no other host migrates this database and keeps it so until the
  /// transaction ends (a database only one host opens needs nothing).
  virtual keel_status lock_migrations(keel_txn txn) = 0;

  /// Whether the plugin's database has a table `name` (the host's or the plugin's).
  virtual keel_status has_table(std::string_view name, bool& out) = 0;

  /// `fn` runs after every top-level commit of a transaction marked with notify_on_commit(),
  /// on the committing thread (keep it short). Set it before the database is shared.
  virtual void set_commit_listener(std::function<void()> fn) = 0;
  /// Marks the open transaction `txn` (or the one its savepoint belongs to) for the listener.
  /// A rollback clears the mark.
  virtual void notify_on_commit(keel_txn txn) = 0;

  /// A "storage": "read" route's handler runs on the calling thread (docs/storage.md "Routes that
  /// only read"): until end_read_only(), whatever this thread asks that would write or open a
  /// transaction fails at once with KEEL_ERR_PERMISSION_DENIED. With `reserve_reader` a reader
  /// connection that is free now becomes this thread's for that time, so its reads never wait
  /// for one (an I/O thread); false when none is free, and then nothing is begun. Engines whose
  /// reads may wait on a network do neither and return false (the default).
  virtual bool begin_read_only(bool reserve_reader) {
    static_cast<void>(reserve_reader);
    return false;
  }
  /// Ends what begin_read_only() began on this thread (the reader goes back).
  virtual void end_read_only() noexcept {}
  /// Whether this thread is in a read-only run of this database (its writes are refused): a
  /// write another thread would make on its behalf (a group commit) must be refused as well.
  [[nodiscard]] virtual bool read_only_here() const noexcept { return false; }

  /// Rolls back open transactions and closes every connection; later calls get
  /// KEEL_ERR_UNAVAILABLE. Idempotent.
  virtual void close() = 0;

  [[nodiscard]] virtual Stats stats() const = 0;
  [[nodiscard]] const Options& options() const noexcept { return options_; }
  /// Where the data is, for messages: the file, or the server and schema (describe_location).
  [[nodiscard]] std::string location() const;

 protected:
  explicit Database(Options options) : options_(std::move(options)) {}
  Options options_;
};

/// Database::begin_read_only() for one handler run on this thread; ends with the scope at the
/// latest.
class ReadOnlyScope {
 public:
  ReadOnlyScope() = default;
  ~ReadOnlyScope() { end(); }
  ReadOnlyScope(const ReadOnlyScope&) = delete;
  ReadOnlyScope& operator=(const ReadOnlyScope&) = delete;
  void begin(Database& db, bool reserve_reader) {
    if (db_ == nullptr && db.begin_read_only(reserve_reader)) db_ = &db;
  }
  [[nodiscard]] bool active() const noexcept { return db_ != nullptr; }
  void end() noexcept {
    if (db_ != nullptr) std::exchange(db_, nullptr)->end_read_only();
  }

 private:
  Database* db_ = nullptr;
};

/// Thrown by open_database() when the database's server cannot be reached now (down, starting,
/// or the network): opening it again later may succeed, unlike for other errors.
class Unavailable : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// Opens (creating or provisioning what is missing) `options.plugin`'s database on the engine
/// options.engine names. Throws std::runtime_error with a message naming the plugin, the file
/// or server, and the reason (Unavailable when the server cannot be reached).
[[nodiscard]] std::unique_ptr<Database> open_database(Options options);

}  // namespace keel::host::storage
