#pragma once
// The operator API under /admin/ (docs/operations.md "Admin API"). Every request needs
// "Authorization: Bearer <[admin] token>" (or token_next while rotating), checked by AdminGuard:
// constant-time compare, failed attempts limited per client address; without a configured token
// the API is off (404). Runs on the I/O thread: the handlers only read counters, small admin
// queries and, for /admin/migrations, the few rows of each plugin database's migration table.

#include <cstdint>
#include <optional>
#include <string_view>

#include "config/config.hpp"
#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}
namespace keel::host::cluster {
class Cluster;
}

namespace keel::host::app {

class AdminGuard;
class TrafficHistory;

/// True when `path` is under /admin/ (the caller then lets handle_admin answer).
[[nodiscard]] inline bool is_admin_path(std::string_view path) noexcept {
  return path == "/admin" || path.starts_with("/admin/");
}

/// Answers one /admin/ request into `res`, or returns a Deferred for actions that block
/// (disable, enable), which run on the worker pool. `cluster`: null when the host is in none.
/// /admin/ui/ is the console (app/console.hpp); /admin/traffic reads `traffic`.
[[nodiscard]] std::optional<http::Deferred> handle_admin(const http::Request& req, http::Response& res,
                                                         AdminGuard& guard, plugins::PluginHost& plugins,
                                                         const cluster::Cluster* cluster, const TrafficHistory& traffic);

/// POST /admin/plugins: a plugin upload.
[[nodiscard]] inline bool is_upload(const http::Request& req) noexcept {
  return req.method == "POST" && req.path == "/admin/plugins";
}

/// A request over [http] max_body_bytes (http::Handler::large_body_limit): a plugin upload to
/// POST /admin/plugins with a valid admin token may be up to `max_upload_bytes`; anything else 0
/// (with 401/404/429 in `res` when the token is what is wrong).
[[nodiscard]] std::uint64_t admit_upload(const http::Request& req, http::Response& res, AdminGuard& guard,
                                         std::uint64_t max_upload_bytes);

/// Constant-time equality of two byte strings (the time depends only on their lengths).
[[nodiscard]] bool constant_time_equals(std::string_view a, std::string_view b) noexcept;

}  // namespace keel::host::app
