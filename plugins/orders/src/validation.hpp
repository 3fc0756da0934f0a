#pragma once
// orders' input rules, as pure functions over parsed JSON, header and config text: the order
// body, the Idempotency-Key header, the (empty) body of a state change, list filters and the
// plugin's config. An order's items become catalog's reservation items, so they are checked
// with catalog's own rules (catalog::validate_reservation): one definition of a valid item,
// and the same field paths ("items[2].quantity") in both plugins' errors.
// No storage, no SDK calls; thread-safe.

#include "catalog_rules/json_input.hpp"
#include "catalog_rules/validation.hpp"
#include "order.hpp"

#include <keel/sdk/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orders {

using catalog::FieldError;
using catalog::parse_id;
using catalog::parse_limit;
using catalog::Validated;

inline constexpr std::size_t kMaxIdempotencyKeyLength = 255;

/// Validates a POST /orders body: {"items": [{"product_id": N, "quantity": Q}, ...]} with
/// 1..100 items, distinct products, product_id >= 1 and 1 <= Q <= 1000000000. The result is
/// the order's lines, unpriced.
[[nodiscard]] inline Validated<std::vector<Line>> validate_order(const json::Value& body) {
  Validated<std::vector<Line>> out;
  for (const auto& [key, value] : body.items()) {
    static_cast<void>(value);
    if (key != "items") {
      out.error = {key, "unknown field; expected items"};
      return out;
    }
  }
  json::Value as_reservation = json::Value::object();
  as_reservation["reservation_id"] = "order";  // placeholder: orders chooses the real id
  if (const auto items = body.find("items"); items != body.end()) as_reservation["items"] = *items;
  const auto checked = catalog::validate_reservation(as_reservation);
  if (!checked.value) {
    out.error = checked.error;
    return out;
  }
  std::vector<Line> lines;
  for (const auto& item : checked.value->items) lines.push_back(Line{item.product_id, item.quantity, {}, {}, {}, {}});
  out.value = std::move(lines);
  return out;
}

/// True when `key` is a usable Idempotency-Key: 1..255 visible ASCII characters (0x21..0x7E),
/// e.g. a UUID.
[[nodiscard]] inline bool valid_idempotency_key(std::string_view key) noexcept {
  if (key.empty() || key.size() > kMaxIdempotencyKeyLength) return false;
  for (const char c : key) {
    if (c < 0x21 || c > 0x7E) return false;
  }
  return true;
}

/// The body of POST /orders/{id}/pay|ship|cancel: empty, or an empty JSON object. Returns the
/// reason for a 400 (`malformed`) or the member for a 422 (`field`); both empty when fine.
struct EmptyBodyCheck {
  std::string malformed;
  std::optional<FieldError> field;
};
[[nodiscard]] inline EmptyBodyCheck check_empty_body(std::string_view body) {
  EmptyBodyCheck out;
  if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return out;
  const auto parsed = json::parse_object(body);
  if (!parsed.value) {
    out.malformed = parsed.error;
  } else if (!parsed.value->empty()) {
    out.field = FieldError{parsed.value->begin().key(), "unknown field; this request takes no members"};
  }
  return out;
}

/// The plugin's config (manifest "config"; the host fills in the defaults, FakeHost may not).
struct Config {
  std::chrono::milliseconds catalog_timeout{5000};
  std::chrono::milliseconds recovery_interval{10000};
};

/// Reads the config JSON the host hands to create(); throws keel::sdk::Error
/// (kInvalidArgument, naming the key) for a value out of range, which refuses the plugin.
[[nodiscard]] inline Config parse_config(std::string_view text) {
  const auto refuse = [](std::string message) { throw keel::sdk::Error{keel::sdk::Status::invalid_argument(std::move(message))}; };
  const auto parsed = json::parse_object(text);
  if (!parsed.value) refuse("config: " + parsed.error);
  Config config;
  const auto read = [&](const char* key, std::int64_t lo, std::int64_t hi, std::chrono::milliseconds& slot) {
    const auto it = parsed.value->find(key);
    if (it == parsed.value->end()) return;
    const auto n = json::as_int64(*it);
    if (!n || *n < lo || *n > hi) {
      refuse(std::string{"config: "} + key + " must be an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
    }
    slot = std::chrono::milliseconds{*n};
  };
  read("catalog_timeout_ms", 1, 600000, config.catalog_timeout);
  read("recovery_interval_ms", 100, 3600000, config.recovery_interval);
  return config;
}

}  // namespace orders
