#include "config/config.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/plugin_keys.hpp"
#include "temp_dir.hpp"

namespace cfg = keel::host::config;
using namespace std::chrono_literals;

namespace {

const std::filesystem::path kName = "/etc/keel/keel.toml";

cfg::Config parse_ok(std::string_view text, const cfg::Environment& env = {}) {
  return cfg::parse(text, kName, env);
}

// Every diagnostic as "file:line:col: message", in the order ConfigError carries them.
std::vector<std::string> errors_of(std::string_view text, const cfg::Environment& env = {}) {
  try {
    (void)cfg::parse(text, "keel.toml", env);
  } catch (const cfg::ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& d : e.diagnostics()) out.push_back(d.str());
    return out;
  }
  FAIL("parse() accepted a document that should have been rejected");
  return {};
}

std::string single_error(std::string_view text, const cfg::Environment& env = {}) {
  auto errors = errors_of(text, env);
  REQUIRE(errors.size() == 1);
  return errors.front();
}

}  // namespace

TEST_CASE("an empty document yields the documented defaults", "[config]") {
  const auto c = parse_ok("");
  CHECK(c.source == kName);
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.io_threads == 1);
  CHECK(c.server.max_connections == 10000);
  CHECK(c.server.drain_timeout == 10000ms);
  CHECK(c.server.data_dir == std::filesystem::path("/etc/keel/data"));
  CHECK(c.http.max_header_bytes == 16384);
  CHECK(c.http.max_target_bytes == 8192);
  CHECK(c.http.max_body_bytes == 1048576);
  CHECK(c.http.header_read_timeout == 10000ms);
  CHECK(c.http.idle_timeout == 60000ms);
  CHECK(c.http.request_timeout == 30000ms);
  CHECK(c.http.write_timeout == 30000ms);
  CHECK(c.log.level == "info");
  CHECK(c.log.format == cfg::LogFormat::kText);
  CHECK(c.log.access_log);
  CHECK(c.admin.token.empty());
  CHECK(c.plugins.directory == std::filesystem::path("/etc/keel/plugins"));
  CHECK(c.storage.synchronous == cfg::SyncMode::kNormal);
  CHECK(c.storage.busy_timeout == 5000ms);
  CHECK(c.storage.readers == 4);
  CHECK(c.storage.statement_cache == 128);
  CHECK(c.storage.transaction_timeout == 10000ms);
  CHECK(c.storage.max_db_bytes == 0);
  CHECK(c.events.queue_capacity == 10000);
  CHECK(c.events.max_attempts == 5);
  CHECK(c.events.retry_base == 100ms);
  CHECK(c.events.retry_max == 30000ms);
  CHECK(c.events.retention == 86400000ms);
  CHECK(c.events.batch == 256);
  CHECK(c.events.dead_letter_capacity == 1000);
  CHECK(c.plugin_sections.empty());
}

TEST_CASE("every host key is read from the file", "[config]") {
  const auto c = parse_ok(R"([server]
listen = "0.0.0.0:9000"
io_threads = 4
max_connections = 50
drain_timeout_ms = 2500
data_dir = "/var/lib/keel"

[http]
max_header_bytes = 32768
max_target_bytes = 4096
max_body_bytes = 0
header_read_timeout_ms = 1
idle_timeout_ms = 2
request_timeout_ms = 3
write_timeout_ms = 86400000

[log]
level = "debug"
format = "json"
access_log = false

[admin]
token = "s3cret-s3cret-s3cret-s3cret-s3cret"

[plugins]
directory = "/opt/keel/plugins"
)");
  CHECK(c.server.listen == "0.0.0.0:9000");
  CHECK(c.server.io_threads == 4);
  CHECK(c.server.max_connections == 50);
  CHECK(c.server.drain_timeout == 2500ms);
  CHECK(c.server.data_dir == std::filesystem::path("/var/lib/keel"));
  CHECK(c.http.max_header_bytes == 32768);
  CHECK(c.http.max_target_bytes == 4096);
  CHECK(c.http.max_body_bytes == 0);
  CHECK(c.http.header_read_timeout == 1ms);
  CHECK(c.http.idle_timeout == 2ms);
  CHECK(c.http.request_timeout == 3ms);
  CHECK(c.http.write_timeout == 86400000ms);
  CHECK(c.log.level == "debug");
  CHECK(c.log.format == cfg::LogFormat::kJson);
  CHECK_FALSE(c.log.access_log);
  CHECK(c.admin.token == "s3cret-s3cret-s3cret-s3cret-s3cret");
  CHECK(c.plugins.directory == std::filesystem::path("/opt/keel/plugins"));
}

TEST_CASE("listen accepts host names, IPv4, bracketed IPv6 and port 0", "[config]") {
  const auto listen = GENERATE(as<std::string>{}, "127.0.0.1:8080", "0.0.0.0:0", "localhost:65535", "[::1]:8080",
                               "[::]:0", "[fe80::1%eth0]:80");
  CAPTURE(listen);
  CHECK(parse_ok("[server]\nlisten = \"" + listen + "\"\n").server.listen == listen);
}

TEST_CASE("listen values that are not HOST:PORT are rejected at the value", "[config]") {
  const auto check = [](std::string_view listen, std::string_view problem) {
    CAPTURE(listen);
    CHECK(single_error("[server]\nlisten = \"" + std::string{listen} + "\"\n") ==
          "keel.toml:2:10: [server] listen: '" + std::string{listen} + "': " + std::string{problem});
  };
  check("8080", "expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080");
  check(":8080", "missing host before ':' (expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)");
  check("::1:8080", "IPv6 hosts must be in brackets, e.g. [::1]:8080");
  check("[::1:8080", "malformed IPv6 host '[::1' (write it as [::1]:8080)");
  check("[localhost]:80", "malformed IPv6 host '[localhost]' (write it as [::1]:8080)");
  check("my host:80", "host 'my host' contains characters not allowed in a host name or address");
  check("127.0.0.1:", "port '' is not a number (allowed 0..65535)");
  check("127.0.0.1:http", "port 'http' is not a number (allowed 0..65535)");
  check("127.0.0.1:-1", "port '-1' is not a number (allowed 0..65535)");
  check("127.0.0.1:65536", "port 65536 is out of range (allowed 0..65535)");
  check("127.0.0.1:99999999999", "port 99999999999 is out of range (allowed 0..65535)");
}

TEST_CASE("out-of-range integers are all reported with the allowed range at the value", "[config]") {
  const auto errors = errors_of(R"([server]
io_threads = 0
max_connections = 0
drain_timeout_ms = 0
[http]
max_header_bytes = 512
max_target_bytes = 8
max_body_bytes = -1
header_read_timeout_ms = 0
idle_timeout_ms = -5
request_timeout_ms = 86400001
write_timeout_ms = 0
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:14: [server] io_threads: 0 is out of range (allowed 1..256)",
                      "keel.toml:3:19: [server] max_connections: 0 is out of range (allowed 1..4294967295)",
                      "keel.toml:4:20: [server] drain_timeout_ms: 0 is out of range (allowed 1..86400000)",
                      "keel.toml:6:20: [http] max_header_bytes: 512 is out of range (allowed 1024..1048576)",
                      "keel.toml:7:20: [http] max_target_bytes: 8 is out of range "
                      "(allowed 16..max_header_bytes = 16384)",
                      "keel.toml:8:18: [http] max_body_bytes: -1 is out of range (must be at least 0)",
                      "keel.toml:9:26: [http] header_read_timeout_ms: 0 is out of range (allowed 1..86400000)",
                      "keel.toml:10:19: [http] idle_timeout_ms: -5 is out of range (allowed 1..86400000)",
                      "keel.toml:11:22: [http] request_timeout_ms: 86400001 is out of range (allowed 1..86400000)",
                      "keel.toml:12:20: [http] write_timeout_ms: 0 is out of range (allowed 1..86400000)",
                  });
}

TEST_CASE("upper bounds of integer keys are enforced", "[config]") {
  CHECK(single_error("[server]\nio_threads = 257\n") ==
        "keel.toml:2:14: [server] io_threads: 257 is out of range (allowed 1..256)");
  CHECK(single_error("[server]\nmax_connections = 4294967296\n") ==
        "keel.toml:2:19: [server] max_connections: 4294967296 is out of range (allowed 1..4294967295)");
  CHECK(single_error("[http]\nmax_header_bytes = 1048577\n") ==
        "keel.toml:2:20: [http] max_header_bytes: 1048577 is out of range (allowed 1024..1048576)");
  CHECK(parse_ok("[server]\nio_threads = 256\n").server.io_threads == 256);
  CHECK(parse_ok("[http]\nmax_body_bytes = 9223372036854775807\n").http.max_body_bytes == 9223372036854775807ULL);
}

