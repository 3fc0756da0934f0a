// The ABI is C and compiler-neutral: plugins built outside this repository from the installed
// package alone — one in pure C with gcc -std=c11, one in C++ with clang++ — load into this host.
#include <catch2/catch.hpp>

#include <filesystem>

#include "keel_host.hpp"
#include "process.hpp"
#include "raw_client.hpp"

using namespace std::chrono_literals;

TEST_CASE("out-of-tree C and clang++ plugins build from the installed package and load", "[plugins][integration][oot]") {
  keel::test::TempDir dir;
  const auto out = dir.path() / "built";
  keel::test::Process build("/bin/bash",
                            {std::string(KEEL_SOURCE_DIR) + "/scripts/out-of-tree.sh", (dir.path() / "prefix").string(),
                             out.string(), KEEL_BUILD_DIR},
                            dir.path() / "build.log");
  const auto code = build.wait(600s);
  INFO(build.output());
  REQUIRE(code);
  REQUIRE(*code == 0);

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
