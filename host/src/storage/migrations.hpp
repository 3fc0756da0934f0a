#pragma once
// Schema migrations of a plugin database: the manifest's ordered "migrations" applied at start,
// each in its own transaction, and recorded (version, description, checksum, time) in the
// database's _keel_migrations table. An applied migration is never edited: its SHA-256 checksum
// is compared on every start.

#include <cstdint>
#include <string>
#include <vector>

#include "package/manifest.hpp"
#include "storage/offline.hpp"

namespace keel::host::storage {

class Database;

enum class MigrationState {
  kApplied,  ///< recorded in the database with the manifest's checksum
  kPending,  ///< declared, not applied yet
  kChanged,  ///< recorded with a different checksum: the SQL was edited after it ran
  kUnknown,  ///< recorded in the database but no longer declared by the manifest
};
[[nodiscard]] std::string_view to_string(MigrationState state) noexcept;

struct MigrationStatus {
  std::int64_t version = 0;
  std::string description;
  std::string checksum;    ///< SHA-256 of the SQL, lowercase hex (as declared, or as recorded for kUnknown)
  MigrationState state = MigrationState::kPending;
  std::string applied_at;  ///< UTC, ISO 8601; empty when not applied
};

/// SHA-256 of a migration's SQL text, lowercase hex.
[[nodiscard]] std::string migration_checksum(const package::MigrationDecl& migration);

/// Applies every pending migration in version order, each in one transaction with its history
/// row. Returns an empty string on success, else why the plugin cannot start (nothing of the
/// failed migration is kept; earlier ones stay applied). Refuses to run anything when an applied
/// migration changed or disappeared, or a pending one sorts before an applied one.
[[nodiscard]] std::string migrate(Database& db, const std::vector<package::MigrationDecl>& declared);

/// Status of every declared and recorded migration in `history` (read_migration_history()), in
/// version order. A database that does not exist yet has every declared migration pending.
[[nodiscard]] std::vector<MigrationStatus> migration_status(const MigrationHistory& history,
                                                            const std::vector<package::MigrationDecl>& declared);

}  // namespace keel::host::storage
