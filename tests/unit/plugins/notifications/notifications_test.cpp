// The notifications plugin, driven through its C table by FakeHost with a real database
// (TestDatabase migrated from its manifest): one notification per order event, none for a
// redelivered event id, unreadable payloads refused (so the host retries, then dead-letters
// them), and the list by order with cursor pages. Header-only plugin: plugin.cpp, which
// defines the entry point, is not linked here.

#include "../../../../plugins/notifications/src/notifications.hpp"

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "storage/testing.hpp"
#include "temp_dir.hpp"

namespace {

namespace sdk = keel::sdk;
using sdk::testing::EventSpec;
using sdk::testing::FakeHost;
using sdk::testing::OwnedField;
using sdk::testing::RequestSpec;
using Json = nlohmann::json;

struct Notifications {
  keel::test::TempDir dir;
  FakeHost host;
  keel::host::storage::TestDatabase storage{host.ctx(), dir.path() / "notifications.db", NOTIFICATIONS_MANIFEST};

  Notifications() {
    host.add_extension(KEEL_STORAGE_EXTENSION_ID, &storage.table());
    REQUIRE(host.load<notifications::NotificationsPlugin>("{}", NOTIFICATIONS_MANIFEST).ok());
  }

  sdk::Status deliver(const std::string& topic, const Json& payload, const std::string& event_id) {
    // 2025-03-02T10:14:07.123Z
    const std::chrono::system_clock::time_point at{std::chrono::milliseconds{1740910447123}};
    return host.deliver(EventSpec{.topic = topic, .payload = payload.dump(), .event_id = event_id, .publisher = "orders",
                                  .timestamp = at});
  }

  std::pair<int, Json> list(std::vector<OwnedField> query = {}) {
    auto pending = host.request(RequestSpec{.route_index = notifications::kList,
                                            .method = "GET",
                                            .path = "/api/notifications/notifications",
                                            .query = std::move(query)});
    REQUIRE(pending.returned().ok());
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->content_type == "application/json");
    return {response->status, Json::parse(response->body)};
  }
};

Json event(std::int64_t order_id, const std::string& status, std::int64_t total = 2500) {
  return Json{{"order_id", order_id}, {"status", status}, {"previous_status", "pending"}, {"total_cents", total},
              {"currency", "EUR"},    {"occurred_at", "2025-03-02T10:14:07.000Z"}};
}

}  // namespace

TEST_CASE("notifications subscribes to orders' events and serves one blocking route", "[notifications]") {
  const auto manifest = Json::parse(NOTIFICATIONS_MANIFEST);
  CHECK(manifest["events"]["subscribes"] == Json::array({"orders.*"}));
  REQUIRE(manifest["routes"].size() == 1);
  CHECK(manifest["routes"][notifications::kList]["path"] == "/notifications");
  CHECK(manifest["routes"][notifications::kList]["blocking"] == true);
  CHECK(manifest["permissions"] == Json::array({"ext:keel.storage/1"}));
}

TEST_CASE("notifications refuses to load without a database", "[notifications]") {
  FakeHost host;
  CHECK(host.load<notifications::NotificationsPlugin>("{}", NOTIFICATIONS_MANIFEST).code() ==
        sdk::StatusCode::kPermissionDenied);
}

TEST_CASE("notifications records one notification per order event", "[notifications]") {
  Notifications n;
  REQUIRE(n.deliver("orders.placed", event(7, "placed"), "evt-1").ok());
  REQUIRE(n.deliver("orders.paid", event(7, "paid"), "evt-2").ok());
  const auto [status, body] = n.list({{"order_id", "7"}});
  REQUIRE(status == 200);
  CHECK(body["next_cursor"].is_null());
  REQUIRE(body["items"].size() == 2);
  const auto& first = body["items"][0];
  CHECK(first["id"] == 1);
  CHECK(first["order_id"] == 7);
  CHECK(first["status"] == "placed");
  CHECK(first["message"] == "Order 7 has been placed.");
  CHECK(first["total_cents"] == 2500);
  CHECK(first["currency"] == "EUR");
  CHECK(first["topic"] == "orders.placed");
  CHECK(first["event_id"] == "evt-1");
  CHECK(first["published_at"] == "2025-03-02T10:14:07.123Z");
  CHECK(first["created_at"].get<std::string>().size() == 24);
  CHECK(body["items"][1]["message"] == "Order 7 has been paid.");
  CHECK(body["items"][1]["topic"] == "orders.paid");
}

TEST_CASE("notifications ignores order events from any publisher but orders", "[notifications]") {
  Notifications n;
  REQUIRE(n.host.deliver(EventSpec{.topic = "orders.paid", .payload = event(7, "paid").dump(), .event_id = "forged",
                                   .publisher = "rogue"})
              .ok());  // acknowledged, so the host does not retry it
  CHECK(n.host.count_logs(sdk::LogLevel::kWarn, "order event from another publisher ignored event=forged") == 1);
  REQUIRE(n.deliver("orders.placed", event(7, "placed"), "evt-1").ok());
  const auto [status, body] = n.list({{"order_id", "7"}});
  REQUIRE(status == 200);
  REQUIRE(body["items"].size() == 1);
  CHECK(body["items"][0]["event_id"] == "evt-1");
}

