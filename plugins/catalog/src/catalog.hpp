#pragma once
// catalog: the shop's products (sku, name, description, price in integer cents, currency,
// stock) in the plugin's own database, a CRUD API under /api/catalog, and stock reservations
// for the orders plugin (all lines or none, idempotent per reservation id, released once).
// Header-only, so tests/unit/plugins/catalog drives the class through FakeHost with a real
// database; plugin.cpp only declares it.
// Thread-safety: the plugin keeps no mutable state in memory; every route runs on the worker
// pool ("blocking": true) and concurrent requests are ordered by the database (a transaction
// holds the plugin's single writer), so on_request runs concurrently with itself without locks.

#include "catalog_rules/json_input.hpp"
#include "catalog_rules/timestamps.hpp"
#include "catalog_rules/validation.hpp"
#include "manifest.hpp"

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/storage.hpp>

#include <chrono>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace catalog {

/// Index of each route in the manifest's "routes" array (keel::sdk::Request::route_index()).
enum Route : std::uint32_t {
  kCreateProduct = 0,
  kListProducts = 1,
  kGetProduct = 2,
  kPatchProduct = 3,
  kDeleteProduct = 4,
  kReserve = 5,
  kRelease = 6,
};

/// A product row.
struct Product {
  std::int64_t id = 0;
  std::string sku;
  std::string name;
  std::string description;
  std::int64_t price_cents = 0;
  std::string currency;
  std::int64_t stock = 0;
  std::string created_at;
  std::string updated_at;
};

/// One line of a stored reservation: the product as it was when reserved.
struct ReservationLine {
  std::int64_t product_id = 0;
  std::string sku;
  std::string name;
  std::int64_t unit_price_cents = 0;
  std::string currency;
  std::int64_t quantity = 0;
};

/// Keel's standard error body {"error":{"code":..,"message":..}}, plus "field" when one field
/// is at fault and any `extra` members (e.g. the product that lacks stock).
[[nodiscard]] inline std::string error_json(std::string_view code, std::string_view message, std::string_view field = {},
                                            nlohmann::ordered_json extra = nlohmann::ordered_json::object()) {
  nlohmann::ordered_json error{{"code", code}, {"message", message}};
  if (!field.empty()) error["field"] = field;
  for (auto& [key, value] : extra.items()) error[key] = std::move(value);
  return json::dump(nlohmann::ordered_json{{"error", std::move(error)}});
}

/// The API's JSON for a product.
[[nodiscard]] inline nlohmann::ordered_json product_json(const Product& p) {
  return nlohmann::ordered_json{{"id", p.id},
                                {"sku", p.sku},
                                {"name", p.name},
                                {"description", p.description},
                                {"price_cents", p.price_cents},
                                {"currency", p.currency},
                                {"stock", p.stock},
                                {"created_at", p.created_at},
                                {"updated_at", p.updated_at}};
}

/// The API's JSON for a reservation.
[[nodiscard]] inline nlohmann::ordered_json reservation_json(std::string_view id, const std::vector<ReservationLine>& lines) {
  auto array = nlohmann::ordered_json::array();
  for (const auto& l : lines) {
    array.push_back(nlohmann::ordered_json{{"product_id", l.product_id},
                                           {"sku", l.sku},
                                           {"name", l.name},
                                           {"unit_price_cents", l.unit_price_cents},
                                           {"currency", l.currency},
                                           {"quantity", l.quantity}});
  }
  return nlohmann::ordered_json{{"reservation_id", id}, {"lines", std::move(array)}};
}


class CatalogPlugin final : public keel::sdk::Plugin {
 public:
  /// Needs the database the host grants for "ext:keel.storage/1"; refuses to load without it.
  /// catalog has no config keys.
  explicit CatalogPlugin(keel::sdk::Host& host) : db_{host} {
    if (!db_.available()) throw keel::sdk::Error{db_.status()};
  }

  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override {
    switch (req.route_index()) {
      case kCreateProduct: return create_product(req, res);
      case kListProducts: return list_products(req, res);
      case kGetProduct: return get_product(req, res);
      case kPatchProduct: return patch_product(req, res);
      case kDeleteProduct: return delete_product(req, res);
      case kReserve: return reserve(req, res);
      case kRelease: return release(req, res);
      default: return keel::sdk::Status::not_found("no handler for this route");
    }
  }

 private:
  using Status = keel::sdk::Status;
  using Json = nlohmann::ordered_json;

  static constexpr std::string_view kProductColumns =
      "id, sku, name, description, price_cents, currency, stock, created_at, updated_at";

