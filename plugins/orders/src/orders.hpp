#pragma once
// orders: the shop's orders under /api/orders, in the plugin's own database. An order's prices
// and stock come from catalog through plugin-to-plugin calls (POST /reservations, DELETE
// /reservations/{id}), never from the client or catalog's database; state changes publish
// orders.placed|paid|shipped|cancelled through the outbox, in the transaction of the change.
//
// Placing an order is three steps, each safe to repeat: (1) commit the order as `pending`
// with its own reservation id (and the Idempotency-Key, unique); (2) ask catalog to reserve
// the stock under that id (idempotent there); (3) in one transaction, mark it `placed` with
// catalog's prices and publish orders.placed, or mark it `rejected` with catalog's refusal.
// An order left `pending` (host killed between the steps, catalog timed out) is driven again
// by recovery: at start() and then every recovery_interval_ms, and at once by a retry with
// its Idempotency-Key. Stock to give back (a cancelled order, or a reservation that arrived
// for a rejected one) is marked `release_due` in the transaction of that change and released
// until catalog confirms it.
//
// Header-only, so tests/unit/plugins/orders drives the class through FakeHost with a real
// database; plugin.cpp only declares it.
// Thread-safety: on_request, call completions and the recovery thread run concurrently. Order
// state lives in the database, where every change is a transaction (one writer) whose UPDATE
// is conditional on the status it read, so two attempts at the same order (a request and
// recovery) cannot both apply; the only shared memory is the set of orders with a call in
// flight (mutex-guarded) and the recovery thread's stop flag.

#include "catalog_client.hpp"
#include "manifest.hpp"
#include "order.hpp"
#include "store.hpp"
#include "validation.hpp"

#include <keel/sdk/plugin.hpp>
#include <keel/sdk/storage.hpp>

#include <array>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace orders {

/// Index of each route in the manifest's "routes" array (keel::sdk::Request::route_index()).
enum Route : std::uint32_t {
  kPlace = 0,
  kList = 1,
  kGet = 2,
  kPay = 3,
  kShip = 4,
  kCancel = 5,
};

/// Most unfinished orders one recovery pass takes on (the rest wait for the next pass).
inline constexpr std::int64_t kRecoveryBatch = 100;

class OrdersPlugin final : public keel::sdk::Plugin {
 public:
  /// Needs the database the host grants for "ext:keel.storage/1"; refuses to load without it
  /// or with a config value out of range (validation.hpp, parse_config).
  explicit OrdersPlugin(keel::sdk::Host& host) : host_{host}, config_{parse_config(host.config_json())}, db_{host} {
    if (!db_.available()) throw keel::sdk::Error{db_.status()};
  }
  ~OrdersPlugin() override { stop_recovery(); }

  /// Drives what an earlier run left unfinished, then keeps doing so every recovery_interval_ms.
  keel::sdk::Status start() override {
    recover();
    recovery_ = std::thread{[this] { recovery_loop(); }};
    return {};
  }
  keel::sdk::Status stop() override {
    stop_recovery();
    return {};
  }

  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override {
    switch (req.route_index()) {
      case kPlace: return place(req, std::move(res));
      case kList: return list(req, res);
      case kGet: return get(req, res);
      case kPay: return change(req, std::move(res), Action::kPay);
      case kShip: return change(req, std::move(res), Action::kShip);
      case kCancel: return change(req, std::move(res), Action::kCancel);
      default: return keel::sdk::Status::not_found("no handler for this route");
    }
  }

 private:
  using Status = keel::sdk::Status;
  using Responder = keel::sdk::Responder;

  /// Who is waiting for the outcome of work on an order that spans calls: a client's request
  /// (responder valid), or nobody (recovery). Shared by the call completions of that work.
  struct Waiter {
    Responder responder;
    std::string location_base;  ///< path the order was placed on; Location is "<base>/<id>"
    bool replayed = false;      ///< answer with Idempotent-Replayed: true
    std::string req_id;         ///< for log lines
  };
  using WaiterPtr = std::shared_ptr<Waiter>;

  // --- answers ------------------------------------------------------------------------------

