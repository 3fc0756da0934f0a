#pragma once
// catalog's input rules, as pure functions over parsed JSON and query/path text: what a product
// and a reservation request must look like, with the offending field named in every error.
// No storage, no SDK calls; thread-safe.

#include "json_input.hpp"

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace catalog {

inline constexpr std::size_t kMaxSkuLength = 64;
inline constexpr std::size_t kMaxNameLength = 200;          ///< Unicode code points
inline constexpr std::size_t kMaxDescriptionLength = 2000;  ///< Unicode code points
inline constexpr std::int64_t kMaxStock = 1'000'000'000;    ///< also the largest quantity of one line
inline constexpr std::size_t kMaxReservationIdLength = 128;
inline constexpr std::size_t kMaxReservationLines = 100;
inline constexpr std::int64_t kDefaultPageSize = 20;
inline constexpr std::int64_t kMaxPageSize = 100;

/// One invalid field: its JSON path ("price_cents", "items[2].quantity") and what is wrong.
struct FieldError {
  std::string field;
  std::string message;
};

/// A validated product body (POST: every required member present; PATCH: only what was sent).
struct ProductInput {
  std::optional<std::string> sku;
  std::optional<std::string> name;
  std::optional<std::string> description;
  std::optional<std::int64_t> price_cents;
  std::optional<std::string> currency;
  std::optional<std::int64_t> stock;
};

/// One line of a reservation request.
struct ReservationItem {
  std::int64_t product_id = 0;
  std::int64_t quantity = 0;
};

/// A validated POST /reservations body.
struct ReservationInput {
  std::string reservation_id;
  std::vector<ReservationItem> items;
};

/// Either a value or the field that made it invalid.
template <class T>
struct Validated {
  std::optional<T> value;
  FieldError error;
};

namespace detail {

/// Number of Unicode code points in valid UTF-8 text (continuation bytes are not counted).
[[nodiscard]] inline std::size_t code_points(std::string_view utf8) noexcept {
  std::size_t n = 0;
  for (const char c : utf8) n += (static_cast<unsigned char>(c) & 0xC0u) != 0x80u ? 1 : 0;
  return n;
}

[[nodiscard]] inline bool is_sku_char(char c) noexcept {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
}

[[nodiscard]] inline bool is_reservation_id_char(char c) noexcept { return is_sku_char(c) || c == ':'; }

[[nodiscard]] inline bool is_blank(std::string_view s) noexcept {
  for (const char c : s) {
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return false;
  }
  return true;
}

[[nodiscard]] inline bool has_control(std::string_view s) noexcept {
  for (const char c : s) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7F) return true;
  }
  return false;
}

// Each checker returns an error message, or nullopt when the value is valid.

[[nodiscard]] inline std::optional<std::string> check_sku(const json::Value& v, std::string& out) {
  if (!v.is_string()) return "must be a string";
  out = v.get<std::string>();
  if (out.empty()) return "must not be empty";
  if (out.size() > kMaxSkuLength) return "must be at most 64 characters";
  for (const char c : out) {
    if (!is_sku_char(c)) return "may contain only A-Z, a-z, 0-9, '-', '_' and '.'";
  }
  return std::nullopt;
}

[[nodiscard]] inline std::optional<std::string> check_name(const json::Value& v, std::string& out) {
  if (!v.is_string()) return "must be a string";
  out = v.get<std::string>();
  if (is_blank(out)) return "must not be empty";
  if (code_points(out) > kMaxNameLength) return "must be at most 200 characters";
  if (has_control(out)) return "must not contain control characters";
  return std::nullopt;
}

[[nodiscard]] inline std::optional<std::string> check_description(const json::Value& v, std::string& out) {
  if (!v.is_string()) return "must be a string";
  out = v.get<std::string>();
  if (code_points(out) > kMaxDescriptionLength) return "must be at most 2000 characters";
  return std::nullopt;
}

[[nodiscard]] inline std::optional<std::string> check_price(const json::Value& v, std::int64_t& out) {
  const auto n = json::as_int64(v);
  if (!n || *n < 0) return "must be an integer number of cents, 0 or more";
  out = *n;
  return std::nullopt;
}

[[nodiscard]] inline std::optional<std::string> check_currency(const json::Value& v, std::string& out) {
  if (!v.is_string()) return "must be a string";
  out = v.get<std::string>();
  if (out.size() != 3) return "must be an ISO 4217 code of three upper-case letters, e.g. EUR";
  for (const char c : out) {
    if (c < 'A' || c > 'Z') return "must be an ISO 4217 code of three upper-case letters, e.g. EUR";
  }
  return std::nullopt;
}

[[nodiscard]] inline std::optional<std::string> check_stock(const json::Value& v, std::int64_t& out) {
  const auto n = json::as_int64(v);
  if (!n || *n < 0 || *n > kMaxStock) return "must be an integer from 0 to 1000000000";
  out = *n;
  return std::nullopt;
}

}  // namespace detail

/// Which product body is being validated.
enum class ProductMode { kCreate, kPatch };

