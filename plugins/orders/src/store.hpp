#pragma once
// orders' SQL: every statement on the orders and order_lines tables (schema: manifest.hpp).
// Functions take a keel::sdk::SqlOps, so the same read runs on the database (autocommit) or
// inside a transaction that must see its own writes. Timestamps are RFC 3339 UTC with
// milliseconds, computed here (catalog_rules/timestamps.hpp) so that the SQL is portable between
// SQLite and PostgreSQL (docs/storage.md "Portable plugins").
// Stateless; thread-safe as the SDK's storage calls are.

#include "catalog_rules/timestamps.hpp"
#include "order.hpp"

#include <keel/sdk/storage.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace orders::store {

using keel::sdk::Row;
using keel::sdk::SqlOps;
using keel::sdk::Status;

using catalog::utc_now;

inline constexpr std::string_view kOrderColumns =
    "id, status, reservation_id, total_cents, currency, release_due, rejection_status, rejection, created_at, updated_at";

[[nodiscard]] inline Order order_from(const Row& row) {
  Order o;
  o.id = row.get<std::int64_t>(0);
  // The CHECK constraint admits only known names.
  o.status = parse_status(row.get<std::string_view>(1)).value_or(OrderStatus::kPending);
  o.reservation_id = row.get<std::string>(2);
  o.total_cents = row.get<std::optional<std::int64_t>>(3);
  o.currency = row.get<std::optional<std::string>>(4);
  o.release_due = row.get<bool>(5);
  o.rejection_status = row.get<std::optional<int>>(6);
  o.rejection = row.get<std::optional<std::string>>(7);
  o.created_at = row.get<std::string>(8);
  o.updated_at = row.get<std::string>(9);
  return o;
}

inline constexpr std::string_view kLineColumns = "order_id, product_id, quantity, sku, name, unit_price_cents, line_total_cents";

[[nodiscard]] inline Line line_from(const Row& row) {
  return Line{row.get<std::int64_t>(1),
              row.get<std::int64_t>(2),
              row.get<std::optional<std::string>>(3),
              row.get<std::optional<std::string>>(4),
              row.get<std::optional<std::int64_t>>(5),
              row.get<std::optional<std::int64_t>>(6)};
}

/// Order `id` with its lines, or std::nullopt.
inline Status load(const SqlOps& ops, std::int64_t id, std::optional<Order>& out) {
  out.reset();
  const std::string sql = "SELECT " + std::string{kOrderColumns} + " FROM orders WHERE id = ?";
  KEEL_TRY(ops.query(sql, {id}, [&](const Row& row) { out = order_from(row); }));
  if (!out) return {};
  const std::string lines = "SELECT " + std::string{kLineColumns} + " FROM order_lines WHERE order_id = ? ORDER BY line";
  return ops.query(lines, {id}, [&](const Row& row) { out->lines.push_back(line_from(row)); });
}

/// The id of the order created with Idempotency-Key `key`, or std::nullopt.
inline Status find_by_key(const SqlOps& ops, std::string_view key, std::optional<std::int64_t>& out) {
  return ops.query_value("SELECT id FROM orders WHERE idempotency_key = ?", {key}, out);
}

/// Records a new pending order with its unpriced lines; `id` receives its id and
/// `reservation_id` its reservation id, "order-<id>-<token>". The random `token` keeps
/// reservation ids unique even if orders' database is ever recreated while catalog's is kept.
inline Status insert_pending(const SqlOps& tx, std::string_view token, const std::optional<std::string>& key,
                             const std::vector<Line>& lines, std::int64_t& id, std::string& reservation_id) {
  keel::sdk::ExecResult r;
  const std::string now = utc_now();
  KEEL_TRY(tx.exec("INSERT INTO orders (status, reservation_id, idempotency_key, created_at, updated_at) "
                   "VALUES ('pending', ?, ?, ?, ?)",
                   {token, key, now, now}, &r));
  id = r.last_insert_id;
  reservation_id = "order-" + std::to_string(id) + "-" + std::string{token};
  KEEL_TRY(tx.exec("UPDATE orders SET reservation_id = ? WHERE id = ?", {reservation_id, id}));
  for (std::size_t i = 0; i < lines.size(); ++i) {
    KEEL_TRY(tx.exec("INSERT INTO order_lines (order_id, line, product_id, quantity) VALUES (?, ?, ?, ?)",
                     {id, static_cast<std::int64_t>(i), lines[i].product_id, lines[i].quantity}));
  }
  return {};
}

