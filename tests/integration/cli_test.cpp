// The keel command line: --version, config check, plugin inspect, new plugin, start-up failures with clear
// messages; and keel-manifest, the build-time manifest check.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include <nlohmann/json.hpp>

#include "keel_host.hpp"
#include "process.hpp"
#include "raw_client.hpp"
#include "temp_dir.hpp"

using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::Process;
using keel::test::simple_request;
using keel::test::TempDir;
using keel::test::with_plugins;
using namespace std::chrono_literals;

namespace {

struct Run {
  int code;
  std::string output;
};

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

Run run_keel(const TempDir& dir, const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
  Process p(KEEL_BINARY, args, dir.path() / "out.txt", env);
  const auto code = p.wait(30s);
  REQUIRE(code);
  return {*code, p.output()};
}

}  // namespace

TEST_CASE("keel --version prints the version", "[cli]") {
  TempDir dir;
  const auto r = run_keel(dir, {"--version"});
  CHECK(r.code == 0);
  CHECK(r.output.rfind("keel ", 0) == 0);
}

TEST_CASE("keel config check reports every error with file:line:col and exits 1", "[cli][config]") {
  TempDir dir;
  const auto file = dir.write("bad.toml", "[http]\nmax_body_bytes = \"big\"\nmax_body_byte = 3\n[sever]\n");
  const auto r = run_keel(dir, {"config", "check", file.string()});
  CHECK(r.code == 1);
  CHECK(r.output.find(file.string() + ":2:18:") != std::string::npos);
  CHECK(r.output.find(file.string() + ":3:1:") != std::string::npos);
  CHECK(r.output.find("did you mean 'max_body_bytes'") != std::string::npos);
  CHECK(r.output.find(file.string() + ":4:") != std::string::npos);
  CHECK(r.output.find("did you mean [server]") != std::string::npos);
}

TEST_CASE("keel config check accepts a valid file", "[cli][config]") {
  TempDir dir;
  const auto file = dir.write("ok.toml", "[server]\nio_threads = 2\n");
  const auto r = run_keel(dir, {"config", "check", file.string()});
  CHECK(r.code == 0);
  CHECK(r.output.find("ok") != std::string::npos);
}

TEST_CASE("keel config check pre-flights the plugin directory and each [plugin.x] table", "[cli][config][plugins]") {
  TempDir dir;
  const auto plugins = dir.path() / "plugins";
  std::filesystem::create_directories(plugins);
  for (const char* name : {"hello", "catalog", "orders"})
    std::filesystem::copy_file(keel::test::example_plugin(name), plugins / (std::string(name) + ".so"));
  const std::string head = "[plugins]\ndirectory = \"" + plugins.string() + "\"\n";

  SECTION("every plugin would start: ok, one line each") {
    const auto file = dir.write("ok.toml", head + "[plugin.orders]\ncatalog_timeout_ms = 500\n");
    const auto r = run_keel(dir, {"config", "check", file.string()});
    CHECK(r.code == 0);
    CHECK(r.output.find("plugin hello 0.1.0 (" + (plugins / "hello.so").string() + "): ok\n") != std::string::npos);
    CHECK(r.output.find("plugin orders ") != std::string::npos);
    CHECK(r.output.find(file.string() + ": ok\n") != std::string::npos);
  }
  SECTION("a [plugin.x] table the plugin's schema refuses: exit 1, the key and its line") {
    const auto file = dir.write("bad.toml", head + "[plugin.orders]\ncatalog_timout_ms = 500\n");
    const auto r = run_keel(dir, {"config", "check", file.string()});
    CHECK(r.code == 1);
    CHECK(r.output.find(file.string() + ": error: plugin orders (") != std::string::npos);
    CHECK(r.output.find(file.string() + ":4:") != std::string::npos);
    CHECK(r.output.find("unknown key 'catalog_timout_ms' (did you mean 'catalog_timeout_ms'?)") != std::string::npos);
    CHECK(r.output.find("1 plugin(s) would not start") != std::string::npos);
    CHECK(r.output.find(file.string() + ": ok\n") == std::string::npos);
  }
  SECTION("a table for a plugin that is not there: a warning") {
    const auto file = dir.write("extra.toml", head + "[plugin.billing]\nlog_level = \"debug\"\n");
    const auto r = run_keel(dir, {"config", "check", file.string()});
    CHECK(r.code == 0);
    CHECK(r.output.find("warning: [plugin.billing] matches no plugin in " + plugins.string()) != std::string::npos);
  }
  SECTION("a plugin directory that does not exist: a warning") {
    const auto file = dir.write("nodir.toml", "[plugins]\ndirectory = \"" + (dir.path() / "none").string() + "\"\n");
    const auto r = run_keel(dir, {"config", "check", file.string()});
    CHECK(r.code == 0);
    CHECK(r.output.find("does not exist: no plugin would load") != std::string::npos);
  }
}

