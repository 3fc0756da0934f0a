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
  REQUIRE(greet["parameters"].size() == 1);
  CHECK(greet["parameters"][0]["name"] == "name");
  CHECK(greet["parameters"][0]["in"] == "path");
  CHECK(greet["parameters"][0]["required"] == true);
  CHECK(greet["responses"]["default"]["content"]["application/json"]["schema"]["$ref"] == "#/components/schemas/Error");
  CHECK(doc["paths"].contains("/api/hello/echo"));
  CHECK(doc["paths"]["/api/store/items/{id}"].contains("get"));
  CHECK(doc["paths"]["/api/store/items"].contains("post"));
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