/// pending -> placed with the priced lines, total and currency.
inline Status place(const SqlOps& tx, std::int64_t id, const Priced& priced) {
  for (std::size_t i = 0; i < priced.lines.size(); ++i) {
    const Line& l = priced.lines[i];
    KEEL_TRY(tx.exec("UPDATE order_lines SET sku = ?, name = ?, unit_price_cents = ?, line_total_cents = ? "
                     "WHERE order_id = ? AND line = ?",
                     {l.sku, l.name, l.unit_price_cents, l.line_total_cents, id, static_cast<std::int64_t>(i)}));
  }
  return tx.exec("UPDATE orders SET status = 'placed', total_cents = ?, currency = ?, updated_at = ? "
                 "WHERE id = ? AND status = 'pending'",
                 {priced.total_cents, priced.currency, utc_now(), id});
}

/// pending -> rejected, keeping the answer for idempotent retries. `release_due`: catalog
/// holds stock for it that must be given back.
inline Status reject(const SqlOps& tx, std::int64_t id, const ApiError& error, bool release_due) {
  const std::string rejection = json::dump(error.error);
  return tx.exec("UPDATE orders SET status = 'rejected', rejection_status = ?, rejection = ?, release_due = ?, "
                 "updated_at = ? WHERE id = ? AND status = 'pending'",
                 {error.http, rejection, release_due, utc_now(), id});
}

/// `from` -> `to` (a client's transition); `release_due` marks the reservation for release.
inline Status change_status(const SqlOps& tx, std::int64_t id, OrderStatus from, OrderStatus to, bool release_due) {
  // release_due only ever turns on here (an integer 0/1 in both engines, no boolean OR).
  return tx.exec("UPDATE orders SET status = ?, release_due = CASE WHEN ? = 1 THEN 1 ELSE release_due END, "
                 "updated_at = ? WHERE id = ? AND status = ?",
                 {status_name(to), release_due ? 1 : 0, utc_now(), id, status_name(from)});
}

/// Records that the reservation of order `id` must be released (true) or is released (false).
inline Status set_release_due(const SqlOps& ops, std::int64_t id, bool due) {
  return ops.exec("UPDATE orders SET release_due = ? WHERE id = ?", {due, id});
}

/// Up to `limit` orders after id `after` in id order, only those in `status` when given, with
/// their lines.
inline Status list(const SqlOps& ops, std::int64_t after, std::int64_t limit, std::optional<OrderStatus> status,
                   std::vector<Order>& out) {
  out.clear();
  const auto add = [&](const Row& row) { out.push_back(order_from(row)); };
  const std::string select = "SELECT " + std::string{kOrderColumns} + " FROM orders WHERE ";
  if (status) {  // walks the index orders_by_status (status, id)
    KEEL_TRY(ops.query(select + "status = ? AND id > ? ORDER BY id LIMIT ?", {status_name(*status), after, limit}, add));
  } else {
    KEEL_TRY(ops.query(select + "id > ? ORDER BY id LIMIT ?", {after, limit}, add));
  }
  if (out.empty()) return {};
  // One query for the lines of the whole page: the orders' id range (lines of orders the
  // status filter skipped are dropped).
  std::map<std::int64_t, Order*> by_id;
  for (Order& o : out) by_id[o.id] = &o;
  const std::string lines = "SELECT " + std::string{kLineColumns} +
                            " FROM order_lines WHERE order_id BETWEEN ? AND ? ORDER BY order_id, line";
  return ops.query(lines, {out.front().id, out.back().id}, [&](const Row& row) {
    if (const auto it = by_id.find(row.get<std::int64_t>(0)); it != by_id.end()) it->second->lines.push_back(line_from(row));
  });
}

/// Work recovery must do: pending orders (reserve again) and reservations to release.
struct Unfinished {
  std::int64_t id = 0;
  bool pending = false;  ///< else: release_due
};

/// Up to `limit` unfinished orders, oldest first.
inline Status unfinished(const SqlOps& ops, std::int64_t limit, std::vector<Unfinished>& out) {
  out.clear();
  return ops.query(
      "SELECT id, status = 'pending' FROM orders WHERE status = 'pending' OR release_due = 1 ORDER BY id LIMIT ?", {limit},
      [&](const Row& row) { out.push_back(Unfinished{row.get<std::int64_t>(0), row.get<bool>(1)}); });
}


}  // namespace orders::store
