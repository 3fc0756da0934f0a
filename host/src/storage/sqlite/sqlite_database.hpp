#pragma once
// The SQLite engine (the default): one database file per plugin in data_dir.
//
// Concurrency model (docs/storage.md): one writer connection and a pool of reader connections
// per plugin, all in WAL mode. Autocommit reads run on a free reader and never wait for writers.
// Every write (an autocommit write statement, or a whole transaction from begin to commit) owns
// the single writer: writers queue in the host instead of racing for SQLite's lock, so
// SQLITE_BUSY does not reach plugins; a writer that waits longer than busy_timeout gets
// KEEL_ERR_BUSY.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include "storage/database.hpp"
#include "storage/offline.hpp"

namespace keel::host::storage {

class SqliteDatabase final : public Database {
 public:
  /// Opens (creating if needed) the database at options.file and checks WAL mode. Throws
  /// std::runtime_error with a message naming the file on failure.
  explicit SqliteDatabase(Options options);
  ~SqliteDatabase() override;  ///< close()

  keel_status exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                   keel_sql_result* out) override;
  keel_status prepare(std::string_view sql, keel_sql_info* out) override;
  keel_status begin(keel_txn parent, keel_txn* out) override;
  keel_status commit(keel_txn txn) override;
  keel_status rollback(keel_txn txn) override;
  keel_status kv_put(keel_txn txn, const keel_kv_put_args& args, std::int64_t* out_version) override;
  keel_status kv_delete(keel_txn txn, std::string_view key, std::int64_t expected_version) override;
  keel_status exec_script(keel_txn txn, std::string_view sql) override;
  keel_status exec_host(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                        keel_sql_result* out) override;
  keel_status lock_migrations(keel_txn txn) override;
  keel_status has_table(std::string_view name, bool& out) override;
  keel_status append_in_commit_order(keel_txn txn, std::string_view table, std::string_view sql,
                                     std::span<const keel_sql_param> params) override;
  void set_commit_listener(std::function<void()> fn) override;
  void notify_on_commit(keel_txn txn) override;
  bool begin_read_only(bool reserve_reader) override;
  void end_read_only() noexcept override;
  [[nodiscard]] bool read_only_here() const noexcept override;
  void close() override;
  [[nodiscard]] Stats stats() const override;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Heap memory SQLite holds in this process now, every database together: page caches (up to
/// SQLite's default 2 MiB per connection), schemas, prepared statements (sqlite3_memory_used).
/// Thread-safe.
[[nodiscard]] std::int64_t sqlite_memory_bytes() noexcept;

/// Copies the database at `source` (a live database: other processes may write it) into a new
/// file `target` with SQLite's online backup, as one consistent snapshot, then checks the copy
/// with PRAGMA integrity_check. Throws std::runtime_error naming the file on failure.
void backup(const std::filesystem::path& source, const std::filesystem::path& target);

/// The _keel_migrations rows of the database at `file`, read-only (safe while a host writes it).
/// A missing file has none. Throws std::runtime_error naming the file.
[[nodiscard]] MigrationHistory read_sqlite_history(const std::filesystem::path& file);

/// PRAGMA integrity_check of the database at `file`, read-only: "ok" or the problems found.
[[nodiscard]] std::string integrity_check(const std::filesystem::path& file);

}  // namespace keel::host::storage