  static void answer(const Waiter& w, int http, const std::string& body, const std::string& location = {}) {
    if (!w.responder.valid()) return;
    std::array<keel::sdk::Header, 2> headers{};
    std::size_t n = 0;
    if (!location.empty()) headers[n++] = {"location", location};
    if (w.replayed) headers[n++] = {"idempotent-replayed", "true"};
    // If the client is gone the host refuses the response; there is no one left to tell.
    static_cast<void>(w.responder.json(http, body, std::span<const keel::sdk::Header>{headers.data(), n}));
  }
  static void answer_order(const Waiter& w, int http, const Order& o) {
    const std::string location = w.location_base.empty() ? std::string{} : w.location_base + "/" + std::to_string(o.id);
    return answer(w, http, json::dump(order_json(o)), location);
  }
  static void answer_error(const Waiter& w, const ApiError& e) { answer(w, e.http, e.body()); }
  /// The answer a rejected order was refused with, again.
  static ApiError stored_rejection(const Order& o) {
    Json error = Json::parse(o.rejection.value_or("{}"), nullptr, false);
    if (error.is_discarded()) error = Json::object();
    return ApiError{o.rejection_status.value_or(409), std::move(error)};
  }

  static Status not_found(const Responder& res, std::string_view what) {
    return res.json(404, ApiError::make(404, "not_found", what).body());
  }
  static Status invalid(const Responder& res, const FieldError& e) {
    return res.json(422, ApiError::make(422, "invalid_field", e.field + ": " + e.message, e.field).body());
  }
  static Status malformed(const Responder& res, std::string_view why) {
    return res.json(400, ApiError::make(400, "malformed_json", "request body: " + std::string{why}).body());
  }

  /// A storage failure inside a call completion, where no handler can return it to the host.
  void storage_failed(const Waiter& w, std::int64_t id, const Status& st) const {
    host_.warn("order storage failed order=" + std::to_string(id) + " status=" + st.to_string() + " req=" + w.req_id);
    answer_error(w, ApiError::make(503, "storage_unavailable", "orders could not record the change; retry"));
  }

  // --- POST /orders -------------------------------------------------------------------------

  Status place(const keel::sdk::Request& req, Responder res) {
    const auto parsed = json::parse_object(req.body());
    if (!parsed.value) return malformed(res, parsed.error);
    const auto input = validate_order(*parsed.value);
    if (!input.value) return invalid(res, input.error);
    std::optional<std::string> key;
    if (const auto header = req.header("idempotency-key")) {
      if (!valid_idempotency_key(*header)) {
        return res.json(400, ApiError::make(400, "invalid_idempotency_key",
                                            "Idempotency-Key must be 1 to 255 visible ASCII characters")
                                 .body());
      }
      key = std::string{*header};
    }
    std::string base{req.path()};
    while (!base.empty() && base.back() == '/') base.pop_back();
    auto waiter = std::make_shared<Waiter>(Waiter{std::move(res), std::move(base), false, std::string{req.request_id()}});

    // The lookup and the insert share one transaction. With one writer at a time (SQLite), of
    // two concurrent requests with one key the second sees the first's order and replays it;
    // where writers run side by side (PostgreSQL, replicas on several hosts) the second's insert
    // meets the key's unique index instead, and it replays the order that won.
    auto tx = db_.begin();
    if (!tx) return tx.status();
    if (key) {
      std::optional<std::int64_t> existing;
      KEEL_TRY(store::find_by_key(*tx, *key, existing));
      if (existing) {
        KEEL_TRY(tx->rollback());
        waiter->replayed = true;
        return replay(waiter, *existing, *input.value);
      }
    }
    std::int64_t id = 0;
    std::string reservation_id;
    if (const Status st = store::insert_pending(*tx, random_token(), key, *input.value, id, reservation_id);
        !st.ok()) {
      KEEL_TRY(tx->rollback());
      std::optional<std::int64_t> winner;
      if (key && st.code() == keel::sdk::StatusCode::kConflict) KEEL_TRY(store::find_by_key(db_, *key, winner));
      if (!winner) return st;
      waiter->replayed = true;
      return replay(waiter, *winner, *input.value);
    }
    KEEL_TRY(tx->commit());
    reserve(waiter, id, reservation_id, *input.value);
    return {};
  }

  /// A request with the Idempotency-Key of order `id`: the same items get that order (driving
  /// it on if it is still pending), other items 422.
  Status replay(const WaiterPtr& waiter, std::int64_t id, const std::vector<Line>& requested) {
    std::optional<Order> order;
    KEEL_TRY(store::load(db_, id, order));
    if (!order) return Status::internal("order of an idempotency key vanished order=" + std::to_string(id));
    bool same = order->lines.size() == requested.size();
    for (std::size_t i = 0; same && i < requested.size(); ++i) {
      same = order->lines[i].product_id == requested[i].product_id && order->lines[i].quantity == requested[i].quantity;
    }
    if (!same) {
      waiter->replayed = false;
      answer_error(*waiter, ApiError::make(422, "idempotency_key_reused",
                                           "this Idempotency-Key was used for order " + std::to_string(id) +
                                               " with other items; use a new key for a new order"));
      return {};
    }
    switch (order->status) {
      case OrderStatus::kPending: reserve(waiter, id, order->reservation_id, order->lines); break;
      case OrderStatus::kRejected: answer_error(*waiter, stored_rejection(*order)); break;
      default: answer_order(*waiter, 201, *order); break;
    }
    return {};
  }

