#include "package/manifest.hpp"

#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "common/plugin_keys.hpp"

namespace mp = keel::host::package;
// ordered_json keeps keys in the order written here, like the manifest text the host reads.
using json = nlohmann::ordered_json;

namespace {

// The example manifest from docs/abi.md §7.2, plus a few optional keys.
json doc_example() {
  return json::parse(R"({
    "name": "orders",
    "version": "1.4.2",
    "abi": "1.0",
    "description": "Order intake and status",
    "dependencies": [ { "name": "inventory", "version": ">=1.0.0 <2.0.0" } ],
    "routes": [
      { "method": "POST", "path": "/orders",             "summary": "place an order" },
      { "method": "GET",  "path": "/orders/{id}",        "summary": "order status" },
      { "method": "GET",  "path": "/files/{path...}",    "summary": "attachments", "blocking": true }
    ],
    "concurrency": "parallel",
    "events": { "publishes": ["orders.placed"], "subscribes": ["inventory.*"], "durable": ["orders.placed"] },
    "permissions": ["call:inventory", "ext:keel.storage/1"],
    "config": {
      "max_items":  { "type": "integer", "default": 50, "description": "items per order" },
      "currency":   { "type": "string",  "required": true },
      "tax_rates":  { "type": "object",  "default": {} }
    },
    "migrations": [
      { "version": 1, "description": "orders table",
        "sql": "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL);" },
      { "version": 2,
        "sql": "ALTER TABLE orders ADD COLUMN placed_at INTEGER; CREATE INDEX orders_status ON orders (status);" }
    ]
  })");
}

json minimal() { return json{{"name", "greeter"}, {"version", "0.1.0"}, {"abi", "1.0"}}; }

mp::Manifest parse_text_ok(std::string_view text) {
  auto result = mp::parse_manifest(text);
  if (const auto* errors = std::get_if<std::vector<mp::ManifestError>>(&result)) {
    for (const auto& e : *errors) UNSCOPED_INFO(e.str());
    FAIL("parse_manifest refused a valid manifest");
  }
  return std::get<mp::Manifest>(std::move(result));
}
mp::Manifest parse_ok(const json& doc) { return parse_text_ok(doc.dump()); }

std::vector<std::string> text_errors(std::string_view text) {
  const auto result = mp::parse_manifest(text);
  const auto* errors = std::get_if<std::vector<mp::ManifestError>>(&result);
  if (errors == nullptr) FAIL("parse_manifest accepted a manifest that should have been refused");
  std::vector<std::string> out;
  for (const auto& e : *errors) out.push_back(e.str());
  return out;
}
std::vector<std::string> errors_of(const json& doc) { return text_errors(doc.dump()); }

std::string single_error(const json& doc) {
  const auto errors = errors_of(doc);
  INFO(doc.dump());
  REQUIRE(errors.size() == 1);
  return errors.front();
}

std::vector<std::string> warnings_of(const mp::Manifest& m) {
  std::vector<std::string> out;
  for (const auto& w : m.warnings) out.push_back(w.str());
  return out;
}

// A manifest with `config` as its config schema.
mp::Manifest with_config(const json& config) {
  auto doc = minimal();
  doc["config"] = config;
  return parse_ok(doc);
}

std::string applied(const mp::Manifest& m, std::string_view settings) {
  auto result = mp::apply_config_schema(m, settings);
  if (const auto* issues = std::get_if<std::vector<mp::ConfigIssue>>(&result)) {
    for (const auto& i : *issues) UNSCOPED_INFO(i.key << ": " << i.message);
    FAIL("apply_config_schema refused valid settings");
  }
  return std::get<std::string>(result);
}

std::vector<std::string> issues_of(const mp::Manifest& m, std::string_view settings) {
  const auto result = mp::apply_config_schema(m, settings);
  const auto* issues = std::get_if<std::vector<mp::ConfigIssue>>(&result);
  if (issues == nullptr) FAIL("apply_config_schema accepted settings that should have been refused");
  std::vector<std::string> out;
  for (const auto& i : *issues) out.push_back(i.key + ": " + i.message);
  return out;
}

}  // namespace

TEST_CASE("manifest: the documented example parses into plain values", "[plugins][manifest]") {
  const std::string text = doc_example().dump(2);
  const auto m = parse_text_ok(text);
  CHECK(m.name == "orders");
  CHECK(m.version.str() == "1.4.2");
  CHECK(m.abi_major == 1);
  CHECK(m.abi_minor == 0);
  CHECK(m.description == "Order intake and status");
  REQUIRE(m.dependencies.size() == 1);
  CHECK(m.dependencies[0].name == "inventory");
  CHECK(m.dependencies[0].range.text() == ">=1.0.0 <2.0.0");
  CHECK(m.dependencies[0].range.contains(*mp::parse_version("1.5.0")));
  CHECK_FALSE(m.dependencies[0].range.contains(*mp::parse_version("2.0.0")));
  REQUIRE(m.routes.size() == 3);
  CHECK(m.routes[0].method == "POST");
  CHECK(m.routes[0].path == "/orders");
  CHECK(m.routes[0].summary == "place an order");
  CHECK_FALSE(m.routes[0].blocking);
  CHECK(m.routes[1].path == "/orders/{id}");
  CHECK(m.routes[2].path == "/files/{path...}");
  CHECK(m.routes[2].blocking);
  CHECK_FALSE(m.serialized);
  CHECK(m.publishes == std::vector<std::string>{"orders.placed"});
  CHECK(m.subscribes == std::vector<std::string>{"inventory.*"});
  CHECK(m.durable == std::vector<std::string>{"orders.placed"});
  CHECK(m.permissions == std::vector<std::string>{"call:inventory", "ext:keel.storage/1"});
  REQUIRE(m.config.size() == 3);  // in document order
  CHECK(m.config[0].name == "max_items");
  CHECK(m.config[0].type == mp::ConfigType::kInteger);
  CHECK(m.config[0].default_json == "50");
  CHECK_FALSE(m.config[0].required);
  CHECK(m.config[0].description == "items per order");
  CHECK(m.config[1].name == "currency");
  CHECK(m.config[1].type == mp::ConfigType::kString);
  CHECK(m.config[1].required);
  CHECK(m.config[1].default_json.empty());
  CHECK(m.config[2].name == "tax_rates");
  CHECK(m.config[2].type == mp::ConfigType::kObject);
  CHECK(m.config[2].default_json == "{}");
  REQUIRE(m.migrations.size() == 2);
  CHECK(m.migrations[0].version == 1);
  CHECK(m.migrations[0].description == "orders table");
  CHECK(m.migrations[0].sql == "CREATE TABLE orders (id INTEGER PRIMARY KEY, status TEXT NOT NULL);");
  CHECK(m.migrations[1].version == 2);
  CHECK(m.migrations[1].description.empty());
  CHECK(m.migrations[1].sql ==
        "ALTER TABLE orders ADD COLUMN placed_at INTEGER; CREATE INDEX orders_status ON orders (status);");
  CHECK(m.json == text);
  CHECK(m.warnings.empty());
}

TEST_CASE("manifest: optional keys take their documented defaults", "[plugins][manifest]") {
  const auto m = parse_ok(minimal());
  CHECK(m.name == "greeter");
  CHECK(m.version.str() == "0.1.0");
  CHECK(m.description.empty());
  CHECK(m.dependencies.empty());
  CHECK(m.routes.empty());
  CHECK_FALSE(m.serialized);
  CHECK(m.publishes.empty());
  CHECK(m.subscribes.empty());
  CHECK(m.durable.empty());
  CHECK(m.permissions.empty());
  CHECK(m.config.empty());
  CHECK(m.migrations.empty());
  CHECK(m.warnings.empty());
}

TEST_CASE("manifest: every config type, default kind and concurrency value is accepted", "[plugins][manifest]") {
  auto doc = minimal();
  doc["concurrency"] = "serialized";
  doc["version"] = "2.0.0-rc.1+build.5";
  doc["abi"] = "65535.65535";
  doc["name"] = std::string(64, 'a');
  doc["events"] = {{"publishes", {"greeter.said_hello", "a.b.c", "x1._"}},
                   {"subscribes", {"#", "orders.#", "*.placed", "a.*.c", "orders.placed", "a.*.#"}},
                   {"durable", {"a.b.c", "x1._"}}};
  doc["permissions"] = {"call:*", "call:a9_", "ext:keel.storage/1", "ext:acme.blob-store.v2/10"};
  doc["routes"] = json::array({
      {{"method", "*"}, {"path", "/"}},
      {{"method", "M-SEARCH"}, {"path", "/a/b/"}},
      {{"method", "GET"}, {"path", "/x/{a}/{b}/{rest...}"}},
      {{"method", "GET"}, {"path", "/x/{a}"}},
      {{"method", "POST"}, {"path", "/x/{a}"}},
      {{"method", "GET"}, {"path", "/lit~!$&'()*+,;=:@-._"}},
  });
  doc["config"] = {
      {"s", {{"type", "string"}, {"default", "héllo"}}},
      {"i", {{"type", "integer"}, {"default", -9223372036854775807LL - 1}}},
      {"u", {{"type", "integer"}, {"default", 9223372036854775807ULL}}},
      {"n", {{"type", "number"}, {"default", 2}}},
      {"f", {{"type", "number"}, {"default", 2.5}}},
      {"b", {{"type", "boolean"}, {"default", false}, {"required", false}}},
      {"a", {{"type", "array"}, {"default", {1, "two"}}}},
      {"o", {{"type", "object"}, {"default", {{"k", nullptr}}}}},
      {"r", {{"type", "string"}, {"required", true}, {"description", "needed"}}},
      {"max-items", {{"type", "integer"}}},
  };
  const auto m = parse_ok(doc);
  CHECK(m.serialized);
  CHECK(m.version.prerelease == "rc.1");
  CHECK(m.abi_major == 65535);
  CHECK(m.abi_minor == 65535);
  CHECK(m.publishes.size() == 3);
  CHECK(m.subscribes.size() == 6);
  CHECK(m.durable.size() == 2);
  CHECK(m.permissions.size() == 4);
  CHECK(m.routes.size() == 6);
  REQUIRE(m.config.size() == 10);
  CHECK(m.config[0].default_json == "\"héllo\"");
  CHECK(m.config[1].default_json == "-9223372036854775808");
  CHECK(m.config[2].default_json == "9223372036854775807");
  CHECK(m.config[6].default_json == "[1,\"two\"]");
  CHECK(m.config[7].default_json == "{\"k\":null}");
  CHECK(m.config[9].name == "max-items");
}

