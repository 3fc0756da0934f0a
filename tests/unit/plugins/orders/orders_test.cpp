// The orders plugin, driven through its C table by FakeHost with a real database
// (TestDatabase migrated from orders' manifest; committed outbox events reach
// FakeHost::published). Its calls go to the real catalog plugin, loaded in a second FakeHost
// with its own database: the on_call handler forwards each call as a request to it, so these
// tests hold orders to catalog's actual reservation contract. Faults (a refused call, a
// timeout before or after catalog did the work, a 500, an unreadable answer) are injected in
// that handler. Completions run when the test calls deliver_calls(), never inside call().
// Header-only plugins: plugin.cpp, which defines the entry point, is not linked here.

#include "../../../../plugins/catalog/src/catalog.hpp"
#include "../../../../plugins/orders/src/orders.hpp"

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "storage/testing.hpp"
#include "temp_dir.hpp"

namespace {

namespace sdk = keel::sdk;
using sdk::testing::CallReply;
using sdk::testing::FakeHost;
using sdk::testing::OwnedField;
using sdk::testing::PendingRequest;
using sdk::testing::RecordedCall;
using sdk::testing::RequestSpec;
using Json = nlohmann::json;

/// Configuration without periodic recovery, so only start() and the tests drive it.
constexpr const char* kQuiet = R"({"catalog_timeout_ms": 5000, "recovery_interval_ms": 3600000})";

/// What the call handler does to the next calls of one kind.
enum class Fault {
  kNone,
  kRefuse,         ///< call() itself fails (catalog not loaded)
  kTimeout,        ///< the call times out before catalog sees it
  kAnswerLost,     ///< catalog does the work, then the call times out
  kServerError,    ///< catalog answers 500 without doing anything
  kUnreadable201,  ///< a 201 whose body is not a reservation
};

struct Answer {
  int status = 0;
  std::string body;
  Json json;
  std::optional<std::string> location;
  std::optional<std::string> replayed;
};

Answer answer_of(const PendingRequest& pending) {
  const auto response = pending.response();
  INFO("on_request returned " << pending.returned().to_string());
  REQUIRE(response);
  Answer a;
  a.status = response->status;
  a.body = response->body;
  if (!a.body.empty()) {
    CHECK(response->content_type == "application/json");
    a.json = Json::parse(a.body);
  }
  if (auto h = response->header("location")) a.location = std::string{*h};
  if (auto h = response->header("idempotent-replayed")) a.replayed = std::string{*h};
  return a;
}

/// catalog in one FakeHost, orders in another, orders' calls forwarded to catalog.
struct Shop {
  keel::test::TempDir dir;
  FakeHost catalog_host;
  keel::host::storage::TestDatabase catalog_db{catalog_host.ctx(), dir.path() / "catalog.db", CATALOG_MANIFEST};
  FakeHost host;
  keel::host::storage::TestDatabase orders_db{host.ctx(), dir.path() / "orders.db", ORDERS_MANIFEST, &host.api()};
  std::string config;

  std::mutex mutex;  // guards the faults and serializes use of catalog_host (calls may come from the recovery thread)
  Fault reserve_fault = Fault::kNone;
  Fault release_fault = Fault::kNone;

  explicit Shop(std::string config_json = kQuiet) : config{std::move(config_json)} {
    catalog_host.add_extension(KEEL_STORAGE_EXTENSION_ID, &catalog_db.table());
    REQUIRE(catalog_host.load<catalog::CatalogPlugin>("{}", CATALOG_MANIFEST).ok());
    host.add_extension(KEEL_STORAGE_EXTENSION_ID, &orders_db.table());
    host.on_call([this](const RecordedCall& call) { return forward(call); });
    REQUIRE(host.load<orders::OrdersPlugin>(config, ORDERS_MANIFEST).ok());
  }

  void faults(Fault reserve, Fault release = Fault::kNone) {
    std::lock_guard lock{mutex};
    reserve_fault = reserve;
    release_fault = release;
  }

