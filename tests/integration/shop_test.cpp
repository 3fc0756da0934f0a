// The example shop end to end: the real keel binary loading catalog.so, orders.so and
// notifications.so from the build, real HTTP on loopback, each plugin's SQLite database in
// data_dir. (1) the whole flow: products, an order placed, retried with its Idempotency-Key,
// paid, shipped, refused transitions, a cancellation giving stock back, the notifications;
// (2) kill -9 while clients place and pay orders, restart on the same data_dir: every order a
// client got 201 for is there with its notifications, once each, and no pending order or lost
// stock is left; (3) many concurrent orders for little stock never oversell; (4) concurrent
// requests with one Idempotency-Key make one order.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "eventually.hpp"
#include "keel_host.hpp"
#include "postgres_server.hpp"
#include "raw_client.hpp"
#include "shop.hpp"

using keel::test::eventually;
using keel::test::example_plugin;
using keel::test::HostOptions;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;
using keel::test::shop::all_pages;
using keel::test::shop::Answer;
using keel::test::shop::http;

namespace {

HostOptions shop() {
  return with_plugins({example_plugin("catalog"), example_plugin("orders"), example_plugin("notifications")});
}

std::int64_t create_product(std::uint16_t port, const std::string& sku, std::int64_t price, std::int64_t stock) {
  const Json body{{"sku", sku}, {"name", "Product " + sku}, {"price_cents", price}, {"currency", "EUR"}, {"stock", stock}};
  const auto a = http(port, "POST", "/api/catalog/products", body.dump());
  INFO(a.body);
  REQUIRE(a.status == 201);
  return a.json["id"].get<std::int64_t>();
}

std::int64_t stock_of(std::uint16_t port, std::int64_t product) {
  const auto a = http(port, "GET", "/api/catalog/products/" + std::to_string(product));
  REQUIRE(a.status == 200);
  return a.json["stock"].get<std::int64_t>();
}

std::string order_body(std::vector<std::pair<std::int64_t, std::int64_t>> lines) {
  Json items = Json::array();
  for (const auto& [product, quantity] : lines) items.push_back({{"product_id", product}, {"quantity", quantity}});
  return Json{{"items", items}}.dump();
}

std::vector<std::string> statuses_of(const Json& notifications) {
  std::vector<std::string> out;
  for (const auto& n : notifications) out.push_back(n["status"].get<std::string>());
  return out;
}

}  // namespace

