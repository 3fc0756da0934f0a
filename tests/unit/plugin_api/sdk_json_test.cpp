// keel/sdk/json.hpp: the strict parser (RFC 8259), the writer, and JsonReader, whose every error
// names the field. The fuzz target sdk_json checks the parser against nlohmann's.
#include <keel/sdk/host.hpp>
#include <keel/sdk/json.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace sdk = keel::sdk;
using sdk::JsonReader;
using sdk::Json;

namespace {

std::string error_of(std::string_view text) {
  Json j;
  const auto st = Json::parse(text, j);
  if (st.ok()) return "ok";
  CHECK(j.is_null());  // nothing half-parsed is left behind
  return st.message();
}

std::string round_trip(std::string_view text) {
  Json j;
  const auto st = Json::parse(text, j);
  REQUIRE(st.ok());
  return j.dump();
}

}  // namespace

TEST_CASE("sdk json: every kind of value parses and writes back compactly", "[plugin_api][sdk][json]") {
  CHECK(round_trip(R"( {"a": [1, -2, 2.5, -0.125e2, 1E3, true, false, null], "b": {}, "c": [], "d": ""} )") ==
        R"({"a":[1,-2,2.5,-12.5,1000,true,false,null],"b":{},"c":[],"d":""})");
  CHECK(round_trip(R"("\"\\\/\b\f\n\r\t\u0041\u00e9\u20ac\ud83d\ude00")") == "\"\\\"\\\\/\\u0008\\u000c\\n\\r\\tAé€😀\"");
  CHECK(round_trip("\"caf\xc3\xa9\"") == "\"caf\xc3\xa9\"");
  CHECK(round_trip("9223372036854775807") == "9223372036854775807");
  CHECK(round_trip("-9223372036854775808") == "-9223372036854775808");
  CHECK(round_trip("9223372036854775808") == "9223372036854775808");  // beyond int64: a double, 2^63 exactly
  CHECK(round_trip("0.1") == "0.1");                                  // the shortest text that reads back
  CHECK(round_trip("[-0.0, -0, 1e3]") == "[-0.0,0,1000]");               // -0.0 stays a number (fuzz)

  Json j;
  REQUIRE(Json::parse(R"({"n": 3, "x": 3.0, "s": "t"})", j).ok());
  CHECK(j.find("n")->type() == Json::Type::kInteger);
  CHECK(j.find("x")->type() == Json::Type::kNumber);
  CHECK(j.find("s")->as_string() == "t");
  CHECK(j.find("missing") == nullptr);
  CHECK(j.members()[0].first == "n");  // members keep their order
}

TEST_CASE("sdk json: malformed text is refused at the byte that is wrong", "[plugin_api][sdk][json]") {
  CHECK(error_of("") == "at byte 0: expected a JSON value, got the end of the text");
  CHECK(error_of("{\"a\": 1,}") == "at byte 8: expected a member name in double quotes");
  CHECK(error_of("[1, 2,]") == "at byte 6: expected a JSON value");
  CHECK(error_of("{\"a\" 1}") == "at byte 5: expected ':' after the member name");
  CHECK(error_of("{\"a\": 1, \"a\": 2}") == "at byte 9: duplicate member name \"a\"");
  CHECK(error_of("[01]") == "at byte 1: a number must not have leading zeros");
  CHECK(error_of("[1.]") == "at byte 3: expected digits after the decimal point");
  CHECK(error_of("1e") == "at byte 2: expected digits in the exponent");
  CHECK(error_of("1e999") == "at byte 0: a number out of range");
  CHECK(error_of("[NaN]") == "at byte 1: expected a JSON value");
  CHECK(error_of("\"a\nb\"") == "at byte 2: a control character in a string must be escaped");
  CHECK(error_of("\"\\x\"") == "at byte 2: unknown escape in a string");
  CHECK(error_of("\"\\ud800\"") == "at byte 7: a high surrogate must be followed by a \\u low surrogate");
  CHECK(error_of("\"\\udc00\"") == "at byte 7: a \\u escape holds a lone low surrogate");
  CHECK(error_of("\"\xff\"") == "at byte 1: a string holds bytes that are not UTF-8");
  CHECK(error_of("\"\xc0\xaf\"") == "at byte 1: a string holds bytes that are not UTF-8");  // overlong '/'
  CHECK(error_of("\"abc") == "at byte 4: unterminated string");
  CHECK(error_of("{} {}") == "at byte 3: expected the end of the text after the value");
  CHECK(error_of("// no\n{}") == "at byte 0: expected a JSON value");
  CHECK(error_of("tru") == "at byte 0: expected a JSON value");
  // Depth: 64 levels are fine, 65 are not (a deep document cannot exhaust the stack).
  CHECK(error_of(std::string(64, '[') + std::string(64, ']')) == "ok");
  CHECK(error_of(std::string(65, '[') + std::string(65, ']')) == "at byte 64: nested deeper than the limit");
  CHECK(error_of(std::string(100000, '[')).find("nested deeper than the limit") != std::string::npos);
}