/// Validates a product body. kCreate requires sku, name, price_cents and currency (description
/// defaults to "", stock to 0); kPatch accepts any subset. Unknown members are refused so a
/// misspelt field ("price") is an error, not a silent no-op. Members are checked in a fixed
/// order, so the first error reported is deterministic.
[[nodiscard]] inline Validated<ProductInput> validate_product(const json::Value& body, ProductMode mode) {
  Validated<ProductInput> out;
  constexpr std::string_view kKnown[] = {"sku", "name", "description", "price_cents", "currency", "stock"};
  for (const auto& [key, value] : body.items()) {
    static_cast<void>(value);
    bool known = false;
    for (const auto k : kKnown) known = known || k == key;
    if (!known) {
      out.error = {key, "unknown field; expected one of sku, name, description, price_cents, currency, stock"};
      return out;
    }
  }
  ProductInput input;
  const auto field = [&](const char* name, auto&& check, auto& slot) -> bool {
    const auto it = body.find(name);
    if (it == body.end()) {
      return true;
    }
    typename std::remove_reference_t<decltype(slot)>::value_type parsed{};
    if (auto problem = check(*it, parsed)) {
      out.error = {name, std::move(*problem)};
      return false;
    }
    slot = std::move(parsed);
    return true;
  };
  if (!field("sku", detail::check_sku, input.sku) || !field("name", detail::check_name, input.name) ||
      !field("description", detail::check_description, input.description) ||
      !field("price_cents", detail::check_price, input.price_cents) ||
      !field("currency", detail::check_currency, input.currency) || !field("stock", detail::check_stock, input.stock)) {
    return out;
  }
  if (mode == ProductMode::kCreate) {
    const std::pair<const char*, bool> required[] = {{"sku", input.sku.has_value()},
                                                     {"name", input.name.has_value()},
                                                     {"price_cents", input.price_cents.has_value()},
                                                     {"currency", input.currency.has_value()}};
    for (const auto& [name, present] : required) {
      if (!present) {
        out.error = {name, "is required"};
        return out;
      }
    }
    if (!input.description) input.description = std::string{};
    if (!input.stock) input.stock = 0;
  }
  out.value = std::move(input);
  return out;
}

/// True when `id` is a valid reservation id: 1..128 characters of A-Z a-z 0-9 - _ . :
[[nodiscard]] inline bool valid_reservation_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > kMaxReservationIdLength) return false;
  for (const char c : id) {
    if (!detail::is_reservation_id_char(c)) return false;
  }
  return true;
}

/// Validates a POST /reservations body: {"reservation_id": "...", "items": [{"product_id": N,
/// "quantity": Q}, ...]} with 1..100 items, distinct product ids, product_id >= 1 and
/// 1 <= quantity <= 1000000000.
[[nodiscard]] inline Validated<ReservationInput> validate_reservation(const json::Value& body) {
  Validated<ReservationInput> out;
  for (const auto& [key, value] : body.items()) {
    static_cast<void>(value);
    if (key != "reservation_id" && key != "items") {
      out.error = {key, "unknown field; expected reservation_id and items"};
      return out;
    }
  }
  ReservationInput input;
  const auto id = body.find("reservation_id");
  if (id == body.end()) {
    out.error = {"reservation_id", "is required"};
    return out;
  }
  if (!id->is_string() || !valid_reservation_id(id->get_ref<const std::string&>())) {
    out.error = {"reservation_id", "must be a string of 1 to 128 characters A-Z, a-z, 0-9, '-', '_', '.' or ':'"};
    return out;
  }
  input.reservation_id = id->get<std::string>();
  const auto items = body.find("items");
  if (items == body.end()) {
    out.error = {"items", "is required"};
    return out;
  }
  if (!items->is_array() || items->empty() || items->size() > kMaxReservationLines) {
    out.error = {"items", "must be an array of 1 to 100 items"};
    return out;
  }
  for (std::size_t i = 0; i < items->size(); ++i) {
    const auto& item = (*items)[i];
    const std::string path = "items[" + std::to_string(i) + "]";
    if (!item.is_object()) {
      out.error = {path, "must be an object with product_id and quantity"};
      return out;
    }
    for (const auto& [key, value] : item.items()) {
      static_cast<void>(value);
      if (key != "product_id" && key != "quantity") {
        out.error = {path + "." + key, "unknown field; expected product_id and quantity"};
        return out;
      }
    }
    ReservationItem line;
    const auto product = item.find("product_id");
    const auto product_id = product == item.end() ? std::nullopt : json::as_int64(*product);
    if (!product_id || *product_id < 1) {
      out.error = {path + ".product_id", product == item.end() ? "is required" : "must be a product id (an integer >= 1)"};
      return out;
    }
    line.product_id = *product_id;
    const auto quantity = item.find("quantity");
    const auto q = quantity == item.end() ? std::nullopt : json::as_int64(*quantity);
    if (!q || *q < 1 || *q > kMaxStock) {
      out.error = {path + ".quantity", quantity == item.end() ? "is required" : "must be an integer from 1 to 1000000000"};
      return out;
    }
    line.quantity = *q;
    for (const auto& earlier : input.items) {
      if (earlier.product_id == line.product_id) {
        out.error = {path + ".product_id", "product " + std::to_string(line.product_id) +
                                               " appears twice; put its whole quantity on one line"};
        return out;
      }
    }
    input.items.push_back(line);
  }
  out.value = std::move(input);
  return out;
}

/// Parses a positive decimal id ("42"; no sign, no leading zero, <= int64 max).
[[nodiscard]] inline std::optional<std::int64_t> parse_id(std::string_view text) noexcept {
  if (text.empty() || text.size() > 19 || text[0] == '0') return std::nullopt;
  std::int64_t value = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const int digit = c - '0';
    if (value > (std::numeric_limits<std::int64_t>::max() - digit) / 10) return std::nullopt;
    value = value * 10 + digit;
  }
  return value;
}

/// Parses ?limit=: absent or empty gives the default (20); otherwise an integer 1..100.
[[nodiscard]] inline std::optional<std::int64_t> parse_limit(std::optional<std::string_view> text) noexcept {
  if (!text || text->empty()) return kDefaultPageSize;
  const auto n = parse_id(*text);
  if (!n || *n > kMaxPageSize) return std::nullopt;
  return n;
}

}  // namespace catalog
