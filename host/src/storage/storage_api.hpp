#pragma once
// The keel.storage/1 extension table (keel/storage.h): C functions that find the plugin's
// storage::Database through its keel_host_ctx and never let an exception escape.

#include <keel/storage.h>

namespace keel::host::storage {

/// The one table handed to every plugin with the permission ext:keel.storage/1.
[[nodiscard]] const keel_storage_api& storage_api_table() noexcept;

class Database;

/// A second table that finds the database of a ctx registered with bind_storage(), for hosts
/// whose ctx is not the plugin host's (keel::sdk::testing::FakeHost in plugin unit tests).
[[nodiscard]] const keel_storage_api& bound_storage_api_table() noexcept;
/// Registers `db` as the database of `ctx` for bound_storage_api_table(); nullptr unregisters.
void bind_storage(keel_host_ctx* ctx, Database* db);

}  // namespace keel::host::storage
