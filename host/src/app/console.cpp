#include "app/console.hpp"

#include "app/console_assets.hpp"

namespace keel::host::app {
namespace {

// Scripts, styles and images from /admin/ui/ only (no inline script or style, no eval), fetches
// to this origin only, no plugins, no framing, forms go nowhere (the sign-in form is handled in
// script). The admin token never leaves the tab: no referrer either.
constexpr std::string_view kPolicy =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

void add_security_fields(http::Response& res) {
  res.headers.emplace_back("Content-Security-Policy", kPolicy);
  res.headers.emplace_back("X-Content-Type-Options", "nosniff");
  res.headers.emplace_back("Referrer-Policy", "no-referrer");
  res.headers.emplace_back("X-Frame-Options", "DENY");
  res.headers.emplace_back("Cross-Origin-Opener-Policy", "same-origin");
  res.headers.emplace_back("Cross-Origin-Resource-Policy", "same-origin");
}

// If-None-Match (RFC 9110 section 13.1.2): "*" or a list holding our tag (weak comparison).
bool client_has(std::string_view if_none_match, std::string_view etag) {
  if (if_none_match == "*") return true;
  while (!if_none_match.empty()) {
    const auto comma = if_none_match.find(',');
    auto tag = if_none_match.substr(0, comma);
    while (!tag.empty() && (tag.front() == ' ' || tag.front() == '\t')) tag.remove_prefix(1);
    while (!tag.empty() && (tag.back() == ' ' || tag.back() == '\t')) tag.remove_suffix(1);
    if (tag.starts_with("W/")) tag.remove_prefix(2);
    if (tag == etag) return true;
    if (comma == std::string_view::npos) break;
    if_none_match.remove_prefix(comma + 1);
  }
  return false;
}

}  // namespace

void serve_console(const http::Request& req, http::Response& res, bool enabled) {
  if (!enabled) {
    res.set_error(404, "not_found", "the console is off with the admin API: set [admin] token (or KEEL_ADMIN_TOKEN)");
    return;
  }
  if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
  if (req.path == "/admin/ui") {
    res.status = 308;
    res.headers.emplace_back("Location", "/admin/ui/");
    return;
  }
  auto name = req.path.substr(std::string_view("/admin/ui/").size());
  if (name.empty()) name = "index.html";
  for (const auto& asset : console_assets()) {
    if (asset.path != name) continue;
    add_security_fields(res);
    // Revalidated on every load (cheap: 304), so a new keel binary's console is used at once.
    res.headers.emplace_back("Cache-Control", "no-cache");
    res.headers.emplace_back("ETag", asset.etag);
    if (client_has(req.header("If-None-Match"), asset.etag)) {
      res.status = 304;
      return;
    }
    res.status = 200;
    res.content_type = asset.content_type;
    res.body.assign(reinterpret_cast<const char*>(asset.bytes.data()), asset.bytes.size());
    return;
  }
  res.set_error(404, "not_found", "the console has no file '" + std::string(name) + "'");
}

}  // namespace keel::host::app
