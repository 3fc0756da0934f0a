// Attacks on the admin API against the real keel binary, each refused: reaching /admin/ on the
// public listener when [admin] listen moves it elsewhere (TCP and a unix socket, the latter
// spoken with curl --unix-socket), guessing the token (cut off with 429 after 10 failures),
// starting with a weak token, and a weak token slipped in on SIGHUP (refused; the rotation
// through token_file works without a restart).
#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "process.hpp"
#include "raw_client.hpp"
#include "temp_dir.hpp"

using keel::test::eventually;
using keel::test::example_plugin;
using keel::test::KeelHost;
using keel::test::kAdminBearer;
using keel::test::kAdminToken;
using keel::test::kAdminTokenEnv;
using keel::test::Process;
using keel::test::simple_request;
using keel::test::TempDir;
using keel::test::with_plugins;
using namespace std::chrono_literals;

namespace {

int status_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->status : 0; }

std::string bearer(const std::string& token) { return "Authorization: Bearer " + token + "\r\n"; }

struct CurlResult {
  int status = 0;
  std::string output;  ///< status line, header fields and body
};

// One request over a unix socket with the real curl.
CurlResult curl_unix(const TempDir& dir, const std::string& socket, const std::string& path, const std::string& token) {
  static int n = 0;
  std::vector<std::string> args{"-s", "-i", "--max-time", "10", "--unix-socket", socket};
  if (!token.empty()) {
    args.push_back("-H");
    args.push_back("Authorization: Bearer " + token);
  }
  args.push_back("http://localhost" + path);
  Process p("/usr/bin/curl", args, dir.path() / ("curl-" + std::to_string(++n) + ".txt"));
  REQUIRE(p.wait(20s));
  CurlResult r;
  r.output = p.output();
  if (r.output.starts_with("HTTP/1.1 ")) r.status = std::stoi(r.output.substr(9, 3));
  return r;
}