TEST_CASE("shop over HTTP: place an order, retry it, pay, ship, cancel another, read the notifications", "[shop]") {
  KeelHost host(shop());
  const auto port = host.port();
  const auto mug = create_product(port, "MUG-1", 1250, 5);
  const auto tee = create_product(port, "TEE-1", 1999, 2);

  const std::string body = order_body({{mug, 2}, {tee, 1}});
  const auto placed = http(port, "POST", "/api/orders/orders", body, "order-key-1");
  INFO(placed.body);
  REQUIRE(placed.status == 201);
  CHECK(placed.location == "/api/orders/orders/1");
  CHECK(placed.json["status"] == "placed");
  CHECK(placed.json["total_cents"] == 2 * 1250 + 1999);
  CHECK(placed.json["currency"] == "EUR");
  CHECK(placed.json["lines"][0]["unit_price_cents"] == 1250);
  CHECK(placed.json["lines"][1]["line_total_cents"] == 1999);
  CHECK(stock_of(port, mug) == 3);
  CHECK(stock_of(port, tee) == 1);

  // A retry with the key is the same order, reserved once; other items with it are refused.
  const auto retried = http(port, "POST", "/api/orders/orders", body, "order-key-1");
  CHECK(retried.status == 201);
  CHECK(retried.replayed == "true");
  CHECK(retried.json == placed.json);
  CHECK(stock_of(port, mug) == 3);
  CHECK(http(port, "POST", "/api/orders/orders", order_body({{mug, 1}}), "order-key-1").json["error"]["code"] ==
        "idempotency_key_reused");
  CHECK(http(port, "GET", "/api/orders/orders/1").json == placed.json);

  const auto paid = http(port, "POST", "/api/orders/orders/1/pay");
  REQUIRE(paid.status == 200);
  CHECK(paid.json["status"] == "paid");
  const auto twice = http(port, "POST", "/api/orders/orders/1/pay");
  CHECK(twice.status == 409);
  CHECK(twice.json["error"]["code"] == "invalid_transition");
  REQUIRE(http(port, "POST", "/api/orders/orders/1/ship").json["status"] == "shipped");
  CHECK(http(port, "POST", "/api/orders/orders/1/cancel").status == 409);

  // Refusals: catalog's error passed through, the order recorded as rejected.
  const auto short_stock = http(port, "POST", "/api/orders/orders", order_body({{tee, 2}}));
  CHECK(short_stock.status == 409);
  CHECK(short_stock.json["error"]["code"] == "insufficient_stock");
  CHECK(short_stock.json["error"]["field"] == "items[0].quantity");
  const auto unknown = http(port, "POST", "/api/orders/orders", order_body({{99, 1}}));
  CHECK(unknown.status == 404);
  CHECK(unknown.json["error"]["code"] == "product_not_found");
  const auto invalid = http(port, "POST", "/api/orders/orders", R"({"items":[{"product_id":1,"quantity":0}]})");
  CHECK(invalid.status == 422);
  CHECK(invalid.json["error"]["field"] == "items[0].quantity");
  CHECK(http(port, "POST", "/api/orders/orders", "{oops").status == 400);

  // Cancelling gives the stock back.
  const auto second = http(port, "POST", "/api/orders/orders", order_body({{mug, 3}}));
  REQUIRE(second.status == 201);
  const auto second_id = second.json["id"].get<std::int64_t>();
  CHECK(stock_of(port, mug) == 0);
  const auto cancelled = http(port, "POST", "/api/orders/orders/" + std::to_string(second_id) + "/cancel");
  REQUIRE(cancelled.status == 200);
  CHECK(cancelled.json["status"] == "cancelled");
  CHECK(stock_of(port, mug) == 3);

  const auto orders = all_pages(port, "/api/orders/orders");
  REQUIRE(orders.size() == 4);
  CHECK(orders[0]["status"] == "shipped");
  CHECK(orders[1]["status"] == "rejected");
  CHECK(orders[2]["status"] == "rejected");
  CHECK(orders[3]["status"] == "cancelled");
  CHECK(all_pages(port, "/api/orders/orders?status=rejected").size() == 2);

  // The events reach notifications asynchronously, in commit order per order.
  Json first_notes;
  CHECK(eventually([&] {
    first_notes = all_pages(port, "/api/notifications/notifications?order_id=1");
    return first_notes.size() >= 3;
  }));
  CHECK(statuses_of(first_notes) == std::vector<std::string>{"placed", "paid", "shipped"});
  CHECK(first_notes[0]["message"] == "Order 1 has been placed.");
  CHECK(first_notes[0]["total_cents"] == 4499);
  CHECK(eventually([&] {
    return statuses_of(all_pages(port, "/api/notifications/notifications?order_id=" + std::to_string(second_id))) ==
           std::vector<std::string>{"placed", "cancelled"};
  }));
  CHECK(all_pages(port, "/api/notifications/notifications?order_id=2").empty());  // rejected: no event
  CHECK(http(port, "GET", "/api/notifications/notifications?order_id=x").status == 422);

  // Both new plugins document their routes.
  const auto doc = http(port, "GET", "/openapi.json").json;
  CHECK(doc["paths"]["/api/orders/orders"]["post"]["responses"].contains("409"));
  CHECK(doc["paths"]["/api/orders/orders/{id}/cancel"].contains("post"));
  CHECK(doc["paths"]["/api/notifications/notifications"]["get"]["parameters"].size() == 3);
}

