// AdminGuard and FailedAttempts: the limit on failed bearer tokens per client address (a
// brute-force run is cut off, without the token being compared, and only for its own address),
// bounded memory under many addresses, and tokens replaced whole (rotation, SIGHUP).
#include "app/admin_guard.hpp"

#include <string>
#include <vector>

#include <catch2/catch.hpp>

namespace app = keel::host::app;
namespace http = keel::host::http;
using namespace std::chrono_literals;

namespace {

const std::string kToken = "0123456789abcdef0123456789abcdef-current";
const std::string kNext = "0123456789abcdef0123456789abcdef-next";

keel::host::config::AdminConfig admin_config(std::string token, std::string next = {}) {
  keel::host::config::AdminConfig c;
  c.token = std::move(token);
  c.token_next = std::move(next);
  return c;
}

// One request to /admin/plugins from `remote` presenting `token` (no header when empty).
app::AdminGuard::Result attempt(app::AdminGuard& guard, const std::string& remote, const std::string& token) {
  const std::string auth = "Bearer " + token;
  std::vector<http::Header> headers;
  if (!token.empty()) headers.push_back({"Authorization", auth});
  http::Request req;
  req.method = "GET";
  req.path = "/admin/plugins";
  req.remote_address = remote;
  req.headers = headers;
  return guard.check(req);
}

}  // namespace

TEST_CASE("admin guard: a client address is blocked after 10 failures, with the token not even compared",
          "[admin]") {
  app::AdminGuard guard(admin_config(kToken));
  for (int i = 0; i < 10; ++i) {
    INFO(i);
    CHECK(attempt(guard, "203.0.113.9:" + std::to_string(40000 + i), "guess-" + std::to_string(i)).verdict ==
          app::AdminGuard::Verdict::kRefused);
  }
  // The 11th attempt from that address is refused whatever it presents, even the right token,
  // with the seconds to wait; the port does not make another client.
  const auto blocked = attempt(guard, "203.0.113.9:50000", kToken);
  CHECK(blocked.verdict == app::AdminGuard::Verdict::kThrottled);
  CHECK(blocked.retry_after_s >= 1);
  CHECK(blocked.retry_after_s <= 60);
  CHECK(attempt(guard, "203.0.113.9:50001", "another-guess").verdict == app::AdminGuard::Verdict::kThrottled);
  // Other addresses are not affected, and their success resets nobody's count.
  CHECK(attempt(guard, "198.51.100.7:1234", kToken).verdict == app::AdminGuard::Verdict::kAllowed);
  CHECK(attempt(guard, "[2001:db8::1]:443", kToken).verdict == app::AdminGuard::Verdict::kAllowed);
  CHECK(attempt(guard, "203.0.113.9:50002", kToken).verdict == app::AdminGuard::Verdict::kThrottled);
  CHECK(app::admin_auth_stats().throttled >= 3);
}

TEST_CASE("admin guard: a failure window ends, and a success never clears failures", "[admin]") {
  app::FailedAttempts table;
  const app::FailedAttempts::Limits limits{3, 60s};
  const auto t0 = app::FailedAttempts::Clock::now();
  for (int i = 0; i < 3; ++i) table.record_failure("a", limits, t0 + std::chrono::seconds(i));
  CHECK(table.blocked_for("a", limits, t0 + 3s) == 57);
  CHECK(table.blocked_for("a", limits, t0 + 59500ms) == 1);
  CHECK(table.blocked_for("b", limits, t0 + 3s) == 0);
  CHECK(table.blocked_for("a", limits, t0 + 60s) == 0);  // the window is over: a fresh start
  table.record_failure("a", limits, t0 + 61s);
  CHECK(table.blocked_for("a", limits, t0 + 62s) == 0);
}

TEST_CASE("admin guard: the table of client addresses stays bounded", "[admin]") {
  app::FailedAttempts table(100);
  const app::FailedAttempts::Limits limits{2, 60s};
  const auto t0 = app::FailedAttempts::Clock::now();
  for (int i = 0; i < 5000; ++i) table.record_failure("10.0." + std::to_string(i), limits, t0 + std::chrono::milliseconds(i));
  CHECK(table.size() <= 100);
  // The newest addresses are the ones kept.
  table.record_failure("10.0.4999", limits, t0 + 5s);
  CHECK(table.blocked_for("10.0.4999", limits, t0 + 5s) > 0);
}

TEST_CASE("admin guard: client addresses drop the port, a unix socket is one client", "[admin]") {
  CHECK(app::client_of("127.0.0.1:53412") == "127.0.0.1");
  CHECK(app::client_of("[::1]:8080") == "[::1]");
  CHECK(app::client_of("unix") == "unix");
  CHECK(app::client_of("") == "unix");
}

TEST_CASE("admin guard: token_next is accepted next to the token, update() replaces both", "[admin]") {
  app::AdminGuard guard(admin_config(kToken, kNext));
  CHECK(attempt(guard, "192.0.2.1:1", kToken).verdict == app::AdminGuard::Verdict::kAllowed);
  CHECK(attempt(guard, "192.0.2.1:1", kNext).verdict == app::AdminGuard::Verdict::kAllowed);
  CHECK(attempt(guard, "192.0.2.1:1", "").verdict == app::AdminGuard::Verdict::kRefused);
  CHECK(attempt(guard, "192.0.2.1:1", kToken + kNext).verdict == app::AdminGuard::Verdict::kRefused);
  // Rotation done: only the new token.
  CHECK(guard.update(admin_config(kNext)));
  CHECK_FALSE(guard.update(admin_config(kNext)));
  CHECK(attempt(guard, "192.0.2.1:1", kToken).verdict == app::AdminGuard::Verdict::kRefused);
  CHECK(attempt(guard, "192.0.2.1:1", kNext).verdict == app::AdminGuard::Verdict::kAllowed);
  // No token: the API is off.
  guard.update(admin_config(""));
  CHECK(attempt(guard, "192.0.2.1:1", kNext).verdict == app::AdminGuard::Verdict::kOff);
}