TEST_CASE("manifest: text that is not a JSON object is refused with its position", "[plugins][manifest]") {
  SECTION("syntax error") {
    const auto errors = text_errors("{\n  \"name\": \"orders\",\n  \"version\" \"1.0.0\"\n}");
    CHECK(errors == std::vector<std::string>{"invalid JSON: parse error at line 3, column 19: syntax error while "
                                             "parsing object separator - unexpected string literal; expected ':' "
                                             "(byte 41)"});
  }
  SECTION("empty text") {
    const auto errors = text_errors("");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].rfind("invalid JSON: parse error at line 1, column 1", 0) == 0);
  }
  SECTION("a NUL byte, e.g. the section terminator still attached") {
    // nlohmann's lexer would stop at the NUL and ignore a second document behind it.
    const std::string text = minimal().dump() + '\0' + "{}";
    CHECK(text_errors(text) == std::vector<std::string>{"invalid JSON: NUL byte at byte " +
                                                        std::to_string(minimal().dump().size()) +
                                                        " (JSON text cannot contain one)"});
  }
  SECTION("a number beyond double") {
    CHECK(text_errors(R"({"name": "x", "big": 1e400})") ==
          std::vector<std::string>{"invalid JSON: number overflow parsing '1e400'"});
  }
  SECTION("invalid UTF-8") {
    const auto errors = text_errors("{\"name\": \"\xff\"}");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("ill-formed UTF-8") != std::string::npos);
  }
  SECTION("not an object") {
    CHECK(text_errors("[1, 2]") == std::vector<std::string>{"the manifest must be a JSON object, got an array"});
    CHECK(text_errors("\"orders\"") == std::vector<std::string>{"the manifest must be a JSON object, got a string"});
    CHECK(text_errors("null") == std::vector<std::string>{"the manifest must be a JSON object, got null"});
  }
  SECTION("absurd nesting") {
    auto doc = minimal().dump();
    doc.pop_back();
    doc += ",\"x\":" + std::string(500, '[') + std::string(500, ']') + "}";
    CHECK(text_errors(doc) == std::vector<std::string>{"invalid JSON: nested deeper than 100 levels"});
  }
}

TEST_CASE("manifest: name, version and abi are required and checked", "[plugins][manifest]") {
  CHECK(text_errors("{}") == std::vector<std::string>{"name: required key is missing", "version: required key is missing",
                                                    "abi: required key is missing"});
  auto with = [](std::string_view key, const json& value) {
    auto doc = minimal();
    doc[std::string{key}] = value;
    return single_error(doc);
  };
  const std::string bad_name = " is not a valid plugin name: use [a-z][a-z0-9_]* (a lower-case letter, then a-z, 0-9, '_')";
  CHECK(with("name", "Orders") == "name: 'Orders'" + bad_name);
  CHECK(with("name", "1orders") == "name: '1orders'" + bad_name);
  CHECK(with("name", "_orders") == "name: '_orders'" + bad_name);
  CHECK(with("name", "or-ders") == "name: 'or-ders'" + bad_name);
  CHECK(with("name", "") == "name: must not be empty");
  CHECK(with("name", std::string(65, 'a')) == "name: is 65 bytes long; at most 64 are allowed");
  CHECK(with("name", 42) == "name: expected a string, got an integer");
  CHECK(with("name", nullptr) == "name: expected a string, got null");

  const std::string bad_version = " is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build], e.g. 1.4.2)";
  CHECK(with("version", "1.0") == "version: '1.0'" + bad_version);
  CHECK(with("version", "v1.0.0") == "version: 'v1.0.0'" + bad_version);
  CHECK(with("version", "1.0.0-01") == "version: '1.0.0-01'" + bad_version);
  CHECK(with("version", 1.5) == "version: expected a string, got a number with a fraction or exponent");

  const std::string bad_abi = " is not \"MAJOR.MINOR\" (e.g. \"1.0\", each part 0..65535)";
  for (const auto* abi : {"1", "1.0.0", "01.0", "1.00", "1.x", "1.", ".0", "65536.0", "0.65536", "99999999999.0", "-1.0",
                          "1 .0", "+1.0"}) {
    CHECK(with("abi", abi) == "abi: '" + std::string{abi} + "'" + bad_abi);
  }
  CHECK(with("abi", 1.0) == "abi: expected a string, got a number with a fraction or exponent");
  CHECK(with("description", false) == "description: expected a string, got a boolean");
}

TEST_CASE("manifest: dependencies are checked entry by entry", "[plugins][manifest]") {
  auto with = [](const json& deps) {
    auto doc = minimal();
    doc["dependencies"] = deps;
    return errors_of(doc);
  };
  CHECK(with(json::object()) == std::vector<std::string>{"dependencies: expected an array, got an object"});
  CHECK(with({"inventory"}) ==
        std::vector<std::string>{"dependencies[0]: expected an object {\"name\", \"version\"}, got a string"});
  CHECK(with(json::array({json::object()})) == std::vector<std::string>{"dependencies[0].name: required key is missing",
                                                           "dependencies[0].version: required key is missing"});
  CHECK(with({{{"name", "inventory"}, {"version", ">= 1.0.0"}}}) ==
        std::vector<std::string>{"dependencies[0].version: '>= 1.0.0' is not a version range (space-separated "
                                 "comparators such as \">=1.2.0 <2.0.0\", \"^1.4\", \"~1.4.2\", \"1.x\", \"=1.0.0\")"});
  CHECK(with({{{"name", "inventory"}, {"version", 1}}}) ==
        std::vector<std::string>{"dependencies[0].version: expected a string, got an integer"});
  CHECK(with({{{"name", "Inventory"}, {"version", "*"}}}) ==
        std::vector<std::string>{"dependencies[0].name: 'Inventory' is not a valid plugin name: use [a-z][a-z0-9_]* (a "
                                 "lower-case letter, then a-z, 0-9, '_')"});
  CHECK(with({{{"name", "greeter"}, {"version", "*"}}}) ==
        std::vector<std::string>{"dependencies[0].name: a plugin cannot depend on itself"});
  CHECK(with({{{"name", "inventory"}, {"version", "^1"}},
              {{"name", "billing"}, {"version", "^2"}},
              {{"name", "inventory"}, {"version", "^2"}}}) ==
        std::vector<std::string>{"dependencies[2].name: duplicate dependency 'inventory' (also dependencies[0].name)"});

  auto doc = minimal();
  doc["dependencies"] = {{{"name", "inventory"}, {"version", ""}}, {{"name", "billing"}, {"version", "1.2"}}};
  const auto m = parse_ok(doc);
  REQUIRE(m.dependencies.size() == 2);
  CHECK(m.dependencies[0].range.contains(*mp::parse_version("9.9.9")));  // "" is any release
  CHECK(m.dependencies[1].name == "billing");
  CHECK(m.dependencies[1].range.contains(*mp::parse_version("1.2.7")));
}

TEST_CASE("manifest: routes are checked entry by entry", "[plugins][manifest]") {
  auto route_error = [](const json& route) {
    auto doc = minimal();
    doc["routes"] = {{{"method", "GET"}, {"path", "/ok"}}, route};
    return single_error(doc);
  };
  CHECK(route_error({{"method", "get"}, {"path", "/x"}}) ==
        "routes[1].method: 'get' is not an upper-case method token (e.g. GET, POST) or \"*\" (did you mean 'GET'?)");
  CHECK(route_error({{"method", "G ET"}, {"path", "/x"}}) ==
        "routes[1].method: 'G ET' is not an upper-case method token (e.g. GET, POST) or \"*\"");
  CHECK(route_error({{"method", ""}, {"path", "/x"}}) ==
        "routes[1].method: '' is not an upper-case method token (e.g. GET, POST) or \"*\"");
  CHECK(route_error({{"method", "**"}, {"path", "/x"}}) ==
        "routes[1].method: '**' is not an upper-case method token (e.g. GET, POST) or \"*\"");
  CHECK(route_error({{"path", "/x"}}) == "routes[1].method: required key is missing");
  CHECK(route_error({{"method", "GET"}}) == "routes[1].path: required key is missing");
  CHECK(route_error({{"method", "GET"}, {"path", 7}}) == "routes[1].path: expected a string, got an integer");
  CHECK(route_error({{"method", "GET"}, {"path", "/x"}, {"summary", 1}}) ==
        "routes[1].summary: expected a string, got an integer");
  CHECK(route_error({{"method", "GET"}, {"path", "/x"}, {"blocking", "yes"}}) ==
        "routes[1].blocking: expected a boolean, got a string");
  CHECK(route_error("GET /x") == "routes[1]: expected an object {\"method\", \"path\", ...}, got a string");

  auto path_error = [&](std::string_view path) {
    return route_error({{"method", "GET"}, {"path", std::string{path}}});
  };
  CHECK(path_error("orders") == "routes[1].path: 'orders': must start with '/' (it is mounted below /api/<name>)");
  CHECK(path_error("") == "routes[1].path: '': must start with '/' (it is mounted below /api/<name>)");
  CHECK(path_error("/a//b") == "routes[1].path: '/a//b': empty segment ('//'); only a trailing '/' may be empty");
  CHECK(path_error("/a/{id") ==
        "routes[1].path: '/a/{id': segment '{id': a parameter spans a whole segment, '{name}' or '{name...}'");
  CHECK(path_error("/a/x{id}") ==
        "routes[1].path: '/a/x{id}': segment 'x{id}': a parameter spans a whole segment, '{name}' or '{name...}'");
  CHECK(path_error("/a/{}") == "routes[1].path: '/a/{}': parameter name '' is not [a-z_][a-z0-9_]*");
  CHECK(path_error("/a/{Id}") == "routes[1].path: '/a/{Id}': parameter name 'Id' is not [a-z_][a-z0-9_]*");
  CHECK(path_error("/a/{...}") == "routes[1].path: '/a/{...}': parameter name '' is not [a-z_][a-z0-9_]*");
  CHECK(path_error("/{rest...}/x") == "routes[1].path: '/{rest...}/x': '{rest...}' must be the last segment");
  CHECK(path_error("/{id}/{id}") == "routes[1].path: '/{id}/{id}': parameter 'id' appears twice");
  CHECK(path_error("/a b") == "routes[1].path: '/a b': segment 'a b' contains byte 32, which is not allowed in a "
                              "route path");
  CHECK(path_error("/a?b") == "routes[1].path: '/a?b': segment 'a?b' contains '?', which is not allowed in a route path");
  CHECK(path_error("/a%20b") ==
        "routes[1].path: '/a%20b': segment 'a%20b' contains '%', which is not allowed in a route path");
  CHECK(path_error("/a/../b") == "routes[1].path: '/a/../b': '.' and '..' are not allowed as segments");
  CHECK(path_error("/.") == "routes[1].path: '/.': '.' and '..' are not allowed as segments");
  // {name:file}: a file name capture, named without the suffix.
  {
    auto doc = minimal();
    doc["routes"] = {{{"method", "GET"}, {"path", "/f/{name:file}/meta"}}};
    CHECK(parse_ok(doc).routes.at(0).path == "/f/{name:file}/meta");
  }
  CHECK(path_error("/f/{name:file}/{name}") == "routes[1].path: '/f/{name:file}/{name}': parameter 'name' appears twice");
  CHECK(path_error("/f/{:file}") == "routes[1].path: '/f/{:file}': parameter name '' is not [a-z_][a-z0-9_]*");
  CHECK(path_error("/f/{name:dir}") ==
        "routes[1].path: '/f/{name:dir}': parameter name 'name:dir' is not [a-z_][a-z0-9_]*");
}

