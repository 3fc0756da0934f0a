#pragma once
// The keel.storage/1 table the runner hands out from get_extension() when the host says the
// plugin has storage: every function is one request frame to the host, which owns the database
// (docs/isolation.md, kinds 40-49). error_message() is per thread, like the host's; calls from
// inside a row or entry callback are refused here as the host refuses them. Every function is
// [any-thread], blocks until the host answers, and never throws.

#include <keel/storage.h>

namespace keel::host::runner {

/// The runner's storage table (static storage, struct_size = sizeof(keel_storage_api)).
[[nodiscard]] const keel_storage_api& storage_api_table() noexcept;

}  // namespace keel::host::runner