  CallReply forward(const RecordedCall& call) {
    std::lock_guard lock{mutex};
    REQUIRE(call.target == "catalog");
    RequestSpec spec{.method = call.method, .path = "/api/catalog" + call.path, .body = call.body};
    const std::string prefix = "/reservations/";
    Fault fault = reserve_fault;
    if (call.method == "POST" && call.path == "/reservations") {
      spec.route_index = catalog::kReserve;
    } else if (call.method == "DELETE" && call.path.rfind(prefix, 0) == 0) {
      spec.route_index = catalog::kRelease;
      spec.path_params = {{"id", call.path.substr(prefix.size())}};
      fault = release_fault;
    } else {
      FAIL("orders called catalog's " << call.method << " " << call.path);
    }
    switch (fault) {
      case Fault::kRefuse: return CallReply{.refuse = sdk::StatusCode::kUnavailable};
      case Fault::kTimeout: return CallReply{.result = sdk::StatusCode::kTimeout};
      case Fault::kServerError: return CallReply{.status = 500, .body = R"({"error":{"code":"internal","message":"x"}})"};
      case Fault::kUnreadable201: return CallReply{.status = 201, .body = R"({"reservation_id":"x","lines":"?"})"};
      case Fault::kNone:
      case Fault::kAnswerLost: break;
    }
    const auto response = catalog_host.request(spec).response();
    REQUIRE(response);
    if (fault == Fault::kAnswerLost) return CallReply{.result = sdk::StatusCode::kTimeout};
    return CallReply{.status = response->status, .headers = response->headers, .content_type = response->content_type,
                     .body = response->body};
  }

  /// Runs call completions (and the calls they make) until none is left.
  void settle() {
    while (host.deliver_calls() != 0) {
    }
  }

  /// Simulates a crash and restart of orders: in-flight calls never complete successfully, the
  /// database stays, a new instance starts (and recovers).
  void restart() {
    static_cast<void>(host.unload());
    REQUIRE(host.load<orders::OrdersPlugin>(config, ORDERS_MANIFEST).ok());
  }

  PendingRequest request(orders::Route route, std::string method, std::string path, std::string body = {},
                         std::vector<OwnedField> path_params = {}, std::vector<OwnedField> query = {},
                         std::vector<OwnedField> headers = {}) {
    return host.request(RequestSpec{.route_index = route,
                                    .method = std::move(method),
                                    .path = std::move(path),
                                    .path_params = std::move(path_params),
                                    .query = std::move(query),
                                    .headers = std::move(headers),
                                    .body = std::move(body)});
  }
  Answer send(orders::Route route, std::string method, std::string path, std::string body = {},
              std::vector<OwnedField> path_params = {}, std::vector<OwnedField> query = {},
              std::vector<OwnedField> headers = {}) {
    auto pending = request(route, std::move(method), std::move(path), std::move(body), std::move(path_params),
                           std::move(query), std::move(headers));
    settle();
    return answer_of(pending);
  }

  PendingRequest place_async(const Json& body, std::optional<std::string> key = std::nullopt) {
    std::vector<OwnedField> headers;
    if (key) headers.push_back({"Idempotency-Key", *key});
    return request(orders::kPlace, "POST", "/api/orders/orders", body.dump(), {}, {}, std::move(headers));
  }
  Answer place(const Json& body, std::optional<std::string> key = std::nullopt) {
    auto pending = place_async(body, std::move(key));
    settle();
    return answer_of(pending);
  }
  Answer place_raw(std::string body) { return send(orders::kPlace, "POST", "/api/orders/orders", std::move(body)); }
  Answer get(const std::string& id) {
    return send(orders::kGet, "GET", "/api/orders/orders/" + id, {}, {{"id", id}});
  }
  Answer list(std::vector<OwnedField> query = {}) {
    return send(orders::kList, "GET", "/api/orders/orders", {}, {}, std::move(query));
  }
  Answer act(orders::Route route, const std::string& id, std::string body = {}) {
    const std::string verb = route == orders::kPay ? "pay" : route == orders::kShip ? "ship" : "cancel";
    return send(route, "POST", "/api/orders/orders/" + id + "/" + verb, std::move(body), {{"id", id}});
  }

  /// Creates a catalog product and returns its id.
  std::int64_t product(const std::string& sku, std::int64_t price_cents, std::int64_t stock,
                       const std::string& currency = "EUR") {
    std::lock_guard lock{mutex};
    const Json body{{"sku", sku}, {"name", "Product " + sku}, {"price_cents", price_cents}, {"currency", currency},
                    {"stock", stock}};
    const auto a = answer_of(catalog_host.request(
        RequestSpec{.route_index = catalog::kCreateProduct, .method = "POST", .path = "/api/catalog/products", .body = body.dump()}));
    REQUIRE(a.status == 201);
    return a.json["id"].get<std::int64_t>();
  }
  std::int64_t stock_of(std::int64_t id) {
    std::lock_guard lock{mutex};
    const std::string text = std::to_string(id);
    const auto a = answer_of(catalog_host.request(RequestSpec{.route_index = catalog::kGetProduct,
                                                              .method = "GET",
                                                              .path = "/api/catalog/products/" + text,
                                                              .path_params = {{"id", text}}}));
    REQUIRE(a.status == 200);
    return a.json["stock"].get<std::int64_t>();
  }
  void set_stock(std::int64_t id, std::int64_t stock) {
    std::lock_guard lock{mutex};
    const std::string text = std::to_string(id);
    const auto a = answer_of(catalog_host.request(RequestSpec{.route_index = catalog::kPatchProduct,
                                                              .method = "PATCH",
                                                              .path = "/api/catalog/products/" + text,
                                                              .path_params = {{"id", text}},
                                                              .body = Json{{"stock", stock}}.dump()}));
    REQUIRE(a.status == 200);
  }

