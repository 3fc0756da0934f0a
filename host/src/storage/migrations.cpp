#include "storage/migrations.hpp"

#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include "observability/log.hpp"
#include "package/sha256.hpp"
#include "storage/database.hpp"

namespace keel::host::storage {
namespace {

struct Recorded {
  std::string description;
  std::string checksum;
  std::string applied_at;
};

std::string now_iso8601() {
  const auto now = std::chrono::time_point_cast<std::chrono::milliseconds>(std::chrono::system_clock::now());
  return fmt::format("{:%Y-%m-%dT%H:%M:%S}Z", now);
}

std::string short_sum(const std::string& sum) { return sum.substr(0, 12); }

/// Compares what the database recorded with what the manifest declares.
std::vector<MigrationStatus> compare(const std::map<std::int64_t, Recorded>& recorded,
                                     const std::vector<package::MigrationDecl>& declared) {
  std::vector<MigrationStatus> out;
  for (const auto& m : declared) {
    MigrationStatus st{m.version, m.description, migration_checksum(m), MigrationState::kPending, {}};
    if (auto it = recorded.find(m.version); it != recorded.end()) {
      st.state = it->second.checksum == st.checksum ? MigrationState::kApplied : MigrationState::kChanged;
      st.applied_at = it->second.applied_at;
    }
    out.push_back(std::move(st));
  }
  for (const auto& [version, r] : recorded) {
    const bool known = std::any_of(declared.begin(), declared.end(), [&](const auto& m) { return m.version == version; });
    if (!known) out.push_back({version, r.description, r.checksum, MigrationState::kUnknown, r.applied_at});
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) { return a.version < b.version; });
  return out;
}

/// Reads _keel_migrations of `db` (in `txn`, or on its own) into `out`.
keel_status read_recorded(Database& db, keel_txn txn, std::map<std::int64_t, Recorded>& out) {
  auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
    auto text = [](const keel_sql_value& x) { return std::string(x.bytes.ptr != nullptr ? x.bytes.ptr : "", x.bytes.len); };
    (*static_cast<std::map<std::int64_t, Recorded>*>(user))[v[0].integer] = {text(v[1]), text(v[2]), text(v[3])};
    return 0;
  };
  out.clear();
  return db.exec_host(txn, "SELECT version, description, checksum, applied_at FROM _keel_migrations", {}, {sink, &out},
                      nullptr);
}

/// Why `plan` (compared with `recorded`) must not be applied: an applied migration changed or
/// no longer declared, or a pending one below an applied one. Empty when it may; `next` is then
/// the first pending migration (null when none is).
std::string check_plan(const std::vector<MigrationStatus>& plan, const std::map<std::int64_t, Recorded>& recorded,
                       const MigrationStatus*& next) {
  std::int64_t last_applied = 0;
  for (const auto& m : plan) {
    if (m.state == MigrationState::kChanged)
      return fmt::format(
          "migration {} (\"{}\") was edited after it was applied: checksum {} in the database, {} in the manifest; "
          "never change an applied migration, add a new one",
          m.version, m.description, short_sum(recorded.at(m.version).checksum), short_sum(m.checksum));
    if (m.state == MigrationState::kUnknown)
      return fmt::format(
          "migration {} (\"{}\") is recorded as applied but the manifest no longer declares it; is this an older "
          "version of the plugin? Deploy a version that declares it",
          m.version, m.description);
    if (m.state == MigrationState::kApplied) last_applied = std::max(last_applied, m.version);
  }
  for (const auto& m : plan) {
    if (m.state != MigrationState::kPending) continue;
    if (m.version < last_applied)
      return fmt::format("migration {} (\"{}\") is pending but migration {} is already applied; new migrations must "
                         "have versions above the last applied one",
                         m.version, m.description, last_applied);
    next = &m;
    break;
  }
  return {};
}

}  // namespace

std::string_view to_string(MigrationState state) noexcept {
  switch (state) {
    case MigrationState::kApplied: return "applied";
    case MigrationState::kPending: return "pending";
    case MigrationState::kChanged: return "changed";
    case MigrationState::kUnknown: return "unknown";
  }
  return "unknown";
}

std::string migration_checksum(const package::MigrationDecl& migration) { return package::sha256_hex(migration.sql); }

std::string migrate(Database& db, const std::vector<package::MigrationDecl>& declared) {
  auto log = observability::logger("storage");
  const auto& plugin = db.options().plugin;
  // One transaction per migration, which first takes the migration lock and reads the history
  // under it: hosts sharing the database (PostgreSQL) take turns, and each checks and applies
  // only what the others have not.
  for (;;) {
    keel_txn txn = KEEL_TXN_NONE;
    if (db.begin(KEEL_TXN_NONE, &txn) < 0) return "cannot start a transaction for migrations: " + last_error();
    std::map<std::int64_t, Recorded> recorded;
    auto st = db.lock_migrations(txn);
    if (st >= 0) st = read_recorded(db, txn, recorded);
    if (st < 0) {
      const auto why = last_error();
      static_cast<void>(db.rollback(txn));
      return "cannot read the migration history: " + why;
    }
    const MigrationStatus* next = nullptr;
    const auto plan = compare(recorded, declared);
    auto why = check_plan(plan, recorded, next);
    if (!why.empty() || next == nullptr) {
      static_cast<void>(db.rollback(txn));
      return why;
    }
    const auto& m = *next;
    const auto& decl = *std::find_if(declared.begin(), declared.end(), [&](const auto& d) { return d.version == m.version; });
    const auto start = std::chrono::steady_clock::now();
    st = db.exec_script(txn, decl.sql);
    std::string error = st < 0 ? last_error() : std::string{};
    if (st >= 0) {
      const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start).count();
      const auto at = now_iso8601();
      const keel_sql_param p[5] = {{KEEL_SQL_INTEGER, 0, m.version, 0, {}},
                                   {KEEL_SQL_TEXT, 0, 0, 0, {m.description.data(), m.description.size()}},
                                   {KEEL_SQL_TEXT, 0, 0, 0, {m.checksum.data(), m.checksum.size()}},
                                   {KEEL_SQL_TEXT, 0, 0, 0, {at.data(), at.size()}},
                                   {KEEL_SQL_INTEGER, 0, ms, 0, {}}};
      st = db.exec_host(txn,
                        "INSERT INTO _keel_migrations (version, description, checksum, applied_at, duration_ms)"
                        " VALUES (?1, ?2, ?3, ?4, ?5)",
                        p, {}, nullptr);
      if (st >= 0) st = db.commit(txn);
      if (st < 0) error = last_error();
    }
    if (st < 0) {
      static_cast<void>(db.rollback(txn));  // already finished after a failed commit: NOT_FOUND is fine
      return fmt::format("migration {} (\"{}\") failed and was rolled back: {}", m.version, m.description, error);
    }
    log->info("migration applied plugin={} version={} description=\"{}\" checksum={}", plugin, m.version,
              m.description, short_sum(m.checksum));
  }
}

std::vector<MigrationStatus> migration_status(const MigrationHistory& history,
                                              const std::vector<package::MigrationDecl>& declared) {
  std::map<std::int64_t, Recorded> recorded;
  for (const auto& r : history.recorded) recorded[r.version] = {r.description, r.checksum, r.applied_at};
  return compare(recorded, declared);
}

}  // namespace keel::host::storage
