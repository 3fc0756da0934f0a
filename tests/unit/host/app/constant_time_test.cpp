#include <string>

#include <catch2/catch.hpp>

#include "app/admin.hpp"

using keel::host::app::constant_time_equals;

TEST_CASE("the admin token compare is exact and reads every byte", "[admin]") {
  const std::string token = "adm1n-t0ken-value";
  CHECK(constant_time_equals(token, token));
  CHECK(constant_time_equals("", ""));
  CHECK_FALSE(constant_time_equals(token, "adm1n-t0ken-valuf"));  // last byte differs
  CHECK_FALSE(constant_time_equals(token, "bdm1n-t0ken-value"));  // first byte differs
  CHECK_FALSE(constant_time_equals(token, token.substr(0, token.size() - 1)));  // a prefix
  CHECK_FALSE(constant_time_equals(token, token + "x"));                      // longer
  CHECK_FALSE(constant_time_equals(token, ""));
  CHECK_FALSE(constant_time_equals("", token));
  // A NUL is a byte like any other (no C-string early stop).
  CHECK_FALSE(constant_time_equals(std::string("ab\0c", 4), std::string("ab\0d", 4)));
  CHECK(constant_time_equals(std::string("ab\0c", 4), std::string("ab\0c", 4)));
  // A difference only in the bytes past the shorter string still fails.
  CHECK_FALSE(constant_time_equals(std::string("abc\0", 4), "abc"));
}
