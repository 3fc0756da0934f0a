// Deploying a plugin over the admin API (POST /admin/plugins, the console's "Deploy") against the
// real keel binary: a dry run shows the pre-flight and installs nothing, a broken file is refused
// with its reason, a new plugin is installed under its manifest name and started, a new build
// replaces a running one (generation + 1), a reload the host refuses puts the previous file back,
// and a file over [http] max_body_bytes is taken only with the admin token, checked before any of
// its body is read.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::RawClient;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kBearer = keel::test::kAdminBearer;

keel::test::HostOptions deploy_options(std::string config = {}) {
  auto o = with_plugins({fixture("reload_v1"), example_plugin("hello")}, std::move(config));
  o.env = {keel::test::kAdminTokenEnv};
  return o;
}

std::string bytes_of(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::pair<int, Json> upload(const KeelHost& host, const std::string& bytes, const std::string& query = {}) {
  const auto r = simple_request(host.port(), "POST", "/admin/plugins" + query, bytes,
                                std::string(kBearer) + "Content-Type: application/octet-stream\r\n");
  if (!r) return {0, nullptr};
  return {r->status, Json::parse(r->body, nullptr, false)};
}

std::set<std::string> files_in(const fs::path& dir) {
  std::set<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) out.insert(e.path().filename().string());
  return out;
}

std::string body_of(const KeelHost& host, const std::string& path) {
  const auto r = simple_request(host.port(), "GET", path);
  return r ? r->body : "";
}

}  // namespace

TEST_CASE("deploy: a dry run shows the pre-flight and installs nothing", "[admin][deploy][integration]") {
  KeelHost host(deploy_options());
  const auto before = files_in(host.plugin_dir());
  auto [status, body] = upload(host, bytes_of(fixture("reload_v2")), "?dry_run=true");
  INFO(body.dump());
  CHECK(status == 200);
  CHECK(body["dry_run"] == true);
  const auto& pre = body["preflight"];
  CHECK(pre["ok"] == true);
  CHECK(pre["manifest"]["name"] == "reloadable");
  CHECK(pre["sha256"].get<std::string>().size() == 64);
  CHECK(pre["install"]["file"] == (host.plugin_dir() / "reload_v1.so").string());  // the running plugin's file
  CHECK(pre["install"]["replaces"]["generation"] == 1);
  CHECK(files_in(host.plugin_dir()) == before);
  CHECK(body_of(host, "/api/reloadable/version") == "v1");
  // Parameters other than dry_run are refused.
  CHECK(upload(host, bytes_of(fixture("reload_v2")), "?dryrun=1").first == 400);
  CHECK(host.stop() == 0);
}

TEST_CASE("deploy: a file that fails pre-flight is refused with the reason and nothing changes", "[admin][deploy][integration]") {
  KeelHost host(deploy_options());
  const auto before = files_in(host.plugin_dir());
  auto [status, body] = upload(host, "not a plugin at all");
  CHECK(status == 422);
  CHECK(body["error"]["code"] == "preflight_failed");
  CHECK(body["error"]["message"] == "not a plugin: neither an ELF shared object (.so) nor a PE32+ DLL (.dll)");
  CHECK(body["preflight"]["ok"] == false);
  // A valid file that cannot join the running set (a dependency that is not there): refused by
  // the set's checks, as `keel plugin inspect` would.
  auto [dep_status, dep] = upload(host, bytes_of(fixture("dep_missing")));
  INFO(dep.dump());
  CHECK(dep_status == 409);
  CHECK(dep["error"]["code"] == "preflight_failed");
  CHECK(dep["preflight"]["ok"] == false);
  CHECK(dep["preflight"]["manifest"].is_object());
  CHECK(dep["error"]["message"].get<std::string>().find("missing dependency") != std::string::npos);
  CHECK(upload(host, "").first == 400);
  CHECK(files_in(host.plugin_dir()) == before);
  CHECK(body_of(host, "/api/reloadable/version") == "v1");
  CHECK(host.stop() == 0);
}