TEST_CASE("manifest: two routes with the same method and path shape conflict", "[plugins][manifest]") {
  auto doc = minimal();
  doc["routes"] = {
      {{"method", "GET"}, {"path", "/orders/{id}"}},
      {{"method", "POST"}, {"path", "/orders/{id}"}},
      {{"method", "GET"}, {"path", "/orders/{order_id}"}},
      {{"method", "GET"}, {"path", "/files/{a...}"}},
      {{"method", "GET"}, {"path", "/files/{b}"}},
      {{"method", "GET"}, {"path", "/files/{c...}"}},
      {{"method", "GET"}, {"path", "/orders/{id}/"}},
      {{"method", "*"}, {"path", "/files/{d}"}},
      {{"method", "*"}, {"path", "/any"}},
      {{"method", "DELETE"}, {"path", "/any"}},
  };
  // The "*" conflicts: tests/fuzz/manifest found pre-flight (the router) refusing what was accepted here.
  CHECK(errors_of(doc) ==
        std::vector<std::string>{
            "routes[2]: duplicate route GET /orders/{order_id} (same method and path as routes[0])",
            "routes[5]: duplicate route GET /files/{c...} (same method and path as routes[3])",
            "routes[7]: route * /files/{d} overlaps routes[4]: a \"*\" route takes every method of its path",
            "routes[9]: route DELETE /any overlaps routes[8]: a \"*\" route takes every method of its path",
        });
}

TEST_CASE("manifest: a route has at most 16 parameters, the router's limit", "[plugins][manifest]") {
  auto doc = minimal();
  std::string path;
  for (int i = 0; i < 16; ++i) path += "/{p" + std::to_string(i) + "}";
  doc["routes"] = {{{"method", "GET"}, {"path", path}}};
  CHECK(parse_ok(doc).routes.size() == 1);
  doc["routes"] = {{{"method", "GET"}, {"path", path + "/{rest...}"}}};
  CHECK(errors_of(doc) == std::vector<std::string>{"routes[0].path: '" + path +
                                                   "/{rest...}': more than 16 parameters (the router's limit)"});
}

TEST_CASE("manifest: routes may document a request body, responses and query parameters", "[plugins][manifest]") {
  auto doc = minimal();
  doc["routes"] = json::parse(R"([
    { "method": "POST", "path": "/orders", "summary": "place an order",
      "request": { "content_type": "application/json", "description": "the order",
                   "schema": { "type": "object",  "required": ["sku"],
                               "properties": { "sku": { "type": "string" } } } },
      "responses": {
        "201": { "description": "placed", "schema": { "type": "object" } },
        "409": { "description": "out of stock" },
        "204": { },
        "200": { "content_type": "text/csv; charset=utf-8" },
        "default": { "description": "anything else", "content_type": "*/*" }
      } },
    { "method": "GET", "path": "/orders",
      "query": [ { "name": "limit", "type": "integer", "description": "page size", "required": true },
                 { "name": "cursor" },
                 { "name": "sort.by-x_y~", "type": "boolean" },
                 { "name": "min", "type": "number", "required": false } ],
      "request": { } }
  ])");
  const auto m = parse_ok(doc);
  CHECK(m.warnings.empty());
  REQUIRE(m.routes.size() == 2);
  const auto& post = m.routes[0];
  REQUIRE(post.request);
  CHECK(post.request->content_type == "application/json");
  CHECK(post.request->description == "the order");
  // Compact JSON text, in the order written.
  CHECK(post.request->schema_json == R"({"type":"object","required":["sku"],"properties":{"sku":{"type":"string"}}})");
  REQUIRE(post.responses.size() == 5);  // manifest order
  CHECK(post.responses[0].status == "201");
  CHECK(post.responses[0].description == "placed");
  CHECK(post.responses[0].content_type == "application/json");  // a schema without content_type: JSON
  CHECK(post.responses[0].schema_json == R"({"type":"object"})");
  CHECK(post.responses[1].status == "409");
  CHECK(post.responses[1].description == "out of stock");
  CHECK(post.responses[1].content_type.empty());  // neither declared: no body of its own
  CHECK(post.responses[1].schema_json.empty());
  CHECK(post.responses[2].status == "204");
  CHECK(post.responses[2].description.empty());
  CHECK(post.responses[2].content_type.empty());
  CHECK(post.responses[3].status == "200");
  CHECK(post.responses[3].content_type == "text/csv; charset=utf-8");
  CHECK(post.responses[3].schema_json.empty());
  CHECK(post.responses[4].status == "default");
  CHECK(post.responses[4].content_type == "*/*");
  CHECK(post.query.empty());

  const auto& get = m.routes[1];
  REQUIRE(get.request);  // declared, even if empty: a JSON body without a schema
  CHECK(get.request->content_type == "application/json");
  CHECK(get.request->schema_json.empty());
  CHECK(get.request->description.empty());
  CHECK(get.responses.empty());
  REQUIRE(get.query.size() == 4);
  CHECK(get.query[0].name == "limit");
  CHECK(get.query[0].type == "integer");
  CHECK(get.query[0].description == "page size");
  CHECK(get.query[0].required);
  CHECK(get.query[1].name == "cursor");
  CHECK(get.query[1].type == "string");  // the default
  CHECK(get.query[1].description.empty());
  CHECK_FALSE(get.query[1].required);
  CHECK(get.query[2].name == "sort.by-x_y~");
  CHECK(get.query[2].type == "boolean");
  CHECK(get.query[3].type == "number");
  CHECK_FALSE(get.query[3].required);
}

TEST_CASE("manifest: routes without documentation keys document nothing", "[plugins][manifest]") {
  const auto m = parse_ok(doc_example());
  for (const auto& r : m.routes) {
    CHECK_FALSE(r.request);
    CHECK(r.responses.empty());
    CHECK(r.query.empty());
  }
}

TEST_CASE("manifest: a route's request body declaration is checked", "[plugins][manifest]") {
  auto request_error = [](const json& request) {
    auto doc = minimal();
    doc["routes"] = {{{"method", "GET"}, {"path", "/ok"}}, {{"method", "POST"}, {"path", "/x"}, {"request", request}}};
    return single_error(doc);
  };
  CHECK(request_error("application/json") == "routes[1].request: expected an object, got a string");
  CHECK(request_error(json::array()) == "routes[1].request: expected an object, got an array");
  CHECK(request_error({{"schema", true}}) == "routes[1].request.schema: expected a JSON Schema object, got a boolean");
  CHECK(request_error({{"schema", "{\"type\":\"object\"}"}}) ==
        "routes[1].request.schema: expected a JSON Schema object, got a string");
  CHECK(request_error({{"schema", json::array()}}) ==
        "routes[1].request.schema: expected a JSON Schema object, got an array");
  CHECK(request_error({{"description", 3}}) == "routes[1].request.description: expected a string, got an integer");
  CHECK(request_error({{"content_type", 1}}) == "routes[1].request.content_type: expected a string, got an integer");
  const std::string not_media = " is not a media type: expected type/subtype, e.g. \"application/json\" or \"text/*\", "
                                "optionally followed by \"; parameters\"";
  for (const auto* bad : {"json", "application/", "/json", "", "application json/x", "a/b/c", "*/json", "text/plain;\tx",
                          "application/json\n"}) {
    CHECK(request_error({{"content_type", bad}}) ==
          "routes[1].request.content_type: '" + std::string{bad} + "'" + not_media);
  }
}

