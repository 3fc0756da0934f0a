#pragma once
// What the command line (`keel migrate status`, `keel backup`) and GET /admin/migrations do to a
// plugin's database without the plugin: read its migration history and copy it. Each engine
// does it in its own folder; these functions pick the engine from Options::engine as
// open_database() does. None of them provisions or changes anything, and all are safe while a
// host uses the database.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "storage/database.hpp"

namespace keel::host::storage {

/// The storage options of plugin `plugin` under `cfg`: [storage] with the plugin's
/// [plugin.<name>] overrides (storage_engine, max_db_bytes), as the host opens it.
[[nodiscard]] Options options_for(const config::Config& cfg, std::string_view plugin);

/// One row of a database's _keel_migrations.
struct RecordedMigration {
  std::int64_t version = 0;
  std::string description;
  std::string checksum;
  std::string applied_at;
};

struct MigrationHistory {
  bool exists = false;                      ///< the database exists (SQLite: the file; PostgreSQL: the schema)
  std::vector<RecordedMigration> recorded;  ///< what its _keel_migrations holds, in no particular order
};

/// Reads the migration history read-only (a connection of its own). A database that does not
/// exist yet has no history. Throws std::runtime_error naming the database and the reason.
[[nodiscard]] MigrationHistory read_migration_history(const Options& options);

/// Whether the database's server answers now (SQLite: always). Cheap: no login.
[[nodiscard]] bool storage_answers(const Options& options);

/// Where the plugin's data is, for people: the file, or the server and the schema (never a password).
[[nodiscard]] std::string describe_location(const Options& options);

/// The name of a backup of the plugin's database in a backup directory: "<plugin>.db" (a SQLite
/// file) or "<plugin>.pgdump" (pg_dump's custom format, restored with pg_restore).
[[nodiscard]] std::string backup_file_name(const Options& options);

struct BackupTools {
  std::string pg_dump = "pg_dump";  ///< the program that dumps a PostgreSQL schema (searched in PATH)
};

/// Copies the plugin's database, as one consistent snapshot, into `target`: a new file private to
/// this user (mode 0600) that appears only once complete. Throws std::runtime_error naming the
/// database and the reason; `target` is then left as it was.
void backup_database(const Options& options, const std::filesystem::path& target, const BackupTools& tools = {});

}  // namespace keel::host::storage