// A socket file nobody listens on, as a host killed with SIGKILL leaves it.
void make_stale_socket(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  REQUIRE(path.size() < sizeof addr.sun_path);
  path.copy(addr.sun_path, path.size());
  REQUIRE(::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  ::close(fd);
}

void write_private(const std::filesystem::path& file, const std::string& text) {
  std::ofstream(file, std::ios::trunc) << text;
  std::filesystem::permissions(file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
}

}  // namespace

TEST_CASE("admin security: with [admin] listen on TCP, the public listener has no /admin/ at all",
          "[admin][integration]") {
  auto o = with_plugins({example_plugin("hello")}, "[admin]\nlisten = \"127.0.0.1:0\"\n");
  o.env = {kAdminTokenEnv};
  KeelHost host(o);
  REQUIRE(host.admin_port() != 0);
  REQUIRE(host.admin_port() != host.port());
  // The log is asynchronous: the line may land a moment after the port file.
  CHECK(host.process().wait_for_output("admin_address=127.0.0.1:" + std::to_string(host.admin_port()), 5s));
  // The attack: the right token on the public listener. It answers exactly as for a path that
  // does not exist, and never asks for a token.
  const auto unknown = simple_request(host.port(), "GET", "/no/such/path");
  REQUIRE(unknown);
  for (const char* path : {"/admin/plugins", "/admin/config", "/admin"}) {
    INFO(path);
    const auto r = simple_request(host.port(), "GET", path, {}, kAdminBearer);
    REQUIRE(r);
    CHECK(r->status == 404);
    CHECK(r->body == unknown->body);
    CHECK_FALSE(r->has_header("WWW-Authenticate"));
    CHECK(status_of(simple_request(host.port(), "POST", "/admin/plugins/hello/disable", {}, kAdminBearer)) == 404);
  }
  // The admin listener serves /admin/ (with the token) and nothing else.
  CHECK(status_of(simple_request(host.admin_port(), "GET", "/admin/plugins", {}, kAdminBearer)) == 200);
  CHECK(status_of(simple_request(host.admin_port(), "GET", "/admin/plugins")) == 401);
  CHECK(status_of(simple_request(host.admin_port(), "GET", "/api/hello/greet/ada")) == 404);
  CHECK(status_of(simple_request(host.admin_port(), "GET", "/healthz")) == 404);
  // The public listener still serves everything else.
  CHECK(status_of(simple_request(host.port(), "GET", "/api/hello/greet/ada")) == 200);
  CHECK(status_of(simple_request(host.port(), "GET", "/metrics")) == 200);
  CHECK(host.stop() == 0);
}

TEST_CASE("admin security: an admin unix socket is 0600, replaces a stale one and is gone after shutdown",
          "[admin][integration]") {
  const TempDir sockets;
  const auto socket = (sockets.path() / "admin.sock").string();
  make_stale_socket(socket);
  auto o = with_plugins({example_plugin("hello")}, "[admin]\nlisten = \"unix:" + socket + "\"\n");
  o.env = {kAdminTokenEnv};
  KeelHost host(o);
  CHECK(host.admin_address() == "unix:" + socket);
  struct stat st {};
  REQUIRE(::lstat(socket.c_str(), &st) == 0);
  CHECK(S_ISSOCK(st.st_mode));
  CHECK((st.st_mode & 0777) == 0600);

  const auto ok = curl_unix(sockets, socket, "/admin/plugins", kAdminToken);
  CHECK(ok.status == 200);
  CHECK(ok.output.find("\"name\":\"hello\"") != std::string::npos);
  CHECK(curl_unix(sockets, socket, "/admin/plugins", "").status == 401);
  CHECK(curl_unix(sockets, socket, "/api/hello/greet/ada", kAdminToken).status == 404);
  CHECK(status_of(simple_request(host.port(), "GET", "/admin/plugins", {}, kAdminBearer)) == 404);

  CHECK(host.stop() == 0);
  CHECK_FALSE(std::filesystem::exists(std::filesystem::symlink_status(socket)));
}

TEST_CASE("admin security: guessing the token is cut off with 429 after 10 failures from one address",
          "[admin][integration]") {
  auto o = with_plugins({example_plugin("hello")});
  o.env = {kAdminTokenEnv};
  KeelHost host(o);
  for (int i = 0; i < 10; ++i) {
    INFO(i);
    CHECK(status_of(simple_request(host.port(), "GET", "/admin/config", {}, bearer("guess-" + std::to_string(i)))) ==
          401);
  }
  // Now even the right token is not looked at.
  const auto blocked = simple_request(host.port(), "GET", "/admin/config", {}, kAdminBearer);
  REQUIRE(blocked);
  CHECK(blocked->status == 429);
  const auto retry = std::stoi(blocked->header("Retry-After"));
  CHECK(retry >= 1);
  CHECK(retry <= 60);
  CHECK(blocked->body.find("too many failed admin attempts") != std::string::npos);
  CHECK(status_of(simple_request(host.port(), "GET", "/admin/config", {}, bearer("guess-10"))) == 429);
  // Counted and logged, never with a token.
  const auto metrics = simple_request(host.port(), "GET", "/metrics");
  REQUIRE(metrics);
  CHECK(metrics->body.find("keel_admin_auth_failures_total{result=\"refused\"} 10") != std::string::npos);
  CHECK(metrics->body.find("keel_admin_auth_failures_total{result=\"throttled\"} 2") != std::string::npos);
  CHECK(host.process().wait_for_output("too many failed attempts from this address", 5s));
  const auto log = host.process().output();
  CHECK(log.find("guess-") == std::string::npos);
  CHECK(log.find(kAdminToken) == std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("admin security: a token shorter than 32 characters stops start-up and keel config check",
          "[admin][integration][cli]") {
  const TempDir dir;
  const auto file = dir.write("keel.toml", "[admin]\ntoken = \"iso-token\"\n");
  Process check(KEEL_BINARY, {"config", "check", file.string()}, dir.path() / "check.txt");
  CHECK(check.wait(30s) == 1);
  CHECK(check.output().find("[admin] token: too short (9 characters); use at least 32 characters, e.g. the output "
                            "of `openssl rand -hex 32`") != std::string::npos);
  const auto empty = dir.write("empty.toml", "");
  Process serve(KEEL_BINARY, {"serve", "--config", empty.string(), "--listen", "127.0.0.1:0"},
                dir.path() / "serve.txt", {"KEEL_ADMIN_TOKEN=reload-token"});
  const auto code = serve.wait(30s);
  REQUIRE(code);
  CHECK(*code != 0);
  CHECK(serve.output().find("env KEEL_ADMIN_TOKEN: [admin] token: too short (12 characters)") != std::string::npos);
  CHECK(serve.output().find("reload-token") == std::string::npos);
}

TEST_CASE("admin security: SIGHUP re-reads token_file: a rotation without restart, a weak token refused",
          "[admin][integration][reload]") {
  const TempDir secrets;
  const auto token_file = secrets.path() / "admin.token";
  const std::string old_token = "old-0123456789abcdef0123456789abcdef";
  const std::string new_token = "new-0123456789abcdef0123456789abcdef";
  write_private(token_file, old_token + "\n");
  auto o = with_plugins({example_plugin("hello")}, "[admin]\ntoken_file = \"" + token_file.string() + "\"\n");
  KeelHost host(o);
  auto status = [&](const std::string& token) {
    return status_of(simple_request(host.port(), "GET", "/admin/plugins", {}, bearer(token)));
  };
  auto hup = [&] { REQUIRE(::kill(host.process().pid(), SIGHUP) == 0); };
  CHECK(status(old_token) == 200);
  CHECK(status(new_token) == 401);

  // Rotation, step 1: both tokens are accepted while clients move over.
  write_private(token_file, old_token + "\n" + new_token + "\n");
  hup();
  CHECK(eventually([&] { return status(new_token) == 200; }));
  CHECK(status(old_token) == 200);
  // Step 2: only the new one.
  write_private(token_file, new_token + "\n");
  hup();
  CHECK(eventually([&] { return status(old_token) == 401; }));
  CHECK(status(new_token) == 200);

  // The attack: a weak token written into the file. Refused; the running tokens stay.
  write_private(token_file, "weak-token\n");
  hup();
  CHECK(host.process().wait_for_output("has errors; the running configuration stays", 10s));
  CHECK(host.process().output().find("is too short (10 characters)") != std::string::npos);
  CHECK(status(new_token) == 200);
  CHECK(status("weak-token") == 401);
  const auto log = host.process().output();
  for (const auto& t : {old_token, new_token, std::string("weak-token")}) CHECK(log.find(t) == std::string::npos);
  CHECK(host.stop() == 0);
}