TEST_CASE("shop survives kill -9: every order a client got 201 for is there with its notifications, once", "[shop]") {
  keel::test::TempDir data;
  auto options = shop();
  options.data_dir = data.path();
  constexpr std::int64_t kInitialStock = 100000;
  std::int64_t mug = 0;

  std::mutex mutex;
  std::map<std::int64_t, std::int64_t> acknowledged;  // order id -> quantity, for every 201
  std::set<std::int64_t> paid;                        // orders whose pay answered 200
  {
    KeelHost host(options);
    const auto port = host.port();
    mug = create_product(port, "MUG-1", 100, kInitialStock);
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < 4; ++c) {
      clients.emplace_back([&, c] {
        for (int n = 0; !stop.load(); ++n) {
          const std::int64_t quantity = 1 + (n + c) % 3;
          const auto a = http(port, "POST", "/api/orders/orders", order_body({{mug, quantity}}),
                              "client-" + std::to_string(c) + "-" + std::to_string(n));
          if (a.status != 201) return;  // the host is gone
          const auto id = a.json["id"].get<std::int64_t>();
          {
            std::lock_guard lock{mutex};
            acknowledged[id] = quantity;
          }
          if (n % 2 == 0) {
            if (http(port, "POST", "/api/orders/orders/" + std::to_string(id) + "/pay").status != 200) return;
            std::lock_guard lock{mutex};
            paid.insert(id);
          }
        }
      });
    }
    // Kill while the clients are still placing and paying, before reading any notification.
    const bool enough = eventually([&] {
      std::lock_guard lock{mutex};
      return acknowledged.size() >= 40;
    }, std::chrono::seconds(60));
    host.process().signal(SIGKILL);
    CHECK(host.process().wait(std::chrono::seconds(10)) == 128 + SIGKILL);
    stop = true;
    for (auto& t : clients) t.join();
    REQUIRE(enough);
  }

  KeelHost again(options);
  keel::test::shop::check_nothing_lost(again.port(), acknowledged, paid, mug, kInitialStock);
}

TEST_CASE("shop never oversells: 40 concurrent orders for 5 in stock place exactly 5", "[shop]") {
  KeelHost host(shop());
  const auto port = host.port();
  constexpr int kStock = 5;
  constexpr int kThreads = 8;
  constexpr int kOrdersPerThread = 5;
  const auto mug = create_product(port, "MUG-1", 1250, kStock);

  std::mutex mutex;
  std::vector<Answer> answers;
  std::vector<std::thread> clients;
  for (int c = 0; c < kThreads; ++c) {
    clients.emplace_back([&] {
      for (int n = 0; n < kOrdersPerThread; ++n) {
        auto a = http(port, "POST", "/api/orders/orders", order_body({{mug, 1}}));
        std::lock_guard lock{mutex};
        answers.push_back(std::move(a));
      }
    });
  }
  for (auto& t : clients) t.join();

  REQUIRE(answers.size() == kThreads * kOrdersPerThread);
  int placed = 0;
  int refused = 0;
  std::set<std::int64_t> ids;
  for (const auto& a : answers) {
    INFO(a.status << " " << a.body);
    if (a.status == 201) {
      ++placed;
      ids.insert(a.json["id"].get<std::int64_t>());
    } else {
      CHECK(a.status == 409);
      CHECK(a.json["error"]["code"] == "insufficient_stock");
      ++refused;
    }
  }
  CHECK(placed == kStock);
  CHECK(refused == kThreads * kOrdersPerThread - kStock);
  CHECK(ids.size() == static_cast<std::size_t>(kStock));
  CHECK(stock_of(port, mug) == 0);
  std::int64_t quantity = 0;
  for (const auto& o : all_pages(port, "/api/orders/orders?status=placed")) quantity += o["lines"][0]["quantity"].get<std::int64_t>();
  CHECK(quantity == kStock);
  CHECK(all_pages(port, "/api/orders/orders?status=rejected").size() == static_cast<std::size_t>(refused));
  CHECK(all_pages(port, "/api/orders/orders?status=pending").empty());
}

