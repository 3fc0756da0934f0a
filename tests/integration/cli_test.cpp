// The keel command line: --version, config check, and start-up failures with clear messages.
#include <catch2/catch.hpp>

#include <string>

#include "process.hpp"
#include "temp_dir.hpp"

using keel::test::Process;
using keel::test::TempDir;
using namespace std::chrono_literals;

namespace {

struct Run {
  int code;
  std::string output;
};

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