  static Product product_from(const keel::sdk::Row& row) {
    return Product{row.get<std::int64_t>(0), row.get<std::string>(1), row.get<std::string>(2),
                   row.get<std::string>(3),  row.get<std::int64_t>(4), row.get<std::string>(5),
                   row.get<std::int64_t>(6), row.get<std::string>(7), row.get<std::string>(8)};
  }

  /// Reads product `id` through `ops` (the database, or a transaction to see its own writes).
  static Status load_product(const keel::sdk::SqlOps& ops, std::int64_t id, std::optional<Product>& out) {
    out.reset();
    const std::string sql = "SELECT " + std::string{kProductColumns} + " FROM products WHERE id = ?";
    return ops.query(sql, {id}, [&](const keel::sdk::Row& row) { out = product_from(row); });
  }

  static Status load_lines(const keel::sdk::SqlOps& ops, std::string_view reservation_id,
                           std::vector<ReservationLine>& out) {
    out.clear();
    return ops.query(
        "SELECT product_id, sku, name, unit_price_cents, currency, quantity FROM reservation_lines "
        "WHERE reservation_id = ? ORDER BY line",
        {reservation_id}, [&](const keel::sdk::Row& row) {
          out.push_back(ReservationLine{row.get<std::int64_t>(0), row.get<std::string>(1), row.get<std::string>(2),
                                        row.get<std::int64_t>(3), row.get<std::string>(4), row.get<std::int64_t>(5)});
        });
  }

  static Status not_found(const keel::sdk::Responder& res, std::string_view what) {
    return res.json(404, error_json("not_found", what));
  }
  static Status invalid(const keel::sdk::Responder& res, const FieldError& e) {
    return res.json(422, error_json("invalid_field", e.field + ": " + e.message, e.field));
  }
  static Status malformed(const keel::sdk::Responder& res, std::string_view why) {
    return res.json(400, error_json("malformed_json", "request body: " + std::string{why}));
  }

  /// The product id of path parameter {id}; nullopt (answer 404) when it is not a positive integer.
  static std::optional<std::int64_t> path_id(const keel::sdk::Request& req) {
    return parse_id(req.path_param("id").value_or(std::string_view{}));
  }