TEST_CASE("max_target_bytes may not exceed max_header_bytes", "[config]") {
  SECTION("both written: the target is blamed") {
    CHECK(single_error("[http]\nmax_header_bytes = 2048\nmax_target_bytes = 4096\n") ==
          "keel.toml:3:20: [http] max_target_bytes: 4096 is out of range (allowed 16..max_header_bytes = 2048)");
  }
  SECTION("only the header limit written: it is blamed against the default target") {
    CHECK(single_error("[http]\nmax_header_bytes = 4096\n") ==
          "keel.toml:2:20: [http] max_header_bytes: 4096 is less than max_target_bytes (8192, the default); "
          "raise it or set max_target_bytes lower");
  }
  SECTION("equal limits are fine") {
    const auto c = parse_ok("[http]\nmax_header_bytes = 4096\nmax_target_bytes = 4096\n");
    CHECK(c.http.max_header_bytes == 4096);
    CHECK(c.http.max_target_bytes == 4096);
  }
}

TEST_CASE("log level and format must be one of the listed values", "[config]") {
  CHECK(single_error("[log]\nlevel = \"verbose\"\n") ==
        "keel.toml:2:9: [log] level: 'verbose' is not one of trace, debug, info, warn, error, critical, off");
  CHECK(single_error("[log]\nlevel = \"inf\"\n") ==
        "keel.toml:2:9: [log] level: 'inf' is not one of trace, debug, info, warn, error, critical, off "
        "(did you mean 'info'?)");
  CHECK(single_error("[log]\nformat = \"yaml\"\n") == "keel.toml:2:10: [log] format: 'yaml' is not one of text, json");
  const auto level = GENERATE(as<std::string>{}, "trace", "debug", "info", "warn", "error", "critical", "off");
  CHECK(parse_ok("[log]\nlevel = \"" + level + "\"\n").log.level == level);
}

TEST_CASE("empty paths are rejected", "[config]") {
  CHECK(errors_of("[server]\ndata_dir = \"\"\n[plugins]\ndirectory = \"\"\n") ==
        std::vector<std::string>{"keel.toml:2:12: [server] data_dir: must not be empty",
                                 "keel.toml:4:13: [plugins] directory: must not be empty"});
}

TEST_CASE("unknown keys point at the key and suggest the closest valid one", "[config]") {
  CHECK(single_error("[http]\nmax_body_byte = 10\n") ==
        "keel.toml:2:1: unknown key 'max_body_byte' in [http] (did you mean 'max_body_bytes'?)");
  CHECK(single_error("[http]\n  max_body_btyes = 10\n") ==
        "keel.toml:2:3: unknown key 'max_body_btyes' in [http] (did you mean 'max_body_bytes'?)");
  CHECK(single_error("[server]\ndrain_timeout = 5\n") ==
        "keel.toml:2:1: unknown key 'drain_timeout' in [server] "
        "(did you mean 'drain_timeout_ms'? durations are integer milliseconds)");
  CHECK(single_error("[admin]\npassword = \"x\"\n") ==
        "keel.toml:2:1: unknown key 'password' in [admin]; valid keys: token, token_next, token_file, listen, "
        "max_failed_attempts, failed_attempts_window_ms, max_upload_bytes");
  CHECK(single_error("[http.extra]\nx = 1\n") ==
        "keel.toml:1:7: unknown key 'extra' in [http]; valid keys: max_header_bytes, max_target_bytes, "
        "max_body_bytes, header_read_timeout_ms, idle_timeout_ms, request_timeout_ms, write_timeout_ms");
  CHECK(single_error("[plugins.hello]\nenabled = true\n") ==
        "keel.toml:1:10: unknown key 'hello' in [plugins] (plugin settings go in [plugin.hello])");
}

TEST_CASE("unknown sections point at the name and suggest the closest section", "[config]") {
  CHECK(single_error("[htp]\nmax_body_bytes = 1\n") == "keel.toml:1:2: unknown section [htp] (did you mean [http]?)");
  CHECK(single_error("[sever]\n") == "keel.toml:1:2: unknown section [sever] (did you mean [server]?)");
  CHECK(single_error("[HTTP]\n") == "keel.toml:1:2: unknown section [HTTP] (did you mean [http]?)");
  CHECK(single_error("[plugn.hello]\n") ==
        "keel.toml:1:2: unknown section [plugn] (did you mean [plugin.<name>]?)");
  CHECK(single_error("[database]\n") ==
        "keel.toml:1:2: unknown section [database]; valid sections: [server], [http], [log], [admin], "
        "[plugins], [cors], [storage], [events], [cluster], [plugin.<name>]");
  CHECK(single_error("listen = \"0.0.0.0:1\"\n") ==
        "keel.toml:1:1: key 'listen' is outside any section (did you mean 'listen' in [server]?)");
}

TEST_CASE("wrong value types name the expected and the actual type", "[config]") {
  const auto errors = errors_of(R"([http]
max_body_bytes = "10"
idle_timeout_ms = 1.5
[server]
listen = 8080
[log]
access_log = "yes"
level = ["info"]
[admin]
token = 1979-05-27
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:18: [http] max_body_bytes: expected an integer, got a string",
                      "keel.toml:3:19: [http] idle_timeout_ms: expected an integer (milliseconds), "
                      "got a floating-point number",
                      "keel.toml:5:10: [server] listen: expected a string, got an integer",
                      "keel.toml:7:14: [log] access_log: expected a boolean, got a string",
                      "keel.toml:8:9: [log] level: expected a string, got an array",
                      "keel.toml:10:9: [admin] token: expected a string, got a date",
                  });
  CHECK(single_error("server = 1\n") == "keel.toml:1:10: [server]: expected a table, got an integer");
}

TEST_CASE("problems of different kinds are reported together in file order", "[config]") {
  const auto errors = errors_of(R"([server]
io_threads = 0
lisen = "x:1"
[htp]
[http]
max_body_bytes = "big"
[plugin.Bad]
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:14: [server] io_threads: 0 is out of range (allowed 1..256)",
                      "keel.toml:3:1: unknown key 'lisen' in [server] (did you mean 'listen'?)",
                      "keel.toml:4:2: unknown section [htp] (did you mean [http]?)",
                      "keel.toml:6:18: [http] max_body_bytes: expected an integer, got a string",
                      "keel.toml:7:9: invalid plugin name 'Bad' in [plugin.Bad]: use only a-z, 0-9 and '_'",
                  });
}

TEST_CASE("ConfigError::what joins every diagnostic with newlines", "[config]") {
  try {
    (void)cfg::parse("[server]\nio_threads = 0\n[http]\nmax_body_bytes = -1\n", "k.toml", {});
    FAIL("expected ConfigError");
  } catch (const cfg::ConfigError& e) {
    CHECK(std::string{e.what()} ==
          "k.toml:2:14: [server] io_threads: 0 is out of range (allowed 1..256)\n"
          "k.toml:4:18: [http] max_body_bytes: -1 is out of range (must be at least 0)");
    CHECK(e.diagnostics().size() == 2);
  }
}

TEST_CASE("a TOML syntax error becomes a diagnostic with its position", "[config]") {
  const auto error = single_error("[server]\nlisten = \n");
  CHECK_THAT(error, Catch::StartsWith("keel.toml:2:10: error while parsing key-value pair: expected value"));
  CHECK_THAT(single_error("[http]\nmax_body_bytes = 1\nmax_body_bytes = 2\n"),
             Catch::StartsWith("keel.toml:3:") && Catch::Contains("max_body_bytes"));
}

TEST_CASE("environment variables override file values", "[config]") {
  const auto c = parse_ok(R"([server]
listen = "127.0.0.1:1"
[http]
max_body_bytes = 5
[log]
access_log = true
)",
                          {
                              {"KEEL_HTTP_MAX_BODY_BYTES", "10"},
                              {"KEEL_SERVER_LISTEN", "0.0.0.0:9000"},
                              {"KEEL_SERVER_IO_THREADS", "8"},
                              {"KEEL_HTTP_IDLE_TIMEOUT_MS", "1500"},
                              {"KEEL_LOG_ACCESS_LOG", "false"},
                              {"KEEL_LOG_FORMAT", "json"},
                              {"KEEL_ADMIN_TOKEN", "secret value with spaces, 32+ chars"},
                              {"KEEL_PLUGINS_DIRECTORY", "/usr/lib/keel/plugins"},
                          });
  CHECK(c.http.max_body_bytes == 10);
  CHECK(c.server.listen == "0.0.0.0:9000");
  CHECK(c.server.io_threads == 8);
  CHECK(c.http.idle_timeout == 1500ms);
  CHECK_FALSE(c.log.access_log);
  CHECK(c.log.format == cfg::LogFormat::kJson);
  CHECK(c.admin.token == "secret value with spaces, 32+ chars");
  CHECK(c.plugins.directory == std::filesystem::path("/usr/lib/keel/plugins"));
}

