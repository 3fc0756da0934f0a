#pragma once
// The PostgreSQL engine: each plugin's data in a schema of its own ("<prefix>_<plugin>", prefix
// "keel" by default) on a shared server, reached as a role of the same name that may use only
// that schema, so that
// replicas of a plugin on several hosts share one database (docs/storage.md "PostgreSQL").
//
// An administrative connection (Options::postgres.url) provisions the role, the schema and the
// host's tables in it once per host start, under an advisory lock, then closes. Every statement,
// the plugin's and the host's, runs on a bounded pool of connections logged in as the plugin's
// role: what it may not reach, the server refuses. A transaction holds one pooled connection from begin
// to commit; autocommit statements take any free one. Statements and idle transactions stop by
// themselves (statement_timeout, idle_in_transaction_session_timeout = transaction_timeout). A lost
// connection is dropped and replaced on the next use: during an outage calls fail at once with
// KEEL_ERR_UNAVAILABLE and the pool recovers when the server is back.

#include <memory>
#include <string>

#include "storage/database.hpp"
#include "storage/offline.hpp"

namespace keel::host::storage {

class PostgresDatabase final : public Database {
 public:
  /// Connects as the administrative role and provisions what is missing. Throws
  /// std::runtime_error naming the plugin, the server (never its password) and the reason.
  explicit PostgresDatabase(Options options);
  ~PostgresDatabase() override;  ///< close()

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
  void close() override;
  [[nodiscard]] Stats stats() const override;

  /// The schema and the role of `plugin` ("<prefix>_<plugin>", e.g. "keel_orders"), unquoted.
  [[nodiscard]] static std::string schema_name(std::string_view prefix, std::string_view plugin);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// `url` for messages and logs: the server's host, port, database and user, never a password.
[[nodiscard]] std::string describe_postgres_url(const std::string& url);

/// libpq's connect_timeout for options.postgres.connect_timeout: whole seconds, at least 2
/// (libpq rounds anything smaller up to 2 anyway).
[[nodiscard]] std::string connect_timeout_seconds(const Options& options);

/// A libpq message without the line break (and spaces) it ends with.
[[nodiscard]] std::string trimmed_message(std::string text);

/// Whether the server of options.postgres.url accepts connections now (PQping: no login needed).
[[nodiscard]] bool postgres_answers(const Options& options);

/// Empty when libpq can read `url`, else why not, without quoting any of it (it may hold a password).
[[nodiscard]] std::string check_postgres_url(const std::string& url);

/// The _keel_migrations rows of `options.plugin`'s schema, read by the administrative role in a
/// read-only session. Throws std::runtime_error naming the plugin, the server and the schema.
[[nodiscard]] MigrationHistory read_postgres_history(const Options& options);

/// Dumps `options.plugin`'s schema with `pg_dump` (custom format, one snapshot) into `target`,
/// logged in as the plugin's role; the connection reaches pg_dump through its environment only.
void backup_postgres(const Options& options, const std::filesystem::path& target, const std::string& pg_dump);

}  // namespace keel::host::storage
