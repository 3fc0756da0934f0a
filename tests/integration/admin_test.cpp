// The read-only admin endpoints GET /admin/routes, /admin/migrations and /admin/config against the
// real keel binary: the hello example plugin and the migrating fixture (storage, two migrations,
// a config schema with a plain key, a secret-looking key and a schema-declared secret), the
// admin token from the environment, and the bearer-token rules for each endpoint.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <filesystem>
#include <optional>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::fixture;
using keel::test::eventually;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;

namespace {

constexpr const char* kToken = keel::test::kAdminToken;
constexpr const char* kBearer = keel::test::kAdminBearer;
constexpr const char* kEndpoints[] = {"/admin/routes", "/admin/migrations", "/admin/config"};

// hello and migrating; the token comes from the environment (an override the config must show),
// the plugin keys from the file.
keel::test::HostOptions admin_options() {
  auto o = with_plugins({example_plugin("hello"), fixture("migrating")},
                        "[http]\nmax_body_bytes = 4096\n"
                        "[plugin.migrating]\n"
                        "label = \"visible-label\"\n"
                        "db_password = \"hunter2-by-name\"\n"
                        "signing_seed = \"seed-by-schema\"\n");
  o.env = {std::string("KEEL_ADMIN_TOKEN=") + kToken, "KEEL_STORAGE_READERS=7"};
  return o;
}

int status_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->status : 0; }

/// GET `path` with the admin token; the body parsed as JSON (REQUIREs 200 and valid JSON).
Json admin_get(const KeelHost& host, const std::string& path) {
  const auto r = simple_request(host.port(), "GET", path, {}, kBearer);
  REQUIRE(status_of(r) == 200);
  CHECK(r->header("Content-Type").starts_with("application/json"));
  auto body = Json::parse(r->body, nullptr, false);
  INFO(r->body);
  REQUIRE_FALSE(body.is_discarded());
  return body;
}

/// The entry of `routes` with this method and path, or null.
Json find_route(const Json& routes, const std::string& method, const std::string& path) {
  for (const auto& r : routes)
    if (r.value("method", "") == method && r.value("path", "") == path) return r;
  return nullptr;
}

}  // namespace

TEST_CASE("admin: GET /admin/routes lists the built-in endpoints and every plugin route", "[admin][integration]") {
  KeelHost host(admin_options());
  auto routes = admin_get(host, "/admin/routes");
  REQUIRE(routes.is_array());
  INFO(routes.dump(2));

  auto greet = find_route(routes, "GET", "/api/hello/greet/{name}");
  REQUIRE(greet.is_object());
  CHECK(greet["plugin"] == "hello");
  CHECK(greet["builtin"] == false);
  CHECK(greet["summary"] == "JSON greeting for {name}");
  auto echo = find_route(routes, "POST", "/api/hello/echo");
  REQUIRE(echo.is_object());
  CHECK(echo["plugin"] == "hello");
  auto notes = find_route(routes, "POST", "/api/migrating/notes");
  REQUIRE(notes.is_object());
  CHECK(notes["plugin"] == "migrating");
  CHECK(notes["summary"] == "");

  for (const char* path : {"/healthz", "/readyz", "/metrics", "/openapi.json", "/admin/plugins", "/admin/storage",
                           "/admin/routes", "/admin/migrations", "/admin/config", "/admin/events/topics",
                           "/admin/events/subscriptions", "/admin/events/dead-letters"}) {
    INFO(path);
    auto r = find_route(routes, "GET", path);
    REQUIRE(r.is_object());
    CHECK(r["plugin"].is_null());
    CHECK(r["builtin"] == true);
    CHECK_FALSE(r["summary"].get<std::string>().empty());
  }
  CHECK(find_route(routes, "POST", "/admin/events/dead-letters/{kind}/{publisher}/{subscriber}/{seq}/resubmit")
            .is_object());
  CHECK(find_route(routes, "DELETE", "/admin/events/dead-letters/{kind}/{publisher}/{subscriber}/{seq}").is_object());
  for (const char* action : {"disable", "enable", "reload"})
    CHECK(find_route(routes, "POST", std::string("/admin/plugins/{name}/") + action).is_object());

  // Every built-in GET listed is served (the list in admin.cpp follows the dispatcher in app.cpp).
  for (auto& r : routes) {
    if (r["builtin"] != true || r["method"] != "GET") continue;
    const auto path = r["path"].get<std::string>();
    INFO(path);
    const auto served = simple_request(host.port(), "GET", path, {}, kBearer);
    CHECK(status_of(served) != 0);
    CHECK(status_of(served) != 404);
    CHECK(status_of(served) != 405);
  }

  // Exactly the plugin routes the host serves: hello's two and migrating's two.
  std::size_t plugin_routes = 0;
  for (auto& r : routes) plugin_routes += r["builtin"] == false ? 1 : 0;
  CHECK(plugin_routes == 4);
}