TEST_CASE("boolean environment values accept true, false, 1 and 0", "[config]") {
  CHECK(parse_ok("", {{"KEEL_LOG_ACCESS_LOG", "0"}}).log.access_log == false);
  CHECK(parse_ok("[log]\naccess_log = false\n", {{"KEEL_LOG_ACCESS_LOG", "1"}}).log.access_log == true);
  CHECK(parse_ok("[log]\naccess_log = false\n", {{"KEEL_LOG_ACCESS_LOG", "true"}}).log.access_log == true);
}

TEST_CASE("KEEL_ variables outside the host sections are ignored", "[config]") {
  const auto c = parse_ok("", {{"KEEL_FOO", "1"},
                               {"KEEL_FOO_BAR", "x"},
                               {"KEEL_PLUGIN_HELLO_ENABLED", "false"},
                               {"KEEL_", ""},
                               {"keel_http_max_body_bytes", "1"},
                               {"HOME", "/root"}});
  CHECK(c.http.max_body_bytes == 1048576);
  CHECK(c.plugin_sections.empty());
}

TEST_CASE("bad environment values are reported under the variable name", "[config]") {
  const auto errors = errors_of("[server]\nio_threads = 0\n", {
                                                                  {"KEEL_HTTP_MAX_BODY_BYTES", "ten"},
                                                                  {"KEEL_HTTP_MAX_BODY_BYTE", "10"},
                                                                  {"KEEL_LOG_ACCESS_LOG", "yes"},
                                                                  {"KEEL_LOG_LEVEL", "loud"},
                                                                  {"KEEL_SERVER_MAX_CONNECTIONS", "0"},
                                                                  {"KEEL_HTTP_WRITE_TIMEOUT_MS", "99999999999999999999"},
                                                                  {"KEEL_SERVER_LISTEN", "nowhere"},
                                                                  {"KEEL_ADMIN_USER", "bob"},
                                                              });
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:14: [server] io_threads: 0 is out of range (allowed 1..256)",
                      "env KEEL_ADMIN_USER: unknown key 'user' in [admin]; valid keys: token, token_next, token_file, "
                      "listen, max_failed_attempts, failed_attempts_window_ms, max_upload_bytes",
                      "env KEEL_HTTP_MAX_BODY_BYTE: unknown key 'max_body_byte' in [http] "
                      "(did you mean KEEL_HTTP_MAX_BODY_BYTES?)",
                      "env KEEL_HTTP_MAX_BODY_BYTES: [http] max_body_bytes: expected a decimal integer, got 'ten'",
                      "env KEEL_HTTP_WRITE_TIMEOUT_MS: [http] write_timeout_ms: expected a decimal integer, "
                      "got '99999999999999999999' (does not fit in 64 bits)",
                      "env KEEL_LOG_ACCESS_LOG: [log] access_log: expected true, false, 1 or 0, got 'yes'",
                      "env KEEL_LOG_LEVEL: [log] level: 'loud' is not one of trace, debug, info, warn, error, "
                      "critical, off",
                      "env KEEL_SERVER_LISTEN: [server] listen: 'nowhere': expected HOST:PORT, e.g. "
                      "127.0.0.1:8080 or [::1]:8080",
                      "env KEEL_SERVER_MAX_CONNECTIONS: [server] max_connections: 0 is out of range "
                      "(allowed 1..4294967295)",
                  });
}

TEST_CASE("SourcePos prints only the file part when there is no line", "[config]") {
  CHECK(cfg::SourcePos{"env KEEL_ADMIN_TOKEN", 0, 0}.str() == "env KEEL_ADMIN_TOKEN");
  CHECK(cfg::SourcePos{"keel.toml", 3, 7}.str() == "keel.toml:3:7");
  const cfg::Diagnostic diagnostic{cfg::SourcePos{"keel.toml", 1, 2}, "bad"};
  CHECK(diagnostic.str() == "keel.toml:1:2: bad");
}

TEST_CASE("relative paths resolve against the config file's directory", "[config]") {
  SECTION("relative paths from the file") {
    const auto c = cfg::parse("[server]\ndata_dir = \"../data\"\n[plugins]\ndirectory = \"lib/plugins\"\n",
                              "/srv/keel/conf/keel.toml", {});
    CHECK(c.server.data_dir == std::filesystem::path("/srv/keel/conf/../data"));
    CHECK(c.plugins.directory == std::filesystem::path("/srv/keel/conf/lib/plugins"));
  }
  SECTION("absolute paths are kept") {
    const auto c = cfg::parse("[server]\ndata_dir = \"/var/lib/keel\"\n", "/srv/keel/conf/keel.toml", {});
    CHECK(c.server.data_dir == std::filesystem::path("/var/lib/keel"));
  }
  SECTION("relative paths from the environment follow the same rule") {
    const auto c = cfg::parse("", "/srv/keel/conf/keel.toml", {{"KEEL_SERVER_DATA_DIR", "state"}});
    CHECK(c.server.data_dir == std::filesystem::path("/srv/keel/conf/state"));
  }
  SECTION("a bare file name leaves paths relative to the working directory") {
    const auto c = cfg::parse("", "keel.toml", {});
    CHECK(c.server.data_dir == std::filesystem::path("data"));
    CHECK(c.plugins.directory == std::filesystem::path("plugins"));
  }
}

TEST_CASE("plugin tables separate enabled from plugin-owned settings", "[config]") {
  const auto c = parse_ok(R"([plugin.hello]
enabled = false
greeting = "hi"
ratio = 0.5
count = 3
tags = ["a", "b"]
since = 1979-05-27T07:32:00Z
day = 1979-05-27
at = 07:32:00
db.path = "hello.db"

[plugin.orders]
[plugin.orders.limits]
max = 10
)");
  REQUIRE(c.plugin_sections.size() == 2);
  const auto& hello = c.plugin_sections.at("hello");
  CHECK(hello.name == "hello");
  CHECK_FALSE(hello.enabled);
  CHECK(hello.where.str() == "/etc/keel/keel.toml:1:1");
  CHECK(nlohmann::json::parse(hello.settings_json) == nlohmann::json{
                                                          {"greeting", "hi"},
                                                          {"ratio", 0.5},
                                                          {"count", 3},
                                                          {"tags", {"a", "b"}},
                                                          {"since", "1979-05-27T07:32:00Z"},
                                                          {"day", "1979-05-27"},
                                                          {"at", "07:32:00"},
                                                          {"db", {{"path", "hello.db"}}},
                                                      });
  CHECK(hello.key_positions.count("enabled") == 0);
  CHECK(hello.key_positions.at("greeting").str() == "/etc/keel/keel.toml:3:1");
  CHECK(hello.key_positions.at("tags[1]").str() == "/etc/keel/keel.toml:6:14");
  CHECK(hello.key_positions.at("db").str() == "/etc/keel/keel.toml:10:1");
  CHECK(hello.key_positions.at("db.path").str() == "/etc/keel/keel.toml:10:4");

  const auto& orders = c.plugin_sections.at("orders");
  CHECK(orders.enabled);
  CHECK(orders.where.str() == "/etc/keel/keel.toml:12:1");
  CHECK(nlohmann::json::parse(orders.settings_json) == nlohmann::json{{"limits", {{"max", 10}}}});
  CHECK(orders.key_positions.at("limits.max").str() == "/etc/keel/keel.toml:14:1");
}

TEST_CASE("a plugin table without settings has an empty JSON object", "[config]") {
  const auto c = parse_ok("[plugin.hello_2]\n");
  CHECK(c.plugin_sections.at("hello_2").settings_json == "{}");
  CHECK(c.plugin_sections.at("hello_2").enabled);
}

