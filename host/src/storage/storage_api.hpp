#pragma once
// The keel.storage/1 extension table (keel/storage.h): C functions that find the plugin's
// storage::Database through its keel_host_ctx and never let an exception escape.

#include <functional>
#include <string>
#include <string_view>

#include <keel/storage.h>

namespace keel::host::storage {

/// The one table handed to every plugin with the permission ext:keel.storage/1.
[[nodiscard]] const keel_storage_api& storage_api_table() noexcept;

class Database;

/// A second table that finds the database of a ctx registered with bind_storage(), for hosts
/// whose ctx is not the plugin host's (keel::sdk::testing::FakeHost in plugin unit tests).
[[nodiscard]] const keel_storage_api& bound_storage_api_table() noexcept;
/// Receives a transactional publish of a bound ctx once its top-level transaction committed
/// (never for a rolled-back one, nor one published in a rolled-back savepoint); publishes outside
/// a transaction at once. The args and their bytes are valid for the call only.
using CommittedPublish = std::function<keel_status(const keel_publish_args&)>;
/// Decides whether a bound ctx may publish `topic` through the storage table, inside a
/// transaction or not, as the host's bus does: KEEL_OK, or the refusal with the reason in `why`.
using PublishAdmission = std::function<keel_status(std::string_view topic, bool in_transaction, std::string& why)>;
/// Registers `db` as the database of `ctx` for bound_storage_api_table(); nullptr unregisters.
/// Without `on_publish`, publish() answers KEEL_ERR_UNSUPPORTED; without `admit`, every topic
/// is accepted.
void bind_storage(keel_host_ctx* ctx, Database* db, CommittedPublish on_publish = {}, PublishAdmission admit = {});

}  // namespace keel::host::storage