  /// Published events as (topic, payload JSON).
  std::vector<std::pair<std::string, Json>> events() const {
    std::vector<std::pair<std::string, Json>> out;
    for (const auto& e : host.published()) out.emplace_back(e.topic, Json::parse(e.payload));
    return out;
  }
  std::size_t calls_to(const std::string& method) const {
    std::size_t n = 0;
    for (const auto& c : host.calls()) n += c.method == method ? 1 : 0;
    return n;
  }
};

Json items(std::vector<std::pair<std::int64_t, std::int64_t>> lines) {
  Json list = Json::array();
  for (const auto& [product, quantity] : lines) list.push_back({{"product_id", product}, {"quantity", quantity}});
  return Json{{"items", list}};
}

void check_error(const Answer& a, int status, const std::string& code) {
  INFO(a.body);
  CHECK(a.status == status);
  CHECK(a.json["error"]["code"] == code);
}

void check_invalid(const Answer& a, const std::string& field) {
  check_error(a, 422, "invalid_field");
  CHECK(a.json["error"]["field"] == field);
  CHECK(a.json["error"]["message"].get<std::string>().rfind(field + ": ", 0) == 0);
}

}  // namespace

TEST_CASE("orders route indices, dependency, topics and permissions follow the manifest", "[orders]") {
  const auto manifest = Json::parse(ORDERS_MANIFEST);
  const auto& routes = manifest["routes"];
  REQUIRE(routes.size() == 6);
  const auto route = [&](orders::Route r) { return routes[r]["method"].get<std::string>() + " " + routes[r]["path"].get<std::string>(); };
  CHECK(route(orders::kPlace) == "POST /orders");
  CHECK(route(orders::kList) == "GET /orders");
  CHECK(route(orders::kGet) == "GET /orders/{id}");
  CHECK(route(orders::kPay) == "POST /orders/{id}/pay");
  CHECK(route(orders::kShip) == "POST /orders/{id}/ship");
  CHECK(route(orders::kCancel) == "POST /orders/{id}/cancel");
  // Every route uses storage: the reads say "storage": "read", the rest are blocking.
  for (const auto& r : routes) {
    INFO(r.dump());
    CHECK((r["method"] == "GET" ? r.value("storage", "") == "read" : r.value("blocking", false)));
  }
  CHECK(manifest["dependencies"] == Json::parse(R"([{"name": "catalog", "version": ">=1.0.0 <2.0.0"}])"));
  CHECK(manifest["permissions"] == Json::array({"ext:keel.storage/1"}));
  const Json topics = Json::array({"orders.placed", "orders.paid", "orders.shipped", "orders.cancelled"});
  CHECK(manifest["events"]["publishes"] == topics);
  CHECK(manifest["events"]["durable"] == topics);
  // The transitions publish exactly the declared topics.
  CHECK(orders::transition(orders::Action::kPay).topic == "orders.paid");
  CHECK(orders::transition(orders::Action::kShip).topic == "orders.shipped");
  CHECK(orders::transition(orders::Action::kCancel).topic == "orders.cancelled");
}

TEST_CASE("orders refuses to load without a database or with config values out of range", "[orders]") {
  SECTION("no database") {
    FakeHost host;
    CHECK(host.load<orders::OrdersPlugin>(kQuiet, ORDERS_MANIFEST).code() == sdk::StatusCode::kPermissionDenied);
  }
  SECTION("config") {
    keel::test::TempDir dir;
    FakeHost host;
    keel::host::storage::TestDatabase db{host.ctx(), dir.path() / "orders.db", ORDERS_MANIFEST, &host.api()};
    host.add_extension(KEEL_STORAGE_EXTENSION_ID, &db.table());
    for (const std::string config : {R"({"catalog_timeout_ms": 0})", R"({"catalog_timeout_ms": 600001})",
                                     R"({"recovery_interval_ms": 99})", R"({"recovery_interval_ms": "10"})"}) {
      INFO(config);
      CHECK(host.load<orders::OrdersPlugin>(config, ORDERS_MANIFEST).code() == sdk::StatusCode::kInvalidArgument);
    }
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "config: catalog_timeout_ms must be an integer from 1 to 600000") == 2);
    REQUIRE(host.load<orders::OrdersPlugin>("{}", ORDERS_MANIFEST).ok());  // defaults
  }
}