TEST_CASE("bad plugin tables are reported", "[config]") {
  CHECK(single_error("[plugin.Hello]\n") ==
        "keel.toml:1:9: invalid plugin name 'Hello' in [plugin.Hello]: use only a-z, 0-9 and '_'");
  CHECK(single_error("[plugin.\"my-plugin\"]\n") ==
        "keel.toml:1:9: invalid plugin name 'my-plugin' in [plugin.my-plugin]: use only a-z, 0-9 and '_'");
  CHECK(single_error("[plugin.hello]\nenabled = \"yes\"\n") ==
        "keel.toml:2:11: [plugin.hello] enabled: expected a boolean, got a string");
  CHECK(single_error("[plugin]\ndirectory = \"x\"\n") ==
        "keel.toml:2:1: 'directory' in [plugin] is not a plugin table (got a string); plugin settings go in "
        "[plugin.<name>] (did you mean 'directory' in [plugins]?)");
  CHECK(single_error("[[plugin.hello]]\n") ==
        "keel.toml:1:10: 'hello' in [plugin] is not a plugin table (got an array); plugin settings go in "
        "[plugin.<name>]");
  CHECK(single_error("plugin = 1\n") == "keel.toml:1:1: 'plugin' must hold [plugin.<name>] tables, got an integer");
  CHECK(single_error("[plugin.hello]\nratio = nan\n") ==
        "keel.toml:2:9: [plugin.hello] ratio: nan and inf cannot be passed to a plugin (JSON has no such numbers)");
}

TEST_CASE("the host reads every key of kHostPluginKeys itself and no other", "[config]") {
  // A value no host key accepts: each listed key is reported as the host's, none reaches the plugin.
  for (const auto key : keel::host::kHostPluginKeys) {
    INFO(key);
    const auto error = single_error("[plugin.hello]\n" + std::string(key) + " = [[1]]\n");
    CHECK(error.find("[plugin.hello] " + std::string(key) + ": expected") != std::string::npos);
  }
  // A key the host does not read is the plugin's, whatever its value.
  const auto c = parse_ok("[plugin.hello]\nrunner = [[1]]\nmounted = true\n");
  CHECK(nlohmann::json::parse(c.plugin_sections.at("hello").settings_json) ==
        nlohmann::json{{"runner", {{1}}}, {"mounted", true}});
}

TEST_CASE("storage keys are read from the file", "[config][storage]") {
  const auto c = parse_ok(R"([storage]
synchronous = "full"
busy_timeout_ms = 250
readers = 16
statement_cache = 0
transaction_timeout_ms = 100
max_db_bytes = 1073741824
)");
  CHECK(c.storage.synchronous == cfg::SyncMode::kFull);
  CHECK(c.storage.busy_timeout == 250ms);
  CHECK(c.storage.readers == 16);
  CHECK(c.storage.statement_cache == 0);
  CHECK(c.storage.transaction_timeout == 100ms);
  CHECK(c.storage.max_db_bytes == 1073741824);
  CHECK(parse_ok("[storage]\nsynchronous = \"normal\"\n").storage.synchronous == cfg::SyncMode::kNormal);
}

TEST_CASE("storage keys accept the ends of their ranges", "[config][storage]") {
  const auto low = parse_ok(
      "[storage]\nbusy_timeout_ms = 0\nreaders = 1\nstatement_cache = 0\ntransaction_timeout_ms = 100\n"
      "max_db_bytes = 0\n");
  CHECK(low.storage.busy_timeout == 0ms);
  CHECK(low.storage.readers == 1);
  CHECK(low.storage.statement_cache == 0);
  CHECK(low.storage.transaction_timeout == 100ms);
  CHECK(low.storage.max_db_bytes == 0);
  const auto high = parse_ok(
      "[storage]\nbusy_timeout_ms = 600000\nreaders = 64\nstatement_cache = 10000\n"
      "transaction_timeout_ms = 3600000\nmax_db_bytes = 9223372036854775807\n");
  CHECK(high.storage.busy_timeout == 600000ms);
  CHECK(high.storage.readers == 64);
  CHECK(high.storage.statement_cache == 10000);
  CHECK(high.storage.transaction_timeout == 3600000ms);
  CHECK(high.storage.max_db_bytes == 9223372036854775807ULL);
}

TEST_CASE("storage keys out of range are reported with the allowed range", "[config][storage]") {
  const auto errors = errors_of(R"([storage]
busy_timeout_ms = -1
readers = 0
statement_cache = 10001
transaction_timeout_ms = 99
max_db_bytes = -1
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:19: [storage] busy_timeout_ms: -1 is out of range (allowed 0..600000)",
                      "keel.toml:3:11: [storage] readers: 0 is out of range (allowed 1..64)",
                      "keel.toml:4:19: [storage] statement_cache: 10001 is out of range (allowed 0..10000)",
                      "keel.toml:5:26: [storage] transaction_timeout_ms: 99 is out of range (allowed 100..3600000)",
                      "keel.toml:6:16: [storage] max_db_bytes: -1 is out of range (must be at least 0)",
                  });
  CHECK(single_error("[storage]\nbusy_timeout_ms = 600001\n") ==
        "keel.toml:2:19: [storage] busy_timeout_ms: 600001 is out of range (allowed 0..600000)");
  CHECK(single_error("[storage]\nreaders = 65\n") ==
        "keel.toml:2:11: [storage] readers: 65 is out of range (allowed 1..64)");
  CHECK(single_error("[storage]\ntransaction_timeout_ms = 3600001\n") ==
        "keel.toml:2:26: [storage] transaction_timeout_ms: 3600001 is out of range (allowed 100..3600000)");
}

TEST_CASE("storage synchronous is normal or full", "[config][storage]") {
  CHECK(single_error("[storage]\nsynchronous = \"off\"\n") ==
        "keel.toml:2:15: [storage] synchronous: 'off' is not one of normal, full");
  CHECK(single_error("[storage]\nsynchronous = \"ful\"\n") ==
        "keel.toml:2:15: [storage] synchronous: 'ful' is not one of normal, full (did you mean 'full'?)");
  CHECK(single_error("[storage]\nsynchronous = \"FULL\"\n") ==
        "keel.toml:2:15: [storage] synchronous: 'FULL' is not one of normal, full (did you mean 'full'?)");
  CHECK(single_error("", {{"KEEL_STORAGE_SYNCHRONOUS", "extra"}}) ==
        "env KEEL_STORAGE_SYNCHRONOUS: [storage] synchronous: 'extra' is not one of normal, full");
}

TEST_CASE("storage keys of the wrong type name the expected type", "[config][storage]") {
  const auto errors = errors_of(R"([storage]
synchronous = 2
busy_timeout_ms = "5s"
readers = 4.0
statement_cache = true
transaction_timeout_ms = [1]
max_db_bytes = "1GB"
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:15: [storage] synchronous: expected a string, got an integer",
                      "keel.toml:3:19: [storage] busy_timeout_ms: expected an integer (milliseconds), got a string",
                      "keel.toml:4:11: [storage] readers: expected an integer, got a floating-point number",
                      "keel.toml:5:19: [storage] statement_cache: expected an integer, got a boolean",
                      "keel.toml:6:26: [storage] transaction_timeout_ms: expected an integer (milliseconds), "
                      "got an array",
                      "keel.toml:7:16: [storage] max_db_bytes: expected an integer, got a string",
                  });
  CHECK(single_error("storage = 1\n") == "keel.toml:1:11: [storage]: expected a table, got an integer");
}

TEST_CASE("the postgres storage engine needs postgres_url", "[config]") {
  const auto contains = [](const std::string& text, std::string_view part) { return text.find(part) != std::string::npos; };
  CHECK(contains(single_error("[storage]\nengine = \"postgres\"\n"),
                 "keel.toml:2:10: [storage] engine = \"postgres\" needs postgres_url"));
  CHECK(contains(single_error("[plugin.orders]\nstorage_engine = \"postgres\"\n"),
                 "[plugin.orders] storage_engine = \"postgres\" needs [storage] postgres_url"));
  CHECK(contains(single_error("[plugin.orders]\nstorage_engine = \"mysql\"\n"), "expected \"sqlite\" or \"postgres\""));
  CHECK(contains(single_error("[storage]\nengine = \"mysql\"\n"), "sqlite"));
  const auto c = cfg::parse("[storage]\nengine = \"postgres\"\npostgres_url = \"host=127.0.0.1\"\n"
                            "[plugin.orders]\nstorage_engine = \"sqlite\"\n",
                            "keel.toml", {});
  CHECK(c.storage.engine == cfg::StorageEngine::kPostgres);
  CHECK(c.plugin_sections.at("orders").storage_engine == "sqlite");
}