TEST_CASE("manifest: a route's responses are keyed by status code", "[plugins][manifest]") {
  auto responses_errors = [](const json& responses) {
    auto doc = minimal();
    doc["routes"] = {{{"method", "GET"}, {"path", "/ok"}}, {{"method", "GET"}, {"path", "/x"}, {"responses", responses}}};
    return errors_of(doc);
  };
  const std::string bad_status = ": expected a status code 100..599 or \"default\"";
  CHECK(responses_errors({{"20x", json::object()}}) == std::vector<std::string>{"routes[1].responses.20x" + bad_status});
  for (const auto* key : {"099", "600", "2XX", "20", "2000", "DEFAULT", "", " 200"}) {
    INFO(key);
    const auto errors = responses_errors({{key, json::object()}});
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].ends_with(bad_status));
  }
  CHECK(responses_errors({{"", json::object()}}) == std::vector<std::string>{"routes[1].responses[\"\"]" + bad_status});
  auto valid = minimal();
  valid["routes"] = {{{"method", "GET"},
                      {"path", "/x"},
                      {"responses", {{"100", json::object()}, {"599", json::object()}, {"default", json::object()}}}}};
  CHECK(parse_ok(valid).routes.at(0).responses.size() == 3);
  CHECK(responses_errors(json::array()) == std::vector<std::string>{"routes[1].responses: expected an object, got an array"});
  CHECK(responses_errors({{"200", "OK"}}) ==
        std::vector<std::string>{
            "routes[1].responses.200: expected an object {\"description\"?, \"content_type\"?, \"schema\"?}, got a string"});
  CHECK(responses_errors({{"200", {{"schema", nullptr}}}}) ==
        std::vector<std::string>{"routes[1].responses.200.schema: expected a JSON Schema object, got null"});
  CHECK(responses_errors({{"200", {{"description", false}}}}) ==
        std::vector<std::string>{"routes[1].responses.200.description: expected a string, got a boolean"});
  CHECK(responses_errors({{"404", {{"content_type", "text"}}}}) ==
        std::vector<std::string>{"routes[1].responses.404.content_type: 'text' is not a media type: expected "
                                 "type/subtype, e.g. \"application/json\" or \"text/*\", optionally followed by \"; "
                                 "parameters\""});
  // Every bad entry is reported.
  CHECK(responses_errors({{"2oo", json::object()}, {"200", {{"schema", 1}}}, {"500", 1}}) ==
        std::vector<std::string>{
            "routes[1].responses.2oo" + bad_status,
            "routes[1].responses.200.schema: expected a JSON Schema object, got an integer",
            "routes[1].responses.500: expected an object {\"description\"?, \"content_type\"?, \"schema\"?}, got an "
            "integer",
        });
}

TEST_CASE("manifest: a route's query parameters are checked entry by entry", "[plugins][manifest]") {
  auto query_errors = [](const json& query) {
    auto doc = minimal();
    doc["routes"] = {{{"method", "GET"}, {"path", "/ok"}}, {{"method", "GET"}, {"path", "/x"}, {"query", query}}};
    return errors_of(doc);
  };
  auto one = [&](const json& entry) {
    const auto errors = query_errors(json::array({entry}));
    INFO(entry.dump());
    REQUIRE(errors.size() == 1);
    return errors[0];
  };
  CHECK(query_errors({{"name", "limit"}}) ==
        std::vector<std::string>{"routes[1].query: expected an array, got an object"});
  CHECK(one("limit") ==
        "routes[1].query[0]: expected an object {\"name\", \"type\"?, \"description\"?, \"required\"?}, got a string");
  CHECK(one(json::object()) == "routes[1].query[0].name: required key is missing");
  CHECK(one({{"name", 1}}) == "routes[1].query[0].name: expected a string, got an integer");
  const std::string bad_name = " is not a query parameter name: use A-Z, a-z, 0-9, '-', '.', '_', '~'";
  CHECK(one({{"name", ""}}) == "routes[1].query[0].name: ''" + bad_name);
  CHECK(one({{"name", "a b"}}) == "routes[1].query[0].name: 'a b'" + bad_name);
  CHECK(one({{"name", "a&b"}}) == "routes[1].query[0].name: 'a&b'" + bad_name);
  CHECK(one({{"name", "tags[]"}}) == "routes[1].query[0].name: 'tags[]'" + bad_name);
  CHECK(one({{"name", "q"}, {"type", "int"}}) ==
        "routes[1].query[0].type: 'int' is not one of string, integer, number, boolean");
  CHECK(one({{"name", "q"}, {"type", "integr"}}) ==
        "routes[1].query[0].type: 'integr' is not one of string, integer, number, boolean (did you mean 'integer'?)");
  CHECK(one({{"name", "q"}, {"type", "array"}}) ==
        "routes[1].query[0].type: 'array' is not one of string, integer, number, boolean");
  CHECK(one({{"name", "q"}, {"type", true}}) == "routes[1].query[0].type: expected a string, got a boolean");
  CHECK(one({{"name", "q"}, {"required", "no"}}) == "routes[1].query[0].required: expected a boolean, got a string");
  CHECK(one({{"name", "q"}, {"description", json::object()}}) ==
        "routes[1].query[0].description: expected a string, got an object");
  CHECK(query_errors({{{"name", "a"}}, {{"name", "b"}}, {{"name", "a"}, {"type", "integer"}}}) ==
        std::vector<std::string>{"routes[1].query[2].name: duplicate query parameter 'a' (also routes[1].query[0])"});
  // Names are case-sensitive, like the query strings they describe.
  auto valid = minimal();
  valid["routes"] = {{{"method", "GET"}, {"path", "/x"}, {"query", {{{"name", "a"}}, {{"name", "A"}}}}}};
  CHECK(parse_ok(valid).routes.at(0).query.size() == 2);
}

TEST_CASE("manifest: unknown keys in route documentation are warnings", "[plugins][manifest]") {
  auto doc = minimal();
  doc["routes"] = json::parse(R"([
    { "method": "POST", "path": "/x", "requestBody": {}, "respones": {},
      "request": { "contentType": "text/plain", "required": true },
      "responses": { "200": { "descripton": "ok", "headers": {} } },
      "query": [ { "name": "q", "in": "query", "requird": true } ] }
  ])");
  const auto m = parse_ok(doc);
  CHECK(warnings_of(m) ==
        std::vector<std::string>{
            "routes[0].requestBody: unknown key ignored; known keys: method, path, summary, blocking, storage, request, "
            "responses, query",
            "routes[0].respones: unknown key ignored (did you mean 'responses'?)",
            "routes[0].request.contentType: unknown key ignored (did you mean 'content_type'?)",
            "routes[0].request.required: unknown key ignored; known keys: content_type, schema, description",
            "routes[0].responses.200.descripton: unknown key ignored (did you mean 'description'?)",
            "routes[0].responses.200.headers: unknown key ignored; known keys: description, content_type, schema",
            "routes[0].query[0].in: unknown key ignored; known keys: name, type, description, required",
            "routes[0].query[0].requird: unknown key ignored (did you mean 'required'?)",
        });
  REQUIRE(m.routes.size() == 1);
  REQUIRE(m.routes[0].request);
  CHECK(m.routes[0].request->content_type == "application/json");  // contentType was ignored
  REQUIRE(m.routes[0].responses.size() == 1);
  CHECK(m.routes[0].responses[0].description.empty());
  REQUIRE(m.routes[0].query.size() == 1);
  CHECK_FALSE(m.routes[0].query[0].required);
}

TEST_CASE("manifest: concurrency is parallel or serialized", "[plugins][manifest]") {
  auto doc = minimal();
  doc["concurrency"] = "serial";
  CHECK(single_error(doc) == "concurrency: 'serial' is not one of parallel, serialized");
  doc["concurrency"] = "serialised";
  CHECK(single_error(doc) == "concurrency: 'serialised' is not one of parallel, serialized (did you mean 'serialized'?)");
  doc["concurrency"] = true;
  CHECK(single_error(doc) == "concurrency: expected a string, got a boolean");
}

TEST_CASE("manifest: event topics and subscription patterns", "[plugins][manifest]") {
  auto with = [](const json& events) {
    auto doc = minimal();
    doc["events"] = events;
    return errors_of(doc);
  };
  CHECK(with(json::array()) == std::vector<std::string>{"events: expected an object, got an array"});
  CHECK(with({{"publishes", "orders.placed"}}) ==
        std::vector<std::string>{"events.publishes: expected an array, got a string"});
  CHECK(with({{"subscribes", {1}}}) ==
        std::vector<std::string>{"events.subscribes[0]: expected a string, got an integer"});

  const std::string not_topic = " is not a topic: two or more dot-separated segments of [a-z0-9_]+, e.g. 'orders.placed'";
  for (const auto* topic : {"orders", "Orders.placed", "orders..placed", "orders.placed.", ".orders", "orders.placed/1",
                            "orders.*", "orders.#", "", "orders .placed"}) {
    CHECK(with({{"publishes", {"ok.topic", topic}}}) ==
          std::vector<std::string>{"events.publishes[1]: '" + std::string{topic} + "'" + not_topic});
  }

  auto pattern_error = [&](std::string_view pattern) {
    const auto errors = with({{"subscribes", {std::string{pattern}}}});
    REQUIRE(errors.size() == 1);
    return errors[0];
  };
  CHECK(pattern_error("orders") ==
        "events.subscribes[0]: 'orders' is not a topic pattern: matches no topic: topics have at least two segments, "
        "e.g. 'orders.*'");
  CHECK(pattern_error("*") ==
        "events.subscribes[0]: '*' is not a topic pattern: matches no topic: topics have at least two segments, e.g. "
        "'orders.*'");
  CHECK(pattern_error("orders.#.placed") ==
        "events.subscribes[0]: 'orders.#.placed' is not a topic pattern: '#' may only be the last segment");
  CHECK(pattern_error("orders.pl*") ==
        "events.subscribes[0]: 'orders.pl*' is not a topic pattern: segment 'pl*' is not [a-z0-9_]+, '*' or a final '#'");
  CHECK(pattern_error("orders..x") == "events.subscribes[0]: 'orders..x' is not a topic pattern: empty segment");
  CHECK(pattern_error("") == "events.subscribes[0]: '' is not a topic pattern: empty segment");
  CHECK(pattern_error("Orders.*") ==
        "events.subscribes[0]: 'Orders.*' is not a topic pattern: segment 'Orders' is not [a-z0-9_]+, '*' or a final "
        "'#'");
}

namespace {

// A manifest with the storage permission and `events` as its events object.
json with_events(const json& events) {
  auto doc = minimal();
  doc["permissions"] = {"ext:keel.storage/1"};
  doc["events"] = events;
  return doc;
}

}  // namespace

