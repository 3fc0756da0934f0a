// GET /openapi.json: the OpenAPI 3.1 document generated from the started plugins' manifests.
#include <catch2/catch.hpp>

#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;

TEST_CASE("openapi.json lists every started plugin route with its parameters and summary", "[openapi][integration]") {
  KeelHost host(with_plugins({example_plugin("hello"), fixture("store"), fixture("start_fails")}));
  const auto r = simple_request(host.port(), "GET", "/openapi.json");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->header("content-type") == "application/json");
  const auto doc = nlohmann::json::parse(r->body);
  CHECK(doc["openapi"] == "3.1.0");
  CHECK(doc["info"]["title"] == "Keel");
  const auto& greet = doc["paths"]["/api/hello/greet/{name}"]["get"];
  CHECK(greet["summary"] == "JSON greeting for {name}");
  CHECK(greet["tags"] == nlohmann::json::array({"hello"}));
  REQUIRE(greet["parameters"].size() == 2);  // the path parameter, then hello's declared query parameter
  CHECK(greet["parameters"][0]["name"] == "name");
  CHECK(greet["parameters"][0]["in"] == "path");
  CHECK(greet["parameters"][0]["required"] == true);
  CHECK(doc["paths"].contains("/api/hello/echo"));
  CHECK(doc["paths"]["/api/store/items/{id}"].contains("get"));
  CHECK(doc["paths"]["/api/store/items"].contains("post"));
  // A route that declares no responses keeps one default answer with the standard error body.
  const auto& get_item = doc["paths"]["/api/store/items/{id}"]["get"];
  CHECK(get_item["responses"].size() == 1);
  CHECK(get_item["responses"]["default"]["content"]["application/json"]["schema"]["$ref"] ==
        "#/components/schemas/Error");
  CHECK_FALSE(get_item.contains("requestBody"));
  CHECK_FALSE(doc["paths"]["/api/store/items"]["post"].contains("requestBody"));
  // A plugin that did not start serves nothing, so it is not documented.
  for (const auto& [path, item] : doc["paths"].items()) CHECK(path.rfind("/api/start_fails", 0) != 0);
  // operationIds are unique.
  std::set<std::string> ids;
  std::size_t ops = 0;
  for (const auto& [path, item] : doc["paths"].items())
    for (const auto& [method, op] : item.items()) {
      ids.insert(op["operationId"].get<std::string>());
      ++ops;
    }
  CHECK(ids.size() == ops);
  const auto post = simple_request(host.port(), "POST", "/openapi.json");
  REQUIRE(post);
  CHECK(post->status == 405);
}

namespace {

// Every "$ref" in `node` points at something in `doc` (only local "#/..." references are made).
void check_refs(const nlohmann::json& doc, const nlohmann::json& node) {
  if (node.is_object()) {
    for (const auto& [key, value] : node.items()) {
      if (key == "$ref" && value.is_string()) {
        const auto ref = value.get<std::string>();
        INFO(ref);
        REQUIRE(ref.rfind("#/", 0) == 0);
        CHECK(doc.contains(nlohmann::json::json_pointer(ref.substr(1))));
      } else {
        check_refs(doc, value);
      }
    }
  } else if (node.is_array()) {
    for (const auto& value : node) check_refs(doc, value);
  }
}

}  // namespace