TEST_CASE("admin: GET /admin/migrations shows a storage plugin's migrations as applied", "[admin][integration]") {
  KeelHost host(admin_options());
  auto report = admin_get(host, "/admin/migrations");
  INFO(report.dump(2));
  REQUIRE(report.is_object());
  CHECK(report["data_dir"] == host.data_dir().string());
  REQUIRE(report["plugins"].is_array());
  REQUIRE(report["plugins"].size() == 1);  // hello has no storage
  auto& p = report["plugins"][0];
  CHECK(p["name"] == "migrating");
  CHECK(p["state"] == "started");
  CHECK(p["database"] == (host.data_dir() / "migrating.db").string());
  CHECK(p["database_exists"] == true);
  CHECK_FALSE(p.contains("read_error"));
  REQUIRE(p["migrations"].is_array());
  REQUIRE(p["migrations"].size() == 2);
  auto& v1 = p["migrations"][0];
  auto& v2 = p["migrations"][1];
  CHECK(v1["version"] == 1);
  CHECK(v1["description"] == "notes table");
  CHECK(v2["version"] == 2);
  CHECK(v2["description"] == "index on note bodies");
  for (auto& m : p["migrations"]) {
    CHECK(m["state"] == "applied");
    CHECK(m["applied_at"].is_string());
    CHECK(m["checksum"].get<std::string>().size() == 64);
  }
  CHECK(report["summary"]["plugins_with_storage"] == 1);
  CHECK(report["summary"]["applied"] == 2);
  CHECK(report["summary"]["pending"] == 0);
  CHECK(report["summary"]["changed"] == 0);
  CHECK(report["summary"]["unknown"] == 0);
  CHECK(report["summary"]["unreadable"] == 0);
  CHECK(report["ok"] == true);

  // The report's own read-only connection runs beside the host's writer: writes keep
  // succeeding while reports are taken, and every report stays complete.
  std::atomic<int> written{0}, refused{0};
  std::thread writer([&] {
    for (int i = 0; i < 40; ++i) {
      const auto r = simple_request(host.port(), "POST", "/api/migrating/notes", "note " + std::to_string(i));
      if (status_of(r) == 201) ++written;
      else ++refused;
    }
  });
  int reports_ok = 0;
  for (int i = 0; i < 20; ++i) {
    const auto r = simple_request(host.port(), "GET", "/admin/migrations", {}, kBearer);
    const auto j = Json::parse(r ? r->body : std::string{}, nullptr, false);
    reports_ok += status_of(r) == 200 && j.is_object() && j.value("ok", false) ? 1 : 0;
  }
  writer.join();
  CHECK(reports_ok == 20);
  CHECK(written == 40);
  CHECK(refused == 0);
  const auto count = simple_request(host.port(), "GET", "/api/migrating/notes/count");
  CHECK(status_of(count) == 200);
  if (count) CHECK(count->body == "40");
}