TEST_CASE("manifest: durable topics are published topics stored in the outbox", "[plugins][manifest]") {
  const auto m = parse_ok(with_events({{"publishes", {"orders.placed", "orders.cancelled", "orders.viewed"}},
                                       {"durable", {"orders.placed", "orders.cancelled"}}}));
  CHECK(m.publishes == std::vector<std::string>{"orders.placed", "orders.cancelled", "orders.viewed"});
  CHECK(m.durable == std::vector<std::string>{"orders.placed", "orders.cancelled"});
  CHECK(m.warnings.empty());

  SECTION("an empty list needs no permission") {
    auto doc = minimal();
    doc["events"] = {{"publishes", {"orders.placed"}}, {"durable", json::array()}};
    CHECK(parse_ok(doc).durable.empty());
  }
  SECTION("the key order inside events does not matter") {
    const auto reordered =
        parse_ok(with_events({{"durable", {"orders.placed"}}, {"publishes", {"orders.placed"}}}));
    CHECK(reordered.durable == std::vector<std::string>{"orders.placed"});
  }
}

TEST_CASE("manifest: every durable topic must be in events.publishes", "[plugins][manifest]") {
  CHECK(single_error(with_events({{"publishes", {"orders.placed"}}, {"durable", {"orders.shipped"}}})) ==
        "events.durable[0]: 'orders.shipped' is not in events.publishes");
  CHECK(single_error(with_events({{"durable", {"orders.placed"}}})) ==
        "events.durable[0]: 'orders.placed' is not in events.publishes");
  CHECK(errors_of(with_events({{"publishes", {"a.b"}}, {"durable", {"a.b", "a.c", "a.b.c"}}})) ==
        std::vector<std::string>{
            "events.durable[1]: 'a.c' is not in events.publishes",
            "events.durable[2]: 'a.b.c' is not in events.publishes",
        });
}

TEST_CASE("manifest: durable entries are topics, not patterns", "[plugins][manifest]") {
  const std::string not_topic =
      " is not a topic: two or more dot-separated segments of [a-z0-9_]+, e.g. 'orders.placed'";
  for (const auto* topic : {"orders", "orders.*", "orders.#", "#", "Orders.placed", "orders..placed", ""}) {
    CHECK(single_error(with_events({{"publishes", {"orders.placed"}}, {"durable", {topic}}})) ==
          "events.durable[0]: '" + std::string{topic} + "'" + not_topic);
  }
  // An invalid publishes entry is reported once there, and once more where durable repeats it.
  CHECK(errors_of(with_events({{"publishes", {"Orders.placed"}}, {"durable", {"Orders.placed"}}})) ==
        std::vector<std::string>{
            "events.publishes[0]: 'Orders.placed'" + not_topic,
            "events.durable[0]: 'Orders.placed'" + not_topic,
        });
  CHECK(single_error(with_events({{"publishes", {"a.b"}}, {"durable", "a.b"}})) ==
        "events.durable: expected an array, got a string");
  CHECK(single_error(with_events({{"publishes", {"a.b"}}, {"durable", {"a.b", 7}}})) ==
        "events.durable[1]: expected a string, got an integer");
}

TEST_CASE("manifest: durable topics need the storage permission", "[plugins][manifest]") {
  const std::string needs =
      "events.durable: durable topics are stored in the publisher's database: add the permission "
      "\"ext:keel.storage/1\"";
  SECTION("no permissions at all") {
    auto doc = minimal();
    doc["events"] = {{"publishes", {"orders.placed"}}, {"durable", {"orders.placed"}}};
    CHECK(single_error(doc) == needs);
  }
  SECTION("other permissions only") {
    auto doc = with_events({{"publishes", {"orders.placed"}}, {"durable", {"orders.placed"}}});
    doc["permissions"] = {"call:*", "ext:keel.storage/2", "ext:keel.events/1"};
    CHECK(single_error(doc) == needs);
  }
  SECTION("reported after the entries' own problems and the permissions'") {
    auto doc = minimal();
    doc["events"] = {{"publishes", {"orders.placed"}}, {"durable", {"orders.shipped"}}};
    doc["permissions"] = {"ext:x"};
    CHECK(errors_of(doc) == std::vector<std::string>{
                                "events.durable[0]: 'orders.shipped' is not in events.publishes",
                                "permissions[0]: 'ext:x' is malformed: expected ext:<namespace>.<name>/<revision>, "
                                "e.g. ext:keel.storage/1",
                                needs,
                            });
  }
}

TEST_CASE("manifest: an unknown key in events suggests durable", "[plugins][manifest]") {
  const auto m = parse_ok(with_events({{"publishes", {"a.b"}}, {"durables", {"a.b"}}}));
  CHECK(warnings_of(m) == std::vector<std::string>{"events.durables: unknown key ignored (did you mean 'durable'?)"});
  CHECK(m.durable.empty());
  const auto other = parse_ok(with_events({{"retries", 3}}));
  CHECK(warnings_of(other) ==
        std::vector<std::string>{"events.retries: unknown key ignored; known keys: publishes, subscribes, durable"});
}

TEST_CASE("manifest: permissions of a known kind must be well formed", "[plugins][manifest]") {
  auto with = [](const json& permissions) {
    auto doc = minimal();
    doc["permissions"] = permissions;
    return errors_of(doc);
  };
  const std::string bad_call = " is malformed: expected call:<plugin-name> ([a-z][a-z0-9_]*) or call:*";
  const std::string bad_ext = " is malformed: expected ext:<namespace>.<name>/<revision>, e.g. ext:keel.storage/1";
  for (const auto* p : {"call:", "call:Inventory", "call:inv-entory", "call:**", "call:a:b"}) {
    CHECK(with({p}) == std::vector<std::string>{"permissions[0]: '" + std::string{p} + "'" + bad_call});
  }
  for (const auto* p : {"ext:", "ext:storage/1", "ext:keel.storage", "ext:keel.storage/", "ext:keel.storage/x",
                        "ext:Keel.storage/1", "ext:keel..storage/1", "ext:keel.storage/1/2"}) {
    CHECK(with({p}) == std::vector<std::string>{"permissions[0]: '" + std::string{p} + "'" + bad_ext});
  }
  CHECK(with("call:*") == std::vector<std::string>{"permissions: expected an array, got a string"});
  CHECK(with({"call:a", 5}) == std::vector<std::string>{"permissions[1]: expected a string, got an integer"});
}

TEST_CASE("manifest: permissions of an unknown kind are warned about and not granted", "[plugins][manifest]") {
  auto doc = minimal();
  doc["permissions"] = {"cal:inventory", "net:example.com", "call:billing", "everything"};
  const auto m = parse_ok(doc);
  CHECK(m.permissions == std::vector<std::string>{"call:billing"});
  CHECK(warnings_of(m) ==
        std::vector<std::string>{
            "permissions[0]: unknown permission 'cal:inventory' is not granted; known forms: call:<plugin-name>, call:*, "
            "ext:<extension-id> (did you mean 'call:inventory'?)",
            "permissions[1]: unknown permission 'net:example.com' is not granted; known forms: call:<plugin-name>, "
            "call:*, ext:<extension-id>",
            "permissions[3]: unknown permission 'everything' is not granted; known forms: call:<plugin-name>, call:*, "
            "ext:<extension-id>",
        });
  CHECK_FALSE(mp::has_permission(m, "call:inventory"));
}

TEST_CASE("manifest: the config schema is checked key by key", "[plugins][manifest]") {
  auto with = [](const json& config) {
    auto doc = minimal();
    doc["config"] = config;
    return errors_of(doc);
  };
  auto one = [&](const json& entry) {
    const auto errors = with({{"k", entry}});
    REQUIRE(errors.size() == 1);
    return errors[0];
  };
  CHECK(with(json::array()) == std::vector<std::string>{"config: expected an object, got an array"});
  CHECK(one("string") ==
        "config.k: expected an object {\"type\", \"default\", \"required\", \"description\", \"secret\", "
        "\"minimum\", \"maximum\", \"enum\"}, got a string");
  CHECK(one(json::object()) == "config.k.type: required key is missing");
  CHECK(one({{"type", "int"}}) == "config.k.type: 'int' is not one of string, integer, number, boolean, array, object");
  CHECK(one({{"type", "strng"}}) ==
        "config.k.type: 'strng' is not one of string, integer, number, boolean, array, object (did you mean 'string'?)");
  CHECK(one({{"type", 1}}) == "config.k.type: expected a string, got an integer");
  CHECK(one({{"type", "string"}, {"required", "yes"}}) == "config.k.required: expected a boolean, got a string");
  CHECK(one({{"type", "string"}, {"description", 1}}) == "config.k.description: expected a string, got an integer");
  CHECK(one({{"type", "string"}, {"required", true}, {"default", "x"}}) ==
        "config.k.required: a required key cannot have a default (a key with a default is never missing)");
  // Every key the host reads in [plugin.<name>] (common/plugin_keys.hpp), not only `enabled`.
  CHECK(with({{"enabled", {{"type", "boolean"}}}}) ==
        std::vector<std::string>{"config.enabled: 'enabled' is reserved: the host reads [plugin.<name>] enabled itself "
                                 "and never passes it to the plugin (docs/config.md); name the plugin's key otherwise"});
  CHECK(with({{"mount", {{"type", "string"}}}}) ==
        std::vector<std::string>{"config.mount: 'mount' is reserved: the host reads [plugin.<name>] mount itself "
                                 "and never passes it to the plugin (docs/config.md); name the plugin's key otherwise"});
  for (const auto key : keel::host::kHostPluginKeys) {
    INFO(key);
    const auto errors = with({{std::string(key), {{"type", "string"}}}});
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].find("is reserved: the host reads") != std::string::npos);
  }
  auto near_misses = minimal();
  near_misses["config"] = {{"runner", {{"type", "string"}}}, {"mounted", {{"type", "string"}}}};
  CHECK(parse_ok(near_misses).config.size() == 2);
  CHECK(with({{"", {{"type", "string"}}}}) == std::vector<std::string>{"config[\"\"]: a config key must not be empty"});
  CHECK(with({{"a.b", {{"type", "number"}, {"default", "x"}}}}) ==
        std::vector<std::string>{
            "config[\"a.b\"].default: does not match type 'number': expected a number, got a string"});
}

