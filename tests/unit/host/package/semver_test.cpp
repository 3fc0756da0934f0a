#include "package/semver.hpp"

#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

using keel::host::package::parse_version;
using keel::host::package::Version;
using keel::host::package::VersionRange;

namespace {

Version v(std::string_view text) {
  const auto parsed = parse_version(text);
  INFO("version " << text);
  REQUIRE(parsed.has_value());
  return *parsed;
}

bool satisfies(std::string_view range, std::string_view version) {
  const auto parsed = VersionRange::parse(range);
  INFO("range '" << range << "'");
  REQUIRE(parsed.has_value());
  return parsed->contains(v(version));
}

}  // namespace

TEST_CASE("semver parses valid versions", "[plugins][semver]") {
  SECTION("release") {
    const auto x = v("1.2.3");
    CHECK(x.major == 1);
    CHECK(x.minor == 2);
    CHECK(x.patch == 3);
    CHECK(x.prerelease.empty());
    CHECK(x.str() == "1.2.3");
  }
  SECTION("zeros and large numbers") {
    CHECK(v("0.0.0").str() == "0.0.0");
    CHECK(v("10.20.30").str() == "10.20.30");
    CHECK(v("18446744073709551615.0.0").major == 18446744073709551615ULL);
  }
  SECTION("pre-release identifiers") {
    CHECK(v("1.0.0-alpha").prerelease == "alpha");
    CHECK(v("1.0.0-alpha.1").prerelease == "alpha.1");
    CHECK(v("1.0.0-0.3.7").prerelease == "0.3.7");
    CHECK(v("1.0.0-x.7.z.92").prerelease == "x.7.z.92");
    CHECK(v("1.0.0-x-y-z.--").prerelease == "x-y-z.--");
    CHECK(v("1.0.0-0a.00a").prerelease == "0a.00a");  // alphanumeric ids may start with 0
    CHECK(v("1.0.0-rc.1").str() == "1.0.0-rc.1");
  }
  SECTION("build metadata is accepted and dropped") {
    CHECK(v("1.0.0-alpha+001").str() == "1.0.0-alpha");
    CHECK(v("1.0.0+20130313144700").str() == "1.0.0");
    CHECK(v("1.0.0-beta+exp.sha.5114f85").prerelease == "beta");
    CHECK(v("1.0.0+21AF26D3----117B344092BD").str() == "1.0.0");
    CHECK(v("1.0.0-a-b+c-d").prerelease == "a-b");
  }
}

TEST_CASE("semver rejects malformed versions", "[plugins][semver]") {
  const std::vector<std::string_view> bad = {
      "",          "1",          "1.2",         "1.2.3.4",      "1.2.3.",          "1.2.",
      "1.",        ".1.2.3",     "1..3",        "01.2.3",       "1.02.3",          "1.2.03",
      "00.0.0",    "1.2.3-",     "1.2.3+",      "1.2.3-01",     "1.2.3-alpha.01",  "1.2.3-alpha..1",
      "1.2.3-.a",  "1.2.3-a.",   "1.2.3-alpha_1", "1.2.3+build..1", "1.2.3+bu_ild", "1.2.3+a.",
      "1.2.3-+",   "1.2.3-a+",   "v1.2.3",      " 1.2.3",       "1.2.3 ",          "-1.2.3",
      "+1.2.3",    "1.2.x",      "*",           "a.b.c",        "1.2.3-é",         "18446744073709551616.0.0",
      "1.-2.3",    "1.+2.3",     "0x1.2.3",
  };
  for (const auto text : bad) {
    INFO("version '" << text << "'");
    CHECK_FALSE(parse_version(text).has_value());
  }
}

TEST_CASE("semver precedence follows semver.org section 11", "[plugins][semver]") {
  const std::vector<std::string_view> ascending = {
      "1.0.0-alpha", "1.0.0-alpha.1", "1.0.0-alpha.beta", "1.0.0-beta", "1.0.0-beta.2",
      "1.0.0-beta.11", "1.0.0-rc.1",  "1.0.0",            "1.0.1",      "1.1.0",
      "2.0.0",       "2.1.0",         "2.1.1",            "10.0.0",
  };
  for (std::size_t i = 0; i < ascending.size(); ++i) {
    for (std::size_t j = 0; j < ascending.size(); ++j) {
      INFO(ascending[i] << " vs " << ascending[j]);
      const int expected = i < j ? -1 : (i > j ? 1 : 0);
      CHECK(compare(v(ascending[i]), v(ascending[j])) == expected);
    }
  }
  CHECK(v("1.0.0-2") < v("1.0.0-10"));         // numeric identifiers compare as numbers
  CHECK(v("1.0.0-10") < v("1.0.0-9a"));        // numeric ranks below alphanumeric
  CHECK(v("1.0.0-a.b") < v("1.0.0-a.b.0"));    // a longer set of identifiers ranks higher
  CHECK(v("1.0.0-99999999999999999999") < v("1.0.0-100000000000000000000"));  // beyond uint64
  CHECK(v("1.0.0-B") < v("1.0.0-a"));          // alphanumeric ids compare in ASCII order
  CHECK(v("1.0.0+a") == v("1.0.0+b"));         // build metadata is ignored
  CHECK_FALSE(v("1.0.0-rc.1") == v("1.0.0"));
}

