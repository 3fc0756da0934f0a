// The ABI is C and compiler-neutral: plugins built outside this repository from the installed
// package alone — one in pure C with gcc -std=c11, one in C++ with clang++ — load into this host.
#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "eventually.hpp"
#include "keel_host.hpp"
#include "process.hpp"
#include "raw_client.hpp"

using namespace std::chrono_literals;

namespace {

/// Runs scripts/<script> PREFIX OUT_DIR BUILD_DIR in `dir`, as a plugin author's build would use
/// the installed package; returns OUT_DIR, where it copied the plugins it built.
std::filesystem::path run_package_script(const keel::test::TempDir& dir, const std::string& script,
                                         std::chrono::seconds limit) {
  const auto out = dir.path() / "built";
  keel::test::Process run("/bin/bash",
                          {std::string(KEEL_SOURCE_DIR) + "/scripts/" + script, (dir.path() / "prefix").string(),
                           out.string(), KEEL_BUILD_DIR},
                          dir.path() / "script.log");
  const auto code = run.wait(limit);
  INFO(run.output());
  REQUIRE(code);
  REQUIRE(*code == 0);
  return out;
}

}  // namespace

TEST_CASE("out-of-tree C and clang++ plugins build from the installed package and load", "[plugins][integration][oot]") {
  keel::test::TempDir dir;
  const auto out = run_package_script(dir, "out-of-tree.sh", 600s);

  keel::test::HostOptions options;
  options.plugins = {out / "c_plugin.so", out / "cpp_plugin.so"};
  keel::test::KeelHost host(options);
  const auto c = keel::test::simple_request(host.port(), "GET", "/api/c_plugin/hi");
  REQUIRE(c);
  CHECK(c->status == 200);
  CHECK(c->body == R"({"from":"c"})");
  const auto cpp = keel::test::simple_request(host.port(), "GET", "/api/cpp_plugin/hi");
  REQUIRE(cpp);
  CHECK(cpp->status == 200);
  CHECK(cpp->body == R"({"from":"clang"})");
}

// issue 24's "Done when": `keel new plugin` in C and C++, with storage and events, against the
// installed package; both projects build, their generated tests pass (in the test host, with a
// real database), and the plugins load into a real host and answer their routes.
TEST_CASE("keel new plugin projects in C and C++ build, pass their tests and serve", "[plugins][integration][oot]") {
  keel::test::TempDir dir;
  const auto out = run_package_script(dir, "new-plugin-check.sh", 900s);

  keel::test::KeelHost host(keel::test::with_plugins({out / "greet_c.so", out / "greet_cpp.so"},
                                                     "[plugin.greet_c]\ngreeting = \"Hej\"\n"));
  for (const std::string name : {"greet_c", "greet_cpp"}) {
    INFO(name);
    const std::string base = "/api/" + name;
    const auto hello = keel::test::simple_request(host.port(), "GET", base + "/hello?name=Ada");
    REQUIRE(hello);
    CHECK(hello->status == 200);
    CHECK(hello->body.find(name == "greet_c" ? "Hej, Ada!" : "Hello, Ada!") != std::string::npos);

    const auto bad = keel::test::simple_request(host.port(), "POST", base + "/greetings", "[1]");
    REQUIRE(bad);
    CHECK(bad->status == 400);

    for (int i = 1; i <= 2; ++i) {
      const auto greeted = keel::test::simple_request(host.port(), "POST", base + "/greetings", R"({"name": "Ada"})");
      REQUIRE(greeted);
      CHECK(greeted->status == 200);
      CHECK(greeted->body.find("\"count\":" + std::to_string(i)) != std::string::npos);
    }
    const auto count = keel::test::simple_request(host.port(), "GET", base + "/greetings/Ada");
    REQUIRE(count);
    CHECK(count->status == 200);
    CHECK(count->body.find("\"count\":2") != std::string::npos);
    // The durable event, published in the transaction, reaches the plugin's own subscription.
    CHECK(keel::test::eventually([&] {
      const auto r = keel::test::simple_request(host.port(), "GET", base + "/hello");
      return r && r->body.find("\"events_seen\":2") != std::string::npos;
    }));
  }
}
