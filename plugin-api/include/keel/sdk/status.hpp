#pragma once
// keel::sdk::Status (code + message), the result of every SDK call and plugin hook, and
// keel::sdk::Error, an exception that carries a Status out of plugin code. Value types;
// safe to copy between threads.

#include <keel/plugin.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace keel::sdk {

/// Status codes; each value equals the ABI constant of the same name (KEEL_OK, KEEL_ERR_*).
enum class StatusCode : std::int32_t {
  kOk = KEEL_OK,
  kInvalidArgument = KEEL_ERR_INVALID_ARGUMENT,
  kNotFound = KEEL_ERR_NOT_FOUND,
  kUnsupported = KEEL_ERR_UNSUPPORTED,
  kInternal = KEEL_ERR_INTERNAL,
  kBusy = KEEL_ERR_BUSY,
  kPermissionDenied = KEEL_ERR_PERMISSION_DENIED,
  kTimeout = KEEL_ERR_TIMEOUT,
  kUnavailable = KEEL_ERR_UNAVAILABLE,
  kAlreadyCompleted = KEEL_ERR_ALREADY_COMPLETED,
  kTooLarge = KEEL_ERR_TOO_LARGE,
  kConflict = KEEL_ERR_CONFLICT,
  kStorageFull = KEEL_ERR_STORAGE_FULL,
};

/// Stable lowercase name of a code, e.g. "permission_denied"; "unknown" for codes this SDK
/// predates (a newer host may return them; treat them as failures).
[[nodiscard]] constexpr std::string_view status_name(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kOk: return "ok";
    case StatusCode::kInvalidArgument: return "invalid_argument";
    case StatusCode::kNotFound: return "not_found";
    case StatusCode::kUnsupported: return "unsupported";
    case StatusCode::kInternal: return "internal";
    case StatusCode::kBusy: return "busy";
    case StatusCode::kPermissionDenied: return "permission_denied";
    case StatusCode::kTimeout: return "timeout";
    case StatusCode::kUnavailable: return "unavailable";
    case StatusCode::kAlreadyCompleted: return "already_completed";
    case StatusCode::kTooLarge: return "too_large";
    case StatusCode::kConflict: return "conflict";
    case StatusCode::kStorageFull: return "storage_full";
  }
  return static_cast<std::int32_t>(code) >= 0 ? "ok" : "unknown";
}

/// The HTTP status the host answers when a request handler fails with `code` (docs/abi.md,
/// "Status codes"): invalid_argument 400, permission_denied 403, not_found 404, conflict 409,
/// too_large 413, unsupported 501, busy and unavailable 503, timeout 504, storage_full 507; any
/// other failure (internal, already_completed, a code this SDK predates) 500; success 200.
[[nodiscard]] constexpr unsigned http_status(StatusCode code) noexcept {
  switch (code) {
    case StatusCode::kInvalidArgument: return 400;
    case StatusCode::kPermissionDenied: return 403;
    case StatusCode::kNotFound: return 404;
    case StatusCode::kConflict: return 409;
    case StatusCode::kTooLarge: return 413;
    case StatusCode::kStorageFull: return 507;
    case StatusCode::kUnsupported: return 501;
    case StatusCode::kBusy:
    case StatusCode::kUnavailable: return 503;
    case StatusCode::kTimeout: return 504;
    default: return static_cast<std::int32_t>(code) >= 0 ? 200 : 500;
  }
}

/// The "code" of the host's error body, {"error":{"code":"...","message":"..."}}, when a request
/// handler fails with `code`: the HTTP status's name (docs/abi.md, "Status codes"), e.g.
/// invalid_argument -> "bad_request", storage_full -> "insufficient_storage".
[[nodiscard]] constexpr std::string_view error_code(StatusCode code) noexcept {
  switch (http_status(code)) {
    case 200: return "ok";
    case 400: return "bad_request";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 409: return "conflict";
    case 413: return "content_too_large";
    case 501: return "not_implemented";
    case 503: return "unavailable";
    case 504: return "timeout";
    case 507: return "insufficient_storage";
    default: return "internal";
  }
}

/// Outcome of an operation: a code (>= 0 success) and a message for the log.
/// Returned by every hook a plugin overrides and by every Host/Responder call.
class [[nodiscard]] Status {
 public:
  /// Success with no message.
  Status() noexcept = default;
  /// A status with `code` and a human-readable `message` (lowercase, key=value fields).
  Status(StatusCode code, std::string message) noexcept : code_{code}, message_{std::move(message)} {}