TEST_CASE("manifest: a config default must match its type", "[plugins][manifest]") {
  auto default_error = [](std::string_view type, const json& value) {
    auto doc = minimal();
    doc["config"] = {{"k", {{"type", std::string{type}}, {"default", value}}}};
    return single_error(doc);
  };
  const std::string prefix = "config.k.default: does not match type ";
  CHECK(default_error("string", 5) == prefix + "'string': expected a string, got an integer");
  CHECK(default_error("integer", 1.5) ==
        prefix + "'integer': expected an integer, got a number with a fraction or exponent");
  CHECK(default_error("integer", 2.0) ==
        prefix + "'integer': expected an integer, got a number with a fraction or exponent");
  CHECK(default_error("integer", "5") == prefix + "'integer': expected an integer, got a string");
  CHECK(default_error("integer", 9223372036854775808ULL) ==
        prefix + "'integer': expected an integer, got an integer outside the signed 64-bit range");
  CHECK(default_error("number", "1.5") == prefix + "'number': expected a number, got a string");
  CHECK(default_error("boolean", 0) == prefix + "'boolean': expected a boolean, got an integer");
  CHECK(default_error("array", json::object()) == prefix + "'array': expected an array, got an object");
  CHECK(default_error("object", json::array()) == prefix + "'object': expected an object, got an array");
  CHECK(default_error("string", nullptr) == prefix + "'string': expected a string, got null");
}

TEST_CASE("manifest: a config key may be marked secret", "[plugins][manifest]") {
  const auto m = with_config({{"token", {{"type", "string"}, {"secret", true}}},
                              {"region", {{"type", "string"}, {"secret", false}}},
                              {"port", {{"type", "integer"}, {"default", 80}}}});
  CHECK(m.warnings.empty());
  REQUIRE(m.config.size() == 3);
  CHECK(m.config[0].secret);
  CHECK_FALSE(m.config[1].secret);
  CHECK_FALSE(m.config[2].secret);  // the default
  auto doc = minimal();
  doc["config"] = {{"token", {{"type", "string"}, {"secret", "yes"}}}};
  CHECK(single_error(doc) == "config.token.secret: expected a boolean, got a string");
  doc["config"] = {{"token", {{"type", "string"}, {"secret", 1}}}};
  CHECK(single_error(doc) == "config.token.secret: expected a boolean, got an integer");
}

TEST_CASE("manifest: minimum and maximum bound numeric keys and enum lists the allowed values", "[plugins][manifest]") {
  const auto m = with_config({{"port", {{"type", "integer"}, {"minimum", 1}, {"maximum", 65535}, {"default", 8080}}},
                              {"ratio", {{"type", "number"}, {"minimum", 0}, {"maximum", 1.5}}},
                              {"mode", {{"type", "string"}, {"enum", {"fast", "safe"}}, {"default", "safe"}}},
                              {"level", {{"type", "integer"}, {"enum", {1, 2, 3}}, {"maximum", 3}}}});
  CHECK(m.warnings.empty());
  REQUIRE(m.config.size() == 4);
  CHECK(m.config[0].minimum_json == "1");
  CHECK(m.config[0].maximum_json == "65535");
  CHECK(m.config[2].enum_json == std::vector<std::string>{R"("fast")", R"("safe")"});

  const auto error_of = [](const json& entry) {
    auto doc = minimal();
    doc["config"] = {{"k", entry}};
    return single_error(doc);
  };
  CHECK(error_of({{"type", "string"}, {"minimum", 1}}) ==
        R"(config.k.minimum: applies to "integer" and "number" keys only, not 'string')");
  CHECK(error_of({{"type", "integer"}, {"maximum", 1.5}}) ==
        "config.k.maximum: does not match type 'integer': expected an integer, got a number with a fraction or exponent");
  CHECK(error_of({{"type", "integer"}, {"minimum", 5}, {"maximum", 4}}) == R"(config.k.maximum: is below "minimum" (5))");
  CHECK(error_of({{"type", "integer"}, {"minimum", 5}, {"default", 4}}) == "config.k.default: must be at least 5, got 4");
  CHECK(error_of({{"type", "string"}, {"enum", {"a", "b"}}, {"default", "c"}}) ==
        R"(config.k.default: must be one of "a", "b", got "c")");
  CHECK(error_of({{"type", "string"}, {"enum", json::array()}}) ==
        "config.k.enum: expected a non-empty array of the allowed values, got an array");
  CHECK(error_of({{"type", "string"}, {"enum", {"a", 1}}}) ==
        "config.k.enum[1]: does not match type 'string': expected a string, got an integer");
  CHECK(error_of({{"type", "string"}, {"enum", {"a", "a"}}}) == R"(config.k.enum[1]: "a" is listed twice)");
  CHECK(error_of({{"type", "integer"}, {"maximum", 3}, {"enum", {1, 4}}}) == "config.k.enum[1]: must be at most 3, got 4");
  CHECK(error_of({{"type", "object"}, {"enum", {json::object()}}}) ==
        "config.k.enum: applies to string, integer, number and boolean keys only, not 'object'");
}

TEST_CASE("manifest: unknown keys are warnings with a suggestion", "[plugins][manifest]") {
  auto doc = minimal();
  doc["dependecies"] = json::array();
  doc["route"] = json::array();
  doc["x_future_feature"] = 1;
  doc["routes"] = {{{"method", "GET"}, {"path", "/"}, {"sumary", "typo"}}};
  doc["dependencies"] = {{{"name", "a"}, {"version", "*"}, {"optional", true}}};
  doc["events"] = {{"publish", {"greeter.hello"}}};
  doc["config"] = {{"k", {{"type", "string"}, {"defualt", "x"}}}};
  const auto m = parse_ok(doc);
  // Top-level keys first, then each section's own keys as that section is checked.
  CHECK(warnings_of(m) ==
        std::vector<std::string>{
            "dependecies: unknown key ignored (did you mean 'dependencies'?)",
            "route: unknown key ignored (did you mean 'routes'?)",
            "x_future_feature: unknown key ignored; known keys: name, version, abi, description, dependencies, routes, "
            "concurrency, events, permissions, config, migrations",
            "dependencies[0].optional: unknown key ignored; known keys: name, version",
            "routes[0].sumary: unknown key ignored (did you mean 'summary'?)",
            "events.publish: unknown key ignored (did you mean 'publishes'?)",
            "config.k.defualt: unknown key ignored (did you mean 'default'?)",
        });
  CHECK(m.config.at(0).default_json.empty());
  CHECK(m.publishes.empty());
}

TEST_CASE("manifest: every problem is reported, in schema order", "[plugins][manifest]") {
  const auto errors = text_errors(R"({
    "name": "Orders",
    "abi": "1",
    "dependencies": [ { "name": "inventory", "version": "latest" } ],
    "routes": [ { "method": "get", "path": "orders" }, { "method": "GET", "path": "/ok" } ],
    "concurrency": "both",
    "events": { "publishes": ["orders"], "subscribes": ["orders.#.x"] },
    "permissions": ["call:", "ext:x"],
    "config": { "n": { "type": "integer", "default": "ten" }, "enabled": { "type": "boolean" } }
  })");
  CHECK(errors == std::vector<std::string>{
                      "name: 'Orders' is not a valid plugin name: use [a-z][a-z0-9_]* (a lower-case letter, then a-z, "
                      "0-9, '_')",
                      "version: required key is missing",
                      "abi: '1' is not \"MAJOR.MINOR\" (e.g. \"1.0\", each part 0..65535)",
                      "dependencies[0].version: 'latest' is not a version range (space-separated comparators such as "
                      "\">=1.2.0 <2.0.0\", \"^1.4\", \"~1.4.2\", \"1.x\", \"=1.0.0\")",
                      "routes[0].method: 'get' is not an upper-case method token (e.g. GET, POST) or \"*\" (did you "
                      "mean 'GET'?)",
                      "routes[0].path: 'orders': must start with '/' (it is mounted below /api/<name>)",
                      "concurrency: 'both' is not one of parallel, serialized",
                      "events.publishes[0]: 'orders' is not a topic: two or more dot-separated segments of [a-z0-9_]+, "
                      "e.g. 'orders.placed'",
                      "events.subscribes[0]: 'orders.#.x' is not a topic pattern: '#' may only be the last segment",
                      "permissions[0]: 'call:' is malformed: expected call:<plugin-name> ([a-z][a-z0-9_]*) or call:*",
                      "permissions[1]: 'ext:x' is malformed: expected ext:<namespace>.<name>/<revision>, e.g. "
                      "ext:keel.storage/1",
                      "config.n.default: does not match type 'integer': expected an integer, got a string",
                      "config.enabled: 'enabled' is reserved: the host reads [plugin.<name>] enabled itself and never "
                      "passes it to the plugin (docs/config.md); name the plugin's key otherwise",
                  });
}

namespace {

// A manifest allowed to declare migrations, with `migrations` as its list.
json with_migrations(const json& migrations) {
  auto doc = minimal();
  doc["permissions"] = {"ext:keel.storage/1"};
  doc["migrations"] = migrations;
  return doc;
}

json migration(std::int64_t version, const std::string& sql) { return json{{"version", version}, {"sql", sql}}; }

}  // namespace

TEST_CASE("manifest: migrations parse in order with optional descriptions", "[plugins][manifest][migrations]") {
  const auto m = parse_ok(with_migrations(json::array({
      {{"version", 1},
       {"description", "create products"},
       {"sql", "CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT); CREATE INDEX products_sku ON products (sku);"}},
      migration(2, "ALTER TABLE products ADD COLUMN price INTEGER"),
      {{"version", 10}, {"description", ""}, {"sql", "  DROP INDEX products_sku;\n"}},
  })));
  REQUIRE(m.migrations.size() == 3);
  CHECK(m.migrations[0].version == 1);
  CHECK(m.migrations[0].description == "create products");
  CHECK(m.migrations[0].sql ==
        "CREATE TABLE products (id INTEGER PRIMARY KEY, sku TEXT); CREATE INDEX products_sku ON products (sku);");
  CHECK(m.migrations[1].version == 2);
  CHECK(m.migrations[1].description.empty());
  CHECK(m.migrations[2].version == 10);  // gaps are allowed; only the order matters
  CHECK(m.migrations[2].sql == "  DROP INDEX products_sku;\n");  // kept verbatim
  CHECK(m.warnings.empty());
}