TEST_CASE("orders places an order at catalog's prices, reserves the stock and publishes orders.placed", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  const auto tee = shop.product("TEE-1", 1999, 2);

  auto pending = shop.place_async(items({{mug, 2}, {tee, 1}}));
  // The order is committed as pending and catalog is asked; the answer waits for the call.
  CHECK_FALSE(pending.completed());
  const auto calls = shop.host.calls();
  REQUIRE(calls.size() == 1);
  CHECK(calls[0].target == "catalog");
  CHECK(calls[0].method == "POST");
  CHECK(calls[0].path == "/reservations");
  CHECK(calls[0].timeout == std::chrono::milliseconds{5000});
  const auto sent = Json::parse(calls[0].body);
  const auto reservation_id = sent["reservation_id"].get<std::string>();
  CHECK(reservation_id.rfind("order-1-", 0) == 0);
  CHECK(reservation_id.size() == std::string{"order-1-"}.size() + 16);
  CHECK(sent["items"] == items({{mug, 2}, {tee, 1}})["items"]);
  CHECK(shop.get("1").json["status"] == "pending");

  shop.settle();
  const auto a = answer_of(pending);
  REQUIRE(a.status == 201);
  CHECK(a.location == "/api/orders/orders/1");
  CHECK_FALSE(a.replayed);
  CHECK(a.json["id"] == 1);
  CHECK(a.json["status"] == "placed");
  CHECK(a.json["total_cents"] == 2 * 1250 + 1999);
  CHECK(a.json["currency"] == "EUR");
  CHECK(a.json["rejection"].is_null());
  CHECK(a.json["lines"] == Json::parse(R"([
    {"product_id":1,"sku":"MUG-1","name":"Product MUG-1","unit_price_cents":1250,"quantity":2,"line_total_cents":2500},
    {"product_id":2,"sku":"TEE-1","name":"Product TEE-1","unit_price_cents":1999,"quantity":1,"line_total_cents":1999}])"));
  CHECK(a.body.rfind(R"({"id":1,"status":"placed","lines":[)", 0) == 0);
  CHECK(shop.stock_of(mug) == 3);
  CHECK(shop.stock_of(tee) == 1);
  CHECK(shop.get("1").json == a.json);

  const auto events = shop.events();
  REQUIRE(events.size() == 1);
  CHECK(events[0].first == "orders.placed");
  const Json& e = events[0].second;
  CHECK(e["order_id"] == 1);
  CHECK(e["status"] == "placed");
  CHECK(e["previous_status"] == "pending");
  CHECK(e["total_cents"] == 4499);
  CHECK(e["currency"] == "EUR");
  CHECK(e["lines"] == a.json["lines"]);
  CHECK(e["occurred_at"] == a.json["updated_at"]);
  CHECK(shop.host.published()[0].content_type == "application/json");
}

TEST_CASE("orders answers 400 for a body that is not one JSON object and 422 naming the field", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  for (const std::string body : {"", "{", "[]", "42", "null", R"({"items":[],"items":[]})", "{\"items\":\"\xff\"}"}) {
    INFO(body);
    check_error(shop.place_raw(body), 400, "malformed_json");
  }
  struct Case {
    const char* what;
    Json body;
    const char* field;
  };
  Json too_many = Json::array();
  for (int i = 1; i <= 101; ++i) too_many.push_back({{"product_id", i}, {"quantity", 1}});
  const std::vector<Case> cases{
      {"no items", Json::object(), "items"},
      {"items not an array", Json{{"items", "mug"}}, "items"},
      {"no item", Json{{"items", Json::array()}}, "items"},
      {"101 items", Json{{"items", too_many}}, "items"},
      {"an unknown member", Json{{"items", items({{mug, 1}})["items"]}, {"total_cents", 1}}, "total_cents"},
      {"an item that is no object", Json{{"items", Json::array({1})}}, "items[0]"},
      {"no product_id", Json{{"items", Json::array({{{"quantity", 1}}})}}, "items[0].product_id"},
      {"product_id 0", items({{0, 1}}), "items[0].product_id"},
      {"no quantity", Json{{"items", Json::array({{{"product_id", mug}}})}}, "items[0].quantity"},
      {"quantity 0", items({{mug, 0}}), "items[0].quantity"},
      {"quantity above 1e9", items({{mug, 1000000001}}), "items[0].quantity"},
      {"fractional quantity", Json{{"items", Json::array({{{"product_id", mug}, {"quantity", 1.5}}})}}, "items[0].quantity"},
      {"a price from the client", Json{{"items", Json::array({{{"product_id", mug}, {"quantity", 1}, {"price_cents", 1}}})}},
       "items[0].price_cents"},
      {"one product twice", items({{mug, 1}, {mug, 2}}), "items[1].product_id"},
  };
  for (const auto& k : cases) {
    INFO(k.what);
    check_invalid(shop.place(k.body), k.field);
  }
  // Nothing was recorded or asked of catalog.
  CHECK(shop.host.calls().empty());
  CHECK(shop.list().json["items"].empty());
  CHECK(shop.stock_of(mug) == 5);
}

