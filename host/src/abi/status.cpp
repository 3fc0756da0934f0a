#include "abi/status.hpp"

#include <keel/sdk/status.hpp>

namespace keel::host::abi {

unsigned http_status_for(keel_status status) noexcept {
  switch (status) {
    case KEEL_ERR_INVALID_ARGUMENT: return 400;
    case KEEL_ERR_PERMISSION_DENIED: return 403;
    case KEEL_ERR_NOT_FOUND: return 404;
    case KEEL_ERR_CONFLICT: return 409;
    case KEEL_ERR_TOO_LARGE: return 413;
    case KEEL_ERR_STORAGE_FULL: return 507;
    case KEEL_ERR_UNSUPPORTED: return 501;
    case KEEL_ERR_BUSY:
    case KEEL_ERR_UNAVAILABLE: return 503;
    case KEEL_ERR_TIMEOUT: return 504;
    default: return status >= 0 ? 200 : 500;
  }
}

std::string_view status_name(keel_status status) noexcept {
  return sdk::status_name(static_cast<sdk::StatusCode>(status));
}

}  // namespace keel::host::abi