TEST_CASE("unknown storage keys suggest the closest valid one", "[config][storage]") {
  CHECK(single_error("[storage]\nreader = 2\n") ==
        "keel.toml:2:1: unknown key 'reader' in [storage] (did you mean 'readers'?)");
  CHECK(single_error("[storage]\nmax_db_byte = 2\n") ==
        "keel.toml:2:1: unknown key 'max_db_byte' in [storage] (did you mean 'max_db_bytes'?)");
  CHECK(single_error("[storage]\nbusy_timeout = 5\n") ==
        "keel.toml:2:1: unknown key 'busy_timeout' in [storage] "
        "(did you mean 'busy_timeout_ms'? durations are integer milliseconds)");
  CHECK(single_error("[storage]\njournal_mode = \"wal\"\n") ==
        "keel.toml:2:1: unknown key 'journal_mode' in [storage]; valid keys: synchronous, busy_timeout_ms, readers, "
        "statement_cache, transaction_timeout_ms, max_db_bytes, engine, postgres_url, postgres_prefix, postgres_pool_size, "
        "postgres_connect_timeout_ms");
  CHECK(single_error("[storag]\n") == "keel.toml:1:2: unknown section [storag] (did you mean [storage]?)");
  CHECK(single_error("readers = 2\n") ==
        "keel.toml:1:1: key 'readers' is outside any section (did you mean 'readers' in [storage]?)");
  CHECK(single_error("", {{"KEEL_STORAGE_READER", "2"}}) ==
        "env KEEL_STORAGE_READER: unknown key 'reader' in [storage] (did you mean KEEL_STORAGE_READERS?)");
}

TEST_CASE("environment variables override storage keys", "[config][storage]") {
  const auto c = parse_ok("[storage]\nreaders = 2\nsynchronous = \"normal\"\n",
                          {
                              {"KEEL_STORAGE_READERS", "8"},
                              {"KEEL_STORAGE_SYNCHRONOUS", "full"},
                              {"KEEL_STORAGE_BUSY_TIMEOUT_MS", "0"},
                              {"KEEL_STORAGE_STATEMENT_CACHE", "32"},
                              {"KEEL_STORAGE_TRANSACTION_TIMEOUT_MS", "60000"},
                              {"KEEL_STORAGE_MAX_DB_BYTES", "1048576"},
                          });
  CHECK(c.storage.readers == 8);
  CHECK(c.storage.synchronous == cfg::SyncMode::kFull);
  CHECK(c.storage.busy_timeout == 0ms);
  CHECK(c.storage.statement_cache == 32);
  CHECK(c.storage.transaction_timeout == 60000ms);
  CHECK(c.storage.max_db_bytes == 1048576);
  CHECK(errors_of("", {{"KEEL_STORAGE_READERS", "0"}, {"KEEL_STORAGE_MAX_DB_BYTES", "1G"}}) ==
        std::vector<std::string>{
            "env KEEL_STORAGE_MAX_DB_BYTES: [storage] max_db_bytes: expected a decimal integer, got '1G'",
            "env KEEL_STORAGE_READERS: [storage] readers: 0 is out of range (allowed 1..64)",
        });
}

TEST_CASE("a plugin's max_db_bytes is host-owned and not passed to the plugin", "[config][storage]") {
  const auto c = parse_ok(R"([plugin.orders]
max_db_bytes = 65536
currency = "EUR"

[plugin.audit]
max_db_bytes = 0

[plugin.hello]
greeting = "hi"
)");
  const auto& orders = c.plugin_sections.at("orders");
  REQUIRE(orders.max_db_bytes.has_value());
  CHECK(*orders.max_db_bytes == 65536);
  CHECK(nlohmann::json::parse(orders.settings_json) == nlohmann::json{{"currency", "EUR"}});
  CHECK(orders.key_positions.count("max_db_bytes") == 0);
  const auto& audit = c.plugin_sections.at("audit");
  REQUIRE(audit.max_db_bytes.has_value());
  CHECK(*audit.max_db_bytes == 0);
  CHECK(audit.settings_json == "{}");
  CHECK_FALSE(c.plugin_sections.at("hello").max_db_bytes.has_value());
}

TEST_CASE("a bad plugin max_db_bytes is reported at the value", "[config][storage]") {
  CHECK(errors_of("[plugin.orders]\nmax_db_bytes = -1\n[plugin.audit]\nmax_db_bytes = \"1GB\"\n") ==
        std::vector<std::string>{
            "keel.toml:2:16: [plugin.orders] max_db_bytes: -1 is out of range (must be at least 0; 0 = unlimited)",
            "keel.toml:4:16: [plugin.audit] max_db_bytes: expected an integer number of bytes (0 = unlimited), "
            "got a string",
        });
}

TEST_CASE("a plugin's log_level is host-owned and checked", "[config]") {
  const auto c = parse_ok("[plugin.orders]\nlog_level = \"debug\"\ncurrency = \"EUR\"\n");
  const auto& orders = c.plugin_sections.at("orders");
  CHECK(orders.log_level == "debug");
  CHECK(nlohmann::json::parse(orders.settings_json) == nlohmann::json{{"currency", "EUR"}});
  CHECK(errors_of("[plugin.orders]\nlog_level = \"verbose\"\n") ==
        std::vector<std::string>{"keel.toml:2:13: [plugin.orders] log_level: expected one of trace, debug, info, warn, "
                                 "error, critical, off"});
}

TEST_CASE("events keys are read from the file", "[config][events]") {
  const auto c = parse_ok(R"([events]
queue_capacity = 500
max_attempts = 3
retry_base_ms = 250
retry_max_ms = 60000
retention_ms = 3600000
batch = 64
dead_letter_capacity = 10
)");
  CHECK(c.events.queue_capacity == 500);
  CHECK(c.events.max_attempts == 3);
  CHECK(c.events.retry_base == 250ms);
  CHECK(c.events.retry_max == 60000ms);
  CHECK(c.events.retention == 3600000ms);
  CHECK(c.events.batch == 64);
  CHECK(c.events.dead_letter_capacity == 10);
}

TEST_CASE("events keys accept the ends of their ranges", "[config][events]") {
  const auto low = parse_ok(
      "[events]\nqueue_capacity = 1\nmax_attempts = 1\nretry_base_ms = 1\nretry_max_ms = 1\nretention_ms = 0\n"
      "batch = 1\ndead_letter_capacity = 0\n");
  CHECK(low.events.queue_capacity == 1);
  CHECK(low.events.max_attempts == 1);
  CHECK(low.events.retry_base == 1ms);
  CHECK(low.events.retry_max == 1ms);
  CHECK(low.events.retention == 0ms);
  CHECK(low.events.batch == 1);
  CHECK(low.events.dead_letter_capacity == 0);
  const auto high = parse_ok(
      "[events]\nqueue_capacity = 10000000\nmax_attempts = 1000\nretry_base_ms = 600000\nretry_max_ms = 3600000\n"
      "retention_ms = 31536000000\nbatch = 100000\ndead_letter_capacity = 1000000\n");
  CHECK(high.events.queue_capacity == 10000000);
  CHECK(high.events.max_attempts == 1000);
  CHECK(high.events.retry_base == 600000ms);
  CHECK(high.events.retry_max == 3600000ms);
  CHECK(high.events.retention == 31536000000ms);  // a year: not a timer, so beyond the one-day cap
  CHECK(high.events.batch == 100000);
  CHECK(high.events.dead_letter_capacity == 1000000);
}

TEST_CASE("events keys out of range are reported with the allowed range", "[config][events]") {
  const auto errors = errors_of(R"([events]
queue_capacity = 0
max_attempts = 0
retry_base_ms = 0
retention_ms = -1
batch = 0
dead_letter_capacity = -1
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:18: [events] queue_capacity: 0 is out of range (allowed 1..10000000)",
                      "keel.toml:3:16: [events] max_attempts: 0 is out of range (allowed 1..1000)",
                      "keel.toml:4:17: [events] retry_base_ms: 0 is out of range (allowed 1..600000)",
                      "keel.toml:5:16: [events] retention_ms: -1 is out of range (allowed 0..31536000000)",
                      "keel.toml:6:9: [events] batch: 0 is out of range (allowed 1..100000)",
                      "keel.toml:7:24: [events] dead_letter_capacity: -1 is out of range (allowed 0..1000000)",
                  });
  const auto high = errors_of(R"([events]
queue_capacity = 10000001
max_attempts = 1001
retry_base_ms = 600001
retention_ms = 31536000001
batch = 100001
dead_letter_capacity = 1000001
)");
  CHECK(high == std::vector<std::string>{
                    "keel.toml:2:18: [events] queue_capacity: 10000001 is out of range (allowed 1..10000000)",
                    "keel.toml:3:16: [events] max_attempts: 1001 is out of range (allowed 1..1000)",
                    "keel.toml:4:17: [events] retry_base_ms: 600001 is out of range (allowed 1..600000)",
                    "keel.toml:5:16: [events] retention_ms: 31536000001 is out of range (allowed 0..31536000000)",
                    "keel.toml:6:9: [events] batch: 100001 is out of range (allowed 1..100000)",
                    "keel.toml:7:24: [events] dead_letter_capacity: 1000001 is out of range (allowed 0..1000000)",
                });
  CHECK(single_error("[events]\nretry_max_ms = 3600001\n") ==
        "keel.toml:2:16: [events] retry_max_ms: 3600001 is out of range (allowed retry_base_ms = 100..3600000)");
}