TEST_CASE("orders passes catalog's refusal through and records the order as rejected", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  const auto tee = shop.product("TEE-1", 1999, 1);

  SECTION("insufficient stock") {
    const auto a = shop.place(items({{mug, 1}, {tee, 2}}));
    check_error(a, 409, "insufficient_stock");
    CHECK(a.json["error"]["field"] == "items[1].quantity");
    CHECK(a.json["error"]["product_id"] == tee);
    CHECK(a.json["error"]["available"] == 1);
    CHECK(a.json["error"]["requested"] == 2);
    CHECK(a.body.rfind(R"({"error":{"code":"insufficient_stock","message":"product 2 (sku TEE-1) has 1 in stock)", 0) == 0);
    const auto order = shop.get("1");
    CHECK(order.json["status"] == "rejected");
    CHECK(order.json["rejection"] == a.json["error"]);
    CHECK(order.json["total_cents"].is_null());
    CHECK(order.json["lines"][1]["quantity"] == 2);
    CHECK(order.json["lines"][1]["unit_price_cents"].is_null());
  }
  SECTION("a product that does not exist") {
    const auto a = shop.place(items({{mug, 1}, {99, 1}}));
    check_error(a, 404, "product_not_found");
    CHECK(a.json["error"]["field"] == "items[1].product_id");
    CHECK(shop.get("1").json["status"] == "rejected");
  }
  // catalog reserves all lines or none; a rejection publishes nothing and releases nothing.
  CHECK(shop.stock_of(mug) == 5);
  CHECK(shop.stock_of(tee) == 1);
  CHECK(shop.events().empty());
  CHECK(shop.calls_to("DELETE") == 0);
  // A rejected order cannot be paid or cancelled.
  check_error(shop.act(orders::kPay, "1"), 409, "invalid_transition");
  check_error(shop.act(orders::kCancel, "1"), 409, "invalid_transition");
}

TEST_CASE("orders keeps an order pending when catalog fails, and recovery places it once", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  struct Case {
    Fault fault;
    int status;
    const char* code;
    std::int64_t stock_after_failure;  // the answer-lost case reserved before the answer was lost
  };
  const auto k = GENERATE(Case{Fault::kTimeout, 504, "catalog_timeout", 5}, Case{Fault::kAnswerLost, 504, "catalog_timeout", 3},
                          Case{Fault::kRefuse, 503, "catalog_unavailable", 5},
                          Case{Fault::kServerError, 502, "catalog_error", 5},
                          Case{Fault::kUnreadable201, 502, "catalog_error", 5});
  INFO("fault " << static_cast<int>(k.fault));
  shop.faults(k.fault);
  check_error(shop.place(items({{mug, 2}})), k.status, k.code);
  const auto pending = shop.get("1");
  CHECK(pending.json["status"] == "pending");
  CHECK(pending.json["lines"] == Json::parse(R"([{"product_id":1,"sku":null,"name":null,"unit_price_cents":null,
                                                  "quantity":2,"line_total_cents":null}])"));
  CHECK(pending.json["total_cents"].is_null());
  CHECK(shop.stock_of(mug) == k.stock_after_failure);
  CHECK(shop.events().empty());
  CHECK(shop.host.count_logs(sdk::LogLevel::kWarn, "order stays pending order=1 code=" + std::string{k.code}) == 1);

  shop.faults(Fault::kNone);
  shop.restart();  // start() drives what is unfinished
  shop.settle();
  CHECK(shop.get("1").json["status"] == "placed");
  CHECK(shop.stock_of(mug) == 3);  // reserved once, whatever happened before
  REQUIRE(shop.events().size() == 1);
  CHECK(shop.events()[0].first == "orders.placed");
  CHECK(shop.host.count_logs(sdk::LogLevel::kInfo, "order recovery orders=1") == 1);

  shop.restart();  // nothing left to do
  CHECK(shop.host.pending_calls() == 0);
}

