#pragma once
// The order model: statuses and the transitions between them, lines, pricing from catalog's
// reservation (integer cents, overflow-checked), and the JSON the API answers and the events
// carry. Pure values and functions: no storage, no SDK calls; thread-safe.

#include "catalog_rules/json_input.hpp"

#include <nlohmann/json.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace orders {

namespace json = catalog::json;
using Json = nlohmann::ordered_json;

/// Where an order is in its life. pending: recorded, stock not reserved yet (a placement in
/// flight, or one interrupted and waiting for recovery); rejected: catalog refused the stock
/// (or the lines cannot form one order); the others follow the transitions below.
enum class OrderStatus { kPending, kPlaced, kPaid, kShipped, kCancelled, kRejected };

inline constexpr std::array<std::pair<OrderStatus, std::string_view>, 6> kStatusNames{{
    {OrderStatus::kPending, "pending"},
    {OrderStatus::kPlaced, "placed"},
    {OrderStatus::kPaid, "paid"},
    {OrderStatus::kShipped, "shipped"},
    {OrderStatus::kCancelled, "cancelled"},
    {OrderStatus::kRejected, "rejected"},
}};

/// The status as stored and shown ("placed").
[[nodiscard]] constexpr std::string_view status_name(OrderStatus s) noexcept {
  for (const auto& [status, name] : kStatusNames) {
    if (status == s) return name;
  }
  return "unknown";
}

/// The status named `name`, if it is one.
[[nodiscard]] constexpr std::optional<OrderStatus> parse_status(std::string_view name) noexcept {
  for (const auto& [status, text] : kStatusNames) {
    if (text == name) return status;
  }
  return std::nullopt;
}

/// A change a client asks for with POST /orders/{id}/<action>.
enum class Action { kPay, kShip, kCancel };

/// What an action does: the status it leads to, the statuses it is allowed from, its topic.
struct Transition {
  OrderStatus to;
  std::array<std::optional<OrderStatus>, 2> from;
  std::string_view topic;
};

/// The state machine: placed -> paid -> shipped, and placed or paid -> cancelled. Everything
/// else (paying twice, shipping an unpaid order, cancelling a shipped one, touching a pending
/// or rejected order) is refused with 409.
[[nodiscard]] constexpr Transition transition(Action a) noexcept {
  switch (a) {
    case Action::kPay: return {OrderStatus::kPaid, {OrderStatus::kPlaced, std::nullopt}, "orders.paid"};
    case Action::kShip: return {OrderStatus::kShipped, {OrderStatus::kPaid, std::nullopt}, "orders.shipped"};
    case Action::kCancel:
      return {OrderStatus::kCancelled, {OrderStatus::kPlaced, OrderStatus::kPaid}, "orders.cancelled"};
  }
  return {OrderStatus::kPending, {}, ""};
}

/// True when `t` may start from `from`.
[[nodiscard]] constexpr bool allowed(const Transition& t, OrderStatus from) noexcept {
  for (const auto& s : t.from) {
    if (s == from) return true;
  }
  return false;
}

/// The statuses `t` starts from, for messages: "placed" or "placed or paid".
[[nodiscard]] inline std::string sources(const Transition& t) {
  std::string out;
  for (const auto& s : t.from) {
    if (!s) continue;
    if (!out.empty()) out += " or ";
    out += status_name(*s);
  }
  return out;
}

/// One line of an order. The price members are null until the order is placed: they are
/// catalog's, copied from the reservation, never the client's.
struct Line {
  std::int64_t product_id = 0;
  std::int64_t quantity = 0;
  std::optional<std::string> sku;
  std::optional<std::string> name;
  std::optional<std::int64_t> unit_price_cents;
  std::optional<std::int64_t> line_total_cents;
};

/// An order as stored.
struct Order {
  std::int64_t id = 0;
  OrderStatus status = OrderStatus::kPending;
  std::string reservation_id;  ///< catalog's reservation for this order
  std::optional<std::int64_t> total_cents;
  std::optional<std::string> currency;
  bool release_due = false;  ///< the reservation must be released and catalog has not confirmed it yet
  std::optional<int> rejection_status;  ///< HTTP status a rejected order was answered with
  std::optional<std::string> rejection;  ///< ...and the error object, as JSON text
  std::string created_at;
  std::string updated_at;
  std::vector<Line> lines;
};

/// An error answer: the HTTP status and the "error" object of Keel's error body
/// {"error":{"code":..,"message":..}}, plus "field" when one input is at fault and any other
/// members (e.g. the product that lacks stock). A value, so a rejection can be stored and
/// answered again on an idempotent retry.
struct ApiError {
  int http = 500;
  Json error = Json::object();

