// [admin]: the 32-character minimum for every token (file, environment, token_file), the second
// token of a rotation, token_file (read, permissions, shape), the admin listener's address, and
// that no diagnostic and no /admin/config output ever carries a token's text.
#include "config/config.hpp"

#include <filesystem>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "temp_dir.hpp"

namespace cfg = keel::host::config;
namespace fs = std::filesystem;

namespace {

const std::string kGood = "0123456789abcdef0123456789abcdef";       // exactly 32
const std::string kNext = "fedcba9876543210fedcba9876543210-next";  // 37

std::vector<std::string> errors_of(const std::string& text, const cfg::Environment& env = {},
                                   const fs::path& name = "keel.toml") {
  try {
    (void)cfg::parse(text, name, env);
  } catch (const cfg::ConfigError& e) {
    std::vector<std::string> out;
    for (const auto& d : e.diagnostics()) out.push_back(d.str());
    return out;
  }
  FAIL("parse() accepted a configuration that should have been refused");
  return {};
}

fs::path private_file(const keel::test::TempDir& dir, const std::string& name, const std::string& text) {
  const auto p = dir.write(name, text);
  fs::permissions(p, fs::perms::owner_read | fs::perms::owner_write);
  return p;
}

}  // namespace

TEST_CASE("admin config: a token shorter than 32 characters is refused, saying how to make one", "[config][admin]") {
  const std::string weak = "iso-token";
  SECTION("from the file") {
    const auto errors = errors_of("[admin]\ntoken = \"" + weak + "\"\n");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == "keel.toml:2:9: [admin] token: too short (9 characters); use at least 32 characters, "
                       "e.g. the output of `openssl rand -hex 32`");
  }
  SECTION("from the environment, and the next token too") {
    const auto errors = errors_of("", {{"KEEL_ADMIN_TOKEN", weak}, {"KEEL_ADMIN_TOKEN_NEXT", kGood.substr(1)}});
    REQUIRE(errors.size() == 2);
    CHECK(errors[0].starts_with("env KEEL_ADMIN_TOKEN: [admin] token: too short (9 characters)"));
    CHECK(errors[1].starts_with("env KEEL_ADMIN_TOKEN_NEXT: [admin] token_next: too short (31 characters)"));
    for (const auto& e : errors) CHECK(e.find(weak) == std::string::npos);  // never the token itself
  }
  // 32 is enough; the API stays off without a token.
  CHECK(cfg::parse("[admin]\ntoken = \"" + kGood + "\"\n", "keel.toml", {}).admin.token == kGood);
  CHECK(cfg::parse("", "keel.toml", {}).admin.tokens().empty());
}