TEST_CASE("admin: GET /admin/config shows the effective configuration with secrets redacted",
          "[admin][integration]") {
  KeelHost host(admin_options());
  const auto r = simple_request(host.port(), "GET", "/admin/config", {}, kBearer);
  REQUIRE(status_of(r) == 200);
  // No secret value appears anywhere in the answer.
  CHECK(r->body.find(kToken) == std::string::npos);
  CHECK(r->body.find("hunter2-by-name") == std::string::npos);
  CHECK(r->body.find("seed-by-schema") == std::string::npos);

  auto config = admin_get(host, "/admin/config");
  INFO(config.dump(2));
  for (const char* section : {"server", "http", "log", "admin", "plugins", "cors", "storage", "events", "plugin"}) {
    INFO(section);
    CHECK(config[section].is_object());
  }
  CHECK(config["source"] == host.config_file().string());
  CHECK(config["server"]["listen"] == "127.0.0.1:0");                  // keel serve --listen
  CHECK(config["server"]["data_dir"] == host.data_dir().string());     // environment
  CHECK(config["plugins"]["directory"] == host.plugin_dir().string());  // environment
  CHECK(config["http"]["max_body_bytes"] == 4096);                     // file
  CHECK(config["http"]["request_timeout_ms"] == 30000);                // default
  CHECK(config["storage"]["readers"] == 7);                            // environment
  CHECK(config["storage"]["synchronous"] == "normal");
  CHECK(config["log"]["format"] == "text");
  CHECK(config["cors"]["allowed_origins"] == Json::array());
  CHECK(config["events"]["retry_base_ms"] == 100);
  CHECK(config["admin"]["token"] == "<redacted>");

  auto& migrating = config["plugin"]["migrating"];
  REQUIRE(migrating.is_object());
  CHECK(migrating["enabled"] == true);
  CHECK(migrating["mount"].is_null());
  CHECK(migrating["request_timeout_ms"].is_null());
  CHECK(migrating["label"] == "visible-label");
  CHECK(migrating["db_password"] == "<redacted>");   // the name looks secret
  CHECK(migrating["signing_seed"] == "<redacted>");  // the manifest says "secret": true
}

TEST_CASE("admin: the routes, migrations and config endpoints need the bearer token", "[admin][integration]") {
  {
    // Twelve wrong tokens from one address: more than the default limit of failed attempts
    // (admin_security_test.cpp tests that limit), so it is raised here.
    auto o = admin_options();
    o.env.push_back("KEEL_ADMIN_MAX_FAILED_ATTEMPTS=100");
    KeelHost host(o);
    for (const char* path : kEndpoints) {
      INFO(path);
      const auto none = simple_request(host.port(), "GET", path);
      CHECK(status_of(none) == 401);
      if (none) CHECK(none->header("WWW-Authenticate") == "Bearer realm=\"keel-admin\"");
      CHECK(status_of(simple_request(host.port(), "GET", path, {}, "Authorization: Bearer wrong\r\n")) == 401);
      CHECK(status_of(simple_request(host.port(), "GET", path, {},
                                     std::string("Authorization: Bearer ") + kToken + "x\r\n")) == 401);
      CHECK(status_of(simple_request(host.port(), "GET", path, {}, "Authorization: Basic YWRtaW4=\r\n")) == 401);
      // A 401 carries no data.
      if (none) CHECK(none->body.find("migrating") == std::string::npos);
      CHECK(status_of(simple_request(host.port(), "GET", path, {}, kBearer)) == 200);
      const auto post = simple_request(host.port(), "POST", path, {}, kBearer);
      CHECK(status_of(post) == 405);
      if (post) CHECK(post->header("Allow") == "GET, HEAD");
    }
  }
  {
    // Without a token the admin API is off.
    KeelHost host(with_plugins({example_plugin("hello")}));
    for (const char* path : kEndpoints) {
      INFO(path);
      CHECK(status_of(simple_request(host.port(), "GET", path)) == 404);
      CHECK(status_of(simple_request(host.port(), "GET", path, {}, kBearer)) == 404);
    }
  }
}

namespace {

/// POST /admin/plugins/<name>/<action> with the token; returns status and parsed body.
std::pair<int, Json> plugin_action(const KeelHost& host, const std::string& name, const std::string& action) {
  const auto r = simple_request(host.port(), "POST", "/admin/plugins/" + name + "/" + action, {}, kBearer);
  if (!r) return {0, nullptr};
  return {r->status, Json::parse(r->body, nullptr, false)};
}

std::string state_of(const KeelHost& host, const std::string& name) {
  for (const auto& p : admin_get(host, "/admin/plugins"))
    if (p.value("name", "") == name) return p.value("state", "");
  return "";
}

}  // namespace

