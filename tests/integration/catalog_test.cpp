// The catalog example plugin end to end: the real keel binary loading build/plugins/catalog.so,
// real HTTP on loopback, its SQLite database in data_dir. Products CRUD and reservations over
// HTTP, the data kept across a restart on the same data_dir, and the routes in /openapi.json.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <optional>
#include <string>

#include "keel_host.hpp"
#include "raw_client.hpp"

using keel::test::example_plugin;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;

namespace {

constexpr const char* kJson = "Content-Type: application/json\r\n";

struct Answer {
  int status = 0;
  std::string body;
  Json json;
  std::string location;
};

Answer http(const KeelHost& host, std::string_view method, std::string_view path, std::string_view body = {}) {
  const auto r = simple_request(host.port(), method, path, body, body.empty() ? std::string_view{} : kJson);
  REQUIRE(r);
  Answer a{r->status, r->body, {}, r->header("Location")};
  INFO(method << " " << path << " -> " << r->status << " " << r->body);
  if (!r->body.empty()) {
    CHECK(r->header("Content-Type") == "application/json");
    a.json = Json::parse(r->body);
  }
  return a;
}

}  // namespace

TEST_CASE("catalog over HTTP: create, read, list, patch, delete, reserve and release", "[shop][catalog]") {
  KeelHost host(with_plugins({example_plugin("catalog")}));
  const auto created = http(host, "POST", "/api/catalog/products",
                            R"({"sku":"MUG-1","name":"Mug","description":"Stoneware, 350 ml","price_cents":1250,"currency":"EUR","stock":5})");
  REQUIRE(created.status == 201);
  CHECK(created.location == "/api/catalog/products/1");
  CHECK(created.json["id"] == 1);
  CHECK(created.json["price_cents"] == 1250);

  CHECK(http(host, "GET", created.location).json == created.json);
  REQUIRE(http(host, "POST", "/api/catalog/products", R"({"sku":"TEE-1","name":"T-shirt","price_cents":1999,"currency":"EUR","stock":2})")
              .status == 201);
  REQUIRE(http(host, "POST", "/api/catalog/products", R"({"sku":"CAP-1","name":"Cap","price_cents":899,"currency":"EUR"})")
              .status == 201);

  // Errors keep Keel's error shape and name the field.
  const auto duplicate = http(host, "POST", "/api/catalog/products", R"({"sku":"MUG-1","name":"Mug 2","price_cents":1,"currency":"EUR"})");
  CHECK(duplicate.status == 409);
  CHECK(duplicate.json["error"]["code"] == "duplicate_sku");
  const auto invalid = http(host, "POST", "/api/catalog/products", R"({"sku":"X","name":"X","price_cents":12.5,"currency":"EUR"})");
  CHECK(invalid.status == 422);
  CHECK(invalid.json["error"]["field"] == "price_cents");
  CHECK(http(host, "POST", "/api/catalog/products", "{not json").status == 400);
  CHECK(http(host, "GET", "/api/catalog/products/99").status == 404);

  // Two pages of two.
  const auto first = http(host, "GET", "/api/catalog/products?limit=2");
  REQUIRE(first.status == 200);
  CHECK(first.json["items"].size() == 2);
  REQUIRE(first.json["next_cursor"] == "2");
  const auto second = http(host, "GET", "/api/catalog/products?limit=2&cursor=2");
  CHECK(second.json["items"].size() == 1);
  CHECK(second.json["items"][0]["sku"] == "CAP-1");
  CHECK(second.json["next_cursor"].is_null());
  CHECK(http(host, "GET", "/api/catalog/products?limit=500").status == 422);

  const auto patched = http(host, "PATCH", "/api/catalog/products/3", R"({"price_cents":999,"stock":7})");
  REQUIRE(patched.status == 200);
  CHECK(patched.json["price_cents"] == 999);
  CHECK(patched.json["stock"] == 7);
  CHECK(patched.json["name"] == "Cap");

  // Reservations: all lines or none, idempotent, released once.
  const std::string order = R"({"reservation_id":"order-1","items":[{"product_id":1,"quantity":2},{"product_id":2,"quantity":2}]})";
  const auto reserved = http(host, "POST", "/api/catalog/reservations", order);
  REQUIRE(reserved.status == 201);
  CHECK(reserved.json["lines"][0]["unit_price_cents"] == 1250);
  CHECK(reserved.json["lines"][1]["sku"] == "TEE-1");
  CHECK(http(host, "POST", "/api/catalog/reservations", order).body == reserved.body);
  CHECK(http(host, "GET", "/api/catalog/products/1").json["stock"] == 3);
  CHECK(http(host, "GET", "/api/catalog/products/2").json["stock"] == 0);
  const auto short_stock = http(host, "POST", "/api/catalog/reservations",
                                R"({"reservation_id":"order-2","items":[{"product_id":1,"quantity":1},{"product_id":2,"quantity":1}]})");
  CHECK(short_stock.status == 409);
  CHECK(short_stock.json["error"]["code"] == "insufficient_stock");
  CHECK(short_stock.json["error"]["sku"] == "TEE-1");
  CHECK(http(host, "GET", "/api/catalog/products/1").json["stock"] == 3);
  CHECK(http(host, "DELETE", "/api/catalog/reservations/order-1").status == 204);
  CHECK(http(host, "DELETE", "/api/catalog/reservations/order-1").status == 204);
  CHECK(http(host, "GET", "/api/catalog/products/1").json["stock"] == 5);
  CHECK(http(host, "GET", "/api/catalog/products/2").json["stock"] == 2);
  CHECK(http(host, "DELETE", "/api/catalog/reservations/nope").status == 404);

  const auto removed = http(host, "DELETE", "/api/catalog/products/3");
  CHECK(removed.status == 204);
  CHECK(removed.body.empty());
  CHECK(http(host, "GET", "/api/catalog/products/3").status == 404);
  CHECK(http(host, "DELETE", "/api/catalog/products/3").status == 404);
  CHECK(http(host, "PUT", "/api/catalog/products/1", "{}").status == 405);
}