TEST_CASE("admin config: token_next is a second accepted token, only next to token", "[config][admin]") {
  const auto c = cfg::parse("[admin]\ntoken = \"" + kGood + "\"\n", "keel.toml", {{"KEEL_ADMIN_TOKEN_NEXT", kNext}});
  CHECK(c.admin.tokens() == std::vector<std::string>{kGood, kNext});
  const auto errors = errors_of("[admin]\ntoken_next = \"" + kNext + "\"\n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].starts_with("keel.toml:2:14: [admin] token_next: is set but [admin] token is not"));
}

TEST_CASE("admin config: token_file holds the token and, while rotating, the next one", "[config][admin]") {
  const keel::test::TempDir dir;
  const auto name = dir.path() / "keel.toml";
  SECTION("one token, relative to the config file, surrounding blanks ignored") {
    private_file(dir, "admin.token", "\n  " + kGood + "  \r\n\n");
    const auto c = cfg::parse("[admin]\ntoken_file = \"admin.token\"\n", name, {});
    CHECK(c.admin.token == kGood);
    CHECK(c.admin.token_next.empty());
    CHECK(c.admin.token_file == dir.path() / "admin.token");
  }
  SECTION("two tokens, from KEEL_ADMIN_TOKEN_FILE") {
    const auto file = private_file(dir, "admin.token", kGood + "\n" + kNext + "\n");
    const auto c = cfg::parse("", name, {{"KEEL_ADMIN_TOKEN_FILE", file.string()}});
    CHECK(c.admin.tokens() == std::vector<std::string>{kGood, kNext});
  }
  SECTION("open to group or others: refused with the chmod to run") {
    const auto file = dir.write("admin.token", kGood + "\n");
    fs::permissions(file, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read);
    const auto errors = errors_of("[admin]\ntoken_file = \"admin.token\"\n", {}, name);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0] == name.string() + ":2:14: [admin] token_file: " + file.string() +
                           " is open to group or others (mode 0644); run: chmod 600 " + file.string());
  }
  SECTION("a short token, three tokens, no token, no file, and next to [admin] token are refused") {
    const auto file = private_file(dir, "admin.token", kGood + "\nshort-one\n");
    auto errors = errors_of("[admin]\ntoken_file = \"admin.token\"\n", {}, name);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].ends_with("the token on line 2 of " + file.string() + " is too short (9 characters); use at "
                              "least 32 characters, e.g. the output of `openssl rand -hex 32`"));
    CHECK(errors[0].find("short-one") == std::string::npos);
    private_file(dir, "admin.token", kGood + "\n" + kNext + "\n" + kGood + "\n");
    errors = errors_of("[admin]\ntoken_file = \"admin.token\"\n", {}, name);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("has more than two tokens (line 3)") != std::string::npos);
    private_file(dir, "admin.token", "\n \n");
    errors = errors_of("[admin]\ntoken_file = \"admin.token\"\n", {}, name);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("holds no token; write one into it, e.g. openssl rand -hex 32 >") != std::string::npos);
    errors = errors_of("[admin]\ntoken_file = \"missing.token\"\n", {}, name);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("cannot read " + (dir.path() / "missing.token").string() + ": No such file") !=
          std::string::npos);
    private_file(dir, "admin.token", kGood + "\n");
    errors = errors_of("[admin]\ntoken_file = \"admin.token\"\n", {{"KEEL_ADMIN_TOKEN", kNext}}, name);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("[admin] token_file: cannot be combined with [admin] token") != std::string::npos);
  }
}

TEST_CASE("admin config: listen takes HOST:PORT or unix:PATH", "[config][admin]") {
  CHECK(cfg::parse("", "keel.toml", {}).admin.listen.empty());
  CHECK(cfg::parse("[admin]\nlisten = \"127.0.0.1:0\"\n", "keel.toml", {}).admin.listen == "127.0.0.1:0");
  CHECK(cfg::parse("[admin]\nlisten = \"unix:/run/keel/admin.sock\"\n", "keel.toml", {}).admin.listen ==
        "unix:/run/keel/admin.sock");
  CHECK(cfg::parse("[admin]\nlisten = \"unix:admin.sock\"\n", "/etc/keel/keel.toml", {}).admin.listen ==
        "unix:/etc/keel/admin.sock");
  CHECK(errors_of("[admin]\nlisten = \"nowhere\"\n") ==
        std::vector<std::string>{"keel.toml:2:10: [admin] listen: 'nowhere': expected HOST:PORT, e.g. 127.0.0.1:8080 "
                                 "or [::1]:8080; or unix:/path/to/socket"});
  CHECK(errors_of("[admin]\nlisten = \"unix:\"\n") ==
        std::vector<std::string>{"keel.toml:2:10: [admin] listen: 'unix:': expected unix:/path/to/socket (a file "
                                 "name after unix:)"});
  const auto errors = errors_of("[admin]\nlisten = \"unix:/" + std::string(120, 'a') + "\"\n");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].find("is longer than 107 bytes (the limit of a unix socket address)") != std::string::npos);
}

TEST_CASE("admin config: /admin/config redacts every token, wherever it came from", "[config][admin]") {
  const keel::test::TempDir dir;
  private_file(dir, "admin.token", kGood + "\n" + kNext + "\n");
  const auto c = cfg::parse("[admin]\ntoken_file = \"admin.token\"\nmax_failed_attempts = 3\n", dir.path() / "k.toml", {});
  const auto text = cfg::to_json(c);
  CHECK(text.find(kGood) == std::string::npos);
  CHECK(text.find(kNext) == std::string::npos);
  const auto j = nlohmann::json::parse(text);
  CHECK(j["admin"]["token"] == "<redacted>");
  CHECK(j["admin"]["token_next"] == "<redacted>");
  CHECK(j["admin"]["token_file"] == (dir.path() / "admin.token").string());
  CHECK(j["admin"]["listen"] == "");
  CHECK(j["admin"]["max_failed_attempts"] == 3);
  CHECK(j["admin"]["failed_attempts_window_ms"] == 60000);
}