TEST_CASE("keel serve refuses a bad config and a busy port with a clear message", "[cli]") {
  TempDir dir;
  SECTION("invalid config: exit 2 and the error position") {
    const auto file = dir.write("bad.toml", "[server]\nio_threads = 0\n");
    const auto r = run_keel(dir, {"serve", "--config", file.string()});
    CHECK(r.code == 2);
    CHECK(r.output.find(file.string() + ":2:") != std::string::npos);
  }
  SECTION("missing config file") {
    const auto r = run_keel(dir, {"serve", "--config", (dir.path() / "nope.toml").string()});
    CHECK(r.code == 2);
    CHECK(r.output.find("nope.toml") != std::string::npos);
  }
  SECTION("unparseable --listen") {
    const auto file = dir.write("ok.toml", "");
    const auto r = run_keel(dir, {"serve", "--config", file.string(), "--listen", "nowhere"});
    CHECK(r.code == 1);
    CHECK(r.output.find("nowhere") != std::string::npos);
  }
}

TEST_CASE("keel plugin inspect shows the documentation keys of the hello plugin's routes", "[cli][plugins]") {
  TempDir dir;
  const auto plugins = dir.path() / "plugins";
  std::filesystem::create_directories(plugins);
  const auto file = plugins / "hello.so";
  std::filesystem::copy_file(keel::test::example_plugin("hello"), file);

  SECTION("--json: request, responses and query of each route, schemas as JSON objects") {
    const auto r = run_keel(dir, {"plugin", "inspect", file.string(), "--json"});
    CHECK(r.code == 0);
    const auto out = nlohmann::json::parse(r.output, nullptr, false);
    REQUIRE(out.is_object());
    CHECK(out["ok"] == true);
    CHECK(out["warnings"] == nlohmann::json::array());  // no migrations, none SQLite-only
    const auto& routes = out["manifest"]["routes"];
    REQUIRE(routes.size() == 2);

    const auto& greet = routes[0];
    CHECK(greet["path"] == "/greet/{name}");
    CHECK_FALSE(greet.contains("request"));
    REQUIRE(greet["query"].size() == 1);
    CHECK(greet["query"][0]["name"] == "greeting");
    CHECK(greet["query"][0]["type"] == "string");
    CHECK(greet["query"][0]["required"] == false);
    CHECK_FALSE(greet["query"][0]["description"].get<std::string>().empty());
    const auto& ok = greet["responses"]["200"];
    CHECK(ok["description"] == "the greeting");
    CHECK(ok["content_type"] == "application/json");  // a schema without content_type means JSON
    REQUIRE(ok["schema"].is_object());
    CHECK(ok["schema"]["properties"]["greeting"]["type"] == "string");

    const auto& echo = routes[1];
    CHECK(echo["path"] == "/echo");
    CHECK_FALSE(echo.contains("query"));
    REQUIRE(echo["request"].is_object());
    CHECK(echo["request"]["content_type"] == "application/json");
    REQUIRE(echo["request"]["schema"].is_object());
    CHECK(echo["request"]["schema"]["description"] == "any JSON value");
    CHECK(echo["responses"]["200"]["schema"].is_object());
  }
  SECTION("text: one marker line per declared key under its route") {
    const auto r = run_keel(dir, {"plugin", "inspect", file.string()});
    CHECK(r.code == 0);
    CHECK(r.output.find("mount: /api/hello\n") != std::string::npos);
    CHECK(r.output.find("route: GET /api/hello/greet/{name}  JSON greeting for {name}\n  responses: 200\n  query: greeting\n") !=
          std::string::npos);
    CHECK(r.output.find("route: POST /api/hello/echo  the request body, with its Content-Type\n  request: application/json\n"
                        "  responses: 200\n") != std::string::npos);
  }
  SECTION("with a config: routes under the mount it sets") {
    const auto config = dir.write("keel.toml", "[plugins]\ndirectory = \"" + plugins.string() + "\"\n[plugin.hello]\nmount = \"/hi\"\n");
    const auto r = run_keel(dir, {"plugin", "inspect", file.string(), "--config", config.string(), "--json"});
    CHECK(r.code == 0);
    const auto out = nlohmann::json::parse(r.output, nullptr, false);
    REQUIRE(out.is_object());
    CHECK(out["manifest"]["mount"] == "/hi");
    CHECK(out["manifest"]["routes"][0]["mounted_path"] == "/hi/greet/{name}");
  }
}