TEST_CASE("catalog keeps products and reservations across a restart on the same data_dir", "[shop][catalog]") {
  keel::test::TempDir data;
  auto options = with_plugins({example_plugin("catalog")});
  options.data_dir = data.path();
  Json product;
  std::string reservation;
  {
    KeelHost host(options);
    const auto created = http(host, "POST", "/api/catalog/products",
                              R"({"sku":"LAMP-1","name":"Lamp \u00e9t\u00e9","price_cents":4500,"currency":"CHF","stock":4})");
    REQUIRE(created.status == 201);
    const auto r = http(host, "POST", "/api/catalog/reservations",
                        R"({"reservation_id":"order-42","items":[{"product_id":1,"quantity":3}]})");
    REQUIRE(r.status == 201);
    reservation = r.body;
    product = http(host, "GET", "/api/catalog/products/1").json;
    REQUIRE(product["stock"] == 1);
    REQUIRE(host.stop() == 0);
  }
  KeelHost again(options);
  CHECK(http(again, "GET", "/api/catalog/products/1").json == product);
  CHECK(product["name"] == "Lamp \xC3\xA9t\xC3\xA9");
  // The reservation survived too: repeating it takes nothing, releasing it puts the stock back.
  CHECK(http(again, "POST", "/api/catalog/reservations", R"({"reservation_id":"order-42","items":[{"product_id":1,"quantity":3}]})")
            .body == reservation);
  CHECK(http(again, "GET", "/api/catalog/products/1").json["stock"] == 1);
  CHECK(http(again, "DELETE", "/api/catalog/reservations/order-42").status == 204);
  CHECK(http(again, "GET", "/api/catalog/products/1").json["stock"] == 4);
  // Ids continue after the restart; the schema was migrated once.
  CHECK(http(again, "POST", "/api/catalog/products", R"({"sku":"LAMP-2","name":"Lamp","price_cents":1,"currency":"CHF"})")
            .json["id"] == 2);
  CHECK(again.process().output().find("migration applied") == std::string::npos);
}

TEST_CASE("catalog documents its routes in openapi.json", "[shop][catalog]") {
  KeelHost host(with_plugins({example_plugin("catalog")}));
  const auto r = simple_request(host.port(), "GET", "/openapi.json");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  const auto doc = Json::parse(r->body);
  const auto& paths = doc["paths"];
  REQUIRE(paths.contains("/api/catalog/products"));
  CHECK(paths["/api/catalog/products"].contains("post"));
  CHECK(paths["/api/catalog/products"]["get"]["parameters"].size() == 2);
  CHECK(paths["/api/catalog/products/{id}"].contains("patch"));
  CHECK(paths["/api/catalog/products/{id}"].contains("delete"));
  CHECK(paths["/api/catalog/reservations"]["post"]["responses"].contains("409"));
  CHECK(paths["/api/catalog/reservations/{id}"].contains("delete"));
}