TEST_CASE("version ranges: comparators and sets", "[plugins][semver]") {
  SECTION(">=1.2.0 <2.0.0") {
    CHECK(satisfies(">=1.2.0 <2.0.0", "1.2.0"));
    CHECK(satisfies(">=1.2.0 <2.0.0", "1.99.99"));
    CHECK_FALSE(satisfies(">=1.2.0 <2.0.0", "1.1.9"));
    CHECK_FALSE(satisfies(">=1.2.0 <2.0.0", "2.0.0"));
    CHECK_FALSE(satisfies(">=1.2.0 <2.0.0", "2.0.0-rc.1"));
    CHECK_FALSE(satisfies(">=1.2.0 <2.0.0", "1.5.0-beta"));  // pre-release of an unnamed version
    CHECK(satisfies("  >=1.2.0   <2.0.0 ", "1.5.0"));        // extra spaces are fine
  }
  SECTION("=1.0.0 and a bare version") {
    CHECK(satisfies("=1.0.0", "1.0.0"));
    CHECK(satisfies("=1.0.0", "1.0.0+build.7"));
    CHECK_FALSE(satisfies("=1.0.0", "1.0.1"));
    CHECK_FALSE(satisfies("=1.0.0", "1.0.0-rc.1"));
    CHECK(satisfies("1.0.0", "1.0.0"));
    CHECK_FALSE(satisfies("1.0.0", "1.0.1"));
    CHECK(satisfies("=1.0.0-rc.1", "1.0.0-rc.1"));
  }
  SECTION(">1.2 and <=1.2 treat the partial version as a range") {
    CHECK_FALSE(satisfies(">1.2", "1.2.0"));
    CHECK_FALSE(satisfies(">1.2", "1.2.99"));
    CHECK(satisfies(">1.2", "1.3.0"));
    CHECK(satisfies(">1.2", "7.0.0"));
    CHECK_FALSE(satisfies(">1.2", "1.3.0-beta"));
    CHECK(satisfies("<=1.2", "0.0.0"));
    CHECK(satisfies("<=1.2", "1.2.99"));
    CHECK_FALSE(satisfies("<=1.2", "1.3.0"));
    CHECK(satisfies(">=1.2", "1.2.0"));
    CHECK_FALSE(satisfies(">=1.2", "1.1.99"));
    CHECK(satisfies("<1.2", "1.1.99"));
    CHECK_FALSE(satisfies("<1.2", "1.2.0"));
    CHECK(satisfies(">1.2.3", "1.2.4"));
    CHECK_FALSE(satisfies(">1.2.3", "1.2.3"));
    CHECK(satisfies("<=1.2.3", "1.2.3"));
    CHECK_FALSE(satisfies("<=1.2.3", "1.2.4"));
  }
  SECTION("x-ranges and partial versions") {
    CHECK(satisfies("1.x", "1.0.0"));
    CHECK(satisfies("1.x", "1.99.0"));
    CHECK_FALSE(satisfies("1.x", "2.0.0"));
    CHECK_FALSE(satisfies("1.x", "0.9.0"));
    CHECK_FALSE(satisfies("1.x", "2.0.0-alpha"));
    CHECK(satisfies("1.2", "1.2.0"));
    CHECK(satisfies("1.2", "1.2.99"));
    CHECK_FALSE(satisfies("1.2", "1.3.0"));
    CHECK_FALSE(satisfies("1.2", "1.1.9"));
    CHECK(satisfies("1.2.x", "1.2.5"));
    CHECK(satisfies("1.X", "1.5.0"));
    CHECK(satisfies("1.*", "1.5.0"));
  }
  SECTION("* and the empty range match every release, no pre-release") {
    for (const std::string_view any : {"*", "", "x", "  "}) {
      CHECK(satisfies(any, "0.0.0"));
      CHECK(satisfies(any, "99.1.2"));
      CHECK_FALSE(satisfies(any, "1.0.0-beta"));
    }
  }
}

