#include "plugins/status_mapping.hpp"

namespace keel::host::plugins {

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
  switch (status) {
    case KEEL_OK: return "ok";
    case KEEL_ERR_INVALID_ARGUMENT: return "invalid_argument";
    case KEEL_ERR_NOT_FOUND: return "not_found";
    case KEEL_ERR_UNSUPPORTED: return "unsupported";
    case KEEL_ERR_INTERNAL: return "internal";
    case KEEL_ERR_BUSY: return "busy";
    case KEEL_ERR_PERMISSION_DENIED: return "permission_denied";
    case KEEL_ERR_TIMEOUT: return "timeout";
    case KEEL_ERR_UNAVAILABLE: return "unavailable";
    case KEEL_ERR_ALREADY_COMPLETED: return "already_completed";
    case KEEL_ERR_TOO_LARGE: return "too_large";
    case KEEL_ERR_CONFLICT: return "conflict";
    case KEEL_ERR_STORAGE_FULL: return "storage_full";
    default: return status >= 0 ? "ok" : "unknown_error";
  }
}

}  // namespace keel::host::plugins