TEST_CASE("shop makes one order of concurrent requests with one Idempotency-Key", "[shop]") {
  KeelHost host(shop());
  const auto port = host.port();
  const auto mug = create_product(port, "MUG-1", 1250, 10);
  std::mutex mutex;
  std::vector<Answer> answers;
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&] {
      auto a = http(port, "POST", "/api/orders/orders", order_body({{mug, 2}}), "one-key");
      std::lock_guard lock{mutex};
      answers.push_back(std::move(a));
    });
  }
  for (auto& t : clients) t.join();
  int replayed = 0;
  for (const auto& a : answers) {
    INFO(a.body);
    CHECK(a.status == 201);
    CHECK(a.json["id"] == 1);
    replayed += a.replayed == "true" ? 1 : 0;
  }
  CHECK(replayed == 7);
  CHECK(all_pages(port, "/api/orders/orders").size() == 1);
  CHECK(stock_of(port, mug) == 8);
}

// --- The shop on PostgreSQL: replicas of catalog and orders on two hosts share their data
// ([storage] engine = "postgres", docs/storage.md). Each test starts a server of its own.

namespace {

HostOptions shop_on(const keel::test::PostgresServer& pg) {
  auto options = shop();
  options.config_toml = "[storage]\nengine = \"postgres\"\npostgres_url = \"" + pg.admin_url() + "\"\n";
  return options;
}

}  // namespace

TEST_CASE("shop on PostgreSQL: two hosts place exactly 5 of 40 concurrent orders for 5 in stock",
          "[postgres][integration]") {
  keel::test::PostgresServer pg;
  KeelHost a(shop_on(pg));
  KeelHost b(shop_on(pg));
  const std::uint16_t ports[2] = {a.port(), b.port()};
  constexpr int kStock = 5;
  const auto mug = create_product(ports[0], "MUG-1", 1250, kStock);
  CHECK(stock_of(ports[1], mug) == kStock);  // one catalog, seen from both hosts

  std::mutex mutex;
  std::vector<Answer> answers;
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      for (int n = 0; n < 5; ++n) {
        auto answer = http(ports[(c + n) % 2], "POST", "/api/orders/orders", order_body({{mug, 1}}));
        std::lock_guard lock{mutex};
        answers.push_back(std::move(answer));
      }
    });
  }
  for (auto& t : clients) t.join();
  int placed = 0;
  std::set<std::int64_t> ids;
  for (const auto& answer : answers) {
    INFO(answer.status << " " << answer.body);
    if (answer.status == 201) {
      ++placed;
      ids.insert(answer.json["id"].get<std::int64_t>());
    } else {
      CHECK(answer.status == 409);
      CHECK(answer.json["error"]["code"] == "insufficient_stock");
    }
  }
  CHECK(placed == kStock);
  CHECK(ids.size() == static_cast<std::size_t>(kStock));
  for (const auto port : ports) {
    CHECK(stock_of(port, mug) == 0);
    CHECK(all_pages(port, "/api/orders/orders?status=placed").size() == static_cast<std::size_t>(kStock));
    CHECK(all_pages(port, "/api/orders/orders?status=pending").empty());
  }
}

TEST_CASE("shop on PostgreSQL: one Idempotency-Key sent to two hosts at once makes one order",
          "[postgres][integration]") {
  keel::test::PostgresServer pg;
  KeelHost a(shop_on(pg));
  KeelHost b(shop_on(pg));
  const std::uint16_t ports[2] = {a.port(), b.port()};
  const auto mug = create_product(ports[0], "MUG-1", 1250, 10);
  std::mutex mutex;
  std::vector<Answer> answers;
  std::vector<std::thread> clients;
  for (int c = 0; c < 8; ++c) {
    clients.emplace_back([&, c] {
      auto answer = http(ports[c % 2], "POST", "/api/orders/orders", order_body({{mug, 2}}), "one-key");
      std::lock_guard lock{mutex};
      answers.push_back(std::move(answer));
    });
  }
  for (auto& t : clients) t.join();
  std::set<std::int64_t> ids;
  for (const auto& answer : answers) {
    INFO(answer.status << " " << answer.body);
    CHECK(answer.status == 201);
    if (answer.status == 201) ids.insert(answer.json["id"].get<std::int64_t>());
  }
  CHECK(ids.size() == 1);
  CHECK(all_pages(ports[1], "/api/orders/orders").size() == 1);
  CHECK(stock_of(ports[0], mug) == 8);
}