TEST_CASE("keel plugin inspect shows migrations with their checksums and durable topics", "[cli][plugins]") {
  TempDir dir;
  const auto file = dir.path() / "orders.so";
  std::filesystem::copy_file(keel::test::example_plugin("orders"), file);
  const auto json = run_keel(dir, {"plugin", "inspect", file.string(), "--json"});
  const auto out = nlohmann::json::parse(json.output, nullptr, false);
  REQUIRE(out.is_object());
  const auto& m = out["manifest"];
  CHECK(m["events"]["durable"] == nlohmann::json::array({"orders.placed", "orders.paid", "orders.shipped", "orders.cancelled"}));
  REQUIRE(m["migrations"].size() >= 1);
  CHECK(m["migrations"][0]["version"] == 1);
  CHECK(m["migrations"][0]["checksum"].get<std::string>().size() == 64);
  const auto text = run_keel(dir, {"plugin", "inspect", file.string()});
  CHECK(text.output.find("durable: orders.placed\n") != std::string::npos);
  CHECK(text.output.find("migration: 1 ") != std::string::npos);
  CHECK(text.output.find("(sha256 " + m["migrations"][0]["checksum"].get<std::string>().substr(0, 12) + ")") !=
        std::string::npos);
}

TEST_CASE("keel plugin inspect reads a Windows DLL's manifest on Linux and says this host cannot load it",
          "[cli][plugins]") {
#ifndef KEEL_FIXTURE_DLL
  SKIP("KEEL_SKIP: no mingw-w64 compiler at configure time, so no .dll fixture (scripts/common.sh installs it)");
#else
  TempDir dir;
  const auto file = dir.path() / "no_op.dll";
  std::filesystem::copy_file(KEEL_FIXTURE_DLL, file);
  const auto json = run_keel(dir, {"plugin", "inspect", file.string(), "--json"});
  INFO(json.output);
  CHECK(json.code == 1);
  const auto out = nlohmann::json::parse(json.output, nullptr, false);
  REQUIRE(out.is_object());
  CHECK(out["format"] == "PE32+ DLL (.dll)");
  CHECK(out["manifest"]["name"] == "no_op");
  CHECK(out["manifest"]["routes"][0]["path"] == "/ping");
  CHECK(out["error"] ==
        "a PE32+ DLL (.dll): this host loads ELF shared object (.so) files; build the plugin for this platform");
  const auto text = run_keel(dir, {"plugin", "inspect", file.string()});
  CHECK(text.output.find("format: PE32+ DLL (.dll)\nname: no_op\n") != std::string::npos);
  CHECK(text.output.find("route: GET /api/no_op/ping\n") != std::string::npos);

  // In the plugin directory under a .so name it is refused for what it is, and the host serves on.
  const auto renamed = dir.path() / "windows.so";
  std::filesystem::copy_file(KEEL_FIXTURE_DLL, renamed);
  KeelHost host(with_plugins({fixture("log_echo"), renamed}));
  const auto ready = simple_request(host.port(), "GET", "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(ready->body.find("plugin 'no_op' is failed: a PE32+ DLL (.dll): this host loads ELF shared object (.so) files") !=
        std::string::npos);
  CHECK(host.stop() == 0);
#endif
}

TEST_CASE("keel new plugin writes a project, and refuses a bad name or a used directory", "[cli][plugins]") {
  TempDir dir;
  SECTION("C with storage and events") {
    const auto project = dir.path() / "notes";
    const auto r = run_keel(dir, {"new", "plugin", "notes", "--lang", "c", "--storage", "--events", "--dir", project.string()});
    INFO(r.output);
    REQUIRE(r.code == 0);
    CHECK(r.output.find("created plugin notes (C11, storage, events)") != std::string::npos);
    for (const char* file : {"CMakeLists.txt", "manifest.json", "src/plugin.c", "tests/notes_test.c", "keel.toml",
                             "README.md", ".gitignore"})
      CHECK(std::filesystem::is_regular_file(project / file));
    const auto manifest = nlohmann::json::parse(read_file(project / "manifest.json"));
    CHECK(manifest["name"] == "notes");
    CHECK(manifest["events"]["durable"] == nlohmann::json::array({"notes.greeted"}));
    CHECK(manifest["permissions"] == nlohmann::json::array({"ext:keel.storage/1"}));
    CHECK(manifest["routes"].size() == 3);
    // No template marker is left in any file.
    for (const auto& entry : std::filesystem::recursive_directory_iterator(project))
      if (entry.is_regular_file()) CHECK(read_file(entry.path()).find("{{") == std::string::npos);
    // The project's keel.toml is a valid host config.
    const auto check = run_keel(dir, {"config", "check", (project / "keel.toml").string()});
    INFO(check.output);
    CHECK(check.code == 0);
  }
  SECTION("C++ without options: no storage, no events") {
    const auto project = dir.path() / "plain";
    const auto r = run_keel(dir, {"new", "plugin", "plain", "--dir", project.string()});
    REQUIRE(r.code == 0);
    const auto manifest = nlohmann::json::parse(read_file(project / "manifest.json"));
    CHECK_FALSE(manifest.contains("events"));
    CHECK_FALSE(manifest.contains("permissions"));
    CHECK(manifest["routes"].size() == 2);
    CHECK(std::filesystem::is_regular_file(project / "src/plugin.cpp"));
  }
  SECTION("refusals write nothing") {
    auto r = run_keel(dir, {"new", "plugin", "Bad-Name", "--dir", (dir.path() / "bad").string()});
    CHECK(r.code == 1);
    CHECK(r.output.find("\"Bad-Name\" is not a plugin name") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path() / "bad"));
    dir.write("used/file.txt", "mine");
    r = run_keel(dir, {"new", "plugin", "used", "--dir", (dir.path() / "used").string()});
    CHECK(r.code == 1);
    CHECK(r.output.find("already exists and is not an empty directory") != std::string::npos);
    CHECK(read_file(dir.path() / "used/file.txt") == "mine");
    r = run_keel(dir, {"new", "plugin", "and", "--dir", (dir.path() / "and").string()});
    CHECK(r.code == 1);
    CHECK(r.output.find("is a C or C++ keyword") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(dir.path() / "and"));
    r = run_keel(dir, {"new", "plugin", "x", "--lang", "rust"});
    CHECK(r.code != 0);
  }
}