  /// Success; same as Status{}.
  static Status success() noexcept { return {}; }
  /// The caller passed a malformed value; the host answers a request with 400.
  static Status invalid_argument(std::string message = {}) noexcept { return {StatusCode::kInvalidArgument, std::move(message)}; }
  /// The thing asked for does not exist (404).
  static Status not_found(std::string message = {}) noexcept { return {StatusCode::kNotFound, std::move(message)}; }
  /// The host (or this plugin) lacks the capability asked for (501).
  static Status unsupported(std::string message = {}) noexcept { return {StatusCode::kUnsupported, std::move(message)}; }
  /// A bug or an unexpected failure (500).
  static Status internal(std::string message = {}) noexcept { return {StatusCode::kInternal, std::move(message)}; }
  /// A bounded queue is full; retry later (503).
  static Status busy(std::string message = {}) noexcept { return {StatusCode::kBusy, std::move(message)}; }
  /// The manifest did not request the permission needed (403).
  static Status permission_denied(std::string message = {}) noexcept { return {StatusCode::kPermissionDenied, std::move(message)}; }
  /// A deadline passed (504).
  static Status timeout(std::string message = {}) noexcept { return {StatusCode::kTimeout, std::move(message)}; }
  /// Not started, stopping, or the target is down (503).
  static Status unavailable(std::string message = {}) noexcept { return {StatusCode::kUnavailable, std::move(message)}; }
  /// A once-only handle was used a second time.
  static Status already_completed(std::string message = {}) noexcept { return {StatusCode::kAlreadyCompleted, std::move(message)}; }
  /// A payload exceeds a configured limit (413).
  static Status too_large(std::string message = {}) noexcept { return {StatusCode::kTooLarge, std::move(message)}; }
  /// A uniqueness rule or a compare-and-set failed (409).
  static Status conflict(std::string message = {}) noexcept { return {StatusCode::kConflict, std::move(message)}; }
  /// The disk or a storage quota is full (507).
  static Status storage_full(std::string message = {}) noexcept { return {StatusCode::kStorageFull, std::move(message)}; }

  /// True for success (code >= 0).
  [[nodiscard]] constexpr bool ok() const noexcept { return static_cast<std::int32_t>(code_) >= 0; }
  /// The code; may hold a value newer than StatusCode's enumerators.
  [[nodiscard]] constexpr StatusCode code() const noexcept { return code_; }
  /// Detail text for the log; never sent to HTTP clients.
  [[nodiscard]] const std::string& message() const noexcept { return message_; }
  /// "name: message" or just "name", for logs and test output.
  [[nodiscard]] std::string to_string() const {
    std::string out{status_name(code_)};
    if (!message_.empty()) out.append(": ").append(message_);
    return out;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

/// An exception carrying a Status. Thrown from a hook (or a plugin constructor), the SDK
/// returns its code across the ABI and logs its message, where any other exception becomes
/// StatusCode::kInternal. A success status is turned into kInternal.
class Error : public std::runtime_error {
 public:
  explicit Error(Status status)
      : std::runtime_error{status.message()},
        status_{status.ok() ? Status{StatusCode::kInternal, status.message()} : std::move(status)} {}
  /// The status to report; never a success.
  [[nodiscard]] const Status& status() const noexcept { return status_; }

 private:
  Status status_;
};

namespace detail {

/// Builds a Status without throwing: if copying the message fails, the message is dropped.
[[nodiscard]] inline Status make_status(std::int32_t code, std::string_view message) noexcept {
  try {
    return Status{static_cast<StatusCode>(code), std::string{message}};
  } catch (...) {
    return Status{static_cast<StatusCode>(code), std::string{}};
  }
}

/// The ABI value of a Status.
[[nodiscard]] constexpr keel_status to_c(const Status& status) noexcept { return static_cast<keel_status>(status.code()); }

}  // namespace detail
}  // namespace keel::sdk

/// Returns the Status of `expr` from the enclosing function if it is a failure.
#define KEEL_TRY(expr)                              \
  do {                                              \
    ::keel::sdk::Status keel_try_status_ = (expr);  \
    if (!keel_try_status_.ok()) return keel_try_status_; \
  } while (0)

