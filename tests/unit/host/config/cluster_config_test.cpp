// [cluster]: the NATS server list, the node name, the subject prefix, the credentials and what
// /admin/config shows of them (docs/config.md "[cluster]").
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace cfg = keel::host::config;
using namespace std::chrono_literals;

namespace {

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

std::string single_error(std::string_view text) {
  auto errors = errors_of(text);
  REQUIRE(errors.size() == 1);
  return errors.front();
}

}  // namespace

TEST_CASE("cluster config: off by default, and every key is read", "[config][cluster]") {
  CHECK_FALSE(cfg::parse("", "keel.toml", {}).cluster.enabled());
  const auto c = cfg::parse(R"([cluster]
nats_url = "nats://127.0.0.1:4222, nats://nats-2.internal:4223,nats://[::1]:4224"
node = "host-a_1"
subject_prefix = "shop.prod"
user = "keel"
password = "pw"
announce_interval_ms = 250
request_timeout_ms = 1500
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