TEST_CASE("retry_max_ms may not be less than retry_base_ms", "[config][events]") {
  SECTION("both set: the error is at retry_max_ms and names retry_base_ms") {
    CHECK(single_error("[events]\nretry_base_ms = 5000\nretry_max_ms = 4999\n") ==
          "keel.toml:3:16: [events] retry_max_ms: 4999 is out of range (allowed retry_base_ms = 5000..3600000)");
    CHECK(single_error("[events]\nretry_max_ms = 0\n") ==
          "keel.toml:2:16: [events] retry_max_ms: 0 is out of range (allowed retry_base_ms = 100..3600000)");
  }
  SECTION("only retry_base_ms set, above the default cap") {
    CHECK(single_error("[events]\nretry_base_ms = 30001\n") ==
          "keel.toml:2:17: [events] retry_base_ms: 30001 is more than retry_max_ms (30000, the default); lower it "
          "or set retry_max_ms higher");
  }
  SECTION("equal is allowed: every retry waits the same") {
    const auto c = parse_ok("[events]\nretry_base_ms = 30000\n");
    CHECK(c.events.retry_base == 30000ms);
    CHECK(c.events.retry_max == 30000ms);
    const auto both = parse_ok("[events]\nretry_base_ms = 600000\nretry_max_ms = 600000\n");
    CHECK(both.events.retry_base == 600000ms);
    CHECK(both.events.retry_max == 600000ms);
  }
  SECTION("the environment takes part in the comparison") {
    CHECK(single_error("[events]\nretry_max_ms = 1000\n", {{"KEEL_EVENTS_RETRY_BASE_MS", "2000"}}) ==
          "keel.toml:2:16: [events] retry_max_ms: 1000 is out of range (allowed retry_base_ms = 2000..3600000)");
    const auto c = parse_ok("[events]\nretry_base_ms = 60000\n", {{"KEEL_EVENTS_RETRY_MAX_MS", "120000"}});
    CHECK(c.events.retry_base == 60000ms);
    CHECK(c.events.retry_max == 120000ms);
  }
}

TEST_CASE("events keys of the wrong type name the expected type", "[config][events]") {
  const auto errors = errors_of(R"([events]
queue_capacity = "10k"
max_attempts = 5.0
retry_base_ms = "100ms"
retry_max_ms = true
retention_ms = [1]
batch = {}
dead_letter_capacity = "none"
)");
  CHECK(errors == std::vector<std::string>{
                      "keel.toml:2:18: [events] queue_capacity: expected an integer, got a string",
                      "keel.toml:3:16: [events] max_attempts: expected an integer, got a floating-point number",
                      "keel.toml:4:17: [events] retry_base_ms: expected an integer (milliseconds), got a string",
                      "keel.toml:5:16: [events] retry_max_ms: expected an integer (milliseconds), got a boolean",
                      "keel.toml:6:16: [events] retention_ms: expected an integer (milliseconds), got an array",
                      "keel.toml:7:9: [events] batch: expected an integer, got a table",
                      "keel.toml:8:24: [events] dead_letter_capacity: expected an integer, got a string",
                  });
  CHECK(single_error("events = 1\n") == "keel.toml:1:10: [events]: expected a table, got an integer");
}

TEST_CASE("unknown events keys suggest the closest valid one", "[config][events]") {
  CHECK(single_error("[events]\nqueue_capacty = 2\n") ==
        "keel.toml:2:1: unknown key 'queue_capacty' in [events] (did you mean 'queue_capacity'?)");
  CHECK(single_error("[events]\nbatches = 2\n") ==
        "keel.toml:2:1: unknown key 'batches' in [events] (did you mean 'batch'?)");
  CHECK(single_error("[events]\nretention = 5\n") ==
        "keel.toml:2:1: unknown key 'retention' in [events] "
        "(did you mean 'retention_ms'? durations are integer milliseconds)");
  CHECK(single_error("[events]\nretry_base = 5\n") ==
        "keel.toml:2:1: unknown key 'retry_base' in [events] "
        "(did you mean 'retry_base_ms'? durations are integer milliseconds)");
  CHECK(single_error("[events]\ndurable = true\n") ==
        "keel.toml:2:1: unknown key 'durable' in [events]; valid keys: queue_capacity, max_attempts, retry_base_ms, "
        "retry_max_ms, retention_ms, batch, dead_letter_capacity, max_payload_bytes");
  CHECK(single_error("[event]\n") == "keel.toml:1:2: unknown section [event] (did you mean [events]?)");
  CHECK(single_error("max_attempts = 2\n") ==
        "keel.toml:1:1: key 'max_attempts' is outside any section (did you mean 'max_attempts' in [events]?)");
  CHECK(single_error("", {{"KEEL_EVENTS_MAX_ATTEMPT", "2"}}) ==
        "env KEEL_EVENTS_MAX_ATTEMPT: unknown key 'max_attempt' in [events] (did you mean KEEL_EVENTS_MAX_ATTEMPTS?)");
}

TEST_CASE("environment variables override events keys", "[config][events]") {
  const auto c = parse_ok("[events]\nqueue_capacity = 2\nbatch = 8\n",
                          {
                              {"KEEL_EVENTS_QUEUE_CAPACITY", "20000"},
                              {"KEEL_EVENTS_MAX_ATTEMPTS", "7"},
                              {"KEEL_EVENTS_RETRY_BASE_MS", "50"},
                              {"KEEL_EVENTS_RETRY_MAX_MS", "5000"},
                              {"KEEL_EVENTS_RETENTION_MS", "0"},
                              {"KEEL_EVENTS_BATCH", "512"},
                              {"KEEL_EVENTS_DEAD_LETTER_CAPACITY", "0"},
                          });
  CHECK(c.events.queue_capacity == 20000);
  CHECK(c.events.max_attempts == 7);
  CHECK(c.events.retry_base == 50ms);
  CHECK(c.events.retry_max == 5000ms);
  CHECK(c.events.retention == 0ms);
  CHECK(c.events.batch == 512);
  CHECK(c.events.dead_letter_capacity == 0);
  CHECK(errors_of("", {{"KEEL_EVENTS_BATCH", "0"}, {"KEEL_EVENTS_RETENTION_MS", "1d"}}) ==
        std::vector<std::string>{
            "env KEEL_EVENTS_BATCH: [events] batch: 0 is out of range (allowed 1..100000)",
            "env KEEL_EVENTS_RETENTION_MS: [events] retention_ms: expected a decimal integer, got '1d'",
        });
}

TEST_CASE("environment variables do not configure plugin tables", "[config]") {
  const auto c = parse_ok("[plugin.hello]\nenabled = true\n", {{"KEEL_PLUGIN_HELLO_ENABLED", "false"}});
  CHECK(c.plugin_sections.at("hello").enabled);
}

TEST_CASE("load reads a file and resolves paths against its directory", "[config]") {
  keel::test::TempDir dir;
  const auto file = dir.write("conf/keel.toml", "[server]\nio_threads = 3\n[plugins]\ndirectory = \"p\"\n");
  const auto c = cfg::load(file, {{"KEEL_SERVER_IO_THREADS", "5"}});
  CHECK(c.source == file);
  CHECK(c.server.io_threads == 5);
  CHECK(c.plugins.directory == dir.path() / "conf" / "p");
  CHECK(c.server.data_dir == dir.path() / "conf" / "data");
}

TEST_CASE("load reports the path and the reason when the file cannot be read", "[config]") {
  keel::test::TempDir dir;
  const auto expect_error = [](const std::filesystem::path& path, const std::string& reason) {
    try {
      (void)cfg::load(path, {});
      FAIL("expected ConfigError");
    } catch (const cfg::ConfigError& e) {
      REQUIRE(e.diagnostics().size() == 1);
      CHECK(std::string{e.what()} == path.string() + ": cannot read config file: " + reason);
    }
  };
  expect_error(dir.path() / "missing.toml", "No such file or directory");
  expect_error(dir.path(), "Is a directory");
}

TEST_CASE("diagnostics from load carry the file path given", "[config]") {
  keel::test::TempDir dir;
  const auto file = dir.write("keel.toml", "[http]\nmax_body_bytes = -1\n");
  try {
    (void)cfg::load(file, {});
    FAIL("expected ConfigError");
  } catch (const cfg::ConfigError& e) {
    CHECK(std::string{e.what()} ==
          file.string() + ":2:18: [http] max_body_bytes: -1 is out of range (must be at least 0)");
  }
}