  /// Step (2): asks catalog to reserve the order's stock; step (3) runs in the completion.
  void reserve(const WaiterPtr& waiter, std::int64_t id, const std::string& reservation_id, const std::vector<Line>& lines) {
    const std::string body = reservation_body(reservation_id, lines);
    keel::sdk::CallRequest call;
    call.target = kCatalog;
    call.method = "POST";
    call.path = "/reservations";
    call.headers = kJsonHeaders;
    call.body = body;
    call.timeout = config_.catalog_timeout;
    track(id);
    const Status sent = host_.call(
        call, [this, waiter, id, reservation_id, lines](const Status& result, const keel::sdk::CallResponse& response) {
          reserved(waiter, id, reservation_id, lines,
                   classify_reservation(result, response.status(), response.body(), lines));
          untrack(id);
        });
    if (sent.ok()) return;
    untrack(id);
    reserved(waiter, id, reservation_id, lines, classify_reservation(sent, 0, {}, lines));
  }

  void reserved(const WaiterPtr& w, std::int64_t id, const std::string& reservation_id, const std::vector<Line>& requested,
                const ReserveOutcome& outcome) {
    switch (outcome.kind) {
      case ReserveOutcome::Kind::kReserved:
        finish_reserved(w, id, reservation_id, requested, outcome.lines);
        return;
      case ReserveOutcome::Kind::kRefused: finish_refused(w, id, outcome.error); return;
      case ReserveOutcome::Kind::kFailed:
        host_.warn("order reservation failed, order stays pending order=" + std::to_string(id) +
                   " code=" + outcome.error.code() + " req=" + w->req_id);
        answer_error(*w, outcome.error);
        return;
    }
  }

  /// Step (3) when catalog reserved the stock: placed (with orders.placed) if the order is
  /// still pending and its lines form one order; otherwise the reservation is given back.
  void finish_reserved(const WaiterPtr& waiter, std::int64_t id, const std::string& reservation_id,
                       const std::vector<Line>& requested, const std::vector<ReservedLine>& reserved_lines) {
    const Waiter& w = *waiter;
    const Priced priced = price(requested, reserved_lines);
    auto opened = open_order(w, id);
    if (!opened) return;
    auto& [tx, order] = *opened;
    if (order.status == OrderStatus::kPending && !priced.error) {
      std::optional<Order> placed;
      Status st = store::place(tx, id, priced);
      if (st.ok()) st = store::load(tx, id, placed);
      if (st.ok() && placed) st = tx.publish("orders.placed", event_payload(*placed, OrderStatus::kPending));
      if (st.ok()) st = tx.commit();
      if (!st.ok() || !placed) return storage_failed(w, id, st);
      host_.debug("order placed order=" + std::to_string(id) + " total_cents=" + std::to_string(priced.total_cents) +
                  " req=" + w.req_id);
      return answer_order(w, 201, *placed);
    }
    ApiError rejection;
    if (order.status == OrderStatus::kPending) {  // catalog reserved lines that cannot form one order
      rejection = *priced.error;
      if (const Status st = store::reject(tx, id, rejection, true); !st.ok()) return storage_failed(w, id, st);
    } else if (order.status == OrderStatus::kRejected) {
      // Another attempt was refused and rejected the order before this one got the stock.
      rejection = stored_rejection(order);
      if (const Status st = store::set_release_due(tx, id, true); !st.ok()) return storage_failed(w, id, st);
    } else {
      return answer_order(w, 201, order);  // another attempt placed it
    }
    if (const Status st = tx.commit(); !st.ok()) return storage_failed(w, id, st);
    release(id, reservation_id, w.req_id, [waiter, rejection] { answer_error(*waiter, rejection); });
  }

  /// Step (3) when catalog refused: rejected with catalog's answer, kept for idempotent retries.
  void finish_refused(const WaiterPtr& waiter, std::int64_t id, const ApiError& error) {
    const Waiter& w = *waiter;
    auto opened = open_order(w, id);
    if (!opened) return;
    auto& [tx, order] = *opened;
    switch (order.status) {
      case OrderStatus::kPending: {
        Status st = store::reject(tx, id, error, false);
        if (st.ok()) st = tx.commit();
        if (!st.ok()) return storage_failed(w, id, st);
        host_.debug("order rejected order=" + std::to_string(id) + " code=" + error.code() + " req=" + w.req_id);
        return answer_error(w, error);
      }
      case OrderStatus::kRejected: return answer_error(w, stored_rejection(order));
      default: return answer_order(w, 201, order);  // another attempt placed it meanwhile
    }
  }