TEST_CASE("openapi.json shows the request body, query parameters and response schemas hello declares",
          "[openapi][integration]") {
  KeelHost host(with_plugins({example_plugin("hello"), fixture("store")}));
  const auto r = simple_request(host.port(), "GET", "/openapi.json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto doc = nlohmann::json::parse(r->body);
  using json = nlohmann::json;
  const json error_ref = {{"$ref", "#/components/schemas/Error"}};

  SECTION("GET /greet/{name}: a query parameter and a 200 schema") {
    const auto& greet = doc["paths"]["/api/hello/greet/{name}"]["get"];
    REQUIRE(greet["parameters"].size() == 2);
    const auto& query = greet["parameters"][1];
    CHECK(query["name"] == "greeting");
    CHECK(query["in"] == "query");
    CHECK(query["required"] == false);
    CHECK(query["schema"] == json{{"type", "string"}});
    CHECK(query["description"].is_string());
    CHECK_FALSE(greet.contains("requestBody"));
    const auto& ok = greet["responses"]["200"];
    CHECK(ok["description"] == "the greeting");
    const auto& schema = ok["content"]["application/json"]["schema"];
    CHECK(schema["type"] == "object");
    CHECK(schema["required"] == json::array({"greeting"}));
    CHECK(schema["properties"]["greeting"]["type"] == "string");
    CHECK(schema["additionalProperties"] == false);
    // Every other answer is an error with the standard body, declared once in components.
    CHECK(greet["responses"]["default"] == json{{"$ref", "#/components/responses/Error"}});
    CHECK(greet["responses"].size() == 2);
  }

  SECTION("POST /echo: a required request body and a 200 schema") {
    const auto& echo = doc["paths"]["/api/hello/echo"]["post"];
    CHECK_FALSE(echo.contains("parameters"));
    const auto& body = echo["requestBody"];
    CHECK(body["required"] == true);
    CHECK(body["description"].is_string());
    REQUIRE(body["content"].size() == 1);
    CHECK(body["content"]["application/json"]["schema"] == json{{"description", "any JSON value"}});
    const auto& ok = echo["responses"]["200"];
    CHECK(ok["description"].is_string());
    CHECK(ok["content"]["application/json"]["schema"] == json{{"description", "the request body"}});
    CHECK(echo["responses"]["default"] == json{{"$ref", "#/components/responses/Error"}});
  }

  SECTION("the standard error body is declared once, with the shape the host sends") {
    const auto& error = doc["components"]["schemas"]["Error"];
    CHECK(error["type"] == "object");
    CHECK(error["required"] == json::array({"error"}));
    CHECK(error["properties"]["error"]["required"] == json::array({"code", "message"}));
    CHECK(error["properties"]["error"]["properties"]["code"]["type"] == "string");
    CHECK(error["properties"]["error"]["properties"]["message"]["type"] == "string");
    const auto& response = doc["components"]["responses"]["Error"];
    CHECK(response["description"].is_string());
    CHECK(response["content"]["application/json"]["schema"] == error_ref);
    // What the host really answers matches it.
    const auto missing = simple_request(host.port(), "GET", "/api/hello/nope");
    REQUIRE(missing);
    CHECK(missing->status == 404);
    const auto body = json::parse(missing->body);
    CHECK(body.size() == 1);
    CHECK(body["error"].size() == 2);
    CHECK(body["error"]["code"].is_string());
    CHECK(body["error"]["message"].is_string());
  }

  SECTION("every operation has responses with descriptions and every reference resolves") {
    for (const auto& [path, item] : doc["paths"].items()) {
      for (const auto& [method, op] : item.items()) {
        INFO(method << " " << path);
        REQUIRE(op.contains("responses"));
        CHECK_FALSE(op["responses"].empty());
        for (const auto& [status, response] : op["responses"].items()) {
          INFO(status);
          CHECK((response.contains("$ref") || response["description"].is_string()));
        }
        for (const auto& p : op.value("parameters", json::array())) {
          CHECK(p["name"].is_string());
          CHECK((p["in"] == "path" || p["in"] == "query"));
          CHECK(p["schema"].is_object());
        }
      }
    }
    check_refs(doc, doc);
  }

  SECTION("the documented query parameter does what it says") {
    const auto plain = simple_request(host.port(), "GET", "/api/hello/greet/Ada");
    REQUIRE(plain);
    CHECK(plain->body == R"({"greeting":"Hello, Ada!"})");
    const auto custom = simple_request(host.port(), "GET", "/api/hello/greet/Ada?greeting=Bonjour");
    REQUIRE(custom);
    CHECK(custom->status == 200);
    CHECK(custom->body == R"({"greeting":"Bonjour, Ada!"})");
  }
}