TEST_CASE("current_environment reads the process environment", "[config]") {
  REQUIRE(::setenv("KEEL_CONFIG_TEST_PROBE", "a=b c", 1) == 0);
  const auto env = cfg::current_environment();
  ::unsetenv("KEEL_CONFIG_TEST_PROBE");
  REQUIRE(env.count("KEEL_CONFIG_TEST_PROBE") == 1);
  CHECK(env.at("KEEL_CONFIG_TEST_PROBE") == "a=b c");
}

TEST_CASE("the committed config/keel.toml loads without errors", "[config]") {
  const auto file = std::filesystem::path(__FILE__).parent_path() / "../../../../config/keel.toml";
  REQUIRE(std::filesystem::exists(file));
  const auto c = cfg::load(file, {});
  const auto dir = file.parent_path();
  CHECK(c.server.listen == "127.0.0.1:8080");
  CHECK(c.server.data_dir == dir / "../build/data");
  CHECK(c.plugins.directory == dir / "../build/plugins");
  CHECK(c.http.max_body_bytes == 1048576);
  CHECK(c.log.level == "info");
  CHECK(c.admin.token.empty());
  REQUIRE(c.plugin_sections.count("hello") == 1);
  CHECK(c.plugin_sections.at("hello").enabled);
  CHECK(c.plugin_sections.at("hello").settings_json == R"({"greeting":"Hello"})");
}

TEST_CASE("the committed config/keel.toml states every default", "[config]") {
  const auto file = std::filesystem::path(__FILE__).parent_path() / "../../../../config/keel.toml";
  const auto c = cfg::load(file, {});
  const cfg::Config defaults = parse_ok("");
  CHECK(c.server.listen == defaults.server.listen);
  CHECK(c.server.io_threads == defaults.server.io_threads);
  CHECK(c.server.max_connections == defaults.server.max_connections);
  CHECK(c.server.drain_timeout == defaults.server.drain_timeout);
  CHECK(c.http.max_header_bytes == defaults.http.max_header_bytes);
  CHECK(c.http.max_target_bytes == defaults.http.max_target_bytes);
  CHECK(c.http.max_body_bytes == defaults.http.max_body_bytes);
  CHECK(c.http.header_read_timeout == defaults.http.header_read_timeout);
  CHECK(c.http.idle_timeout == defaults.http.idle_timeout);
  CHECK(c.http.request_timeout == defaults.http.request_timeout);
  CHECK(c.http.write_timeout == defaults.http.write_timeout);
  CHECK(c.log.level == defaults.log.level);
  CHECK(c.log.format == defaults.log.format);
  CHECK(c.log.access_log == defaults.log.access_log);
  CHECK(c.admin.token == defaults.admin.token);
  CHECK(c.storage.synchronous == defaults.storage.synchronous);
  CHECK(c.storage.busy_timeout == defaults.storage.busy_timeout);
  CHECK(c.storage.readers == defaults.storage.readers);
  CHECK(c.storage.statement_cache == defaults.storage.statement_cache);
  CHECK(c.storage.transaction_timeout == defaults.storage.transaction_timeout);
  CHECK(c.storage.max_db_bytes == defaults.storage.max_db_bytes);
  CHECK(c.events.queue_capacity == defaults.events.queue_capacity);
  CHECK(c.events.max_attempts == defaults.events.max_attempts);
  CHECK(c.events.retry_base == defaults.events.retry_base);
  CHECK(c.events.retry_max == defaults.events.retry_max);
  CHECK(c.events.retention == defaults.events.retention);
  CHECK(c.events.batch == defaults.events.batch);
  CHECK(c.events.dead_letter_capacity == defaults.events.dead_letter_capacity);
  CHECK(c.plugins.isolation == defaults.plugins.isolation);
  CHECK(c.plugins.runner == defaults.plugins.runner);
}

TEST_CASE("isolation and runner keys are host-owned and read per plugin", "[config][isolation]") {
  const auto c = parse_ok(R"([plugins]
isolation = "process"
runner = "bin/keel-plugin-runner"

[plugin.orders]
isolation = "in-process"
currency = "EUR"

[plugin.risky]
runner_threads = 2
runner_memory_bytes = 268435456
runner_cpu_seconds = 60
runner_cpu_percent = 50
runner_cgroup_memory_bytes = 134217728
runner_open_files = 256
runner_user = "nobody"
runner_allow_root = true
runner_network = false
runner_restart_backoff_ms = 50
runner_restart_backoff_max_ms = 1000
runner_max_crashes = 3
runner_crash_window_ms = 10000
runner_ping_interval_ms = 200
runner_ping_timeout_ms = 1000
runner_hook_timeout_ms = 5000
quarantine_error_rate = 0.25
quarantine_p99_ms = 300
quarantine_window_ms = 10000
quarantine_min_requests = 5
)");
  CHECK(c.plugins.isolation == "process");
  CHECK(c.plugins.runner == std::filesystem::path("keel.toml").parent_path() / "bin/keel-plugin-runner");
  const auto& orders = c.plugin_sections.at("orders");
  CHECK(orders.isolation == "in-process");
  CHECK(nlohmann::json::parse(orders.settings_json) == nlohmann::json{{"currency", "EUR"}});
  const auto& risky = c.plugin_sections.at("risky");
  CHECK(risky.isolation.empty());  // [plugins] isolation applies
  CHECK(risky.settings_json == "{}");
  const auto& r = risky.runner;
  CHECK(r.threads == 2);
  CHECK(r.memory_bytes == 268435456);
  CHECK(r.cpu_seconds == 60);
  CHECK(r.cpu_percent == 50);
  CHECK(r.cgroup_memory_bytes == 134217728);
  CHECK(r.open_files == 256);
  CHECK(r.user == "nobody");
  CHECK(r.allow_root);
  CHECK_FALSE(r.network);
  CHECK_FALSE(orders.runner.allow_root);  // never root unless asked
  CHECK(orders.runner.network);           // the host's network unless asked
  CHECK(r.restart_backoff == 50ms);
  CHECK(r.restart_backoff_max == 1000ms);
  CHECK(r.max_crashes == 3);
  CHECK(r.crash_window == 10000ms);
  CHECK(r.ping_interval == 200ms);
  CHECK(r.ping_timeout == 1000ms);
  CHECK(r.hook_timeout == 5000ms);
  CHECK(risky.budget.max_error_rate == Approx(0.25));
  CHECK(risky.budget.max_p99 == 300ms);
  CHECK(risky.budget.window == 10000ms);
  CHECK(risky.budget.min_requests == 5);
  CHECK(risky.budget.enabled());
  CHECK_FALSE(orders.budget.enabled());
  const cfg::Config defaults = parse_ok("");
  CHECK(defaults.plugins.isolation == "in-process");
  CHECK(defaults.plugins.runner.empty());
}

TEST_CASE("bad isolation and runner keys are reported at the value", "[config][isolation]") {
  CHECK(errors_of("[plugins]\nisolation = \"container\"\n[plugin.a]\nisolation = \"sandbox\"\nrunner_threads = 0\n"
                  "runner_memory_bytes = -5\nruner_user = 1\nquarantine_error_rate = 1.5\nquarantine_window_ms = 10\n"
                  "runner_user = \"\"\nrunner_network = \"no\"\n") ==
        std::vector<std::string>{
            "keel.toml:2:13: [plugins] isolation: 'container' is not one of in-process, process",
            "keel.toml:4:13: [plugin.a] isolation: expected \"in-process\" or \"process\"",
            "keel.toml:5:18: [plugin.a] runner_threads: expected an integer number of threads in 1..256",
            "keel.toml:6:23: [plugin.a] runner_memory_bytes: expected an integer number of bytes (0 = no limit) in "
            "0..9223372036854775807",
            "keel.toml:8:25: [plugin.a] quarantine_error_rate: expected a share of failed answers in 0..1, e.g. 0.5 "
            "(0 = off)",
            "keel.toml:9:24: [plugin.a] quarantine_window_ms: expected an integer number of milliseconds in "
            "1000..3600000",
            "keel.toml:10:15: [plugin.a] runner_user: expected a user name, e.g. \"nobody\"",
            "keel.toml:11:18: [plugin.a] runner_network: expected true or false",
        });
}

