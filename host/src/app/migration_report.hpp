#pragma once
// The JSON report of plugin database migrations that `keel migrate status --json` prints and
// GET /admin/migrations answers, built in one place so the two keep the same shape. Reads each
// database with storage::read_migration_history() (a read-only connection of its own, safe while
// a host uses the database; on PostgreSQL a network round trip, so never on an I/O thread). One
// report per caller; not thread-safe.

#include <array>
#include <cstddef>
#include <optional>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "package/manifest.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"

namespace keel::host::app {

class MigrationReport {
 public:
  /// Reads the migrations of `database` and adds to `plugin` "engine", "database" (where it is),
  /// "database_exists" (null when unreadable) and either "migrations" (version, state, applied_at
  /// or null, checksum, description; in version order) or "read_error" when it cannot be read.
  void add_database(nlohmann::ordered_json& plugin, const storage::Options& database,
                    const std::vector<package::MigrationDecl>& declared);

  /// {"plugins_with_storage", ["preflight_failed",] "applied", "pending", "changed", "unknown",
  /// "unreadable"} over every add_database() so far.
  [[nodiscard]] nlohmann::ordered_json summary(std::optional<std::size_t> preflight_failed = std::nullopt) const;

  /// No migration changed or unknown (the host would start every plugin's storage) and every
  /// database readable.
  [[nodiscard]] bool ok() const noexcept;

  [[nodiscard]] std::size_t count(storage::MigrationState state) const noexcept {
    return counts_[static_cast<std::size_t>(state)];
  }
  [[nodiscard]] std::size_t databases() const noexcept { return databases_; }
  [[nodiscard]] std::size_t unreadable() const noexcept { return unreadable_; }

 private:
  std::array<std::size_t, 4> counts_{};  // by MigrationState
  std::size_t databases_ = 0;
  std::size_t unreadable_ = 0;
};

}  // namespace keel::host::app
