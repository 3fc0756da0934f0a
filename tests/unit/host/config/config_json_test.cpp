// config::to_json(): the effective configuration as GET /admin/config shows it, every section
// and key, with secrets redacted by section ([admin] token), by the plugin's config schema and by
// the look of a key's name.
#include <set>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace cfg = keel::host::config;
using Json = nlohmann::json;

namespace {

Json json_of(const cfg::Config& c, const cfg::SecretKeys& secrets = {}) {
  const auto text = cfg::to_json(c, secrets);
  auto j = Json::parse(text, nullptr, false);
  INFO(text);
  REQUIRE(j.is_object());
  return j;
}

// The list parse() gives after `marker` in its message about `toml` (an unknown name close to no
// valid one, so the message lists every valid one), split at ", ".
std::set<std::string> listed_in_error(const std::string& toml, std::string_view marker) {
  std::string message;
  try {
    (void)cfg::parse(toml, "keel.toml", {});
  } catch (const cfg::ConfigError& e) {
    REQUIRE(e.diagnostics().size() == 1);
    message = e.diagnostics().front().message;
  }
  const auto at = message.find(marker);
  INFO(message);
  REQUIRE(at != std::string::npos);
  std::set<std::string> items;
  const std::string rest = message.substr(at + marker.size());
  for (std::size_t start = 0;;) {
    const auto comma = rest.find(", ", start);
    items.insert(rest.substr(start, comma == std::string::npos ? std::string::npos : comma - start));
    if (comma == std::string::npos) break;
    start = comma + 2;
  }
  return items;
}

}  // namespace

TEST_CASE("config to_json has a member for every key the parser accepts, and no other", "[config][admin]") {
  // Guards against a key added to the parser (config.cpp kSections) but not to to_json().
  auto j = json_of(cfg::parse("", "keel.toml", {}));
  std::set<std::string> sections;  // as the parser's message writes them: "[server]"
  for (const auto& [name, value] : j.items())
    if (name != "source") sections.insert(name == "plugin" ? "[plugin.<name>]" : "[" + name + "]");
  CHECK(sections == listed_in_error("[qqqqqqqqqqqqqqqqqqqq]\nx = 1\n", "; valid sections: "));
  for (const auto& [section, members] : j.items()) {
    if (section == "source" || section == "plugin") continue;
    INFO(section);
    std::set<std::string> shown;
    for (const auto& [key, value] : members.items()) shown.insert(key);
    CHECK(shown == listed_in_error("[" + section + "]\nqqqqqqqqqqqqqqqqqqqq = 1\n", "; valid keys: "));
  }
}