TEST_CASE("shop on PostgreSQL: the server restarted under 20 clients loses no acknowledged order",
          "[postgres][integration]") {
  keel::test::PostgresServer pg;
  KeelHost host(shop_on(pg));
  const auto port = host.port();
  constexpr std::int64_t kInitialStock = 100000;
  const auto mug = create_product(port, "MUG-1", 100, kInitialStock);
  std::mutex mutex;
  std::map<std::int64_t, std::int64_t> acknowledged;  // order id -> quantity, for every 201
  std::atomic<bool> stop{false};
  std::atomic<int> unavailable{0};
  std::vector<std::thread> clients;
  for (int c = 0; c < 20; ++c) {
    clients.emplace_back([&, c] {
      for (int n = 0; !stop.load() && n < 1000; ++n) {
        const std::int64_t quantity = 1 + (n + c) % 3;
        const auto answer = http(port, "POST", "/api/orders/orders", order_body({{mug, quantity}}),
                                 "client-" + std::to_string(c) + "-" + std::to_string(n));
        if (answer.status == 201) {
          std::lock_guard lock{mutex};
          acknowledged[answer.json["id"].get<std::int64_t>()] = quantity;
        } else if (answer.status == 503) {
          ++unavailable;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    });
  }
  auto acked = [&] {
    std::lock_guard lock{mutex};
    return acknowledged.size();
  };
  const bool before = eventually([&] { return acked() >= 40; }, std::chrono::seconds(60));
  pg.crash();  // mid-traffic: transactions in flight die with their connections
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  pg.start();
  const auto at_restart = acked();
  const bool after = eventually([&] { return acked() >= at_restart + 40; }, std::chrono::seconds(60));
  stop = true;
  for (auto& t : clients) t.join();
  REQUIRE(before);
  REQUIRE(after);
  INFO(unavailable.load() << " answers 503 during the outage");
  keel::test::shop::check_nothing_lost(port, acknowledged, {}, mug, kInitialStock);
}

TEST_CASE("shop on PostgreSQL: a host started while the server is down waits in /readyz and serves once it is up",
          "[postgres][integration]") {
  keel::test::PostgresServer pg;
  pg.stop();
  KeelHost host(shop_on(pg));
  const auto port = host.port();
  // Not ready, and saying why: catalog and orders wait for their storage.
  const auto waiting = http(port, "GET", "/readyz", "");
  INFO(waiting.body);
  CHECK(waiting.status == 503);
  CHECK(waiting.body.find("waiting for storage") != std::string::npos);
  CHECK(waiting.body.find("catalog") != std::string::npos);
  const auto early = http(port, "GET", "/api/catalog/products", "").status;
  CHECK((early == 404 || early == 503));  // not served until it starts

  pg.start();
  const bool ready = eventually([&] { return http(port, "GET", "/readyz", "").status == 200; }, std::chrono::seconds(30));
  INFO(http(port, "GET", "/readyz", "").body);
  REQUIRE(ready);
  const auto mug = create_product(port, "MUG-1", 1250, 3);
  const auto order = http(port, "POST", "/api/orders/orders", order_body({{mug, 2}}));
  INFO(order.body);
  CHECK(order.status == 201);
  CHECK(stock_of(port, mug) == 1);
  CHECK(host.process().output().find("plugin started once its storage could be reached name=catalog") !=
        std::string::npos);
}