  [[nodiscard]] static ApiError make(int http, std::string_view code, std::string_view message,
                                     std::string_view field = {}) {
    ApiError e{http, Json{{"code", code}, {"message", message}}};
    if (!field.empty()) e.error["field"] = field;
    return e;
  }
  /// The error's code, e.g. "insufficient_stock".
  [[nodiscard]] std::string code() const { return error.value("code", std::string{}); }
  /// The response body.
  [[nodiscard]] std::string body() const { return json::dump(Json{{"error", error}}); }
};

[[nodiscard]] inline Json line_json(const Line& l) {
  const auto or_null = [](const auto& v) { return v ? Json(*v) : Json(nullptr); };
  return Json{{"product_id", l.product_id},           {"sku", or_null(l.sku)},
              {"name", or_null(l.name)},               {"unit_price_cents", or_null(l.unit_price_cents)},
              {"quantity", l.quantity},                {"line_total_cents", or_null(l.line_total_cents)}};
}

[[nodiscard]] inline Json lines_json(const std::vector<Line>& lines) {
  Json out = Json::array();
  for (const Line& l : lines) out.push_back(line_json(l));
  return out;
}

/// The API's JSON for an order (ORDERS_ORDER_SCHEMA).
[[nodiscard]] inline Json order_json(const Order& o) {
  Json rejection = nullptr;
  if (o.rejection) rejection = Json::parse(*o.rejection, nullptr, false);
  return Json{{"id", o.id},
              {"status", status_name(o.status)},
              {"lines", lines_json(o.lines)},
              {"total_cents", o.total_cents ? Json(*o.total_cents) : Json(nullptr)},
              {"currency", o.currency ? Json(*o.currency) : Json(nullptr)},
              {"rejection", rejection.is_discarded() ? Json(nullptr) : std::move(rejection)},
              {"created_at", o.created_at},
              {"updated_at", o.updated_at}};
}

/// The payload of orders.<status> after a change from `previous` (README, "Events"): the order
/// id, both statuses, the total and currency, the time of the change, and for orders.placed
/// the priced lines.
[[nodiscard]] inline std::string event_payload(const Order& o, OrderStatus previous) {
  Json payload{{"order_id", o.id},
               {"status", status_name(o.status)},
               {"previous_status", status_name(previous)},
               {"total_cents", o.total_cents ? Json(*o.total_cents) : Json(nullptr)},
               {"currency", o.currency ? Json(*o.currency) : Json(nullptr)}};
  if (o.status == OrderStatus::kPlaced) payload["lines"] = lines_json(o.lines);
  payload["occurred_at"] = o.updated_at;
  return json::dump(payload);
}

/// One line of catalog's reservation answer: the product as it was when reserved.
struct ReservedLine {
  std::int64_t product_id = 0;
  std::string sku;
  std::string name;
  std::int64_t unit_price_cents = 0;
  std::string currency;
  std::int64_t quantity = 0;
};

/// An order's lines priced from a reservation: lines, total and currency, or why the
/// reservation cannot make one order.
struct Priced {
  std::vector<Line> lines;
  std::int64_t total_cents = 0;
  std::string currency;
  std::optional<ApiError> error;
};

/// Prices `requested` from `reserved` (catalog answers the lines in request order). Every line
/// must be in one currency (422 mixed_currency) and the total must fit int64 (422
/// total_too_large). The caller has checked that both lists name the same products and
/// quantities.
[[nodiscard]] inline Priced price(const std::vector<Line>& requested, const std::vector<ReservedLine>& reserved) {
  Priced out;
  for (std::size_t i = 0; i < requested.size() && i < reserved.size(); ++i) {
    const ReservedLine& r = reserved[i];
    const std::string item = "items[" + std::to_string(i) + "]";
    if (i == 0) out.currency = r.currency;
    if (r.currency != out.currency) {
      out.error = ApiError::make(422, "mixed_currency",
                                 "product " + std::to_string(r.product_id) + " is priced in " + r.currency +
                                     ", the first line in " + out.currency + "; place one order per currency",
                                 item + ".product_id");
      return out;
    }
    std::int64_t line_total = 0;
    if (__builtin_mul_overflow(r.unit_price_cents, r.quantity, &line_total) ||
        __builtin_add_overflow(out.total_cents, line_total, &out.total_cents)) {
      out.error = ApiError::make(422, "total_too_large", "the order total exceeds 9223372036854775807 cents",
                                 item + ".quantity");
      return out;
    }
    Line line = requested[i];
    line.sku = r.sku;
    line.name = r.name;
    line.unit_price_cents = r.unit_price_cents;
    line.line_total_cents = line_total;
    out.lines.push_back(std::move(line));
  }
  return out;
}

}  // namespace orders
