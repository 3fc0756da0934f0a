#include "app/migration_report.hpp"

#include <exception>
#include <string>

#include <nlohmann/json.hpp>

namespace keel::host::app {

void MigrationReport::add_database(nlohmann::ordered_json& plugin, const storage::Options& database,
                                   const std::vector<package::MigrationDecl>& declared) {
  using Json = nlohmann::ordered_json;
  ++databases_;
  plugin["engine"] = database.engine == storage::StorageEngine::kPostgres ? "postgres" : "sqlite";
  plugin["database"] = storage::describe_location(database);
  plugin["database_exists"] = nullptr;  // unknown until read
  try {
    const auto history = storage::read_migration_history(database);
    plugin["database_exists"] = history.exists;
    auto migrations = Json::array();
    for (const auto& st : storage::migration_status(history, declared)) {
      ++counts_[static_cast<std::size_t>(st.state)];
      migrations.push_back({{"version", st.version},
                            {"state", storage::to_string(st.state)},
                            {"applied_at", st.applied_at.empty() ? Json(nullptr) : Json(st.applied_at)},
                            {"checksum", st.checksum},
                            {"description", st.description}});
    }
    plugin["migrations"] = std::move(migrations);
  } catch (const std::exception& e) {
    plugin["read_error"] = e.what();
    ++unreadable_;
  }
}

nlohmann::ordered_json MigrationReport::summary(std::optional<std::size_t> preflight_failed) const {
  nlohmann::ordered_json out;
  out["plugins_with_storage"] = databases_;
  if (preflight_failed) out["preflight_failed"] = *preflight_failed;
  out["applied"] = count(storage::MigrationState::kApplied);
  out["pending"] = count(storage::MigrationState::kPending);
  out["changed"] = count(storage::MigrationState::kChanged);
  out["unknown"] = count(storage::MigrationState::kUnknown);
  out["unreadable"] = unreadable_;
  return out;
}

bool MigrationReport::ok() const noexcept {
  return count(storage::MigrationState::kChanged) == 0 && count(storage::MigrationState::kUnknown) == 0 &&
         unreadable_ == 0;
}

}  // namespace keel::host::app
