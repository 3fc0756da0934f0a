#pragma once
// The operator's console in the browser (docs/operations.md "Console"): /admin/ui/ serves the
// files compiled in from host/ui/, which hold no data. The page signs in with the admin token and
// reads and acts only through the admin API, like any other client. Off (404) when the admin API
// is off. Every answer carries a strict Content-Security-Policy: scripts and styles from these
// files only, connections to this origin only, never framed.

#include <string_view>

#include "http/message.hpp"

namespace keel::host::app {

/// True for /admin/ui and everything under /admin/ui/.
[[nodiscard]] inline bool is_console_path(std::string_view path) noexcept {
  return path == "/admin/ui" || path.starts_with("/admin/ui/");
}

/// Answers one console request: the file, 304 when the client's copy is current, a redirect from
/// /admin/ui to /admin/ui/, 404 for a file that does not exist, 405 for a method but GET or HEAD.
/// `enabled`: the admin API is on (a token is configured); otherwise 404 as for the API.
void serve_console(const http::Request& req, http::Response& res, bool enabled);

}  // namespace keel::host::app
