#pragma once
// Real storage for plugin unit tests that run a plugin in keel::sdk::testing::FakeHost (no
// keel binary, no dlopen): a storage::Database in a file of the test's choosing, migrated from
// the plugin's manifest, offered to the plugin as "keel.storage/1". Link keel_host_core.
//
//   keel::sdk::testing::FakeHost host;
//   keel::host::storage::TestDatabase db{host.ctx(), dir / "notes.db", NOTES_MANIFEST, &host.api()};
//   host.add_extension(KEEL_STORAGE_EXTENSION_ID, &db.table());
//   REQUIRE(host.load<Notes>(...).ok());

#include <filesystem>
#include <memory>
#include <string_view>

#include <keel/plugin.h>
#include <keel/storage.h>

#include "storage/database.hpp"

namespace keel::host::storage {

class TestDatabase {
 public:
  /// Opens (creating) `file` — or, when the environment variable KEEL_TEST_POSTGRES_URL holds a
  /// libpq connection string, a schema of its own on that PostgreSQL server, so the same tests
  /// check the plugin on both engines — applies the "migrations" of `manifest_json` (throws
  /// std::runtime_error with the reason if the manifest is invalid or a migration fails) and
  /// binds the database to `ctx`. With `host` (the fake host's table), events the plugin
  /// publishes in a transaction reach host->publish when that transaction commits — as the real
  /// host's outbox would deliver them — and never if it rolls back; without it such a publish
  /// answers KEEL_ERR_UNSUPPORTED. As the host's bus, that publish refuses a topic missing from
  /// the manifest's "events.publishes" (KEEL_ERR_PERMISSION_DENIED) and an in-memory one, not in
  /// "events.durable" (KEEL_ERR_INVALID_ARGUMENT).
  TestDatabase(keel_host_ctx* ctx, const std::filesystem::path& file, std::string_view manifest_json,
               const keel_host_api* host = nullptr);
  ~TestDatabase();  ///< unbinds and closes
  TestDatabase(const TestDatabase&) = delete;
  TestDatabase& operator=(const TestDatabase&) = delete;

  /// The table to offer through the fake host's get_extension.
  [[nodiscard]] const keel_storage_api& table() const noexcept;
  /// The database itself, to seed or inspect data from the test.
  [[nodiscard]] Database& database() noexcept { return *db_; }

 private:
  keel_host_ctx* ctx_;
  std::unique_ptr<Database> db_;
};

}  // namespace keel::host::storage
