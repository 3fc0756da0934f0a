// Fuzz target: the shop plugins' readers of request bodies and event payloads, fed one body
// each: catalog's strict JSON reading and its product and reservation rules
// (plugins/shared/catalog_rules), orders' order body and empty state-change body
// (plugins/orders/src/validation.hpp), notifications' order event (plugins/notifications).
// Properties, each a trap when broken: an accepted body is one JSON object that prints and reads
// back as itself, and every value a reader accepts obeys the rules its README states, restated
// here.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "catalog_rules/json_input.hpp"
#include "catalog_rules/validation.hpp"
#include "notifications/src/notifications.hpp"
#include "orders/src/validation.hpp"

namespace {

namespace json = catalog::json;

void check(bool property) {
  if (!property) __builtin_trap();
}

std::size_t code_points(std::string_view utf8) {
  return static_cast<std::size_t>(
      std::count_if(utf8.begin(), utf8.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

bool only(std::string_view s, std::string_view extra) {
  return std::all_of(s.begin(), s.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           extra.find(c) != std::string_view::npos;
  });
}

// catalog's README: sku 1..64 of A-Z a-z 0-9 - _ .; a name not blank, at most 200 characters,
// no control character; a description of at most 2000; price_cents >= 0; currency three
// upper-case letters; stock 0..1000000000. A new product has sku, name, price and currency.
void check_product(const json::Value& body, catalog::ProductMode mode) {
  const auto product = catalog::validate_product(body, mode);
  if (!product.value) return;
  const auto& p = *product.value;
  if (mode == catalog::ProductMode::kCreate) check(p.sku && p.name && p.price_cents && p.currency);
  if (p.sku) check(!p.sku->empty() && p.sku->size() <= 64 && only(*p.sku, "-_.") && body.at("sku") == *p.sku);
  if (p.name) {
    check(p.name->find_first_not_of(" \t\r\n") != std::string::npos && code_points(*p.name) <= 200);
    check(std::none_of(p.name->begin(), p.name->end(),
                       [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7F; }));
  }
  if (p.description) check(code_points(*p.description) <= 2000);
  if (p.price_cents) check(*p.price_cents >= 0 && body.at("price_cents") == *p.price_cents);
  if (p.currency) check(p.currency->size() == 3 && std::all_of(p.currency->begin(), p.currency->end(), [](char c) {
                          return c >= 'A' && c <= 'Z';
                        }));
  if (p.stock) check(*p.stock >= 0 && *p.stock <= 1'000'000'000);
}

// 1..100 lines, product ids >= 1 and distinct, quantities 1..1000000000.
template <class Lines>
void check_lines(const Lines& lines) {
  check(!lines.empty() && lines.size() <= 100);
  for (std::size_t i = 0; i < lines.size(); ++i) {
    check(lines[i].product_id >= 1 && lines[i].quantity >= 1 && lines[i].quantity <= 1'000'000'000);
    for (std::size_t j = 0; j < i; ++j) check(lines[j].product_id != lines[i].product_id);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view body(reinterpret_cast<const char*>(data), size);

  const auto empty = orders::check_empty_body(body);
  const auto parsed = json::parse_object(body);
  if (empty.malformed.empty() && !empty.field)
    check(body.find_first_not_of(" \t\r\n") == std::string_view::npos || (parsed.value && parsed.value->empty()));

  std::string why;
  if (const auto event = notifications::parse_order_event(body, why)) {
    // notifications' README: order_id >= 1, a status of 1..32 characters a-z or '_'.
    check(event->order_id >= 1 && !event->status.empty() && event->status.size() <= 32);
    check(std::all_of(event->status.begin(), event->status.end(), [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; }));
  }

  if (!parsed.value) return 0;
  const json::Value& value = *parsed.value;
  check(value.is_object());
  const auto again = json::parse_object(json::dump(value));
  check(again.value && *again.value == value);

  check_product(value, catalog::ProductMode::kCreate);
  check_product(value, catalog::ProductMode::kPatch);
  if (const auto reservation = catalog::validate_reservation(value); reservation.value) {
    const auto& id = reservation.value->reservation_id;
    check(!id.empty() && id.size() <= 128 && only(id, "-_.:"));
    check_lines(reservation.value->items);
  }
  if (const auto order = orders::validate_order(value); order.value) check_lines(*order.value);
  return 0;
}