TEST_CASE("manifest: an empty migrations list needs no permission", "[plugins][manifest][migrations]") {
  auto doc = minimal();
  doc["migrations"] = json::array();
  const auto m = parse_ok(doc);
  CHECK(m.migrations.empty());
  CHECK(m.warnings.empty());
}

TEST_CASE("manifest: migration versions must strictly increase", "[plugins][manifest][migrations]") {
  SECTION("out of order") {
    CHECK(single_error(with_migrations(json::array({migration(1, "A"), migration(3, "B"), migration(2, "C")}))) ==
          "migrations[2].version: version 2 is not greater than version 3 of migrations[1]; versions must strictly "
          "increase, so append new migrations at the end");
  }
  SECTION("duplicate version") {
    CHECK(single_error(with_migrations(json::array({migration(1, "A"), migration(2, "B"), migration(2, "C")}))) ==
          "migrations[2].version: duplicate version 2 (also migrations[1]); versions must strictly increase, so "
          "append new migrations at the end");
  }
  SECTION("a broken version is skipped: the next entry is compared with the last readable one") {
    const auto doc =
        with_migrations(json::array({migration(5, "A"), migration(0, "B"), migration(4, "C"), migration(6, "D")}));
    CHECK(errors_of(doc) ==
          std::vector<std::string>{
              "migrations[1].version: 0 is not allowed: versions start at 1",
              "migrations[2].version: version 4 is not greater than version 5 of migrations[0]; versions must "
              "strictly increase, so append new migrations at the end",
          });
  }
}

TEST_CASE("manifest: migration versions are integers from 1", "[plugins][manifest][migrations]") {
  auto version_error = [](const json& version) {
    return single_error(with_migrations(json::array({json{{"version", version}, {"sql", "SELECT 1"}}})));
  };
  CHECK(version_error(0) == "migrations[0].version: 0 is not allowed: versions start at 1");
  CHECK(version_error(-3) == "migrations[0].version: -3 is not allowed: versions start at 1");
  CHECK(version_error("1") == "migrations[0].version: expected an integer >= 1, got a string");
  CHECK(version_error(1.5) ==
        "migrations[0].version: expected an integer >= 1, got a number with a fraction or exponent");
  CHECK(version_error(std::uint64_t{9223372036854775808ULL}) ==
        "migrations[0].version: expected an integer >= 1, got an integer outside the signed 64-bit range");
  const auto largest = parse_ok(with_migrations(json::array({migration(9223372036854775807LL, "SELECT 1")})));
  CHECK(largest.migrations.at(0).version == 9223372036854775807LL);
  CHECK(single_error(with_migrations(json::array({{{"sql", "SELECT 1"}}}))) ==
        "migrations[0].version: required key is missing");
}

TEST_CASE("manifest: a migration needs non-empty sql", "[plugins][manifest][migrations]") {
  CHECK(single_error(with_migrations(json::array({{{"version", 1}, {"description", "no sql"}}}))) ==
        "migrations[0].sql: required key is missing");
  CHECK(single_error(with_migrations(json::array({migration(1, "")}))) ==
        "migrations[0].sql: must not be empty: give one or more SQL statements");
  CHECK(single_error(with_migrations(json::array({migration(1, " \n\t\r ")}))) ==
        "migrations[0].sql: must not be empty: give one or more SQL statements");
  CHECK(single_error(with_migrations(json::array({{{"version", 1}, {"sql", json::array({"SELECT 1"})}}}))) ==
        "migrations[0].sql: expected a string, got an array");
  CHECK(single_error(with_migrations(json::array({{{"version", 1}, {"sql", "SELECT 1"}, {"description", 7}}}))) ==
        "migrations[0].description: expected a string, got an integer");
}

TEST_CASE("manifest: migrations must be an array of objects", "[plugins][manifest][migrations]") {
  CHECK(single_error(with_migrations("CREATE TABLE t (x);")) == "migrations: expected an array, got a string");
  CHECK(single_error(with_migrations(json::object())) == "migrations: expected an array, got an object");
  CHECK(errors_of(with_migrations(json::array({"CREATE TABLE t (x);", migration(1, "SELECT 1"), nullptr}))) ==
        std::vector<std::string>{
            "migrations[0]: expected an object {\"version\", \"description\"?, \"sql\"}, got a string",
            "migrations[2]: expected an object {\"version\", \"description\"?, \"sql\"}, got null",
        });
}

TEST_CASE("manifest: declaring migrations needs the storage permission", "[plugins][manifest][migrations]") {
  const std::string needs =
      "migrations: declaring migrations needs the permission \"ext:keel.storage/1\" in \"permissions\"";
  SECTION("no permissions at all") {
    auto doc = minimal();
    doc["migrations"] = json::array({migration(1, "CREATE TABLE t (x)")});
    CHECK(single_error(doc) == needs);
  }
  SECTION("other permissions only") {
    auto doc = with_migrations(json::array({migration(1, "CREATE TABLE t (x)")}));
    doc["permissions"] = {"call:*", "ext:keel.storage/2", "ext:keel.cache/1"};
    CHECK(single_error(doc) == needs);
  }
  SECTION("reported together with problems in the entries") {
    auto doc = minimal();
    doc["migrations"] = json::array({migration(1, "")});
    CHECK(errors_of(doc) == std::vector<std::string>{
                                needs,
                                "migrations[0].sql: must not be empty: give one or more SQL statements",
                            });
  }
}

TEST_CASE("manifest: unknown keys in a migration are warnings", "[plugins][manifest][migrations]") {
  const auto m = parse_ok(with_migrations(json::array({
      {{"version", 1}, {"sql", "SELECT 1"}, {"descripton", "typo"}, {"checksum", "abc"}},
  })));
  CHECK(warnings_of(m) == std::vector<std::string>{
                              "migrations[0].descripton: unknown key ignored (did you mean 'description'?)",
                              "migrations[0].checksum: unknown key ignored; known keys: version, description, sql",
                          });
  REQUIRE(m.migrations.size() == 1);
  CHECK(m.migrations[0].description.empty());
  auto doc = minimal();
  doc["migration"] = json::array();
  CHECK(warnings_of(parse_ok(doc)) ==
        std::vector<std::string>{"migration: unknown key ignored (did you mean 'migrations'?)"});
}

TEST_CASE("manifest: ManifestError::str joins field and message", "[plugins][manifest]") {
  CHECK(mp::ManifestError{"routes[2].method", "bad"}.str() == "routes[2].method: bad");
  CHECK(mp::ManifestError{"", "bad"}.str() == "bad");
}

TEST_CASE("manifest: the section holds one NUL-terminated document", "[plugins][manifest]") {
  const std::string text = minimal().dump();
  SECTION("one document") {
    const std::string section = text + '\0';
    const auto result = mp::manifest_text_from_section(section);
    REQUIRE(std::holds_alternative<std::string_view>(result));
    CHECK(std::get<std::string_view>(result) == text);
  }
  SECTION("missing NUL") {
    const auto result = mp::manifest_text_from_section(text);
    REQUIRE(std::holds_alternative<mp::ManifestError>(result));
    CHECK(std::get<mp::ManifestError>(result).str() == "the manifest section is not NUL-terminated");
  }
  SECTION("two documents") {
    const std::string section = text + '\0' + text + '\0';
    const auto result = mp::manifest_text_from_section(section);
    REQUIRE(std::holds_alternative<mp::ManifestError>(result));
    CHECK(std::get<mp::ManifestError>(result).str() ==
          "the manifest section holds more than one document (NUL at byte " + std::to_string(text.size()) +
              " of " + std::to_string(section.size()) + "); was KEEL_PLUGIN_MANIFEST used in two translation units?");
  }
  SECTION("larger than 1 MiB") {
    std::string section(mp::kMaxManifestBytes, ' ');
    section.back() = '\0';
    CHECK(std::holds_alternative<std::string_view>(mp::manifest_text_from_section(section)));
    section.push_back('\0');
    const auto result = mp::manifest_text_from_section(section);
    REQUIRE(std::holds_alternative<mp::ManifestError>(result));
    CHECK(std::get<mp::ManifestError>(result).str() ==
          "the manifest section is 1048577 bytes; at most 1048576 are allowed");
  }
}

TEST_CASE("config schema: defaults fill absent keys", "[plugins][manifest][config]") {
  const auto m = parse_ok(doc_example());
  CHECK(applied(m, R"({"currency": "EUR"})") == R"({"max_items":50,"currency":"EUR","tax_rates":{}})");
  CHECK(applied(m, R"({"tax_rates": {"de": 0.19}, "currency": "EUR", "max_items": 7})") ==
        R"({"max_items":7,"currency":"EUR","tax_rates":{"de":0.19}})");

  const auto optional_only = with_config({{"greeting", {{"type", "string"}, {"default", "hello"}}},
                                          {"loud", {{"type", "boolean"}}}});
  CHECK(applied(optional_only, "{}") == R"({"greeting":"hello"})");
  CHECK(applied(optional_only, "") == R"({"greeting":"hello"})");
  CHECK(applied(optional_only, " \n") == R"({"greeting":"hello"})");
  CHECK(applied(optional_only, R"({"loud": true})") == R"({"greeting":"hello","loud":true})");
  CHECK(applied(optional_only, R"({"greeting": "grüß dich"})") == R"({"greeting":"grüß dich"})");
  CHECK(applied(parse_ok(minimal()), "{}") == "{}");
}

