#pragma once
// What orders sends to catalog and how it reads the answers: the reservation request, and the
// classification of a reservation answer into "reserved" (with the priced lines), "refused"
// (catalog certainly holds no stock for it: the order is rejected) or "failed" (unknown: the
// order stays pending and is tried again, which is safe because catalog's reservations are
// idempotent per reservation id). Pure functions; thread-safe.

#include "order.hpp"

#include <keel/sdk/status.hpp>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace orders {

/// The plugin orders calls (a manifest dependency, which grants Host::call to it).
inline constexpr std::string_view kCatalog = "catalog";

/// Body of catalog's POST /reservations for an order's lines.
[[nodiscard]] inline std::string reservation_body(std::string_view reservation_id, const std::vector<Line>& lines) {
  Json items = Json::array();
  for (const Line& l : lines) items.push_back(Json{{"product_id", l.product_id}, {"quantity", l.quantity}});
  return json::dump(Json{{"reservation_id", reservation_id}, {"items", std::move(items)}});
}

/// Path of catalog's DELETE /reservations/{id}. Reservation ids are orders' own
/// ("order-<id>-<hex>"), made of characters that need no percent-encoding.
[[nodiscard]] inline std::string release_path(std::string_view reservation_id) {
  return "/reservations/" + std::string{reservation_id};
}

/// What a reservation attempt came to.
struct ReserveOutcome {
  enum class Kind { kReserved, kRefused, kFailed };
  Kind kind = Kind::kFailed;
  std::vector<ReservedLine> lines;  ///< kReserved
  ApiError error;                   ///< kRefused: the order's answer; kFailed: this attempt's answer
};

namespace detail {

/// catalog's 201 body, checked against what was asked: the same products and quantities, in
/// order, each with a sku, a name, an integer price >= 0 and a currency.
[[nodiscard]] inline std::optional<std::vector<ReservedLine>> parse_reserved(std::string_view body,
                                                                              const std::vector<Line>& requested) {
  const auto parsed = json::parse_object(body);
  if (!parsed.value) return std::nullopt;
  const auto lines = parsed.value->find("lines");
  if (lines == parsed.value->end() || !lines->is_array() || lines->size() != requested.size()) return std::nullopt;
  std::vector<ReservedLine> out;
  for (std::size_t i = 0; i < requested.size(); ++i) {
    const auto& l = (*lines)[i];
    if (!l.is_object()) return std::nullopt;
    const auto integer = [&](const char* key) {
      const auto it = l.find(key);
      return it == l.end() ? std::nullopt : json::as_int64(*it);
    };
    const auto text = [&](const char* key) -> std::optional<std::string> {
      const auto it = l.find(key);
      if (it == l.end() || !it->is_string()) return std::nullopt;
      return it->get<std::string>();
    };
    const auto product_id = integer("product_id");
    const auto quantity = integer("quantity");
    const auto price = integer("unit_price_cents");
    auto sku = text("sku");
    auto name = text("name");
    auto currency = text("currency");
    if (product_id != requested[i].product_id || quantity != requested[i].quantity || !price || *price < 0 || !sku ||
        !name || !currency) {
      return std::nullopt;
    }
    out.push_back(ReservedLine{*product_id, std::move(*sku), std::move(*name), *price, std::move(*currency), *quantity});
  }
  return out;
}

/// The "error" object of a Keel error body, if `body` is one, with its members in catalog's
/// order (code, message, field, ...): it is passed on to the client as it is.
[[nodiscard]] inline std::optional<Json> parse_error(std::string_view body) {
  Json parsed = Json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return std::nullopt;
  const auto error = parsed.find("error");
  if (error == parsed.end() || !error->is_object()) return std::nullopt;
  const auto code = error->find("code");
  if (code == error->end() || !code->is_string()) return std::nullopt;
  return std::move(*error);
}

}  // namespace detail

/// The answer a failed call (not sent, timed out, target unavailable) gives the client.
[[nodiscard]] inline ApiError call_failure(const keel::sdk::Status& status) {
  if (status.code() == keel::sdk::StatusCode::kTimeout) {
    return ApiError::make(504, "catalog_timeout", "catalog did not answer in time; the order is retried");
  }
  return ApiError::make(503, "catalog_unavailable",
                        "catalog is not available (" + std::string{keel::sdk::status_name(status.code())} +
                            "); the order is retried");
}

/// Classifies catalog's answer to POST /reservations (`status`: how the call went; `http` and
/// `body`: catalog's response when it answered).
[[nodiscard]] inline ReserveOutcome classify_reservation(const keel::sdk::Status& status, int http, std::string_view body,
                                                         const std::vector<Line>& requested) {
  using Kind = ReserveOutcome::Kind;
  if (!status.ok()) return {Kind::kFailed, {}, call_failure(status)};
  if (http == 201) {
    if (auto lines = detail::parse_reserved(body, requested)) return {Kind::kReserved, std::move(*lines), {}};
    return {Kind::kFailed, {}, ApiError::make(502, "catalog_error", "catalog answered a reservation orders cannot read")};
  }
  const auto error = detail::parse_error(body);
  const std::string code = error ? error->value("code", std::string{}) : std::string{};
  // catalog reserves all lines or none: these answers hold no stock, so the order is rejected
  // with catalog's own error (code, message, field, product).
  if ((http == 404 && code == "product_not_found") || (http == 409 && code == "insufficient_stock")) {
    return {Kind::kRefused, {}, ApiError{http, *error}};
  }
  const std::string what = "catalog answered " + std::to_string(http) + (code.empty() ? "" : " " + code);
  if (http >= 400 && http < 500) {
    return {Kind::kRefused, {}, ApiError::make(502, "catalog_refused", what + " to the reservation")};
  }
  return {Kind::kFailed, {}, ApiError::make(502, "catalog_error", what + "; the order is retried")};
}

/// True when catalog's answer to DELETE /reservations/{id} means no stock is held any more:
/// 204 (released now or before) or 404 (never reserved).
[[nodiscard]] inline bool release_confirmed(const keel::sdk::Status& status, int http) noexcept {
  return status.ok() && (http == 204 || http == 404);
}

}  // namespace orders