TEST_CASE("orders places an order interrupted by a crash when it starts again", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  auto interrupted = shop.place_async(items({{mug, 1}}), "key-1");
  REQUIRE(shop.host.pending_calls() == 1);
  shop.restart();  // the completion got UNAVAILABLE instead of catalog's answer
  if (const auto answered = interrupted.response()) CHECK(answered->status == 503);  // if the client was still there
  REQUIRE(shop.host.pending_calls() == 1);  // start() asked catalog again
  shop.settle();
  CHECK(shop.get("1").json["status"] == "placed");
  CHECK(shop.stock_of(mug) == 4);
  // The client's retry with its key gets the order it did not hear about.
  const auto retry = shop.place(items({{mug, 1}}), "key-1");
  CHECK(retry.status == 201);
  CHECK(retry.replayed == "true");
  CHECK(retry.json["id"] == 1);
  CHECK(shop.events().size() == 1);
  CHECK(shop.list().json["items"].size() == 1);
}

TEST_CASE("orders retries pending orders every recovery_interval_ms", "[orders]") {
  Shop shop{R"({"catalog_timeout_ms": 5000, "recovery_interval_ms": 100})"};
  const auto mug = shop.product("MUG-1", 1250, 5);
  shop.faults(Fault::kTimeout);
  check_error(shop.place(items({{mug, 1}})), 504, "catalog_timeout");
  shop.faults(Fault::kNone);
  // The recovery thread asks catalog again; its completions run here. Bounded: 10 s.
  bool placed = false;
  for (int i = 0; i < 500 && !placed; ++i) {
    shop.settle();
    placed = shop.get("1").json["status"] == "placed";
    if (!placed) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  CHECK(placed);
  CHECK(shop.stock_of(mug) == 4);
}

TEST_CASE("orders answers a retry with the same Idempotency-Key with the same order", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  const auto first = shop.place(items({{mug, 2}}), "8e2f6a2c-key");
  REQUIRE(first.status == 201);
  CHECK_FALSE(first.replayed);

  SECTION("same key, same items: the order again, nothing reserved again") {
    const auto again = shop.place(items({{mug, 2}}), "8e2f6a2c-key");
    CHECK(again.status == 201);
    CHECK(again.replayed == "true");
    CHECK(again.location == "/api/orders/orders/1");
    CHECK(again.json == first.json);
    CHECK(shop.calls_to("POST") == 1);
    // As it is now: after a payment the replay shows it paid.
    REQUIRE(shop.act(orders::kPay, "1").status == 200);
    CHECK(shop.place(items({{mug, 2}}), "8e2f6a2c-key").json["status"] == "paid");
  }
  SECTION("same key, other items: 422") {
    const auto other = shop.place(items({{mug, 1}}), "8e2f6a2c-key");
    check_error(other, 422, "idempotency_key_reused");
    CHECK_FALSE(other.replayed);
  }
  SECTION("another key is another order") {
    CHECK(shop.place(items({{mug, 2}}), "other-key").json["id"] == 2);
  }
  SECTION("no key is another order each time") {
    CHECK(shop.place(items({{mug, 1}})).json["id"] == 2);
    CHECK(shop.place(items({{mug, 1}})).json["id"] == 3);
  }
  // Every order was placed exactly once.
  std::size_t placed_events = 0;
  for (const auto& [topic, payload] : shop.events()) placed_events += topic == "orders.placed" ? 1 : 0;
  CHECK(placed_events == shop.list().json["items"].size());
}

TEST_CASE("orders answers a rejected order's retry with the same refusal", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 1);
  const auto first = shop.place(items({{mug, 2}}), "k");
  check_error(first, 409, "insufficient_stock");
  const auto again = shop.place(items({{mug, 2}}), "k");
  CHECK(again.status == 409);
  CHECK(again.replayed == "true");
  CHECK(again.json == first.json);
  CHECK(shop.calls_to("POST") == 1);
}

TEST_CASE("orders creates one order for concurrent requests with one Idempotency-Key", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  // Both requests are in before catalog's first answer is delivered: the second finds the
  // first's pending order and drives it too.
  auto a = shop.place_async(items({{mug, 2}}), "same");
  auto b = shop.place_async(items({{mug, 2}}), "same");
  CHECK(shop.calls_to("POST") == 2);
  shop.settle();
  const auto first = answer_of(a);
  const auto second = answer_of(b);
  CHECK(first.status == 201);
  CHECK(second.status == 201);
  CHECK(second.replayed == "true");
  CHECK(first.json["id"] == 1);
  CHECK(second.json == first.json);
  CHECK(shop.list().json["items"].size() == 1);
  CHECK(shop.stock_of(mug) == 3);
  CHECK(shop.events().size() == 1);
}