  Status create_product(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto parsed = json::parse_object(req.body());
    if (!parsed.value) return malformed(res, parsed.error);
    const auto input = validate_product(*parsed.value, ProductMode::kCreate);
    if (!input.value) return invalid(res, input.error);
    const ProductInput& in = *input.value;
    const std::string now = catalog::utc_now();
    keel::sdk::ExecResult result;
    const Status st = db_.exec(
        "INSERT INTO products (sku, name, description, price_cents, currency, stock, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        {*in.sku, *in.name, *in.description, *in.price_cents, *in.currency, *in.stock, now, now}, &result);
    // The only unique rule on products is the sku's; both engines name it in the message
    // (SQLite "UNIQUE constraint failed: products.sku", PostgreSQL "... constraint \"products_sku_key\"").
    if (st.code() == keel::sdk::StatusCode::kConflict && st.message().find("sku") != std::string::npos) {
      return res.json(409, error_json("duplicate_sku", "a product with sku " + *in.sku + " exists", "sku"));
    }
    KEEL_TRY(st);
    const Product product{result.last_insert_id, *in.sku, *in.name, *in.description, *in.price_cents,
                          *in.currency, *in.stock, now, now};
    // The path as received, so Location follows the mount point ([plugin.catalog] mount).
    std::string location{req.path()};
    while (!location.empty() && location.back() == '/') location.pop_back();
    location += '/';
    location += std::to_string(product.id);
    return res.json(201, json::dump(product_json(product)), {{"location", location}});
  }

  Status list_products(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto limit = parse_limit(req.query("limit"));
    if (!limit) return invalid(res, {"limit", "must be an integer from 1 to 100"});
    std::int64_t after = 0;
    if (const auto cursor = req.query("cursor"); cursor && !cursor->empty()) {
      const auto id = parse_id(*cursor);
      if (!id) return invalid(res, {"cursor", "is not a cursor this API returned"});
      after = *id;
    }
    std::vector<Product> page;
    const std::string sql = "SELECT " + std::string{kProductColumns} + " FROM products WHERE id > ? ORDER BY id LIMIT ?";
    // One row more than the page tells whether another page follows.
    KEEL_TRY(db_.query(sql, {after, *limit + 1}, [&](const keel::sdk::Row& row) { page.push_back(product_from(row)); }));
    const bool more = static_cast<std::int64_t>(page.size()) > *limit;
    if (more) page.pop_back();
    Json body{{"items", Json::array()}, {"next_cursor", nullptr}};
    for (const auto& p : page) body["items"].push_back(product_json(p));
    if (more) body["next_cursor"] = std::to_string(page.back().id);
    return res.json(200, json::dump(body));
  }

  Status get_product(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto id = path_id(req);
    if (!id) return not_found(res, "no such product");
    std::optional<Product> product;
    KEEL_TRY(load_product(db_, *id, product));
    if (!product) return not_found(res, "no such product");
    return res.json(200, json::dump(product_json(*product)));
  }

  Status patch_product(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto id = path_id(req);
    if (!id) return not_found(res, "no such product");
    const auto parsed = json::parse_object(req.body());
    if (!parsed.value) return malformed(res, parsed.error);
    const auto input = validate_product(*parsed.value, ProductMode::kPatch);
    if (!input.value) return invalid(res, input.error);
    const ProductInput& in = *input.value;

    auto tx = db_.begin();
    if (!tx) return tx.status();
    std::optional<Product> product;
    KEEL_TRY(load_product(*tx, *id, product));
    if (!product) return not_found(res, "no such product");
    if (in.sku && *in.sku != product->sku) {
      return invalid(res, {"sku", "cannot be changed (create a new product instead)"});
    }
    bool changed = false;
    const auto apply = [&changed](auto& field, const auto& value) {
      if (value && *value != field) {
        field = *value;
        changed = true;
      }
    };
    apply(product->name, in.name);
    apply(product->description, in.description);
    apply(product->price_cents, in.price_cents);
    apply(product->currency, in.currency);
    apply(product->stock, in.stock);
    if (changed) {
      product->updated_at = catalog::utc_now();
      KEEL_TRY(tx->exec(
          "UPDATE products SET name = ?, description = ?, price_cents = ?, currency = ?, stock = ?, updated_at = ? "
          "WHERE id = ?",
          {product->name, product->description, product->price_cents, product->currency, product->stock,
           product->updated_at, product->id}));
      KEEL_TRY(tx->commit());
    }
    return res.json(200, json::dump(product_json(*product)));
  }

  Status delete_product(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto id = path_id(req);
    if (!id) return not_found(res, "no such product");
    keel::sdk::ExecResult result;
    KEEL_TRY(db_.exec("DELETE FROM products WHERE id = ?", {*id}, &result));
    if (result.changes == 0) return not_found(res, "no such product");
    return res.respond(204);
  }

  Status reserve(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto parsed = json::parse_object(req.body());
    if (!parsed.value) return malformed(res, parsed.error);
    const auto input = validate_reservation(*parsed.value);
    if (!input.value) return invalid(res, input.error);
    const ReservationInput& in = *input.value;

    // One transaction from the check to the decrement. With one writer at a time (SQLite) no
    // other reservation can change stock in between; where writers run side by side
    // (PostgreSQL, replicas on several hosts) the decrement itself re-checks the stock under the
    // row's lock, and a reservation that lost the race is refused like one that read too little.
    // Likewise, of two concurrent requests for one reservation id, the second meets the id's
    // unique key on insert and then replays the first's answer.
    const Status first = reserve_once(in, res);
    if (first.code() != keel::sdk::StatusCode::kConflict) return first;
    return reserve_once(in, res);
  }

  /// One attempt of POST /reservations; kConflict (nothing answered) when another request
  /// recorded the same reservation id meanwhile.
  Status reserve_once(const ReservationInput& in, const keel::sdk::Responder& res) {
    auto tx = db_.begin();
    if (!tx) return tx.status();
    std::optional<std::optional<std::string>> existing;  // outer: the reservation exists; inner: released_at
    KEEL_TRY(tx->query("SELECT released_at FROM reservations WHERE id = ?", {in.reservation_id},
                       [&](const keel::sdk::Row& row) { existing = row.get<std::optional<std::string>>(0); }));
    std::vector<ReservationLine> lines;
    if (existing) return replay(*tx, in, existing->has_value(), res);

    for (std::size_t i = 0; i < in.items.size(); ++i) {
      const ReservationItem& item = in.items[i];
      std::optional<Product> product;
      KEEL_TRY(load_product(*tx, item.product_id, product));
      if (!product) {
        return res.json(404, error_json("product_not_found", "product " + std::to_string(item.product_id) + " does not exist",
                                        "items[" + std::to_string(i) + "].product_id",
                                        Json{{"product_id", item.product_id}}));
      }
      if (product->stock < item.quantity) return insufficient_stock(res, i, *product, item.quantity);
      lines.push_back(ReservationLine{product->id, product->sku, product->name, product->price_cents,
                                      product->currency, item.quantity});
    }
    const std::string now = catalog::utc_now();
    KEEL_TRY(tx->exec("INSERT INTO reservations (id, created_at) VALUES (?, ?)", {in.reservation_id, now}));  // may be kConflict
    for (std::size_t i = 0; i < lines.size(); ++i) {
      const ReservationLine& l = lines[i];
      keel::sdk::ExecResult taken;
      KEEL_TRY(tx->exec("UPDATE products SET stock = stock - ?, updated_at = ? WHERE id = ? AND stock >= ?",
                        {l.quantity, now, l.product_id, l.quantity}, &taken));
      if (taken.changes == 0) {  // taken by a concurrent reservation since it was read
        std::optional<Product> current;
        KEEL_TRY(load_product(*tx, l.product_id, current));
        if (!current) return Status::internal("product " + std::to_string(l.product_id) + " vanished while reserved");
        return insufficient_stock(res, i, *current, l.quantity);
      }
      KEEL_TRY(tx->exec(
          "INSERT INTO reservation_lines (reservation_id, line, product_id, sku, name, unit_price_cents, currency, "
          "quantity) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
          {in.reservation_id, static_cast<std::int64_t>(i), l.product_id, l.sku, l.name, l.unit_price_cents, l.currency,
           l.quantity}));
    }
    KEEL_TRY(tx->commit());
    return res.json(201, json::dump(reservation_json(in.reservation_id, lines)));
  }

  /// 409 insufficient_stock for item `i` of a reservation.
  static Status insufficient_stock(const keel::sdk::Responder& res, std::size_t i, const Product& product,
                                   std::int64_t requested) {
    return res.json(409, error_json("insufficient_stock",
                                    "product " + std::to_string(product.id) + " (sku " + product.sku + ") has " +
                                        std::to_string(product.stock) + " in stock, " + std::to_string(requested) +
                                        " requested",
                                    "items[" + std::to_string(i) + "].quantity",
                                    Json{{"product_id", product.id},
                                         {"sku", product.sku},
                                         {"available", product.stock},
                                         {"requested", requested}}));
  }

  /// POST /reservations for an id already recorded: the same answer as the first time when the
  /// items are the same (in any order), without touching stock again.
  static Status replay(const keel::sdk::Transaction& tx, const ReservationInput& in, bool released,
                       const keel::sdk::Responder& res) {
    if (released) {
      return res.json(409, error_json("reservation_released",
                                      "reservation " + in.reservation_id + " was released; use a new reservation_id",
                                      "reservation_id"));
    }
    std::vector<ReservationLine> lines;
    KEEL_TRY(load_lines(tx, in.reservation_id, lines));
    bool same = lines.size() == in.items.size();
    for (const ReservationItem& item : in.items) {
      bool found = false;
      for (const ReservationLine& l : lines) found = found || (l.product_id == item.product_id && l.quantity == item.quantity);
      same = same && found;
    }
    if (!same) {
      return res.json(409, error_json("reservation_mismatch",
                                      "reservation " + in.reservation_id + " exists with other items", "reservation_id"));
    }
    return res.json(201, json::dump(reservation_json(in.reservation_id, lines)), {{"idempotent-replayed", "true"}});
  }

  Status release(const keel::sdk::Request& req, const keel::sdk::Responder& res) {
    const auto id = req.path_param("id").value_or(std::string_view{});
    if (!valid_reservation_id(id)) return not_found(res, "no such reservation");
    auto tx = db_.begin();
    if (!tx) return tx.status();
    std::optional<std::optional<std::string>> existing;
    KEEL_TRY(tx->query("SELECT released_at FROM reservations WHERE id = ?", {id},
                       [&](const keel::sdk::Row& row) { existing = row.get<std::optional<std::string>>(0); }));
    if (!existing) return not_found(res, "no such reservation");
    if (existing->has_value()) return res.respond(204);  // released before: stock is not put back twice
    std::vector<ReservationLine> lines;
    KEEL_TRY(load_lines(*tx, id, lines));
    const std::string now = catalog::utc_now();
    for (const ReservationLine& l : lines) {
      // A product deleted since the reservation has nothing to put the stock back into.
      KEEL_TRY(tx->exec("UPDATE products SET stock = stock + ?, updated_at = ? WHERE id = ?", {l.quantity, now, l.product_id}));
    }
    KEEL_TRY(tx->exec("UPDATE reservations SET released_at = ? WHERE id = ?", {now, id}));
    KEEL_TRY(tx->commit());
    return res.respond(204);
  }

  keel::sdk::Database db_;
};

}  // namespace catalog