TEST_CASE("config schema: unknown keys are refused with a suggestion", "[plugins][manifest][config]") {
  const auto m = parse_ok(doc_example());
  CHECK(issues_of(m, R"({"currency": "EUR", "max_item": 3})") ==
        std::vector<std::string>{"max_item: unknown key 'max_item' (did you mean 'max_items'?)"});
  CHECK(issues_of(m, R"({"currency": "EUR", "colour": "red"})") ==
        std::vector<std::string>{"colour: unknown key 'colour'; known keys: max_items, currency, tax_rates"});
  CHECK(issues_of(parse_ok(minimal()), R"({"x": 1})") ==
        std::vector<std::string>{"x: unknown key 'x'; plugin 'greeter' accepts no settings"});
}

TEST_CASE("config schema: values must have the declared type", "[plugins][manifest][config]") {
  const auto m = with_config({
      {"s", {{"type", "string"}}},
      {"i", {{"type", "integer"}}},
      {"n", {{"type", "number"}}},
      {"b", {{"type", "boolean"}}},
      {"a", {{"type", "array"}}},
      {"o", {{"type", "object"}}},
  });
  CHECK(issues_of(m, R"({"s": 1})") == std::vector<std::string>{"s: expected a string, got an integer"});
  CHECK(issues_of(m, R"({"i": "5"})") == std::vector<std::string>{"i: expected an integer, got a string"});
  CHECK(issues_of(m, R"({"i": 1.5})") ==
        std::vector<std::string>{"i: expected an integer, got a number with a fraction or exponent"});
  CHECK(issues_of(m, R"({"i": 1e3})") ==
        std::vector<std::string>{"i: expected an integer, got a number with a fraction or exponent"});
  CHECK(issues_of(m, R"({"i": 9223372036854775808})") ==
        std::vector<std::string>{"i: expected an integer, got an integer outside the signed 64-bit range"});
  CHECK(issues_of(m, R"({"n": true})") == std::vector<std::string>{"n: expected a number, got a boolean"});
  CHECK(issues_of(m, R"({"b": "true"})") == std::vector<std::string>{"b: expected a boolean, got a string"});
  CHECK(issues_of(m, R"({"a": {}})") == std::vector<std::string>{"a: expected an array, got an object"});
  CHECK(issues_of(m, R"({"o": []})") == std::vector<std::string>{"o: expected an object, got an array"});
  CHECK(issues_of(m, R"({"s": null})") == std::vector<std::string>{"s: expected a string, got null"});

  // "number" accepts integers; "integer" accepts the whole int64 range.
  CHECK(applied(m, R"({"n": 3})") == R"({"n":3})");
  CHECK(applied(m, R"({"n": -0.5})") == R"({"n":-0.5})");
  CHECK(applied(m, R"({"i": -9223372036854775808})") == R"({"i":-9223372036854775808})");
  CHECK(applied(m, R"({"i": 9223372036854775807})") == R"({"i":9223372036854775807})");
  CHECK(applied(m, R"({"a": [1, "x"], "o": {"k": [null]}, "b": false, "s": ""})") ==
        R"({"s":"","b":false,"a":[1,"x"],"o":{"k":[null]}})");
}

TEST_CASE("config schema: values inside minimum and maximum and among enum", "[plugins][manifest][config]") {
  const auto m = with_config({{"port", {{"type", "integer"}, {"minimum", 1}, {"maximum", 65535}}},
                              {"ratio", {{"type", "number"}, {"maximum", 1}}},
                              {"mode", {{"type", "string"}, {"enum", {"fast", "safe"}}}},
                              {"step", {{"type", "number"}, {"enum", {1, 2.5}}}}});
  CHECK(applied(m, R"({"port": 1, "ratio": 1, "mode": "fast", "step": 1.0})") ==
        R"({"port":1,"ratio":1,"mode":"fast","step":1.0})");
  CHECK(applied(m, R"({"port": 65535, "ratio": 0.25, "step": 2.5})") == R"({"port":65535,"ratio":0.25,"step":2.5})");
  CHECK(issues_of(m, R"({"port": 0})") == std::vector<std::string>{"port: must be at least 1, got 0"});
  CHECK(issues_of(m, R"({"port": 70000})") == std::vector<std::string>{"port: must be at most 65535, got 70000"});
  CHECK(issues_of(m, R"({"ratio": 1.01})") == std::vector<std::string>{"ratio: must be at most 1, got 1.01"});
  CHECK(issues_of(m, R"({"mode": "quick"})") ==
        std::vector<std::string>{R"(mode: must be one of "fast", "safe", got "quick")"});
  CHECK(issues_of(m, R"({"step": 2})") == std::vector<std::string>{"step: must be one of 1, 2.5, got 2"});
}

TEST_CASE("config schema: required keys must be set", "[plugins][manifest][config]") {
  const auto m = parse_ok(doc_example());
  CHECK(issues_of(m, "{}") == std::vector<std::string>{"currency: required key is missing"});
  const auto described = with_config({{"token", {{"type", "string"}, {"required", true}, {"description", "API token"}}}});
  CHECK(issues_of(described, "") == std::vector<std::string>{"token: required key is missing (API token)"});
}

TEST_CASE("config schema: every issue is reported", "[plugins][manifest][config]") {
  const auto m = parse_ok(doc_example());
  CHECK(issues_of(m, R"({"max_items": "many", "tax_rate": {}, "extra": 1})") ==
        std::vector<std::string>{
            "max_items: expected an integer, got a string",
            "tax_rate: unknown key 'tax_rate' (did you mean 'tax_rates'?)",
            "extra: unknown key 'extra'; known keys: max_items, currency, tax_rates",
            "currency: required key is missing",
        });
}

TEST_CASE("config schema: settings must be a JSON object", "[plugins][manifest][config]") {
  const auto m = parse_ok(doc_example());
  CHECK(issues_of(m, "[]") == std::vector<std::string>{": settings must be an object of keys, got an array"});
  CHECK(issues_of(m, "null") == std::vector<std::string>{": settings must be an object of keys, got null"});
  const auto errors = issues_of(m, "{\"currency\": }");
  REQUIRE(errors.size() == 1);
  CHECK(errors[0].rfind(": settings are not valid JSON: parse error at line 1, column 14", 0) == 0);
  CHECK(errors[0].find("(byte 14)") != std::string::npos);
  CHECK(issues_of(m, R"({"currency": 1e999})") ==
        std::vector<std::string>{": settings are not valid JSON: number overflow parsing '1e999'"});
  CHECK(issues_of(m, std::string("{}\0{}", 5)) ==
        std::vector<std::string>{": settings are not valid JSON: NUL byte at byte 2 (JSON text cannot contain one)"});
}

TEST_CASE("config schema: a hand-built manifest with a broken default is reported, not thrown",
          "[plugins][manifest][config]") {
  mp::Manifest m;
  m.name = "hand_built";
  mp::ConfigKey k;
  k.name = "k";
  k.default_json = "not json";
  m.config.push_back(k);
  CHECK(issues_of(m, "{}") == std::vector<std::string>{"k: the manifest's default is not valid JSON: not json"});
  CHECK(applied(m, R"({"k": "set"})") == R"({"k":"set"})");
}

TEST_CASE("has_permission: exact match, and call:* grants every call", "[plugins][manifest]") {
  auto doc = minimal();
  doc["permissions"] = {"call:inventory", "ext:keel.storage/1"};
  const auto m = parse_ok(doc);
  CHECK(mp::has_permission(m, "call:inventory"));
  CHECK(mp::has_permission(m, "ext:keel.storage/1"));
  CHECK_FALSE(mp::has_permission(m, "call:billing"));
  CHECK_FALSE(mp::has_permission(m, "call:*"));
  CHECK_FALSE(mp::has_permission(m, "ext:keel.storage/2"));
  CHECK_FALSE(mp::has_permission(m, "ext:keel.storage"));
  CHECK_FALSE(mp::has_permission(m, "call:inventory2"));
  CHECK_FALSE(mp::has_permission(m, ""));

  doc["permissions"] = {"call:*"};
  const auto any = parse_ok(doc);
  CHECK(mp::has_permission(any, "call:inventory"));
  CHECK(mp::has_permission(any, "call:billing"));
  CHECK(mp::has_permission(any, "call:*"));
  CHECK_FALSE(mp::has_permission(any, "call:"));
  CHECK_FALSE(mp::has_permission(any, "ext:keel.storage/1"));
  CHECK_FALSE(mp::has_permission(any, "callx:inventory"));

  CHECK_FALSE(mp::has_permission(parse_ok(minimal()), "call:inventory"));
}

TEST_CASE("manifest: a route that only reads its storage says \"storage\": \"read\"", "[plugins][manifest]") {
  auto doc = minimal();
  doc["permissions"] = {"ext:keel.storage/1"};
  doc["routes"] = {{{"method", "GET"}, {"path", "/items/{id}"}, {"storage", "read"}},
                   {{"method", "POST"}, {"path", "/items"}, {"blocking", true}}};
  const auto m = parse_ok(doc);
  CHECK(m.routes[0].storage_read);
  CHECK_FALSE(m.routes[0].blocking);
  CHECK_FALSE(m.routes[1].storage_read);

  auto route_error = [&](const json& route) {
    auto d = doc;
    d["routes"] = {route};
    return single_error(d);
  };
  CHECK(route_error({{"method", "GET"}, {"path", "/x"}, {"storage", "write"}}) ==
        "routes[0].storage: 'write' is not a storage mode: the only one is \"read\" (a handler that only reads its "
        "storage); leave it out for a route that writes");
  CHECK(route_error({{"method", "GET"}, {"path", "/x"}, {"storage", true}}) ==
        "routes[0].storage: expected a string, got a boolean");
  CHECK(route_error({{"method", "GET"}, {"path", "/x"}, {"storage", "read"}, {"blocking", true}}) ==
        "routes[0].storage: \"read\" with \"blocking\": true: a blocking route always runs on the worker pool; keep "
        "one of the two");
  doc.erase("permissions");
  CHECK(single_error(doc) ==
        "routes[0].storage: \"read\" reads the plugin's database: add the permission \"ext:keel.storage/1\"");
}