TEST_CASE("orders refuses a malformed Idempotency-Key", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  for (const std::string& key : {std::string{}, std::string(256, 'k'), std::string{"a b"}, std::string{"\xc3\xa9"}}) {
    INFO(key);
    check_error(shop.place(items({{mug, 1}}), key), 400, "invalid_idempotency_key");
  }
  CHECK(shop.place(items({{mug, 1}}), std::string(255, 'k')).status == 201);
}

TEST_CASE("orders rejects a reservation that cannot form one order and gives the stock back", "[orders]") {
  Shop shop;
  SECTION("lines in two currencies") {
    const auto mug = shop.product("MUG-1", 1250, 5);
    const auto cap = shop.product("CAP-1", 900, 5, "USD");
    const auto a = shop.place(items({{mug, 1}, {cap, 1}}));
    check_error(a, 422, "mixed_currency");
    CHECK(a.json["error"]["field"] == "items[1].product_id");
    CHECK(shop.stock_of(mug) == 5);
    CHECK(shop.stock_of(cap) == 5);
  }
  SECTION("a total beyond int64") {
    const auto gold = shop.product("GOLD", INT64_MAX / 2 + 1, 5);
    const auto a = shop.place(items({{gold, 2}}));
    check_error(a, 422, "total_too_large");
    CHECK(a.json["error"]["field"] == "items[0].quantity");
    CHECK(shop.stock_of(gold) == 5);
  }
  CHECK(shop.calls_to("DELETE") == 1);
  CHECK(shop.get("1").json["status"] == "rejected");
  CHECK(shop.events().empty());
}

TEST_CASE("orders gives back stock that catalog reserved after another attempt rejected the order", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 0);
  auto first = shop.place_async(items({{mug, 2}}), "k");  // catalog refuses: no stock (answer queued)
  shop.set_stock(mug, 5);
  auto retry = shop.place_async(items({{mug, 2}}), "k");  // the retry's reservation succeeds (answer queued)
  shop.settle();  // first the refusal (rejects the order), then the reservation (found rejected: released)
  check_error(answer_of(first), 409, "insufficient_stock");
  const auto second = answer_of(retry);
  check_error(second, 409, "insufficient_stock");
  CHECK(second.replayed == "true");
  CHECK(shop.get("1").json["status"] == "rejected");
  CHECK(shop.stock_of(mug) == 5);
  CHECK(shop.calls_to("DELETE") == 1);
  CHECK(shop.events().empty());
}

TEST_CASE("orders moves an order placed -> paid -> shipped and refuses every other transition", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  REQUIRE(shop.place(items({{mug, 2}})).status == 201);

  check_error(shop.act(orders::kShip, "1"), 409, "invalid_transition");  // not paid yet
  const auto paid = shop.act(orders::kPay, "1");
  REQUIRE(paid.status == 200);
  CHECK(paid.json["status"] == "paid");
  CHECK(paid.json["total_cents"] == 2500);
  const auto twice = shop.act(orders::kPay, "1");
  check_error(twice, 409, "invalid_transition");
  CHECK(twice.json["error"]["order_status"] == "paid");
  CHECK(twice.json["error"]["message"] == "order 1 is paid; only placed orders can be paid");
  const auto shipped = shop.act(orders::kShip, "1", "{}");
  REQUIRE(shipped.status == 200);
  CHECK(shipped.json["status"] == "shipped");
  const auto late_cancel = shop.act(orders::kCancel, "1");
  check_error(late_cancel, 409, "invalid_transition");
  CHECK(late_cancel.json["error"]["message"] == "order 1 is shipped; only placed or paid orders can be cancelled");
  check_error(shop.act(orders::kShip, "1"), 409, "invalid_transition");
  check_error(shop.act(orders::kPay, "1"), 409, "invalid_transition");
  CHECK(shop.get("1").json == shipped.json);
  CHECK(shop.stock_of(mug) == 3);

  const auto events = shop.events();
  REQUIRE(events.size() == 3);
  CHECK(events[1].first == "orders.paid");
  CHECK(events[1].second == Json{{"order_id", 1}, {"status", "paid"}, {"previous_status", "placed"}, {"total_cents", 2500},
                                 {"currency", "EUR"}, {"occurred_at", paid.json["updated_at"]}});
  CHECK(events[2].first == "orders.shipped");
  CHECK(events[2].second["previous_status"] == "paid");
  CHECK_FALSE(events[2].second.contains("lines"));
}