TEST_CASE("admin: a plugin is disabled and enabled at run time, dependencies respected", "[admin][integration]") {
  auto o = with_plugins({example_plugin("hello"), example_plugin("relay")});
  o.env = {std::string("KEEL_ADMIN_TOKEN=") + kToken};
  KeelHost host(o);
  CHECK(status_of(simple_request(host.port(), "GET", "/api/hello/greet/ada")) == 200);

  // relay depends on hello: hello cannot go first.
  auto [refused, why] = plugin_action(host, "hello", "disable");
  CHECK(refused == 409);
  CHECK(why["error"]["message"].get<std::string>().find("relay") != std::string::npos);
  CHECK(state_of(host, "hello") == "started");

  auto [off, off_body] = plugin_action(host, "relay", "disable");
  CHECK(off == 200);
  CHECK(off_body["state"] == "disabled");
  CHECK(status_of(simple_request(host.port(), "GET", "/api/relay/greet/ada")) == 404);
  CHECK(plugin_action(host, "hello", "disable").first == 200);
  CHECK(status_of(simple_request(host.port(), "GET", "/api/hello/greet/ada")) == 404);
  // The listing says why; a plugin disabled by an operator does not make the host unready.
  for (const auto& p : admin_get(host, "/admin/plugins"))
    if (p["name"] == "hello") CHECK(p["reason"] == "disabled through the admin API");
  CHECK(status_of(simple_request(host.port(), "GET", "/readyz")) == 200);
  CHECK(admin_get(host, "/openapi.json")["paths"].size() == 0);

  // relay needs hello back first.
  auto [early, early_body] = plugin_action(host, "relay", "enable");
  CHECK(early == 409);
  CHECK(early_body["error"]["message"].get<std::string>().find("enable it first") != std::string::npos);
  CHECK(plugin_action(host, "hello", "enable").first == 200);
  CHECK(plugin_action(host, "relay", "enable").first == 200);
  CHECK(state_of(host, "relay") == "started");
  const auto relayed = simple_request(host.port(), "GET", "/api/relay/greet/ada");
  REQUIRE(status_of(relayed) == 200);
  CHECK(relayed->body.find("Hello, ada!") != std::string::npos);
  CHECK(plugin_action(host, "hello", "enable").first == 200);  // already started: nothing to do

  // Errors: unknown plugin, wrong method, no token.
  CHECK(plugin_action(host, "nope", "disable").first == 404);
  const auto get = simple_request(host.port(), "GET", "/admin/plugins/hello/disable", {}, kBearer);
  CHECK(status_of(get) == 405);
  if (get) CHECK(get->header("Allow") == "POST");
  CHECK(status_of(simple_request(host.port(), "POST", "/admin/plugins/hello/disable")) == 401);
  CHECK(state_of(host, "hello") == "started");
  CHECK(host.stop() == 0);
}

TEST_CASE("admin: durable events wait while their subscriber is disabled", "[admin][integration]") {
  auto o = with_plugins({fixture("events_pub"), fixture("events_sub")});
  o.env = {std::string("KEEL_ADMIN_TOKEN=") + kToken};
  KeelHost host(o);
  auto count = [&] {
    const auto r = simple_request(host.port(), "GET", "/api/events_sub/count?topic=demo.durable");
    return r && r->status == 200 ? std::stoi(r->body) : -1;
  };
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/events_pub/durable/5", "a")) == 200);
  REQUIRE(eventually([&] { return count() == 5; }));

  REQUIRE(plugin_action(host, "events_sub", "disable").first == 200);
  REQUIRE(status_of(simple_request(host.port(), "POST", "/api/events_pub/durable/7", "b")) == 200);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK(admin_get(host, "/admin/events/dead-letters").empty());  // waiting, not failing

  REQUIRE(plugin_action(host, "events_sub", "enable").first == 200);
  CHECK(eventually([&] { return count() == 12; }));
  const auto dup = simple_request(host.port(), "GET", "/api/events_sub/duplicates");
  REQUIRE(status_of(dup) == 200);
  CHECK(dup->body.starts_with("received_duplicates=0 "));
  CHECK(host.stop() == 0);
}