TEST_CASE("sdk json: values are built and written without hand escaping", "[plugin_api][sdk][json]") {
  Json order = Json::object({{"id", 42}, {"sku", "MUG-\"1\"\n"}, {"price", 12.5}, {"paid", false}, {"note", nullptr}});
  auto& items = order.set("items", Json::array());
  items.push_back(Json::object({{"quantity", std::uint32_t{2}}}));
  order.set("id", std::int64_t{43});  // replaces
  CHECK(order.dump() ==
        R"({"id":43,"sku":"MUG-\"1\"\n","price":12.5,"paid":false,"note":null,"items":[{"quantity":2}]})");
  CHECK(Json{std::numeric_limits<double>::infinity()}.dump() == "null");  // JSON has no infinity
  CHECK(Json{std::string("\xff")}.dump() == "\"\\ufffd\"");                 // never invalid JSON out
  Json built;
  built.push_back(1);
  built.push_back("two");
  CHECK(built.dump() == R"([1,"two"])");
}

TEST_CASE("sdk json: JsonReader reads a body and names the field of the first problem", "[plugin_api][sdk][json]") {
  SECTION("a good body") {
    auto body = JsonReader::parse(R"({"sku": "MUG-1", "quantity": 2, "price": 12, "gift": true,
                                  "tags": ["a", "b"], "address": {"city": "Lyon"},
                                  "items": [{"id": 1}, {"id": 2}]})",
                              "body");
    CHECK(body.required<std::string>("sku") == "MUG-1");
    CHECK(body.required<std::uint16_t>("quantity") == 2);
    CHECK(body.required<double>("price") == 12.0);  // an integer is a number too
    CHECK(body.get<bool>("gift", false));
    CHECK(body.get<int>("absent", 7) == 7);
    CHECK_FALSE(body.optional<std::string>("note"));
    CHECK(body.required<std::vector<std::string>>("tags") == std::vector<std::string>{"a", "b"});
    auto address = body.object("address");
    CHECK(address.required<std::string>("city") == "Lyon");
    std::int64_t sum = 0;
    for (auto& item : body.objects("items")) sum += item.required<std::int64_t>("id");
    CHECK(sum == 3);
    body.finish_strict({"sku", "quantity", "price", "gift", "tags", "address", "items"});
    CHECK(body.ok());
    CHECK(body.status().ok());
  }
  SECTION("problems, the first one kept") {
    const auto first = [](std::string_view text, auto&& read) {
      auto body = JsonReader::parse(text, "body");
      read(body);
      CHECK_FALSE(body.ok());
      CHECK(body.status().code() == sdk::StatusCode::kInvalidArgument);
      return body.error();
    };
    CHECK(first(R"({"sku": 5})", [](JsonReader& b) { (void)b.required<std::string>("sku"); }) ==
          "body.sku: expected a string, got an integer");
    CHECK(first(R"({})", [](JsonReader& b) { (void)b.required<std::string>("sku"); }) == "body.sku: required member is missing");
    CHECK(first(R"({"q": 70000})", [](JsonReader& b) { (void)b.required<std::uint16_t>("q"); }) == "body.q: out of range: 70000");
    CHECK(first(R"({"q": -1})", [](JsonReader& b) { (void)b.required<unsigned>("q"); }) == "body.q: out of range: -1");
    CHECK(first(R"({"q": 1.5})", [](JsonReader& b) { (void)b.required<int>("q"); }) ==
          "body.q: expected an integer, got a number");
    CHECK(first(R"({"a": {"city": 1}})", [](JsonReader& b) { (void)b.object("a").required<std::string>("city"); }) ==
          "body.a.city: expected a string, got an integer");
    CHECK(first(R"({"items": [{"id": 1}, {"id": "x"}]})",
                [](JsonReader& b) {
                  for (auto& i : b.objects("items")) (void)i.required<int>("id");
                }) == "body.items[1].id: expected an integer, got a string");
    CHECK(first(R"({"items": [1]})", [](JsonReader& b) { (void)b.objects("items"); }) ==
          "body.items[0]: expected an object, got an integer");
    CHECK(first(R"({"tags": ["a", 2]})", [](JsonReader& b) { (void)b.required<std::vector<std::string>>("tags"); }) ==
          "body.tags[1]: expected a string, got an integer");
    CHECK(first(R"({"sku": "x", "colour": "red"})",
                [](JsonReader& b) {
                  (void)b.required<std::string>("sku");
                  b.finish_strict({"sku"});
                }) == "body.colour: unknown member");
    CHECK(first(R"({"a": 1,})", [](JsonReader&) {}) == "body: at byte 8: expected a member name in double quotes");
    CHECK(first(R"([1])", [](JsonReader&) {}) == "body: expected an object, got an array");
    CHECK(first(R"({"a": true, "b": 1})", [](JsonReader& b) {
            (void)b.required<int>("a");
            (void)b.required<std::string>("b");
          }) == "body.a: expected an integer, got a boolean");
  }
  SECTION("a nested object outlives the JsonReader it came from") {
    auto address = JsonReader::parse(R"({"address": {"city": "Lyon"}})", "body").object("address");
    CHECK(address.required<std::string>("city") == "Lyon");
  }
}

TEST_CASE("sdk json: the plugin's config read with defaults", "[plugin_api][sdk][json]") {
  auto config = JsonReader::parse(R"({"greeting": "hi", "max_items": 10})", "config");
  CHECK(config.get<std::string>("greeting", "hello") == "hi");
  CHECK(config.get<int>("max_items", 50) == 10);
  CHECK(config.get<bool>("loud", false) == false);
  CHECK(config.ok());
  auto empty = JsonReader::parse("{}", "config");
  CHECK(empty.get<std::string>("greeting", "hello") == "hello");
}