TEST_CASE("orders cancels a placed or paid order and gives its stock back", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  REQUIRE(shop.place(items({{mug, 2}})).status == 201);
  const bool pay_first = GENERATE(false, true);
  if (pay_first) REQUIRE(shop.act(orders::kPay, "1").status == 200);
  CHECK(shop.stock_of(mug) == 3);
  const auto cancelled = shop.act(orders::kCancel, "1");
  REQUIRE(cancelled.status == 200);
  CHECK(cancelled.json["status"] == "cancelled");
  CHECK(shop.stock_of(mug) == 5);
  const auto calls = shop.host.calls();
  CHECK(calls.back().method == "DELETE");
  CHECK(calls.back().path == "/reservations/" + Json::parse(calls.front().body)["reservation_id"].get<std::string>());
  const auto events = shop.events();
  CHECK(events.back().first == "orders.cancelled");
  CHECK(events.back().second["previous_status"] == (pay_first ? "paid" : "placed"));
  check_error(shop.act(orders::kCancel, "1"), 409, "invalid_transition");
  check_error(shop.act(orders::kPay, "1"), 409, "invalid_transition");
  CHECK(shop.calls_to("DELETE") == 1);
}

TEST_CASE("orders releases a cancelled order's stock after a failed release, at the next start", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  REQUIRE(shop.place(items({{mug, 2}})).status == 201);
  shop.faults(Fault::kNone, Fault::kTimeout);
  const auto cancelled = shop.act(orders::kCancel, "1");
  CHECK(cancelled.status == 200);  // the cancellation is committed whatever catalog does
  CHECK(cancelled.json["status"] == "cancelled");
  CHECK(shop.stock_of(mug) == 3);
  CHECK(shop.host.count_logs(sdk::LogLevel::kWarn, "order stock release failed, retried later order=1") == 1);
  shop.faults(Fault::kNone, Fault::kNone);
  shop.restart();
  shop.settle();
  CHECK(shop.stock_of(mug) == 5);
  CHECK(shop.calls_to("DELETE") == 2);
  shop.restart();  // confirmed: not released again
  CHECK(shop.host.pending_calls() == 0);
  CHECK(shop.calls_to("DELETE") == 2);
}

TEST_CASE("orders answers 404 for an unknown order and checks the body of a state change", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 1250, 5);
  REQUIRE(shop.place(items({{mug, 1}})).status == 201);
  for (const std::string id : {"2", "0", "-1", "abc", "01", "99999999999999999999"}) {
    INFO(id);
    check_error(shop.get(id), 404, "not_found");
    check_error(shop.act(orders::kPay, id), 404, "not_found");
  }
  check_error(shop.act(orders::kPay, "1", "nope"), 400, "malformed_json");
  check_invalid(shop.act(orders::kPay, "1", R"({"paid": true})"), "paid");
  CHECK(shop.act(orders::kPay, "1", " \n").status == 200);
}

TEST_CASE("orders lists orders in id order a page at a time, optionally by status", "[orders]") {
  Shop shop;
  const auto mug = shop.product("MUG-1", 100, 100);
  for (int i = 0; i < 5; ++i) REQUIRE(shop.place(items({{mug, 1}})).status == 201);
  REQUIRE(shop.act(orders::kPay, "2").status == 200);
  REQUIRE(shop.act(orders::kPay, "4").status == 200);

  std::vector<std::int64_t> seen;
  std::vector<OwnedField> query{{"limit", "2"}};
  for (int page = 0; page < 10; ++page) {
    const auto a = shop.list(query);
    REQUIRE(a.status == 200);
    for (const auto& o : a.json["items"]) {
      seen.push_back(o["id"].get<std::int64_t>());
      CHECK(o["lines"].size() == 1);
    }
    if (a.json["next_cursor"].is_null()) break;
    query = {{"limit", "2"}, {"cursor", a.json["next_cursor"].get<std::string>()}};
  }
  CHECK(seen == std::vector<std::int64_t>{1, 2, 3, 4, 5});

  const auto paid = shop.list({{"status", "paid"}});
  REQUIRE(paid.json["items"].size() == 2);
  CHECK(paid.json["items"][0]["id"] == 2);
  CHECK(paid.json["items"][1]["id"] == 4);
  CHECK(paid.json["items"][1]["lines"][0]["sku"] == "MUG-1");
  const auto paid_page = shop.list({{"status", "paid"}, {"limit", "1"}});
  CHECK(paid_page.json["next_cursor"] == "2");
  CHECK(shop.list({{"status", "paid"}, {"cursor", "2"}}).json["items"][0]["id"] == 4);
  CHECK(shop.list({{"status", "shipped"}}).json == Json::parse(R"({"items":[],"next_cursor":null})"));

  for (const std::string limit : {"0", "101", "x"}) check_invalid(shop.list({{"limit", limit}}), "limit");
  for (const std::string cursor : {"0", "x"}) check_invalid(shop.list({{"cursor", cursor}}), "cursor");
  check_invalid(shop.list({{"status", "PAID"}}), "status");
}
