#pragma once
// Who may use the admin API: the accepted bearer tokens (replaced whole on SIGHUP, read without a
// lock on every admin request) and the limit on failed attempts per client address. Thread-safe:
// every I/O thread checks requests at once while the admin thread may publish new tokens.

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/published.hpp"
#include "config/config.hpp"
#include "http/message.hpp"

namespace keel::host::app {

/// Failed bearer tokens per client address: after `max_failures` within `window` (counted from the
/// first failure), the client is blocked until the window ends. A success changes nothing (it
/// neither resets the client's own count nor anyone else's). The table holds at most `capacity`
/// addresses: when full, expired entries go first, then the one whose window started earliest.
class FailedAttempts {
 public:
  using Clock = std::chrono::steady_clock;
  struct Limits {
    std::uint32_t max_failures = 10;
    std::chrono::milliseconds window{60000};
  };
  explicit FailedAttempts(std::size_t capacity = 4096) : capacity_(capacity) {}

  /// Whole seconds (at least 1) until `client` may try again, or 0 if it may try now.
  [[nodiscard]] std::uint32_t blocked_for(std::string_view client, const Limits& limits, Clock::time_point now);
  /// Counts a failed attempt by `client`.
  void record_failure(std::string_view client, const Limits& limits, Clock::time_point now);
  /// Addresses in the table.
  [[nodiscard]] std::size_t size() const;

 private:
  struct Entry {
    Clock::time_point window_start;
    std::uint32_t failures = 0;
  };
  void make_room(const Limits& limits, Clock::time_point now);

  mutable std::mutex mutex_;
  std::unordered_map<std::string, Entry> entries_;
  std::size_t capacity_;
};

/// The address a client's attempts are counted under: the peer address without its port
/// ("203.0.113.9:5123" -> "203.0.113.9", "[::1]:80" -> "[::1]"); "unix" for the admin socket.
[[nodiscard]] std::string_view client_of(std::string_view remote_address) noexcept;

/// Process-wide counts of refused admin requests, for /metrics.
struct AdminAuthStats {
  std::uint64_t refused = 0;    ///< wrong or missing token: 401
  std::uint64_t throttled = 0;  ///< too many failures from the client's address: 429
};
[[nodiscard]] AdminAuthStats admin_auth_stats() noexcept;

class AdminGuard {
 public:
  enum class Verdict { kOff, kAllowed, kRefused, kThrottled };
  struct Result {
    Verdict verdict = Verdict::kOff;
    std::uint32_t retry_after_s = 0;  ///< kThrottled: seconds until the client may try again
  };

  explicit AdminGuard(const config::AdminConfig& admin);
  /// Takes the tokens and limits of a newly read configuration (SIGHUP); requests already being
  /// checked finish with the old ones. Returns true if the accepted tokens changed.
  bool update(const config::AdminConfig& admin);
  /// Decides one /admin request: off (no token configured), allowed, refused (401) or throttled
  /// (429, without looking at the token). Logs refusals at warn, at most one line of each kind per
  /// 10 s.
  [[nodiscard]] Result check(const http::Request& req);
  /// True when a token is configured (the admin API and the console are on).
  [[nodiscard]] bool enabled() { return !settings_.current().tokens.empty(); }

 private:
  struct Settings {
    std::vector<std::string> tokens;
    FailedAttempts::Limits limits;
  };
  static std::shared_ptr<const Settings> settings_of(const config::AdminConfig& admin);
  void log_refusal(Verdict verdict, const http::Request& req, std::string_view client);

  Published<Settings> settings_;
  FailedAttempts failures_;
  // One of each kind of refusal is logged per interval; the others are counted into the next line.
  struct LogLimit {
    FailedAttempts::Clock::time_point last{};
    std::uint64_t held_back = 0;
  };
  std::mutex log_mutex_;
  LogLimit refused_log_, throttled_log_;
};

}  // namespace keel::host::app