TEST_CASE("CORS: \"*\" with credentials and the null origin are refused, naming the key", "[config][cors]") {
  CHECK(single_error("[cors]\nallowed_origins = \"*\"\nallow_credentials = true\n") ==
        "keel.toml:2:19: [cors] allowed_origins: \"*\" cannot be combined with allow_credentials = true (every site "
        "could read credentialed answers); list the origins that may send credentials");
  CHECK(single_error("[cors]\nallowed_origins = \"https://app.example, null\"\n") ==
        "keel.toml:2:19: [cors] allowed_origins: \"null\" cannot be allowed (any page can send Origin: null); list the "
        "real origins");
  const auto env_error = errors_of("[cors]\nallow_credentials = true\n", {{"KEEL_CORS_ALLOWED_ORIGINS", "*"}});
  REQUIRE(env_error.size() == 1);
  CHECK(env_error.front().find("cannot be combined with allow_credentials") != std::string::npos);
  const auto ok = parse_ok("[cors]\nallowed_origins = \"*\"\n");
  CHECK(ok.cors.allowed_origins == std::vector<std::string>{"*"});
  const auto listed = parse_ok("[cors]\nallowed_origins = \"https://app.example\"\nallow_credentials = true\n");
  CHECK(listed.cors.allow_credentials);
}

TEST_CASE("TLS: tls_cert and tls_key are both set or neither, paths resolve, min version is 1.2 or 1.3",
          "[config][tls]") {
  const auto off = parse_ok("");
  CHECK_FALSE(off.server.tls());
  CHECK(off.server.tls_min_version == cfg::TlsVersion::k12);

  const auto on = parse_ok("[server]\ntls_cert = \"tls/cert.pem\"\ntls_key = \"/secure/key.pem\"\ntls_min_version = \"1.3\"\n");
  CHECK(on.server.tls());
  CHECK(on.server.tls_cert == std::filesystem::path("/etc/keel/tls/cert.pem"));  // relative to the config file
  CHECK(on.server.tls_key == std::filesystem::path("/secure/key.pem"));
  CHECK(on.server.tls_min_version == cfg::TlsVersion::k13);

  CHECK(single_error("[server]\ntls_cert = \"cert.pem\"\n") ==
        "keel.toml:2:12: [server] tls_cert is set but tls_key is not: set tls_key to the certificate's private key "
        "file (PEM), or remove tls_cert to serve plain HTTP");
  CHECK(single_error("[server]\ntls_key = \"key.pem\"\n") ==
        "keel.toml:2:11: [server] tls_key is set but tls_cert is not: set tls_cert to the certificate chain file "
        "(PEM), or remove tls_key to serve plain HTTP");
  CHECK(single_error("[server]\ntls_cert = \"c.pem\"\ntls_key = \"k.pem\"\ntls_min_version = \"1.1\"\n") ==
        "keel.toml:4:19: [server] tls_min_version: '1.1' is not one of 1.2, 1.3 (did you mean '1.2'?)");
  CHECK(single_error("[server]\ntls_cert = \"\"\ntls_key = \"k.pem\"\n") ==
        "keel.toml:2:12: [server] tls_cert: must not be empty");

  // The environment fills the other half like any [server] key.
  const auto env = parse_ok("[server]\ntls_cert = \"cert.pem\"\n", {{"KEEL_SERVER_TLS_KEY", "/run/keys/key.pem"}});
  CHECK(env.server.tls_key == std::filesystem::path("/run/keys/key.pem"));
  const auto env_only = errors_of("", {{"KEEL_SERVER_TLS_CERT", "/c.pem"}});
  REQUIRE(env_only.size() == 1);
  CHECK(env_only.front() == "env KEEL_SERVER_TLS_CERT: [server] tls_cert is set but tls_key is not: set tls_key to "
                            "the certificate's private key file (PEM), or remove tls_cert to serve plain HTTP");
}

// --- [cluster] (docs/config.md "[cluster]") ---------------------------------------------------

TEST_CASE("cluster config: off by default, and every key is read", "[config][cluster]") {
  CHECK_FALSE(parse_ok("").cluster.enabled());
  const auto c = cfg::parse(R"([cluster]
nats_url = "nats://127.0.0.1:4222, nats://nats-2.internal:4223,nats://[::1]:4224"
node = "host-a_1"
subject_prefix = "shop.prod"
user = "keel"
password = "pw"
announce_interval_ms = 250
request_timeout_ms = 1500
durable_batch = 1
)",
                            "keel.toml", {})
                     .cluster;
  CHECK(c.enabled());
  CHECK(c.node == "host-a_1");
  CHECK(c.subject_prefix == "shop.prod");
  CHECK(c.user == "keel");
  CHECK(c.password == "pw");
  CHECK(c.announce_interval == 250ms);
  CHECK(c.request_timeout == 1500ms);
  CHECK(c.durable_batch == 1);
  // The environment overrides as for every section; a token alone is fine.
  const auto env = cfg::parse("", "keel.toml",
                              {{"KEEL_CLUSTER_NATS_URL", "nats://127.0.0.1:4222"}, {"KEEL_CLUSTER_TOKEN", "t0k"}});
  CHECK(env.cluster.enabled());
  CHECK(env.cluster.token == "t0k");
}

TEST_CASE("cluster config: server lists that are not nats://HOST:PORT are refused at the value",
          "[config][cluster]") {
  const auto check = [](std::string_view url, std::string_view problem) {
    CAPTURE(url);
    CHECK(single_error("[cluster]\nnats_url = \"" + std::string(url) + "\"\n") ==
          "keel.toml:2:12: [cluster] nats_url: '" + std::string(url) + "': " + std::string(problem));
  };
  check("127.0.0.1:4222", "server 1: expected nats://HOST:PORT (no other scheme is supported)");
  check("tls://h:4222", "server 1: expected nats://HOST:PORT (no other scheme is supported)");
  check("nats://u:secret@h:4222",
        "server 1: credentials in the URL would show wherever the URL does: put them in [cluster] token, or user and "
        "password");
  check("nats://h", "server 1: expected nats://HOST:PORT (the port is required)");
  check("nats://h:0", "server 1: the port must be a number in 1..65535");
  check("nats://h:4222/x", "server 1: expected nats://HOST:PORT without a path");
  check("nats://h:4222,,nats://i:4222", "server 2 of the list is empty (a stray comma?)");
  check("nats://h:4222,nats://b ad:1", "server 2: the host contains characters not allowed in a host name or address");
}

TEST_CASE("cluster config: node names and prefixes are NATS subject tokens", "[config][cluster]") {
  CHECK(single_error("[cluster]\nnats_url = \"nats://h:1\"\nnode = \"a.b\"\n") ==
        "keel.toml:3:8: [cluster] node: 'a.b': use letters, digits, '_' and '-' only (it becomes a NATS subject token)");
  CHECK(single_error("[cluster]\nnats_url = \"nats://h:1\"\nsubject_prefix = \"keel.*\"\n") ==
        "keel.toml:3:18: [cluster] subject_prefix: 'keel.*': use tokens of letters, digits, '_' and '-' separated by "
        "'.' (no wildcards or spaces)");
  CHECK(single_error("[cluster]\nnats_url = \"nats://h:1\"\nsubject_prefix = \"keel.\"\n") ==
        "keel.toml:3:18: [cluster] subject_prefix: 'keel.': an empty token (a dot at the end)");
}

TEST_CASE("cluster config: one way to authenticate, and nothing without nats_url", "[config][cluster]") {
  CHECK(single_error("[cluster]\nnats_url = \"nats://h:1\"\ntoken = \"t\"\nuser = \"u\"\n") ==
        "keel.toml:3:9: [cluster] token: set either token or user and password, not both");
  CHECK(single_error("[cluster]\nnats_url = \"nats://h:1\"\npassword = \"p\"\n") ==
        "keel.toml:3:12: [cluster] password: set user too (NATS takes a user and its password together)");
  CHECK(single_error("[cluster]\nnode = \"a\"\n") ==
        "keel.toml:2:8: [cluster] node is set but nats_url is not: set nats_url to the NATS server(s), e.g. "
        "\"nats://127.0.0.1:4222\", or remove the key");
}

TEST_CASE("cluster config: /admin/config redacts the token and the password", "[config][cluster]") {
  const auto c = cfg::parse("[cluster]\nnats_url = \"nats://h:1\"\nuser = \"keel\"\npassword = \"hunter2\"\n",
                            "keel.toml", {});
  const auto j = nlohmann::json::parse(cfg::to_json(c));
  CHECK(j["cluster"]["password"] == "<redacted>");
  CHECK(j["cluster"]["token"] == "");
  CHECK(j["cluster"]["user"] == "keel");
  CHECK(j["cluster"]["nats_url"] == "nats://h:1");
  CHECK(cfg::to_json(c).find("hunter2") == std::string::npos);
}
