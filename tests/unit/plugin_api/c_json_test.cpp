// keel/json.h, the C plugins' JSON reader: members by name, strictly, without allocation. The
// same header is compiled as C11 by abi_c11_check.c; here its results are checked case by case.
#include <keel/json.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>

namespace {

struct Text {
  std::string s;
  [[nodiscard]] const char* p() const { return s.data(); }
  [[nodiscard]] std::size_t n() const { return s.size(); }
};

keel_json_result get_int(const std::string& json, const char* key, std::int64_t& out) {
  return keel_json_get_int(json.data(), json.size(), key, &out);
}

}  // namespace

TEST_CASE("c json: members of each type are read by name", "[plugin_api][json][c]") {
  const std::string doc = R"( {"name": "caf\u00e9 \"x\"", "n": -42, "min": -9223372036854775808,
    "max": 9223372036854775807, "on": true, "off": false, "obj": {"x": [1, {"y": 2}]}, "none": null} )";
  char buf[32];
  std::size_t len = 0;
  REQUIRE(keel_json_get_string(doc.data(), doc.size(), "name", buf, sizeof buf, &len) == KEEL_JSON_OK);
  CHECK(std::string(buf) == "café \"x\"");
  CHECK(len == std::string("café \"x\"").size());

  std::int64_t i = 7;
  CHECK(get_int(doc, "n", i) == KEEL_JSON_OK);
  CHECK(i == -42);
  CHECK(get_int(doc, "min", i) == KEEL_JSON_OK);
  CHECK(i == INT64_MIN);
  CHECK(get_int(doc, "max", i) == KEEL_JSON_OK);
  CHECK(i == INT64_MAX);

  int b = -1;
  CHECK(keel_json_get_bool(doc.data(), doc.size(), "on", &b) == KEEL_JSON_OK);
  CHECK(b == 1);
  CHECK(keel_json_get_bool(doc.data(), doc.size(), "off", &b) == KEEL_JSON_OK);
  CHECK(b == 0);

  const char* raw = nullptr;
  std::size_t raw_len = 0;
  REQUIRE(keel_json_get_raw(doc.data(), doc.size(), "obj", &raw, &raw_len) == KEEL_JSON_OK);
  CHECK(std::string(raw, raw_len) == R"({"x": [1, {"y": 2}]})");

  i = 7;  // absent and null leave the default alone
  CHECK(get_int(doc, "missing", i) == KEEL_JSON_ABSENT);
  CHECK(get_int(doc, "none", i) == KEEL_JSON_ABSENT);
  CHECK(i == 7);
  CHECK(get_int("{}", "a", i) == KEEL_JSON_ABSENT);
}

TEST_CASE("c json: a wrong type, a value out of range or too long is said so", "[plugin_api][json][c]") {
  std::int64_t i = 0;
  CHECK(get_int(R"({"a": "5"})", "a", i) == KEEL_JSON_WRONG_TYPE);
  CHECK(get_int(R"({"a": 1.5})", "a", i) == KEEL_JSON_WRONG_TYPE);
  CHECK(get_int(R"({"a": 1e3})", "a", i) == KEEL_JSON_WRONG_TYPE);
  CHECK(get_int(R"({"a": 9223372036854775808})", "a", i) == KEEL_JSON_WRONG_TYPE);
  CHECK(get_int(R"({"a": -9223372036854775809})", "a", i) == KEEL_JSON_WRONG_TYPE);
  CHECK(get_int(R"({"a": 99999999999999999999999})", "a", i) == KEEL_JSON_WRONG_TYPE);
  int b = 0;
  const std::string t = R"({"a": 1})";
  CHECK(keel_json_get_bool(t.data(), t.size(), "a", &b) == KEEL_JSON_WRONG_TYPE);
  char small[4];
  const std::string s = R"({"a": "four", "z": "a\u0000b"})";
  CHECK(keel_json_get_string(s.data(), s.size(), "a", small, sizeof small, nullptr) == KEEL_JSON_TOO_LONG);
  char big[8];
  CHECK(keel_json_get_string(s.data(), s.size(), "a", big, sizeof big, nullptr) == KEEL_JSON_OK);
  CHECK(std::string(big) == "four");
  CHECK(keel_json_get_string(s.data(), s.size(), "z", big, sizeof big, nullptr) == KEEL_JSON_WRONG_TYPE);  // NUL inside
  CHECK(keel_json_get_string(t.data(), t.size(), "a", big, sizeof big, nullptr) == KEEL_JSON_WRONG_TYPE);
}

TEST_CASE("c json: a malformed document is never half-read", "[plugin_api][json][c]") {
  std::int64_t i = 0;
  for (const char* bad : {"", "[]", "1", R"({"a": 1,})", R"({"a": 1} x)", R"({"a": 01})", R"({"a": 1, "a": 2})",
                          R"({a: 1})", R"({"a": "\x"})", R"({"a": "\ud800"})", R"({"a": "\udc00"})", "{\"a\": \"\xff\"}",
                          "{\"a\": \"\xc0\xaf\"}", "{\"a\": \"x\ny\"}", R"({"a": [1, 2})", R"({"a": tru})", R"({"a": 1.})",
                          R"({"b": {"c": 1, "c": 2}, "a": 1} trailing)"}) {
    INFO(bad);
    CHECK(get_int(bad, "a", i) == KEEL_JSON_MALFORMED);
  }
  CHECK(get_int(std::string(64, '[') + std::string(64, ']'), "a", i) == KEEL_JSON_MALFORMED);  // not an object
  const std::string deep = R"({"a": 1, "d": )" + std::string(63, '[') + std::string(63, ']') + "}";
  CHECK(get_int(deep, "a", i) == KEEL_JSON_OK);  // 64 levels in all
  const std::string deeper = R"({"a": 1, "d": )" + std::string(64, '[') + std::string(64, ']') + "}";
  CHECK(get_int(deeper, "a", i) == KEEL_JSON_MALFORMED);
  CHECK(keel_json_get_int(nullptr, 0, "a", &i) == KEEL_JSON_MALFORMED);
  // Not NUL-terminated: only `len` bytes are read.
  const std::string cut = R"({"a": 12}garbage)";
  CHECK(keel_json_get_int(cut.data(), 9, "a", &i) == KEEL_JSON_OK);
  CHECK(i == 12);
  // A duplicate of another member does not spoil this one; the nested one is its own object.
  CHECK(get_int(R"({"b": 1, "b": 2, "a": 3})", "a", i) == KEEL_JSON_OK);
  CHECK(get_int(R"({"o": {"a": 1}, "a": 2})", "a", i) == KEEL_JSON_OK);
  CHECK(i == 2);
}