TEST_CASE("notifications creates nothing for an event delivered again", "[notifications]") {
  Notifications n;
  REQUIRE(n.deliver("orders.placed", event(7, "placed"), "evt-1").ok());
  for (int attempt = 0; attempt < 3; ++attempt) REQUIRE(n.deliver("orders.placed", event(7, "placed"), "evt-1").ok());
  REQUIRE(n.deliver("orders.placed", event(8, "placed"), "evt-2").ok());
  const auto [status, body] = n.list();
  REQUIRE(status == 200);
  REQUIRE(body["items"].size() == 2);
  CHECK(body["items"][0]["event_id"] == "evt-1");
  CHECK(body["items"][1]["event_id"] == "evt-2");
  CHECK(n.host.count_logs(sdk::LogLevel::kDebug, "delivered again, ignored event=evt-1") == 3);
}

TEST_CASE("notifications refuses an unreadable payload so the host retries it", "[notifications]") {
  Notifications n;
  for (const std::string payload :
       {"not json", "[]", R"({"status":"placed"})", R"({"order_id":0,"status":"placed"})", R"({"order_id":"7","status":"placed"})",
        R"({"order_id":7})", R"({"order_id":7,"status":""})", R"({"order_id":7,"status":"Placed!"})",
        R"({"order_id":7,"status":"placed","total_cents":1.5})", R"({"order_id":7,"status":"placed","currency":3})"}) {
    INFO(payload);
    CHECK(n.host.deliver(EventSpec{.topic = "orders.placed", .payload = payload, .event_id = "bad", .publisher = "orders"}).code() ==
          sdk::StatusCode::kInvalidArgument);
  }
  CHECK(n.list().second["items"].empty());
  CHECK(n.host.count_logs(sdk::LogLevel::kWarn, "order event refused event=bad topic=orders.placed") == 10);
  // The refusal recorded nothing, not even the event id: a corrected redelivery counts.
  REQUIRE(n.host.deliver(EventSpec{.topic = "orders.placed", .payload = event(7, "placed").dump(), .event_id = "bad", .publisher = "orders"}).ok());
  CHECK(n.list().second["items"].size() == 1);
}

TEST_CASE("notifications accepts later order topics and null totals", "[notifications]") {
  Notifications n;
  REQUIRE(n.deliver("orders.refunded", Json{{"order_id", 3}, {"status", "refunded"}, {"total_cents", nullptr}}, "e").ok());
  const auto items = n.list().second["items"];
  REQUIRE(items.size() == 1);
  CHECK(items[0]["message"] == "Order 3 is now refunded.");
  CHECK(items[0]["total_cents"].is_null());
  CHECK(items[0]["currency"].is_null());
}

TEST_CASE("notifications lists by order in arrival order a page at a time", "[notifications]") {
  Notifications n;
  int next = 0;
  for (const std::int64_t order : {1, 2, 1, 2, 1}) {
    REQUIRE(n.deliver("orders.placed", event(order, "placed"), "evt-" + std::to_string(++next)).ok());
  }
  std::vector<std::int64_t> ids;
  std::vector<OwnedField> query{{"order_id", "1"}, {"limit", "2"}};
  for (int page = 0; page < 5; ++page) {
    const auto [status, body] = n.list(query);
    REQUIRE(status == 200);
    for (const auto& item : body["items"]) {
      CHECK(item["order_id"] == 1);
      ids.push_back(item["id"].get<std::int64_t>());
    }
    if (body["next_cursor"].is_null()) break;
    query = {{"order_id", "1"}, {"limit", "2"}, {"cursor", body["next_cursor"].get<std::string>()}};
  }
  CHECK(ids == std::vector<std::int64_t>{1, 3, 5});
  CHECK(n.list().second["items"].size() == 5);
  CHECK(n.list({{"order_id", "9"}}).second == Json::parse(R"({"items":[],"next_cursor":null})"));
}

TEST_CASE("notifications answers 422 naming an invalid query parameter", "[notifications]") {
  Notifications n;
  for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
           {"order_id", "0"}, {"order_id", "x"}, {"order_id", "-3"}, {"limit", "0"}, {"limit", "101"}, {"cursor", "x"}}) {
    INFO(name << "=" << value);
    const auto [status, body] = n.list({{name, value}});
    CHECK(status == 422);
    CHECK(body["error"]["code"] == "invalid_field");
    CHECK(body["error"]["field"] == name);
    CHECK(body["error"]["message"].get<std::string>().rfind(name + ": ", 0) == 0);
  }
}