TEST_CASE("config to_json writes every section and key with the effective values", "[config][admin]") {
  const auto c = cfg::parse("[server]\nio_threads = 3\n[log]\nformat = \"json\"\n[cors]\nallowed_origins = \"https://a, https://b\"\n"
                            "[storage]\nsynchronous = \"full\"\n",
                            "/etc/keel/keel.toml", {{"KEEL_HTTP_MAX_BODY_BYTES", "65536"}, {"KEEL_EVENTS_BATCH", "9"}});
  auto j = json_of(c);
  CHECK(j["source"] == "/etc/keel/keel.toml");
  CHECK(j["server"] == Json{{"listen", "127.0.0.1:8080"},
                            {"io_threads", 3},
                            {"max_connections", 10000},
                            {"drain_timeout_ms", 10000},
                            {"data_dir", "/etc/keel/data"},
                            {"worker_threads", 4},
                            {"worker_queue", 1024},
                            {"tls_cert", ""},
                            {"tls_key", ""},
                            {"tls_min_version", "1.2"}});
  CHECK(j["http"] == Json{{"max_header_bytes", 16384},
                          {"max_target_bytes", 8192},
                          {"max_body_bytes", 65536},
                          {"header_read_timeout_ms", 10000},
                          {"idle_timeout_ms", 60000},
                          {"request_timeout_ms", 30000},
                          {"write_timeout_ms", 30000}});
  CHECK(j["log"]["level"] == "info");
  CHECK(j["log"]["format"] == "json");
  CHECK(j["log"]["access_log"] == true);
  CHECK(j["admin"] == Json{{"token", ""},  // unset: shown empty, nothing to hide
                           {"token_next", ""},
                           {"token_file", ""},
                           {"listen", ""},
                           {"max_failed_attempts", 10},
                           {"failed_attempts_window_ms", 60000},
                           {"max_upload_bytes", 67108864}});
  CHECK(j["plugins"] == Json{{"directory", "/etc/keel/plugins"},
                             {"watch", true},
                             {"watch_debounce_ms", 500},
                             {"watch_rescan_ms", 2000},
                             {"isolation", "in-process"},
                             {"runner", ""},
                             {"require_sha256", false}});
  CHECK(j["cors"]["allowed_origins"] == Json{"https://a", "https://b"});
  CHECK(j["cors"]["allowed_methods"] == Json{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"});
  CHECK(j["cors"]["max_age_s"] == 600);
  CHECK(j["cors"]["allow_credentials"] == false);
  CHECK(j["storage"] == Json{{"synchronous", "full"},
                             {"busy_timeout_ms", 5000},
                             {"readers", 4},
                             {"statement_cache", 128},
                             {"transaction_timeout_ms", 10000},
                             {"max_db_bytes", 0},
                             {"engine", "sqlite"},
                             {"postgres_url", ""},
                             {"postgres_prefix", "keel"},
                             {"postgres_pool_size", 8},
                             {"postgres_connect_timeout_ms", 3000}});
  CHECK(j["events"] == Json{{"queue_capacity", 10000},
                            {"max_attempts", 5},
                            {"retry_base_ms", 100},
                            {"retry_max_ms", 30000},
                            {"retention_ms", 86400000},
                            {"batch", 9},
                            {"dead_letter_capacity", 1000},
                            {"max_payload_bytes", 1048576}});
  CHECK(j["plugin"] == Json::object());
  // Sections in the order of the file and docs/config.md.
  const auto text = cfg::to_json(c);
  CHECK(text.find("\"server\"") < text.find("\"http\""));
  CHECK(text.find("\"storage\"") < text.find("\"events\""));
}

TEST_CASE("config to_json redacts the admin token from the file and from the environment", "[config][admin]") {
  SECTION("file") {
    auto j = json_of(cfg::parse("[admin]\ntoken = \"s3cr3t-s3cr3t-s3cr3t-s3cr3t-s3cr3t\"\n", "keel.toml", {}));
    CHECK(j["admin"]["token"] == "<redacted>");
  }
  SECTION("environment") {
    const auto c = cfg::parse("", "keel.toml", {{"KEEL_ADMIN_TOKEN", "from-env-from-env-from-env-from-env"}});
    CHECK(json_of(c)["admin"]["token"] == "<redacted>");
    CHECK(cfg::to_json(c).find("from-env") == std::string::npos);
  }
}

TEST_CASE("config to_json shows [storage] postgres_url without its password", "[config][admin]") {
  const auto key_value = cfg::parse(
      "[storage]\nengine = \"postgres\"\npostgres_url = \"host=db port=5432 password='it\\\\'s s3cret' user=keel\"\n",
      "keel.toml", {});
  CHECK(json_of(key_value)["storage"]["postgres_url"] == "host=db port=5432 password='<redacted>' user=keel");
  CHECK(cfg::to_json(key_value).find("s3cret") == std::string::npos);
  const auto uri = cfg::parse("", "keel.toml", {{"KEEL_STORAGE_POSTGRES_URL", "postgresql://keel:s3cret@db:5432/shop"}});
  CHECK(json_of(uri)["storage"]["postgres_url"] == "postgresql://keel:<redacted>@db:5432/shop");
  const auto query = cfg::parse("", "keel.toml", {{"KEEL_STORAGE_POSTGRES_URL", "postgresql://db/shop?user=k&password=s3cret&x=1"}});
  CHECK(json_of(query)["storage"]["postgres_url"] == "postgresql://db/shop?user=k&password=<redacted>&x=1");
  const auto bare = cfg::parse("[storage]\npostgres_url = \"host=db password=s3cret\"\n", "keel.toml", {});
  CHECK(json_of(bare)["storage"]["postgres_url"] == "host=db password=<redacted>");
}

TEST_CASE("config to_json finds postgres_url's password wherever libpq does", "[config][admin]") {
  // Each of these showed the password (tests/fuzz/config, which reads the URL as libpq does).
  const auto shown = [](const std::string& url) {
    return json_of(cfg::parse("", "keel.toml", {{"KEEL_STORAGE_POSTGRES_URL", url}}))["storage"]["postgres_url"];
  };
  // key=value, though a value holds "://"
  CHECK(shown("application_name=a://b password=s3cret") == "application_name=a://b password=<redacted>");
  // any isspace() character separates pairs
  CHECK(shown("host=db\rpassword=s3cret") == "host=db\rpassword=<redacted>");
  CHECK(shown("host=db password\v=\fs3cret") == "host=db password\v=\f<redacted>");
  // a URI's user part ends at its first '@', a '?' before it included
  CHECK(shown("postgres://keel:s3?cret@db/shop") == "postgres://keel:<redacted>@db/shop");
  // a query keyword is percent-decoded, and its value runs to the next '&' ('#' included)
  CHECK(shown("postgresql://db/shop?passwor%64=s3cret") == "postgresql://db/shop?passwor%64=<redacted>");
  CHECK(shown("postgresql://db/shop?password=s3#cret&x=1") == "postgresql://db/shop?password=<redacted>&x=1");
  // a quote inside a bare value is a character of it, not the start of a quoted one
  CHECK(shown("host=a'b password=s3cret") == "host=a'b password=<redacted>");
  // a quoted password stays quoted, so the pair that may follow it without a blank stays one
  CHECK(shown("password='s3 cret'host=db") == "password='<redacted>'host=db");
  // a string libpq refuses (an unterminated quote, a scheme it does not know) is not shown at all
  CHECK(shown("host=db password='s3cret") == "<redacted>");
  CHECK(shown("POSTGRES://keel:s3cret@db/shop") == "<redacted>");
}

TEST_CASE("config to_json redacts plugin keys declared secret or named like secrets", "[config][admin]") {
  const auto c = cfg::parse(R"([plugin.orders]
mount = "/orders"
request_timeout_ms = 250
route_timeouts = { "GET /token/{id}" = 100 }
currency = "EUR"
signing_seed = "by-schema"
DB_Password = "by-name"
github_ApiKey = 42
empty_token = ""
tokens = ["a", "b"]
db.host = "db.local"
db.passwd = "nested"
auth.private_key = { pem = "-----BEGIN" }
servers = [{ name = "a", credential = "in-array" }]

[plugin.other]
signing_seed = "not-declared-here"
)",
                            "keel.toml", {});
  const cfg::SecretKeys secrets{{"orders", {"signing_seed", "currency_never_set"}}};
  const auto text = cfg::to_json(c, secrets);
  for (const char* leaked : {"by-schema", "by-name", "nested", "BEGIN", "in-array"}) {
    INFO(leaked);
    CHECK(text.find(leaked) == std::string::npos);
  }
  auto j = json_of(c, secrets);
  auto& orders = j["plugin"]["orders"];
  // Host-owned keys: shown, never judged by their look.
  CHECK(orders["enabled"] == true);
  CHECK(orders["mount"] == "/orders");
  CHECK(orders["sha256"].is_null());
  CHECK(orders["log_level"].is_null());
  CHECK(orders["request_timeout_ms"] == 250);
  CHECK(orders["route_timeouts"] == Json{{"GET /token/{id}", 100}});
  CHECK(orders["max_db_bytes"].is_null());
  // Plugin-owned keys.
  CHECK(orders["currency"] == "EUR");
  CHECK(orders["signing_seed"] == "<redacted>");   // the schema says so
  CHECK(orders["DB_Password"] == "<redacted>");    // the name says so, whatever the case
  CHECK(orders["github_ApiKey"] == "<redacted>");  // whatever the type
  CHECK(orders["empty_token"] == "");              // unset secrets stay visibly unset
  CHECK(orders["tokens"] == "<redacted>");         // a whole array under a secret name
  CHECK(orders["db"] == Json{{"host", "db.local"}, {"passwd", "<redacted>"}});
  CHECK(orders["auth"] == Json{{"private_key", "<redacted>"}});
  CHECK(orders["servers"] == Json::array({Json{{"credential", "<redacted>"}, {"name", "a"}}}));
  // The schema's secrets belong to one plugin: another plugin's key of the same name is shown.
  CHECK(j["plugin"]["other"]["signing_seed"] == "not-declared-here");
}

TEST_CASE("looks_secret matches the secret words anywhere in a name, ignoring case", "[config][admin]") {
  for (const char* name : {"password", "db_password", "PASSWD", "client_secret", "Token", "refresh_token_ttl",
                           "api_key", "ApiKey", "PRIVATE_KEY", "aws_credentials"}) {
    INFO(name);
    CHECK(cfg::looks_secret(name));
  }
  for (const char* name : {"", "user", "pass", "key", "private", "currency", "api-key", "tok_en"}) {
    INFO(name);
    CHECK_FALSE(cfg::looks_secret(name));
  }
}

TEST_CASE("config to_json redacts keys named like secrets by suffix and passwords inside URLs", "[config][admin]") {
  const auto c = cfg::parse(R"([plugin.billing]
stripe_key = "sk_live_stripe"
smtp_pass = "smtp-pass-value"
db_url = "postgres://app:pg-pass-value@db.local:5432/shop?sslmode=require"
mirrors = ["https://user:mirror-pass-value@mirror.example/x", "https://plain.example/y"]
nested.dsn = "https://key:dsn-pass-value@sentry.example/1"
mirror_note = "https://user@host.example/path:with:colons@not-userinfo"
public = "https://host.example/a@b"
)",
                            "keel.toml", {});
  const auto text = cfg::to_json(c);
  for (const char* leaked : {"sk_live_stripe", "smtp-pass-value", "pg-pass-value", "mirror-pass-value", "dsn-pass-value"}) {
    INFO(leaked);
    CHECK(text.find(leaked) == std::string::npos);
  }
  auto j = json_of(c);
  auto& billing = j["plugin"]["billing"];
  CHECK(billing["stripe_key"] == "<redacted>");
  CHECK(billing["smtp_pass"] == "<redacted>");
  CHECK(billing["db_url"] == "postgres://app:<redacted>@db.local:5432/shop?sslmode=require");
  CHECK(billing["mirrors"] == Json::array({"https://user:<redacted>@mirror.example/x", "https://plain.example/y"}));
  CHECK(billing["nested"]["dsn"] == "https://key:<redacted>@sentry.example/1");
  CHECK(billing["mirror_note"] == "https://user@host.example/path:with:colons@not-userinfo");
  CHECK(billing["public"] == "https://host.example/a@b");
}

TEST_CASE("looks_secret also matches _key, _pass, _pwd and _auth endings after a prefix", "[config][admin]") {
  for (const char* name : {"stripe_key", "SIGNING_KEY", "smtp_pass", "db_pwd", "basic_auth"}) {
    INFO(name);
    CHECK(cfg::looks_secret(name));
  }
  for (const char* name : {"_key", "key_id", "keys", "passage", "author", "max_keys"}) {
    INFO(name);
    CHECK_FALSE(cfg::looks_secret(name));
  }
}

TEST_CASE("config to_json shows the TLS file paths, never a key's content", "[config][admin][tls]") {
  const auto c = cfg::parse("[server]\ntls_cert = \"cert.pem\"\ntls_key = \"private/key.pem\"\n", "/etc/keel/keel.toml", {});
  auto j = json_of(c);
  CHECK(j["server"]["tls_cert"] == "/etc/keel/cert.pem");
  CHECK(j["server"]["tls_key"] == "/etc/keel/private/key.pem");  // a path, not a secret: shown for the operator
  CHECK(j["server"]["tls_min_version"] == "1.2");
}
