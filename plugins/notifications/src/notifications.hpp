#pragma once
// notifications: records one notification per order event (orders.placed, orders.paid,
// orders.shipped, orders.cancelled, and any later orders.* topic) in the plugin's own
// database, and lists them under /api/notifications. Durable events arrive at least once; the
// dedupe record (keel::sdk::first_delivery) and the notification commit in one transaction,
// so a redelivered event id creates nothing.
// Header-only, so tests/unit/plugins/notifications drives the class through FakeHost with a
// real database; plugin.cpp only declares it.
// Thread-safety: no state in memory. Events arrive one at a time; the route runs on the
// worker pool ("blocking": true), concurrently with on_event, and only reads.

#include "catalog_rules/json_input.hpp"
#include "catalog_rules/timestamps.hpp"
#include "catalog_rules/validation.hpp"
#include "manifest.hpp"

#include <keel/sdk/event.hpp>
#include <keel/sdk/plugin.hpp>
#include <keel/sdk/storage.hpp>

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace notifications {

namespace json = catalog::json;
using Json = nlohmann::ordered_json;

/// Index of each route in the manifest's "routes" array.
enum Route : std::uint32_t { kList = 0 };

/// What an order event says, as far as a notification needs it (orders' README, "Events").
struct OrderEvent {
  std::int64_t order_id = 0;
  std::string status;
  std::optional<std::int64_t> total_cents;
  std::optional<std::string> currency;
};

/// Reads an order event's payload: a JSON object with order_id (integer >= 1), status (1..32
/// of a-z and '_'), and optionally total_cents (integer) and currency (string), each may be
/// null. Other members are ignored, so orders may add some. Returns the reason it is unusable.
[[nodiscard]] inline std::optional<OrderEvent> parse_order_event(std::string_view payload, std::string& why) {
  const auto parsed = json::parse_object(payload);
  if (!parsed.value) {
    why = parsed.error;
    return std::nullopt;
  }
  const json::Value& v = *parsed.value;
  OrderEvent e;
  const auto id = v.find("order_id");
  const auto order_id = id == v.end() ? std::nullopt : json::as_int64(*id);
  if (!order_id || *order_id < 1) {
    why = "order_id must be an integer >= 1";
    return std::nullopt;
  }
  e.order_id = *order_id;
  const auto status = v.find("status");
  bool status_ok = status != v.end() && status->is_string() && !status->get_ref<const std::string&>().empty() &&
                   status->get_ref<const std::string&>().size() <= 32;
  if (status_ok) {
    for (const char c : status->get_ref<const std::string&>()) status_ok = status_ok && ((c >= 'a' && c <= 'z') || c == '_');
  }
  if (!status_ok) {
    why = "status must be 1 to 32 characters a-z or '_'";
    return std::nullopt;
  }
  e.status = status->get<std::string>();
  if (const auto total = v.find("total_cents"); total != v.end() && !total->is_null()) {
    e.total_cents = json::as_int64(*total);
    if (!e.total_cents) {
      why = "total_cents must be an integer or null";
      return std::nullopt;
    }
  }
  if (const auto currency = v.find("currency"); currency != v.end() && !currency->is_null()) {
    if (!currency->is_string()) {
      why = "currency must be a string or null";
      return std::nullopt;
    }
    e.currency = currency->get<std::string>();
  }
  return e;
}

/// The text of the notification for `e`, e.g. "Order 42 has been placed.".
[[nodiscard]] inline std::string message_for(const OrderEvent& e) {
  const std::string order = "Order " + std::to_string(e.order_id);
  for (const std::string_view known : {"placed", "paid", "shipped", "cancelled"}) {
    if (e.status == known) return order + " has been " + e.status + ".";
  }
  return order + " is now " + e.status + ".";
}

class NotificationsPlugin final : public keel::sdk::Plugin {
 public:
  /// Needs the database the host grants for "ext:keel.storage/1"; refuses to load without it.
  /// notifications has no config keys.
  explicit NotificationsPlugin(keel::sdk::Host& host) : host_{host}, db_{host} {
    if (!db_.available()) throw keel::sdk::Error{db_.status()};
  }

  /// Records the event's notification unless this event id was recorded before. A payload it
  /// cannot read fails the delivery: the host retries it, then keeps it as a dead letter.
  keel::sdk::Status on_event(const keel::sdk::Event& event) override {
    // Only orders speaks for orders (the host refuses other publishers of "orders.*" while orders
    // is loaded; this holds without it too). Acknowledged, so it is not retried, and not recorded.
    if (event.publisher() != "orders") {
      host_.warn("order event from another publisher ignored event=" + std::string{event.event_id()} +
                 " topic=" + std::string{event.topic()} + " publisher=" + std::string{event.publisher()});
      return {};
    }
    std::string why;
    const auto e = parse_order_event(event.payload(), why);
    if (!e) {
      host_.warn("order event refused event=" + std::string{event.event_id()} + " topic=" + std::string{event.topic()} +
                 " reason=" + why);
      return keel::sdk::Status::invalid_argument("order event payload: " + why);
    }
    auto tx = db_.begin();
    if (!tx) return tx.status();
    bool first = false;
    KEEL_TRY(keel::sdk::first_delivery(*tx, event.event_id(), first));
    if (!first) {
      host_.debug("order event delivered again, ignored event=" + std::string{event.event_id()});
      return tx->commit();
    }
    const auto published_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(event.timestamp().time_since_epoch()).count();
    KEEL_TRY(tx->exec(
        "INSERT INTO notifications (event_id, topic, order_id, status, total_cents, currency, message, published_at, "
        "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        {event.event_id(), event.topic(), e->order_id, e->status, e->total_cents, e->currency, message_for(*e),
         catalog::utc_from_ms(published_ms), catalog::utc_now()}));
    return tx->commit();
  }

  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override {
    if (req.route_index() != kList) return keel::sdk::Status::not_found("no handler for this route");
    return list(req, res);
  }

 private:
  using Status = keel::sdk::Status;

  static Status invalid(const keel::sdk::Responder& res, std::string_view field, std::string_view message) {
    const std::string text = std::string{field} + ": " + std::string{message};
    return res.json(422, json::dump(Json{{"error", {{"code", "invalid_field"}, {"message", text}, {"field", field}}}}));
  }

  /// GET /notifications?order_id=&limit=&cursor=: in arrival order (for one order: the order
  /// its events were committed in), a page at a time like catalog's product list.
  Status list(const keel::sdk::Request& req, const keel::sdk::Responder& res) const {
    std::optional<std::int64_t> order_id;
    if (const auto text = req.query("order_id"); text && !text->empty()) {
      order_id = catalog::parse_id(*text);
      if (!order_id) return invalid(res, "order_id", "must be an order id (an integer >= 1)");
    }
    const auto limit = catalog::parse_limit(req.query("limit"));
    if (!limit) return invalid(res, "limit", "must be an integer from 1 to 100");
    std::int64_t after = 0;
    if (const auto cursor = req.query("cursor"); cursor && !cursor->empty()) {
      const auto id = catalog::parse_id(*cursor);
      if (!id) return invalid(res, "cursor", "is not a cursor this API returned");
      after = *id;
    }
    Json items = Json::array();
    // One row more than the page tells whether another page follows.
    KEEL_TRY(db_.query(
        "SELECT id, order_id, status, message, total_cents, currency, topic, event_id, published_at, created_at "
        "FROM notifications WHERE id > ?1 AND (CAST(?2 AS BIGINT) IS NULL OR order_id = ?2) ORDER BY id LIMIT ?3",
        {after, order_id, *limit + 1}, [&](const keel::sdk::Row& row) {
          const auto total = row.get<std::optional<std::int64_t>>(4);
          const auto currency = row.get<std::optional<std::string>>(5);
          items.push_back(Json{{"id", row.get<std::int64_t>(0)},
                               {"order_id", row.get<std::int64_t>(1)},
                               {"status", row.get<std::string>(2)},
                               {"message", row.get<std::string>(3)},
                               {"total_cents", total ? Json(*total) : Json(nullptr)},
                               {"currency", currency ? Json(*currency) : Json(nullptr)},
                               {"topic", row.get<std::string>(6)},
                               {"event_id", row.get<std::string>(7)},
                               {"published_at", row.get<std::string>(8)},
                               {"created_at", row.get<std::string>(9)}});
        }));
    Json body{{"items", std::move(items)}, {"next_cursor", nullptr}};
    if (static_cast<std::int64_t>(body["items"].size()) > *limit) {
      body["items"].erase(body["items"].size() - 1);
      body["next_cursor"] = std::to_string(body["items"].back()["id"].get<std::int64_t>());
    }
    return res.json(200, json::dump(body));
  }

  keel::sdk::Host& host_;
  keel::sdk::Database db_;
};

}  // namespace notifications
