#pragma once
// The example shop as its clients see it, for integration tests of one host (shop_test.cpp) and
// of several (cluster_test.cpp): requests with an Idempotency-Key, paged lists, and the check
// that after a crash nothing a client was told is lost, duplicated, oversold or left pending.

#include <chrono>
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "eventually.hpp"
#include "raw_client.hpp"

namespace keel::test::shop {

using Json = nlohmann::json;

struct Answer {
  int status = 0;  // 0: no response (connection refused or closed)
  std::string body;
  Json json;
  std::string location;
  std::string replayed;
};

/// One request; `key` adds an Idempotency-Key header. Safe to call from client threads (no
/// Catch assertions, no exceptions): a missing or non-JSON answer is returned as it is.
inline Answer http(std::uint16_t port, std::string_view method, std::string_view path, std::string_view body = {},
                   const std::string& key = {}) {
  std::string headers;
  if (!body.empty()) headers += "Content-Type: application/json\r\n";
  if (!key.empty()) headers += "Idempotency-Key: " + key + "\r\n";
  try {
    const auto r = simple_request(port, method, path, body, headers);
    if (!r) return {};
    Answer a{r->status, r->body, {}, r->header("Location"), r->header("Idempotent-Replayed")};
    if (!r->body.empty()) a.json = Json::parse(r->body, nullptr, false);
    return a;
  } catch (const std::exception&) {  // connection refused: the host is gone
    return {};
  }
}

/// Every item of a paged list, following next_cursor (bounded: 1000 pages).
inline Json all_pages(std::uint16_t port, const std::string& path) {
  Json items = Json::array();
  std::string cursor;
  for (int page = 0; page < 1000; ++page) {
    const auto sep = path.find('?') == std::string::npos ? "?" : "&";
    const auto a = http(port, "GET", path + sep + "limit=100" + (cursor.empty() ? "" : "&cursor=" + cursor));
    REQUIRE(a.status == 200);
    for (const auto& item : a.json["items"]) items.push_back(item);
    if (a.json["next_cursor"].is_null()) return items;
    cursor = a.json["next_cursor"].get<std::string>();
  }
  FAIL("more than 1000 pages at " << path);
  return items;
}

/// After a crash: every order a client got 201 for (`acknowledged`: id -> quantity) is there
/// (paid when its pay answered 200), none is left pending, every placed order has exactly one
/// notification per status it went through, no event id twice, and the stock of `product` plus
/// what the orders hold is `initial_stock`.
inline void check_nothing_lost(std::uint16_t port, const std::map<std::int64_t, std::int64_t>& acknowledged,
                               const std::set<std::int64_t>& paid, std::int64_t product, std::int64_t initial_stock) {
  for (const auto& [id, quantity] : acknowledged) {
    INFO("order " << id);
    const auto a = http(port, "GET", "/api/orders/orders/" + std::to_string(id));
    REQUIRE(a.status == 200);
    const auto status = a.json["status"].get<std::string>();
    // A pay that committed before the crash may not have reached the client.
    CHECK((paid.count(id) != 0 ? status == "paid" : (status == "placed" || status == "paid")));
    CHECK(a.json["lines"][0]["quantity"] == quantity);
  }
  // Orders the crash interrupted between their steps are resolved by recovery at start.
  CHECK(eventually([&] { return all_pages(port, "/api/orders/orders?status=pending").empty(); }, std::chrono::seconds(20)));
  const auto orders = all_pages(port, "/api/orders/orders");
  std::map<std::int64_t, std::vector<std::string>> expected;
  std::int64_t reserved = 0;
  for (const auto& o : orders) {
    const auto status = o["status"].get<std::string>();
    if (status == "rejected") continue;
    REQUIRE((status == "placed" || status == "paid"));
    expected[o["id"].get<std::int64_t>()] =
        status == "paid" ? std::vector<std::string>{"placed", "paid"} : std::vector<std::string>{"placed"};
    reserved += o["lines"][0]["quantity"].get<std::int64_t>();
  }
  CHECK(expected.size() >= acknowledged.size());
  Json notes;
  const auto complete = [&] {
    notes = all_pages(port, "/api/notifications/notifications");
    std::map<std::int64_t, std::vector<std::string>> seen;
    for (const auto& n : notes) seen[n["order_id"].get<std::int64_t>()].push_back(n["status"].get<std::string>());
    return seen == expected;
  };
  CHECK(eventually(complete, std::chrono::seconds(60)));
  std::set<std::string> event_ids;
  for (const auto& n : notes) event_ids.insert(n["event_id"].get<std::string>());
  CHECK(event_ids.size() == notes.size());
  // No stock lost or created: what catalog gave out is what the placed orders hold.
  const auto p = http(port, "GET", "/api/catalog/products/" + std::to_string(product));
  REQUIRE(p.status == 200);
  CHECK(p.json["stock"].get<std::int64_t>() + reserved == initial_stock);
}

}  // namespace keel::test::shop