TEST_CASE("version ranges: caret and tilde", "[plugins][semver]") {
  SECTION("^1.4") {
    CHECK(satisfies("^1.4", "1.4.0"));
    CHECK(satisfies("^1.4", "1.9.9"));
    CHECK_FALSE(satisfies("^1.4", "1.3.9"));
    CHECK_FALSE(satisfies("^1.4", "2.0.0"));
    CHECK_FALSE(satisfies("^1.4", "2.0.0-0"));
  }
  SECTION("^0.2.3 keeps the minor") {
    CHECK(satisfies("^0.2.3", "0.2.3"));
    CHECK(satisfies("^0.2.3", "0.2.9"));
    CHECK_FALSE(satisfies("^0.2.3", "0.2.2"));
    CHECK_FALSE(satisfies("^0.2.3", "0.3.0"));
  }
  SECTION("^0.0.3 keeps the patch") {
    CHECK(satisfies("^0.0.3", "0.0.3"));
    CHECK_FALSE(satisfies("^0.0.3", "0.0.4"));
    CHECK_FALSE(satisfies("^0.0.3", "0.0.2"));
  }
  SECTION("caret on partial versions") {
    CHECK(satisfies("^0", "0.9.9"));
    CHECK_FALSE(satisfies("^0", "1.0.0"));
    CHECK(satisfies("^0.0", "0.0.9"));
    CHECK_FALSE(satisfies("^0.0", "0.1.0"));
    CHECK(satisfies("^1", "1.9.0"));
    CHECK_FALSE(satisfies("^1", "2.0.0"));
  }
  SECTION("caret with a pre-release") {
    CHECK(satisfies("^1.2.3-beta.2", "1.2.3-beta.4"));
    CHECK(satisfies("^1.2.3-beta.2", "1.9.0"));
    CHECK_FALSE(satisfies("^1.2.3-beta.2", "1.2.3-beta.1"));
    CHECK_FALSE(satisfies("^1.2.3-beta.2", "1.2.4-beta.1"));
  }
  SECTION("^* matches every release and does not erase other comparators") {
    CHECK(satisfies("^*", "3.0.0"));
    CHECK(satisfies(">=1.0.0 ^*", "1.0.0"));
    CHECK_FALSE(satisfies(">=1.0.0 ^*", "0.5.0"));
  }
  SECTION("~1.4.2") {
    CHECK(satisfies("~1.4.2", "1.4.2"));
    CHECK(satisfies("~1.4.2", "1.4.9"));
    CHECK_FALSE(satisfies("~1.4.2", "1.4.1"));
    CHECK_FALSE(satisfies("~1.4.2", "1.5.0"));
  }
  SECTION("~1 and ~1.4") {
    CHECK(satisfies("~1", "1.0.0"));
    CHECK(satisfies("~1", "1.9.9"));
    CHECK_FALSE(satisfies("~1", "0.9.9"));
    CHECK_FALSE(satisfies("~1", "2.0.0"));
    CHECK(satisfies("~1.4", "1.4.7"));
    CHECK_FALSE(satisfies("~1.4", "1.5.0"));
  }
  SECTION("the upper bound does not overflow at the largest major") {
    CHECK(satisfies("^18446744073709551615", "18446744073709551615.3.0"));
    CHECK(satisfies("18446744073709551615.x", "18446744073709551615.3.0"));
    CHECK_FALSE(satisfies(">18446744073709551615", "18446744073709551615.3.0"));
    // A largest minor carries into the major: the bound becomes <2.0.0-0.
    CHECK(satisfies("~1.18446744073709551615.0", "1.18446744073709551615.5"));
    CHECK_FALSE(satisfies("~1.18446744073709551615.0", "2.0.0"));
  }
}

TEST_CASE("version ranges: pre-releases match only when named", "[plugins][semver]") {
  CHECK_FALSE(satisfies(">=1.0.0", "2.0.0-rc1"));
  CHECK(satisfies(">=1.0.0", "2.0.0"));
  CHECK(satisfies(">=2.0.0-rc.1", "2.0.0-rc.2"));
  CHECK(satisfies(">=2.0.0-rc.1", "2.0.0-rc.1"));
  CHECK(satisfies(">=2.0.0-rc.1", "2.0.0"));
  CHECK(satisfies(">=2.0.0-rc.1", "3.0.0"));
  CHECK_FALSE(satisfies(">=2.0.0-rc.1", "2.0.0-rc.0"));
  CHECK_FALSE(satisfies(">=2.0.0-rc.1", "2.0.1-alpha"));  // another MAJOR.MINOR.PATCH
  CHECK_FALSE(satisfies(">=2.0.0-rc.1", "3.0.0-alpha"));
  CHECK(satisfies(">=1.0.0-0", "1.0.0-alpha"));  // an explicit "-0" names 1.0.0's pre-releases
  CHECK(satisfies("<2.0.0-beta", "2.0.0-alpha"));
}

TEST_CASE("version ranges: malformed input is rejected", "[plugins][semver]") {
  const std::vector<std::string_view> bad = {
      ">=",          "^",         "~",           "=",          ">= 1.0.0",       "^ 1.2",
      "1.2.3 - 2.0.0", "1.0.0 || 2.0.0", ">=1.0.0,<2.0.0", "=>1.0.0", "==1.0.0", "<>1.0.0",
      "abc",         "latest",    ">01.0.0",     "1.2.3.4",    "1.",             "^1.2.3.",
      ">*",          "1.x-beta",  "^1.2-beta",   "1.0.0-01",   ">=1.0.0\t<2.0.0", "v1.0.0",
      "~>1.2",       ">=1.0.0 <",
  };
  for (const auto text : bad) {
    INFO("range '" << text << "'");
    CHECK_FALSE(VersionRange::parse(text).has_value());
  }
}

TEST_CASE("version ranges keep their text", "[plugins][semver]") {
  const auto r = VersionRange::parse(">=1.0.0 <2.0.0");
  REQUIRE(r.has_value());
  CHECK(r->text() == ">=1.0.0 <2.0.0");
}