TEST_CASE("keel-manifest checks a manifest file and names the file and each JSON path", "[cli][plugins]") {
  TempDir dir;
  const std::string tool = std::string(KEEL_BUILD_DIR) + "/bin/keel-manifest";
  auto run_tool = [&](const std::vector<std::string>& args) {
    Process p(tool, args, dir.path() / "tool.txt");
    const auto code = p.wait(30s);
    REQUIRE(code);
    return Run{*code, p.output()};
  };
  const auto header = dir.path() / "gen" / "keel_manifest.h";
  SECTION("refused, with every problem") {
    const auto file = dir.write("manifest.json", R"({"name": "x", "version": "1", "abi": "1.0",
      "routes": [{"method": "get", "path": "/a"}]})");
    const auto r = run_tool({"embed", file.string(), header.string(), "x"});
    INFO(r.output);
    CHECK(r.code == 1);
    CHECK(r.output.find(file.string() + ": error: version:") != std::string::npos);
    CHECK(r.output.find(file.string() + ": error: routes[0].method:") != std::string::npos);
    CHECK_FALSE(std::filesystem::exists(header));
  }
  SECTION("a name other than the target's") {
    const auto file = dir.write("manifest.json", R"({"name": "y", "version": "1.0.0", "abi": "1.0"})");
    const auto r = run_tool({"embed", file.string(), header.string(), "x"});
    CHECK(r.code == 1);
    CHECK(r.output.find("differs from the plugin target's name \"x\"") != std::string::npos);
  }
  SECTION("accepted: the text as one C string literal, rewritten only when it changes") {
    const auto file =
        dir.write("manifest.json", "{\"name\": \"x\", \"version\": \"1.0.0\", \"abi\": \"1.0\",\n"
                                   " \"description\": \"a \\\"quoted\\\" caf\xc3\xa9 ?\?= \\\\ test\"}\n");
    auto r = run_tool({"embed", file.string(), header.string(), "x"});
    INFO(r.output);
    REQUIRE(r.code == 0);
    const auto text = read_file(header);
    CHECK(text.find("#define KEEL_MANIFEST_JSON") != std::string::npos);
    CHECK(text.find(R"(\"description\": \"a \\\"quoted\\\" caf\303\251 \?\?= \\\\ test\")") != std::string::npos);
    const auto before = std::filesystem::last_write_time(header);
    r = run_tool({"embed", file.string(), header.string(), "x"});
    CHECK(r.code == 0);
    CHECK(std::filesystem::last_write_time(header) == before);
  }
  SECTION("usage") {
    CHECK(run_tool({"check"}).code == 2);
    CHECK(run_tool({"embed", (dir.path() / "missing.json").string(), header.string()}).code == 2);
  }
}

TEST_CASE("the plugin guide's complete example is what keel new plugin writes", "[cli][plugins][docs]") {
  TempDir dir;
  const auto project = dir.path() / "guestbook";
  const auto r = run_keel(dir, {"new", "plugin", "guestbook", "--storage", "--events", "--dir", project.string()});
  REQUIRE(r.code == 0);
  const auto guide = read_file(std::filesystem::path(KEEL_SOURCE_DIR) / "docs/plugin-guide.md");
  for (const char* file : {"manifest.json", "CMakeLists.txt", "src/plugin.cpp", "tests/guestbook_test.cpp", "keel.toml"}) {
    INFO(file << " differs from docs/plugin-guide.md section 8; regenerate it there");
    CHECK(guide.find(read_file(project / file)) != std::string::npos);
  }
}
