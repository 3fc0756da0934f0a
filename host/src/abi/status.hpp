#pragma once
// A plugin's keel_status as an HTTP status and as a name, both the SDK's (keel/sdk/status.hpp):
// host and plugins agree on the answer and print the same name for the same code.

#include <string_view>

#include <keel/plugin.h>

namespace keel::host::abi {

/// INVALID_ARGUMENT 400, PERMISSION_DENIED 403, NOT_FOUND 404, CONFLICT 409, TOO_LARGE 413,
/// UNSUPPORTED 501, BUSY and UNAVAILABLE 503, TIMEOUT 504, STORAGE_FULL 507, everything else below 0 (INTERNAL,
/// ALREADY_COMPLETED, unknown codes) 500.
[[nodiscard]] unsigned http_status_for(keel_status status) noexcept;
/// "invalid_argument", "not_found", ... for logs and error messages; "unknown" for a negative
/// code this host does not know.
[[nodiscard]] std::string_view status_name(keel_status status) noexcept;

}  // namespace keel::host::abi
