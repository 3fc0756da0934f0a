// plugins::check_together: the one pre-flight of a set of plugins, used by start-up (every file
// of the directory) and by reload and drop-in (what runs now plus the incoming file).

#include "plugins/preflight.hpp"

#include <string>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>

namespace kp = keel::host::plugins;

namespace {

/// A candidate with the manifest `{"name": name, "version": version, "abi": "1.0", <extra>}`.
kp::Candidate candidate(const std::string& name, const std::string& version, const std::string& extra = "") {
  const auto json = R"({"name": ")" + name + R"(", "version": ")" + version + R"(", "abi": "1.0")" +
                    (extra.empty() ? "" : ", " + extra) + "}";
  auto parsed = keel::host::package::parse_manifest(json);
  REQUIRE(std::holds_alternative<keel::host::package::Manifest>(parsed));
  kp::Candidate c;
  c.file = name + ".so";
  c.manifest = std::get<keel::host::package::Manifest>(std::move(parsed));
  return c;
}

std::string depends_on(const std::string& name, const std::string& range = ">=1.0.0") {
  return R"("dependencies": [{"name": ")" + name + R"(", "version": ")" + range + R"("}])";
}

kp::Candidate running(kp::Candidate c) {
  c.running = true;
  return c;
}
kp::Candidate incoming(kp::Candidate c) {
  c.incoming = true;
  return c;
}

const keel::host::config::Config kConfig{};

}  // namespace

TEST_CASE("preflight set: every member of a dependency cycle fails, however long it is", "[plugins][preflight]") {
  std::vector<kp::Candidate> all{candidate("a", "1.0.0", depends_on("b")), candidate("b", "1.0.0", depends_on("c")),
                                 candidate("c", "1.0.0", depends_on("a")), candidate("d", "1.0.0", depends_on("a")),
                                 candidate("e", "1.0.0")};
  kp::check_together(all, kConfig);
  for (int i = 0; i < 3; ++i) CHECK(all[static_cast<std::size_t>(i)].error == "dependency cycle: a -> b -> c -> a");
  CHECK(all[3].error.find("dependency 'a' cannot start: dependency cycle") == 0);
  CHECK(all[4].error.empty());
}

TEST_CASE("preflight set: missing, failed and out-of-range dependencies fail their dependents", "[plugins][preflight]") {
  auto broken = candidate("broken", "1.0.0");
  broken.error = "invalid manifest: x";
  std::vector<kp::Candidate> all{candidate("a", "1.0.0", depends_on("nobody")), broken,
                                 candidate("b", "1.0.0", depends_on("broken")),
                                 candidate("c", "1.0.0", depends_on("e", ">=2.0.0")), candidate("e", "1.5.0"),
                                 candidate("f", "1.0.0", depends_on("b"))};
  kp::check_together(all, kConfig);
  CHECK(all[0].error == "missing dependency 'nobody' (>=1.0.0): no plugin with that name");
  CHECK(all[2].error == "dependency 'broken' cannot start: invalid manifest: x");
  CHECK(all[3].error == "dependency 'e' version 1.5.0 is outside the required range '>=2.0.0'");
  CHECK(all[4].error.empty());
  CHECK(all[5].error.find("dependency 'b' cannot start: dependency 'broken' cannot start") == 0);
}

TEST_CASE("preflight set: duplicate names and colliding routes fail the later file", "[plugins][preflight]") {
  const std::string route = R"("routes": [{"method": "GET", "path": "/x"}])";
  auto config = kConfig;
  config.plugin_sections["b"].mount = "/api/a";  // b's routes where a's are
  std::vector<kp::Candidate> all{candidate("a", "1.0.0", route), candidate("b", "1.0.0", route), candidate("a", "2.0.0")};
  all[2].file = "a_again.so";
  kp::check_together(all, config);
  CHECK(all[0].error.empty());
  CHECK(all[1].error.find("GET /api/a/x") != std::string::npos);
  CHECK(all[2].error == "duplicate plugin name 'a': already provided by a.so");
}

TEST_CASE("preflight set: an incoming version that closes a longer cycle is refused", "[plugins][preflight]") {
  // Running: a -> b -> m. Incoming: m 2.0.0 -> a. Nothing depends on the new m directly.
  std::vector<kp::Candidate> all{running(candidate("a", "1.0.0", depends_on("b"))),
                                 running(candidate("b", "1.0.0", depends_on("m"))),
                                 incoming(candidate("m", "2.0.0", depends_on("a")))};
  kp::check_together(all, kConfig);
  CHECK(all[2].error == "dependency cycle: a -> b -> m -> a");
}

TEST_CASE("preflight set: what runs is never refused but an incoming version outside a dependent's range is",
          "[plugins][preflight]") {
  std::vector<kp::Candidate> all{running(candidate("caller", "1.0.0", depends_on("callee", ">=1.0.0 <2.0.0"))),
                                 incoming(candidate("callee", "2.0.0"))};
  kp::check_together(all, kConfig);
  CHECK(all[0].error.empty());
  CHECK(all[1].error == "version 2.0.0 is outside the range '>=1.0.0 <2.0.0' that plugin 'caller' requires");
}

TEST_CASE("preflight set: only the incoming plugin's config is checked, and such a refusal says so",
          "[plugins][preflight]") {
  const std::string schema = R"("config": {"currency": {"type": "string", "required": true}})";
  std::vector<kp::Candidate> all{running(candidate("old", "1.0.0", schema)), incoming(candidate("new", "1.0.0", schema))};
  kp::check_together(all, kConfig);
  CHECK(all[0].error.empty());  // it runs with the config it was started with
  CHECK(all[1].config_error);
  CHECK(all[1].error.find("invalid config for the new version: [plugin.new] currency: ") == 0);
}

TEST_CASE("preflight set: a dependency that does not run stands in the set with why", "[plugins][preflight]") {
  auto stopped = running(candidate("dep", "1.0.0"));
  stopped.error = "plugin 'dep' is disabled (disabled through the admin API)";
  std::vector<kp::Candidate> all{stopped, incoming(candidate("user", "1.0.0", depends_on("dep")))};
  kp::check_together(all, kConfig);
  CHECK(all[1].error == "dependency 'dep' cannot start: plugin 'dep' is disabled (disabled through the admin API)");
  CHECK_FALSE(all[1].config_error);
}

TEST_CASE("preflight set: a topic named after a plugin belongs to that plugin", "[plugins][preflight]") {
  std::vector<kp::Candidate> all{candidate("orders", "1.0.0", R"("events": {"publishes": ["orders.placed"]})"),
                                 candidate("rogue", "1.0.0", R"("events": {"publishes": ["orders.paid", "rogue.x"]})"),
                                 candidate("free", "1.0.0", R"("events": {"publishes": ["demo.any"]})")};
  kp::check_together(all, kConfig);
  CHECK(all[0].error.empty());
  CHECK(all[1].error == "plugin 'rogue' publishes 'orders.paid', a topic of plugin 'orders' (a topic whose first "
                       "segment is a plugin's name belongs to that plugin)");
  CHECK(all[2].error.empty());  // no plugin is named demo
  // What runs stays: a newcomer named after a topic a running plugin publishes is refused.
  std::vector<kp::Candidate> later{running(candidate("relay", "1.0.0", R"("events": {"publishes": ["audit.seen"]})")),
                                   incoming(candidate("audit", "1.0.0"))};
  kp::check_together(later, kConfig);
  CHECK(later[0].error.empty());
  CHECK(later[1].error.find("plugin 'relay' publishes 'audit.seen', a topic of plugin 'audit'") == 0);
}