  /// Begins the transaction of step (3) and reads the order in it (its status decides what the
  /// step does); on a storage failure answers 503 and returns std::nullopt.
  std::optional<std::pair<keel::sdk::Transaction, Order>> open_order(const Waiter& w, std::int64_t id) {
    auto tx = db_.begin();
    if (!tx) {
      storage_failed(w, id, tx.status());
      return std::nullopt;
    }
    std::optional<Order> order;
    Status st = store::load(*tx, id, order);
    if (st.ok() && !order) st = Status::internal("order not found");
    if (!st.ok()) {
      storage_failed(w, id, st);
      return std::nullopt;
    }
    return std::pair{std::move(*tx), std::move(*order)};
  }

  /// Gives order `id`'s stock back to catalog, then runs `then` (whatever catalog answered).
  /// release_due stays set until catalog confirms, so recovery repeats an unconfirmed release.
  void release(std::int64_t id, const std::string& reservation_id, const std::string& req_id, std::function<void()> then) {
    const std::string path = release_path(reservation_id);
    keel::sdk::CallRequest call;
    call.target = kCatalog;
    call.method = "DELETE";
    call.path = path;
    call.timeout = config_.catalog_timeout;
    track(id);
    auto done = std::make_shared<std::function<void()>>(std::move(then));
    const auto released = [this, id, req_id, done](const Status& result, int http) {
      if (release_confirmed(result, http)) {
        if (const Status st = store::set_release_due(db_, id, false); !st.ok()) {
          host_.warn("order release not recorded order=" + std::to_string(id) + " status=" + st.to_string());
        }
      } else {
        host_.warn("order stock release failed, retried later order=" + std::to_string(id) + " status=" +
                   (result.ok() ? std::to_string(http) : result.to_string()) + " req=" + req_id);
      }
      untrack(id);
      (*done)();
    };
    const Status sent = host_.call(call, [released](const Status& result, const keel::sdk::CallResponse& response) {
      released(result, response.status());
    });
    if (!sent.ok()) released(sent, 0);
  }

  // --- GET /orders, GET /orders/{id} ---------------------------------------------------------

  static std::optional<std::int64_t> path_id(const keel::sdk::Request& req) {
    return parse_id(req.path_param("id").value_or(std::string_view{}));
  }

  Status get(const keel::sdk::Request& req, const Responder& res) {
    const auto id = path_id(req);
    if (!id) return not_found(res, "no such order");
    std::optional<Order> order;
    KEEL_TRY(store::load(db_, *id, order));
    if (!order) return not_found(res, "no such order");
    return res.json(200, json::dump(order_json(*order)));
  }

  Status list(const keel::sdk::Request& req, const Responder& res) {
    const auto limit = parse_limit(req.query("limit"));
    if (!limit) return invalid(res, {"limit", "must be an integer from 1 to 100"});
    std::int64_t after = 0;
    if (const auto cursor = req.query("cursor"); cursor && !cursor->empty()) {
      const auto id = parse_id(*cursor);
      if (!id) return invalid(res, {"cursor", "is not a cursor this API returned"});
      after = *id;
    }
    std::optional<OrderStatus> status;
    if (const auto text = req.query("status"); text && !text->empty()) {
      status = parse_status(*text);
      if (!status) return invalid(res, {"status", "must be one of pending, placed, paid, shipped, cancelled, rejected"});
    }
    std::vector<Order> page;
    // One row more than the page tells whether another page follows.
    KEEL_TRY(store::list(db_, after, *limit + 1, status, page));
    const bool more = static_cast<std::int64_t>(page.size()) > *limit;
    if (more) page.pop_back();
    Json body{{"items", Json::array()}, {"next_cursor", nullptr}};
    for (const Order& o : page) body["items"].push_back(order_json(o));
    if (more) body["next_cursor"] = std::to_string(page.back().id);
    return res.json(200, json::dump(body));
  }

  // --- POST /orders/{id}/pay|ship|cancel -----------------------------------------------------