TEST_CASE("deploy: a new plugin is installed under its manifest name and started", "[admin][deploy][integration]") {
  KeelHost host(deploy_options());
  auto [status, body] = upload(host, bytes_of(fixture("no_op")));
  INFO(body.dump());
  CHECK(status == 201);
  CHECK(body["plugin"]["name"] == "no_op");
  CHECK(body["plugin"]["state"] == "started");
  CHECK(body["plugin"]["generation"] == 1);
  CHECK(fs::exists(host.plugin_dir() / "no_op.so"));
  CHECK((fs::status(host.plugin_dir() / "no_op.so").permissions() & (fs::perms::group_write | fs::perms::others_write)) ==
        fs::perms::none);
  CHECK(host.stop() == 0);
}

TEST_CASE("deploy: a new build replaces the running plugin with the next generation", "[admin][deploy][integration]") {
  KeelHost host(deploy_options());
  auto [status, body] = upload(host, bytes_of(fixture("reload_v2")));
  INFO(body.dump());
  CHECK(status == 200);
  CHECK(body["plugin"]["generation"] == 2);
  CHECK(body_of(host, "/api/reloadable/version") == "v2");
  CHECK(bytes_of(host.plugin_dir() / "reload_v1.so") == bytes_of(fixture("reload_v2")));
  for (const auto& f : files_in(host.plugin_dir())) CHECK(f.find(".previous") == std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("deploy: a reload the host refuses keeps the old generation and puts its file back", "[admin][deploy][integration]") {
  KeelHost host(deploy_options());
  const auto original = bytes_of(host.plugin_dir() / "reload_v1.so");
  auto [status, body] = upload(host, bytes_of(fixture("reload_broken")));
  INFO(body.dump());
  CHECK(status == 422);
  CHECK(body["error"]["message"].get<std::string>().find("start() failed") != std::string::npos);
  CHECK(body["preflight"]["ok"] == true);
  CHECK(body_of(host, "/api/reloadable/version") == "v1");
  CHECK(bytes_of(host.plugin_dir() / "reload_v1.so") == original);
  for (const auto& f : files_in(host.plugin_dir())) CHECK(f.find(".previous") == std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("deploy: a file over max_body_bytes needs the token before its body is read and max_upload_bytes bounds it",
          "[admin][deploy][integration]") {
  // Limits from the fixture's size, which differs between builds (a sanitizer build's is larger).
  const auto v2 = bytes_of(fixture("reload_v2"));
  REQUIRE(v2.size() > 4096);
  const auto max_upload = v2.size() + 1000;
  KeelHost host(deploy_options("[http]\nmax_body_bytes = 4096\n[admin]\nmax_upload_bytes = " + std::to_string(max_upload) + "\n"));
  // No token: 401 at once, though the 10 MB body never comes.
  {
    RawClient c(host.port(), std::chrono::seconds(5));
    REQUIRE(c.send("POST /admin/plugins HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 401);
    CHECK(c.wait_closed());
  }
  // With the token but over max_upload_bytes: 413 at once.
  {
    RawClient c(host.port(), std::chrono::seconds(5));
    REQUIRE(c.send("POST /admin/plugins HTTP/1.1\r\nHost: x\r\n" + std::string(kBearer) +
                   "Content-Length: " + std::to_string(max_upload + 1) + "\r\n\r\n"));
    const auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 413);
  }
  // Another path over max_body_bytes: 413 as before, with or without the token.
  CHECK(simple_request(host.port(), "POST", "/api/hello/echo", v2, kBearer)->status == 413);
  // The upload itself.
  auto [status, body] = upload(host, v2);
  INFO(body.dump());
  CHECK(status == 200);
  CHECK(body["plugin"]["generation"] == 2);
  CHECK(body_of(host, "/api/reloadable/version") == "v2");
  CHECK(host.stop() == 0);
}