  Status change(const keel::sdk::Request& req, Responder res, Action action) {
    const auto id = path_id(req);
    if (!id) return not_found(res, "no such order");
    const auto body = check_empty_body(req.body());
    if (!body.malformed.empty()) return malformed(res, body.malformed);
    if (body.field) return invalid(res, *body.field);
    const Transition t = transition(action);

    // The check, the change and its event in one transaction: a concurrent change of the same
    // order waits for the writer and then sees this one's status.
    auto tx = db_.begin();
    if (!tx) return tx.status();
    std::optional<Order> order;
    KEEL_TRY(store::load(*tx, *id, order));
    if (!order) return not_found(res, "no such order");
    const OrderStatus from = order->status;
    if (!allowed(t, from)) {
      ApiError e = ApiError::make(409, "invalid_transition",
                                  "order " + std::to_string(*id) + " is " + std::string{status_name(from)} + "; only " +
                                      sources(t) + " orders can be " + std::string{status_name(t.to)});
      e.error["order_status"] = status_name(from);
      return res.json(409, e.body());
    }
    const bool cancel = action == Action::kCancel;
    KEEL_TRY(store::change_status(*tx, *id, from, t.to, cancel));
    KEEL_TRY(store::load(*tx, *id, order));
    KEEL_TRY(tx->publish(t.topic, event_payload(*order, from)));
    KEEL_TRY(tx->commit());
    if (!cancel) return res.json(200, json::dump(order_json(*order)));
    // The cancellation is committed; answer once catalog has the stock back (or the release
    // failed and is left to recovery), so a client reading the stock next sees it.
    auto waiter = std::make_shared<Waiter>(Waiter{std::move(res), {}, false, std::string{req.request_id()}});
    release(*id, order->reservation_id, waiter->req_id,
            [waiter, cancelled = *order] { answer_order(*waiter, 200, cancelled); });
    return {};
  }

  // --- recovery ------------------------------------------------------------------------------

  /// One pass: drives every unfinished order that has no call in flight here. Another host
  /// generation (a reload) may drive the same order at the same time; that is safe (see the
  /// thread-safety note at the top).
  void recover() {
    std::vector<store::Unfinished> due;
    if (const Status st = store::unfinished(db_, kRecoveryBatch, due); !st.ok()) {
      host_.warn("order recovery could not read the orders status=" + st.to_string());
      return;
    }
    std::size_t driven = 0;
    for (const store::Unfinished& u : due) {
      if (tracked(u.id)) continue;
      std::optional<Order> order;
      if (const Status st = store::load(db_, u.id, order); !st.ok() || !order) continue;
      ++driven;
      if (u.pending) {
        reserve(std::make_shared<Waiter>(), order->id, order->reservation_id, order->lines);
      } else {
        release(order->id, order->reservation_id, {}, [] {});
      }
    }
    if (driven > 0) host_.info("order recovery orders=" + std::to_string(driven));
  }

  void recovery_loop() {
    std::unique_lock lock{recovery_mutex_};
    while (!stopping_) {
      recovery_wake_.wait_for(lock, config_.recovery_interval, [this] { return stopping_; });
      if (stopping_) break;
      lock.unlock();
      recover();
      lock.lock();
    }
  }

  void stop_recovery() {
    {
      std::lock_guard lock{recovery_mutex_};
      stopping_ = true;
    }
    recovery_wake_.notify_all();
    if (recovery_.joinable()) recovery_.join();
  }

  // Orders with a call to catalog in flight from this instance (a multiset: a request and its
  // idempotent retry may both be driving one order).
  void track(std::int64_t id) {
    std::lock_guard lock{tracked_mutex_};
    tracked_.insert(id);
  }
  void untrack(std::int64_t id) {
    std::lock_guard lock{tracked_mutex_};
    if (const auto it = tracked_.find(id); it != tracked_.end()) tracked_.erase(it);
  }
  bool tracked(std::int64_t id) const {
    std::lock_guard lock{tracked_mutex_};
    return tracked_.count(id) != 0;
  }

  /// 16 random hex digits for a reservation id.
  static std::string random_token() {
    std::random_device device;
    std::uint64_t bits = (static_cast<std::uint64_t>(device()) << 32) | device();
    constexpr std::string_view kHex = "0123456789abcdef";
    std::string out(16, '0');
    for (char& c : out) {
      c = kHex[bits & 0xFu];
      bits >>= 4;
    }
    return out;
  }

  static constexpr std::array<keel::sdk::Header, 1> kJsonHeaders{{{"content-type", "application/json"}}};

  keel::sdk::Host& host_;
  const Config config_;
  keel::sdk::Database db_;

  mutable std::mutex tracked_mutex_;
  std::multiset<std::int64_t> tracked_;

  std::mutex recovery_mutex_;
  std::condition_variable recovery_wake_;
  bool stopping_ = false;  // guarded by recovery_mutex_
  std::thread recovery_;
};

}  // namespace orders
