#include "events/bus.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <limits>
#include <mutex>
#include <random>
#include <set>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include "common/timer_queue.hpp"
#include "common/worker_pool.hpp"
#include "events/topic.hpp"
#include "observability/log.hpp"
#include "plugins/status_mapping.hpp"
#include "storage/database.hpp"

namespace keel::host::events {
namespace {

using Clock = std::chrono::steady_clock;

std::string_view view(keel_plugin_bytes b) noexcept {
  return b.len == 0 || b.ptr == nullptr ? std::string_view{} : std::string_view(b.ptr, b.len);
}
std::string text(const keel_sql_value& v) { return std::string(v.bytes.ptr != nullptr ? v.bytes.ptr : "", v.bytes.len); }
keel_sql_param bytes_param(std::string_view s, keel_sql_type type = KEEL_SQL_TEXT) {
  return {type, 0, 0, 0, {s.data(), s.size()}};
}
keel_sql_param int_param(std::int64_t v) { return {KEEL_SQL_INTEGER, 0, v, 0, {}}; }

std::int64_t unix_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};
template <class V>
using StringMap = std::unordered_map<std::string, V, StringHash, std::equal_to<>>;

constexpr const char* kOutboxSchema =
    "CREATE TABLE IF NOT EXISTS _keel_outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,"
    " topic TEXT NOT NULL, payload BLOB NOT NULL, content_type TEXT NOT NULL, published_ns INTEGER NOT NULL,"
    " traceparent TEXT NOT NULL, tracestate TEXT NOT NULL, request_id TEXT NOT NULL, target TEXT);"
    "CREATE TABLE IF NOT EXISTS _keel_outbox_cursors (subscriber TEXT PRIMARY KEY, delivered_seq INTEGER NOT NULL);"
    "CREATE TABLE IF NOT EXISTS _keel_dead_letters (subscriber TEXT NOT NULL, seq INTEGER NOT NULL,"
    " event_id TEXT NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL, content_type TEXT NOT NULL,"
    " published_ns INTEGER NOT NULL, traceparent TEXT NOT NULL, tracestate TEXT NOT NULL, request_id TEXT NOT NULL,"
    " attempts INTEGER NOT NULL, last_status INTEGER NOT NULL, failed_ms INTEGER NOT NULL,"
    " PRIMARY KEY (subscriber, seq))";

constexpr std::string_view kSaveCursor =
    "INSERT INTO _keel_outbox_cursors (subscriber, delivered_seq) VALUES (?1, ?2)"
    " ON CONFLICT (subscriber) DO UPDATE SET delivered_seq = excluded.delivered_seq";

/// Runs `steps(txn)` in one transaction of `db`: commits if they succeed, rolls back otherwise.
/// On failure `error` holds the failing step's message (the rollback would clear last_error()).
template <class F>
keel_status in_transaction(storage::Database& db, std::string& error, F&& steps) {
  keel_txn txn = KEEL_TXN_NONE;
  auto st = db.begin(KEEL_TXN_NONE, &txn);
  if (st >= 0) st = steps(txn);
  if (st >= 0) st = db.commit(txn);  // a failed commit ends the transaction itself
  if (st < 0) {
    error = storage::last_error();
    if (txn != KEEL_TXN_NONE) static_cast<void>(db.rollback(txn));
  }
  return st;
}

constexpr std::string_view kEventColumns =
    "seq, event_id, topic, payload, content_type, published_ns, traceparent, tracestate, request_id";

std::string_view text_view(const keel_sql_value& v) {
  return v.bytes.len == 0 ? std::string_view{} : std::string_view(v.bytes.ptr, v.bytes.len);
}

/// Reads an EventRecord from a row of kEventColumns.
EventRecord record_from(const keel_sql_value* v, std::string_view publisher) {
  return EventRecord({text_view(v[1]), text_view(v[2]), text_view(v[3]), text_view(v[4]), publisher, text_view(v[6]),
                      text_view(v[7]), text_view(v[8])},
                     v[5].integer, v[0].integer);
}

struct Counter {
  std::atomic<std::uint64_t> value{0};
  void add(std::uint64_t n = 1) noexcept { value.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t get() const noexcept { return value.load(std::memory_order_relaxed); }
};

struct DeliveryCounters {
  Counter delivered, failed, retried, dead_lettered;
};

}  // namespace

EventRecord::EventRecord(const Parts& parts, std::int64_t published, std::int64_t sequence)
    : published_unix_ns(published), seq(sequence) {
  const std::array<std::string_view, 8> fields{parts.event_id,    parts.topic,       parts.payload,
                                               parts.content_type, parts.publisher,  parts.traceparent,
                                               parts.tracestate,   parts.request_id};
  std::size_t total = 0;
  for (const auto f : fields) total += f.size();
  if (total > UINT32_MAX) throw std::length_error("event larger than 4 GiB");
  buf_.reserve(total);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    buf_.append(fields[i]);
    end_[i] = static_cast<std::uint32_t>(buf_.size());
  }
}

void write_event_id(std::int64_t now_unix_ns, char (&out)[36]) {
  thread_local std::mt19937_64 rng{std::random_device{}() ^ static_cast<std::uint64_t>(now_unix_ns)};
  const auto ms = static_cast<std::uint64_t>(now_unix_ns / 1000000);
  const std::uint64_t r1 = rng(), r2 = rng();
  // UUIDv7: 48-bit Unix milliseconds, version 7, 12 random bits, variant 10, 62 random bits.
  const std::uint64_t hi = (ms << 16) | 0x7000u | (r1 & 0x0FFFu);
  const std::uint64_t lo = (r2 & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
  // 8-4-4-4-12 lowercase hex digits, written directly (this runs once per published event).
  constexpr char kHex[] = "0123456789abcdef";
  int pos = 0;
  auto put = [&](std::uint64_t v, int digits) {
    for (int i = digits - 1; i >= 0; --i) out[pos++] = kHex[(v >> (4 * i)) & 0xF];
  };
  put(hi >> 32, 8);
  out[pos++] = '-';
  put((hi >> 16) & 0xFFFF, 4);
  out[pos++] = '-';
  put(hi & 0xFFFF, 4);
  out[pos++] = '-';
  put(lo >> 48, 4);
  out[pos++] = '-';
  put(lo & 0xFFFFFFFFFFFFull, 12);
}

// ---------------------------------------------------------------------------------------------

struct Bus::Impl {
  Impl(const config::EventsConfig& c, WorkerPool& p, TimerQueue& t)
      : cfg(c), pool(p), timers(t), log(observability::logger("events")) {}

  const config::EventsConfig& cfg;
  WorkerPool& pool;
  TimerQueue& timers;
  std::shared_ptr<spdlog::logger> log;

  // --- subscribers and their in-memory inboxes ---
  struct Sub {
    Endpoint ep;
    std::mutex mutex;
    std::deque<std::shared_ptr<const EventRecord>> inbox;
    std::atomic<std::uint32_t> reserved{0};  // inbox size plus publishes about to push
    bool scheduled = false;                  // a drain is queued, running or waiting to retry
    std::uint32_t attempt = 0;               // failed deliveries of the inbox head
    DeliveryCounters counters;
  };
  std::vector<std::unique_ptr<Sub>> subs;

  // --- publishers, their topics and durable streams ---
  struct Stream;
  struct Topic {
    std::string name;
    bool durable = false;
    std::vector<Sub*> subs;  // in-memory fan-out
    Counter published, refused;
  };
  struct Pub {
    Publisher decl;
    StringMap<std::unique_ptr<Topic>> topics;
    std::vector<std::unique_ptr<Stream>> streams;
    std::atomic<std::int64_t> last_sweep_ns{0};
    Counter undeclared;  // publishes of topics not in the manifest, refused
  };
  StringMap<std::unique_ptr<Pub>> pubs;

  /// One durable (publisher, subscriber) pair: the subscriber's matching durable topics.
  struct Stream {
    Pub* pub = nullptr;
    Sub* sub = nullptr;
    std::vector<std::string> topics;
    std::string select_sql;  // the next batch after a cursor
    std::mutex mutex;
    bool scheduled = false;
    bool wake = false;
    std::int64_t cursor = 0;     // delivered; only the drain job touches it
    std::int64_t persisted = 0;  // last value written to _keel_outbox_cursors
    Clock::time_point persisted_at{};
    std::atomic<std::int64_t> persisted_seen{0};
    std::uint32_t attempt = 0;
    DeliveryCounters counters;
  };

  std::atomic<bool> running{false};     // publishes accepted (in-memory ones queue up)
  std::atomic<bool> delivering{false};  // drains run: from begin_delivery() until stop()
  bool started = false;

  // In-memory dead letters (durable ones live in the publisher's database).
  mutable std::mutex dead_mutex;
  std::deque<DeadLetter> dead;
  std::int64_t next_dead = 1;

  // Jobs posted or timers pending: stop() waits for them, and cancels the timers.
  std::mutex jobs_mutex;
  std::condition_variable jobs_done;
  std::size_t jobs = 0;
  std::set<std::uint64_t> pending_timers;

  // --- scheduling ---

  /// Runs `fn` on `sub`'s executor, counted for stop(). Retries shortly if the executor is full.
  void run_on(Sub& sub, std::function<void()> fn) {
    {
      std::lock_guard lock(jobs_mutex);
      ++jobs;
    }
    auto job = [this, fn] {
      if (delivering.load(std::memory_order_acquire)) fn();
      std::lock_guard lock(jobs_mutex);
      if (--jobs == 0) jobs_done.notify_all();
    };
    if (!sub.ep.execute(job)) {
      // The worker queue is full: try again in 10 ms rather than lose the wake-up. Retry with the
      // bare fn: run_on counts the retry itself (re-posting `job` would decrement twice).
      after(std::chrono::milliseconds(10), [this, &sub, fn = std::move(fn)] { run_on(sub, fn); });
      std::lock_guard lock(jobs_mutex);
      if (--jobs == 0) jobs_done.notify_all();
    }
  }

  void after(std::chrono::milliseconds delay, std::function<void()> fn) {
    std::lock_guard lock(jobs_mutex);
    if (!delivering.load()) return;
    auto id = std::make_shared<std::uint64_t>(0);
    *id = timers.schedule(Clock::now() + delay, [this, id, fn = std::move(fn)] {
      {
        std::lock_guard l(jobs_mutex);
        if (pending_timers.erase(*id) == 0) return;  // cancelled by stop()
      }
      fn();
    });
    pending_timers.insert(*id);
  }

  std::chrono::milliseconds backoff(std::uint32_t attempt) const {
    auto d = cfg.retry_base;
    for (std::uint32_t i = 1; i < attempt && d < cfg.retry_max; ++i) d *= 2;
    return std::min(d, cfg.retry_max);
  }

  // --- in-memory delivery ---

  void schedule_inbox(Sub& sub) {
    run_on(sub, [this, &sub] { drain_inbox(sub); });
  }

  /// Marks the inbox scheduled and schedules it, unless it is already or delivery has not begun
  /// (begin_delivery() schedules every non-empty inbox then).
  void kick_inbox(Sub& sub) {
    {
      std::lock_guard lock(sub.mutex);
      if (sub.scheduled || sub.inbox.empty() || !delivering.load(std::memory_order_acquire)) return;
      sub.scheduled = true;
    }
    schedule_inbox(sub);
  }

  void drain_inbox(Sub& sub) {
    // Take up to a batch from the inbox under one lock, deliver it in order, and put back what
    // is left if a delivery fails (only this drain reads the inbox front, so order is kept).
    std::vector<std::shared_ptr<const EventRecord>> batch;
    std::uint32_t head_attempts = 0;
    {
      std::lock_guard lock(sub.mutex);
      if (sub.inbox.empty()) {
        sub.scheduled = false;
        return;
      }
      const auto n = std::min<std::size_t>(sub.inbox.size(), 256);
      batch.assign(std::make_move_iterator(sub.inbox.begin()), std::make_move_iterator(sub.inbox.begin() + static_cast<std::ptrdiff_t>(n)));
      sub.inbox.erase(sub.inbox.begin(), sub.inbox.begin() + static_cast<std::ptrdiff_t>(n));
      head_attempts = std::exchange(sub.attempt, 0);
    }
    for (std::size_t i = 0; i < batch.size(); ++i) {
      const auto& e = *batch[i];
      const std::uint32_t attempt = (i == 0 ? head_attempts : 0) + 1;
      const keel_status st = sub.ep.deliver(e, attempt);
      if (st >= 0 || st == KEEL_ERR_UNAVAILABLE) {
        if (st >= 0) sub.counters.delivered.add();
        sub.reserved.fetch_sub(1, std::memory_order_relaxed);
        continue;
      }
      sub.counters.failed.add();
      if (attempt >= cfg.max_attempts) {
        bury(sub.ep.name, e, attempt, st);
        sub.counters.dead_lettered.add();
        sub.reserved.fetch_sub(1, std::memory_order_relaxed);
        continue;
      }
      sub.counters.retried.add();
      log->debug("event delivery failed subscriber={} topic={} id={} attempt={} status={}; retrying", sub.ep.name,
                 e.topic(), e.event_id(), attempt, plugins::status_name(st));
      {
        std::lock_guard lock(sub.mutex);
        sub.inbox.insert(sub.inbox.begin(), std::make_move_iterator(batch.begin() + static_cast<std::ptrdiff_t>(i)),
                         std::make_move_iterator(batch.end()));
        sub.attempt = attempt;
      }
      after(backoff(attempt), [this, &sub] { schedule_inbox(sub); });
      return;  // stays scheduled: the retry continues the drain
    }
    {
      std::lock_guard lock(sub.mutex);
      if (sub.inbox.empty()) {
        sub.scheduled = false;
        return;
      }
    }
    schedule_inbox(sub);  // more arrived: continue in a new job, so other work gets the thread
  }

  void bury(const std::string& subscriber, const EventRecord& e, std::uint32_t attempts, keel_status st) {
    log->warn("event dead-lettered subscriber={} topic={} id={} attempts={} status={}", subscriber, e.topic(), e.event_id(),
              attempts, plugins::status_name(st));
    if (cfg.dead_letter_capacity == 0) return;
    std::lock_guard lock(dead_mutex);
    DeadLetter d{std::string(e.publisher()), subscriber, next_dead++, false, e, attempts, st,
                 unix_ns() / 1000000};
    dead.push_back(std::move(d));
    while (dead.size() > cfg.dead_letter_capacity) dead.pop_front();
  }

  keel_status publish_memory(Topic& topic, const EventRecord::Parts& parts, std::int64_t now, std::string& error) {
    // Reserve a slot in every inbox first, so the event goes to all subscribers or to none.
    for (std::size_t i = 0; i < topic.subs.size(); ++i) {
      if (topic.subs[i]->reserved.fetch_add(1, std::memory_order_relaxed) >= cfg.queue_capacity) {
        for (std::size_t j = 0; j <= i; ++j) topic.subs[j]->reserved.fetch_sub(1, std::memory_order_relaxed);
        topic.refused.add();
        error = "subscriber '" + topic.subs[i]->ep.name + "' has " + std::to_string(cfg.queue_capacity) +
                " events waiting ([events] queue_capacity); retry later";
        return KEEL_ERR_BUSY;
      }
    }
    topic.published.add();
    if (topic.subs.empty()) return KEEL_OK;
    auto shared = std::make_shared<const EventRecord>(parts, now, 0);
    for (auto* sub : topic.subs) {
      bool schedule = false;
      {
        // `delivering` is read under the inbox lock: begin_delivery() sets it before it checks
        // each inbox under the same lock, so an event is never left unscheduled.
        std::lock_guard lock(sub->mutex);
        sub->inbox.push_back(shared);
        if (!sub->scheduled && delivering.load(std::memory_order_acquire)) schedule = sub->scheduled = true;
      }
      if (schedule) schedule_inbox(*sub);
    }
    return KEEL_OK;
  }

  // --- durable delivery ---

  void wake_streams(Pub& pub) {
    for (auto& s : pub.streams) wake(*s);
  }

  void wake(Stream& s) {
    if (!delivering.load(std::memory_order_acquire)) return;  // begin_delivery() wakes every stream
    {
      std::lock_guard lock(s.mutex);
      if (s.scheduled) {
        s.wake = true;
        return;
      }
      s.scheduled = true;
    }
    // Start the drain a moment later rather than at once: a publisher committing events one by
    // one then hands the stream a batch instead of one event per thread switch (1 ms of latency
    // for several times the throughput on a busy core).
    after(std::chrono::milliseconds(1), [this, &s] { run_on(*s.sub, [this, &s] { drain_stream(s); }); });
  }

  keel_status persist_cursor(Stream& s) {
    if (s.cursor == s.persisted) return KEEL_OK;
    const keel_sql_param p[2] = {bytes_param(s.sub->ep.name), int_param(s.cursor)};
    const auto st = s.pub->decl.database->exec_host(KEEL_TXN_NONE, kSaveCursor, p, {}, nullptr);
    if (st >= 0) {
      s.persisted = s.cursor;
      s.persisted_at = Clock::now();
      s.persisted_seen.store(s.cursor, std::memory_order_relaxed);
    } else {
      log->warn("event cursor not saved publisher={} subscriber={} seq={} error=\"{}\" (events after the last saved "
                "cursor will be delivered again)",
                s.pub->decl.name, s.sub->ep.name, s.cursor, storage::last_error());
    }
    return st;
  }

  /// Moves a durable event that exhausted its attempts to the dead letters and past the cursor,
  /// in one transaction.
  keel_status bury_durable(Stream& s, const EventRecord& e, std::uint32_t attempts, keel_status status,
                           std::string& error) {
    auto& db = *s.pub->decl.database;
    const auto st = in_transaction(db, error, [&](keel_txn txn) {
      const keel_sql_param p[6] = {bytes_param(s.sub->ep.name), int_param(e.seq), int_param(attempts),
                                   int_param(status), int_param(unix_ns() / 1000000), int_param(e.seq)};
      auto rc = db.exec_host(txn,
                             "INSERT OR REPLACE INTO _keel_dead_letters (subscriber, seq, event_id, topic, payload,"
                             " content_type, published_ns, traceparent, tracestate, request_id, attempts, last_status,"
                             " failed_ms) SELECT ?1, seq, event_id, topic, payload, content_type, published_ns,"
                             " traceparent, tracestate, request_id, ?3, ?4, ?5 FROM _keel_outbox WHERE seq = ?6",
                             std::span<const keel_sql_param>(p, 6), {}, nullptr);
      const keel_sql_param c[2] = {bytes_param(s.sub->ep.name), int_param(e.seq)};
      if (rc >= 0) rc = db.exec_host(txn, kSaveCursor, c, {}, nullptr);
      return rc;
    });
    if (st < 0) return st;
    s.cursor = s.persisted = e.seq;
    s.persisted_seen.store(e.seq, std::memory_order_relaxed);
    log->warn("event dead-lettered publisher={} subscriber={} topic={} id={} seq={} attempts={} status={}",
              s.pub->decl.name, s.sub->ep.name, e.topic(), e.event_id(), e.seq, attempts, plugins::status_name(status));
    return KEEL_OK;
  }

  void drain_stream(Stream& s) {
    {
      std::lock_guard lock(s.mutex);
      s.wake = false;
    }
    auto& db = *s.pub->decl.database;
    std::vector<EventRecord> batch;
    const keel_sql_param p[3] = {int_param(s.cursor), bytes_param(s.sub->ep.name),
                                 int_param(static_cast<std::int64_t>(cfg.batch))};
    struct Read {
      std::vector<EventRecord>* batch;
      std::string_view publisher;
    } read{&batch, s.pub->decl.name};
    auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
      auto& r = *static_cast<Read*>(user);
      r.batch->push_back(record_from(v, r.publisher));
      return 0;
    };
    if (db.exec_host(KEEL_TXN_NONE, s.select_sql, p, {sink, &read}, nullptr) < 0) {
      log->error("cannot read the outbox publisher={} subscriber={} error=\"{}\"; retrying in 1 s", s.pub->decl.name,
                 s.sub->ep.name, storage::last_error());
      after(std::chrono::seconds(1), [this, &s] { run_on(*s.sub, [this, &s] { drain_stream(s); }); });
      return;
    }
    for (auto& e : batch) {
      const auto attempt = s.attempt + 1;
      const keel_status st = s.sub->ep.deliver(e, attempt);
      if (st >= 0) {
        s.counters.delivered.add();
        s.cursor = e.seq;
        s.attempt = 0;
        continue;
      }
      if (st == KEEL_ERR_UNAVAILABLE) {  // the subscriber is stopping: resume after a restart
        static_cast<void>(persist_cursor(s));
        std::lock_guard lock(s.mutex);
        s.scheduled = false;
        return;
      }
      s.counters.failed.add();
      if (attempt >= cfg.max_attempts) {
        static_cast<void>(persist_cursor(s));
        std::string error;
        if (bury_durable(s, e, attempt, st, error) < 0) {
          log->error("cannot dead-letter event publisher={} subscriber={} seq={} error=\"{}\"; retrying in 1 s",
                     s.pub->decl.name, s.sub->ep.name, e.seq, error);
          after(std::chrono::seconds(1), [this, &s] { run_on(*s.sub, [this, &s] { drain_stream(s); }); });
          return;
        }
        s.counters.dead_lettered.add();
        s.attempt = 0;
        continue;
      }
      s.attempt = attempt;
      s.counters.retried.add();
      static_cast<void>(persist_cursor(s));
      after(backoff(attempt), [this, &s] { run_on(*s.sub, [this, &s] { drain_stream(s); }); });
      return;
    }
    // Save the cursor when the stream goes idle, or every batch / 100 ms while events keep
    // coming: a busy stream then costs one cursor write per many events, and a crash redelivers
    // at most that window (at-least-once).
    const bool more = batch.size() == cfg.batch;
    bool pending = false;
    {
      std::lock_guard lock(s.mutex);
      pending = s.wake;
    }
    if (!(more || pending) || s.cursor - s.persisted >= static_cast<std::int64_t>(cfg.batch) ||
        Clock::now() - s.persisted_at >= std::chrono::milliseconds(100))
      static_cast<void>(persist_cursor(s));
    sweep(*s.pub);
    if (more) {
      run_on(*s.sub, [this, &s] { drain_stream(s); });
      return;
    }
    bool again = false;
    {
      std::lock_guard lock(s.mutex);
      again = std::exchange(s.wake, false);
      if (!again) s.scheduled = false;
    }
    if (again) run_on(*s.sub, [this, &s] { drain_stream(s); });
  }

  /// Deletes delivered durable events older than the retention, at most every 10 s per publisher.
  void sweep(Pub& pub) {
    const auto now = unix_ns();
    auto last = pub.last_sweep_ns.load();
    if (now - last < 10'000'000'000 || !pub.last_sweep_ns.compare_exchange_strong(last, now)) return;
    std::int64_t min_cursor = std::numeric_limits<std::int64_t>::max();
    for (auto& s : pub.streams) min_cursor = std::min(min_cursor, s->persisted_seen.load());
    const keel_sql_param p[2] = {int_param(min_cursor), int_param(now - cfg.retention.count() * 1000000)};
    keel_sql_result r{};
    r.struct_size = sizeof r;
    if (pub.decl.database->exec_host(KEEL_TXN_NONE, "DELETE FROM _keel_outbox WHERE seq <= ?1 AND published_ns < ?2",
                                     p, {}, &r) >= 0 &&
        r.changes > 0)
      log->debug("outbox retention publisher={} deleted={}", pub.decl.name, r.changes);
  }

  keel_status publish_durable(Pub& pub, Topic& topic, const EventRecord& e, keel_txn txn, std::string& error) {
    auto& db = *pub.decl.database;
    const keel_sql_param p[8] = {bytes_param(e.event_id()),    bytes_param(e.topic()),
                                 bytes_param(e.payload(), KEEL_SQL_BLOB), bytes_param(e.content_type()),
                                 int_param(e.published_unix_ns), bytes_param(e.traceparent()),
                                 bytes_param(e.tracestate()), bytes_param(e.request_id())};
    const auto st = db.exec_host(txn,
                                 "INSERT INTO _keel_outbox (event_id, topic, payload, content_type, published_ns,"
                                 " traceparent, tracestate, request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                                 p, {}, nullptr);
    if (st < 0) {
      topic.refused.add();
      error = "outbox write failed: " + storage::last_error();
      return st;
    }
    topic.published.add();
    if (txn == KEEL_TXN_NONE) {
      wake_streams(pub);
      sweep(pub);  // also keeps the outbox of a publisher without subscribers bounded
    } else {
      db.notify_on_commit(txn);  // (no sweep here: this thread holds the writer in its transaction)
    }
    return KEEL_OK;
  }
};

// ---------------------------------------------------------------------------------------------

Bus::Bus(const config::EventsConfig& cfg, WorkerPool& pool, TimerQueue& timers)
    : impl_(std::make_unique<Impl>(cfg, pool, timers)) {}

Bus::~Bus() { stop(); }

void Bus::add_publisher(Publisher publisher) {
  auto& s = *impl_;
  auto pub = std::make_unique<Impl::Pub>();
  if (!publisher.durable.empty()) {
    if (publisher.database == nullptr)
      throw std::runtime_error("plugin '" + publisher.name + "' declares durable topics but has no database");
    auto& db = *publisher.database;
    std::string error;
    const auto st = in_transaction(db, error, [&](keel_txn txn) {
      // The schema is a script of the host's own tables: run it statement by statement in host mode.
      std::string_view rest = kOutboxSchema;
      keel_status rc = KEEL_OK;
      while (rc >= 0 && !rest.empty()) {
        const auto end = rest.find(';');
        const auto stmt = rest.substr(0, end);
        rest = end == std::string_view::npos ? std::string_view{} : rest.substr(end + 1);
        rc = db.exec_host(txn, stmt, {}, {}, nullptr);
      }
      return rc;
    });
    if (st < 0) throw std::runtime_error("plugin '" + publisher.name + "': cannot create the event outbox: " + error);
    Impl::Pub* raw = pub.get();
    db.set_commit_listener([this, raw] { impl_->wake_streams(*raw); });
  }
  for (const auto& t : publisher.topics) {
    auto topic = std::make_unique<Impl::Topic>();
    topic->name = t;
    topic->durable = std::find(publisher.durable.begin(), publisher.durable.end(), t) != publisher.durable.end();
    pub->topics.emplace(t, std::move(topic));
  }
  pub->decl = std::move(publisher);
  s.pubs.emplace(pub->decl.name, std::move(pub));
}

void Bus::add_subscriber(Endpoint endpoint) {
  auto sub = std::make_unique<Impl::Sub>();
  sub->ep = std::move(endpoint);
  impl_->subs.push_back(std::move(sub));
}

void Bus::start() {
  auto& s = *impl_;
  if (s.started) return;
  s.started = true;
  s.running.store(true);
  for (auto& [name, pub] : s.pubs) {
    for (auto& [topic_name, topic] : pub->topics) {
      for (auto& sub : s.subs) {
        const bool match = std::any_of(sub->ep.patterns.begin(), sub->ep.patterns.end(),
                                       [&](const std::string& p) { return topic_matches(p, topic_name); });
        if (match && !topic->durable) topic->subs.push_back(sub.get());
      }
    }
    // Durable streams: one per subscriber with at least one matching durable topic.
    for (auto& sub : s.subs) {
      auto stream = std::make_unique<Impl::Stream>();
      for (const auto& t : pub->decl.durable)
        if (std::any_of(sub->ep.patterns.begin(), sub->ep.patterns.end(),
                        [&](const std::string& p) { return topic_matches(p, t); }))
          stream->topics.push_back(t);
      if (stream->topics.empty()) continue;
      stream->pub = pub.get();
      stream->sub = sub.get();
      std::string in;
      for (const auto& t : stream->topics) in += (in.empty() ? "'" : ", '") + t + "'";  // topics are [a-z0-9_.]
      stream->select_sql = fmt::format(
          "SELECT {} FROM _keel_outbox WHERE seq > ?1 AND (target IS NULL OR target = ?2) AND topic IN ({})"
          " ORDER BY seq LIMIT ?3",
          kEventColumns, in);
      const keel_sql_param p[1] = {bytes_param(sub->ep.name)};
      std::int64_t cursor = 0;
      auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
        *static_cast<std::int64_t*>(user) = v[0].integer;
        return 1;
      };
      if (pub->decl.database->exec_host(KEEL_TXN_NONE,
                                        "SELECT delivered_seq FROM _keel_outbox_cursors WHERE subscriber = ?1", p,
                                        {sink, &cursor}, nullptr) < 0)
        s.log->error("cannot read the event cursor publisher={} subscriber={} error=\"{}\"; starting from the "
                     "beginning of the outbox",
                     name, sub->ep.name, storage::last_error());
      stream->cursor = stream->persisted = cursor;
      stream->persisted_seen.store(cursor);
      pub->streams.push_back(std::move(stream));
    }
  }
  s.log->info("event bus started publishers={} subscribers={}", s.pubs.size(), s.subs.size());
}

void Bus::begin_delivery() {
  auto& s = *impl_;
  if (!s.running.load() || s.delivering.exchange(true)) return;
  for (auto& sub : s.subs) s.kick_inbox(*sub);
  // Deliver what was committed but not delivered before the last stop or crash.
  for (auto& [name, pub] : s.pubs) s.wake_streams(*pub);
}

void Bus::resume_subscriber(std::string_view subscriber) {
  auto& s = *impl_;
  for (auto& [name, pub] : s.pubs)
    for (auto& stream : pub->streams)
      if (stream->sub->ep.name == subscriber) s.wake(*stream);
}

void Bus::stop(std::chrono::milliseconds drain) {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  s.delivering.store(false);
  std::unique_lock lock(s.jobs_mutex);
  for (auto id : s.pending_timers) s.timers.cancel(id);
  s.pending_timers.clear();
  if (!s.jobs_done.wait_for(lock, drain, [&] { return s.jobs == 0; }))
    s.log->warn("event deliveries still running after drain_ms={} jobs={}", drain.count(), s.jobs);
  // Queued jobs that did not run yet return at once (running is false); wait for them too, so
  // no job outlives the bus.
  s.jobs_done.wait(lock, [&] { return s.jobs == 0; });
  for (auto& sub : s.subs) {
    std::lock_guard l(sub->mutex);
    if (!sub->inbox.empty())
      s.log->warn("in-memory events dropped at stop subscriber={} count={}", sub->ep.name, sub->inbox.size());
  }
}

keel_status Bus::publish(std::string_view publisher, const keel_publish_args& args, keel_txn txn,
                         std::string_view request_id, std::string& error) {
  auto& s = *impl_;
  const auto pit = s.pubs.find(publisher);
  const auto topic_name = view(args.topic);
  Impl::Topic* topic = nullptr;
  if (pit != s.pubs.end()) {
    if (auto t = pit->second->topics.find(topic_name); t != pit->second->topics.end()) topic = t->second.get();
  }
  if (topic == nullptr) {
    if (pit != s.pubs.end()) pit->second->undeclared.add();
    error = "topic '" + std::string(topic_name) + "' is not in the manifest's events.publishes";
    return KEEL_ERR_PERMISSION_DENIED;
  }
  if (args.flags != 0) {
    topic->refused.add();
    error = "publish flags must be 0";
    return KEEL_ERR_INVALID_ARGUMENT;
  }
  if (txn != KEEL_TXN_NONE && !topic->durable) {
    topic->refused.add();
    error = "topic '" + topic->name + "' is in-memory: only durable topics (events.durable) can be published in a "
            "transaction; publish it after the commit";
    return KEEL_ERR_INVALID_ARGUMENT;
  }
  const auto now = unix_ns();
  char id[36];
  write_event_id(now, id);
  const EventRecord::Parts parts{std::string_view(id, sizeof id), topic->name,          view(args.payload),
                                 view(args.content_type),         pit->second->decl.name, view(args.traceparent),
                                 view(args.tracestate),           request_id};
  // A durable event only needs the outbox: it is delivered after the next start if the bus is
  // stopped. An in-memory one needs a running bus.
  if (topic->durable) return s.publish_durable(*pit->second, *topic, EventRecord(parts, now, 0), txn, error);
  if (!s.running.load(std::memory_order_acquire)) {
    error = "the event bus is not running (stopping, or not started yet)";
    return KEEL_ERR_UNAVAILABLE;
  }
  return s.publish_memory(*topic, parts, now, error);
}

std::vector<TopicStats> Bus::topics() const {
  std::vector<TopicStats> out;
  for (const auto& [name, pub] : impl_->pubs) {
    for (const auto& [t, topic] : pub->topics)
      out.push_back({name, t, topic->durable, topic->published.get(), topic->refused.get()});
    if (const auto n = pub->undeclared.get(); n > 0) out.push_back({name, "", false, 0, n});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return std::tie(a.publisher, a.topic) < std::tie(b.publisher, b.topic); });
  return out;
}

std::vector<SubscriptionStats> Bus::subscriptions() const {
  auto& s = *impl_;
  std::vector<SubscriptionStats> out;
  for (const auto& sub : s.subs) {
    SubscriptionStats st;
    st.subscriber = sub->ep.name;
    st.delivered = sub->counters.delivered.get();
    st.failed = sub->counters.failed.get();
    st.retried = sub->counters.retried.get();
    st.dead_lettered = sub->counters.dead_lettered.get();
    st.queued = sub->reserved.load(std::memory_order_relaxed);
    out.push_back(std::move(st));
  }
  for (const auto& [name, pub] : s.pubs) {
    for (const auto& stream : pub->streams) {
      SubscriptionStats st;
      st.publisher = name;
      st.subscriber = stream->sub->ep.name;
      st.delivered = stream->counters.delivered.get();
      st.failed = stream->counters.failed.get();
      st.retried = stream->counters.retried.get();
      st.dead_lettered = stream->counters.dead_lettered.get();
      // Lag: committed events for this subscriber after its saved cursor.
      std::string sql = stream->select_sql;
      sql.replace(sql.find(kEventColumns), kEventColumns.size(), "count(*)");
      sql = sql.substr(0, sql.find(" ORDER BY"));
      const keel_sql_param p[2] = {int_param(stream->persisted_seen.load()), bytes_param(stream->sub->ep.name)};
      std::int64_t lag = 0;
      auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
        *static_cast<std::int64_t*>(user) = v[0].integer;
        return 1;
      };
      if (pub->decl.database->exec_host(KEEL_TXN_NONE, sql, p, {sink, &lag}, nullptr) >= 0) st.lag = lag;
      out.push_back(std::move(st));
    }
  }
  return out;
}

std::vector<DeadLetter> Bus::dead_letters(std::size_t limit) const {
  auto& s = *impl_;
  std::vector<DeadLetter> out;
  {
    std::lock_guard lock(s.dead_mutex);
    for (const auto& d : s.dead) {
      if (out.size() >= limit) break;
      out.push_back(d);
    }
  }
  for (const auto& [name, pub] : s.pubs) {
    if (pub->decl.durable.empty()) continue;
    struct Ctx {
      std::vector<DeadLetter>* out;
      const std::string* publisher;
    } ctx{&out, &name};
    auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
      auto& c = *static_cast<Ctx*>(user);
      DeadLetter d;
      d.publisher = *c.publisher;
      d.subscriber = text(v[0]);
      d.event = record_from(v + 1, *c.publisher);
      d.seq = d.event.seq;
      d.durable = true;
      d.attempts = static_cast<std::uint32_t>(v[10].integer);
      d.last_status = static_cast<keel_status>(v[11].integer);
      d.failed_unix_ms = v[12].integer;
      c.out->push_back(std::move(d));
      return 0;
    };
    const keel_sql_param p[1] = {int_param(static_cast<std::int64_t>(limit))};
    static_cast<void>(pub->decl.database->exec_host(
        KEEL_TXN_NONE,
        fmt::format("SELECT subscriber, {}, attempts, last_status, failed_ms FROM _keel_dead_letters ORDER BY failed_ms"
                    " LIMIT ?1",
                    kEventColumns),
        p, {sink, &ctx}, nullptr));
  }
  if (out.size() > limit) out.resize(limit);
  return out;
}

keel_status Bus::resubmit(std::string_view publisher, std::string_view subscriber, std::int64_t seq, bool durable) {
  auto& s = *impl_;
  if (!durable) {
    const auto target = std::find_if(s.subs.begin(), s.subs.end(), [&](const auto& x) { return x->ep.name == subscriber; });
    if (target == s.subs.end()) return KEEL_ERR_NOT_FOUND;
    DeadLetter d;
    {
      std::lock_guard lock(s.dead_mutex);
      auto it = std::find_if(s.dead.begin(), s.dead.end(), [&](const DeadLetter& x) {
        return x.publisher == publisher && x.subscriber == subscriber && x.seq == seq;
      });
      if (it == s.dead.end()) return KEEL_ERR_NOT_FOUND;
      d = std::move(*it);
      s.dead.erase(it);
    }
    auto& sub = **target;
    sub.reserved.fetch_add(1);
    {
      std::lock_guard lock(sub.mutex);
      sub.inbox.push_back(std::make_shared<const EventRecord>(std::move(d.event)));
    }
    s.kick_inbox(sub);
    return KEEL_OK;
  }
  const auto pit = s.pubs.find(publisher);
  if (pit == s.pubs.end() || pit->second->decl.durable.empty()) return KEEL_ERR_NOT_FOUND;
  auto& db = *pit->second->decl.database;
  std::string error;
  const auto st = in_transaction(db, error, [&](keel_txn txn) {
    const keel_sql_param p[2] = {bytes_param(subscriber), int_param(seq)};
    keel_sql_result r{};
    r.struct_size = sizeof r;
    // The same event (same id) again, addressed to this subscriber only, at the end of the outbox.
    auto rc = db.exec_host(txn,
                           "INSERT INTO _keel_outbox (event_id, topic, payload, content_type, published_ns, traceparent,"
                           " tracestate, request_id, target) SELECT event_id, topic, payload, content_type, published_ns,"
                           " traceparent, tracestate, request_id, subscriber FROM _keel_dead_letters"
                           " WHERE subscriber = ?1 AND seq = ?2",
                           p, {}, &r);
    if (rc >= 0 && r.changes == 0) rc = KEEL_ERR_NOT_FOUND;
    if (rc >= 0)
      rc = db.exec_host(txn, "DELETE FROM _keel_dead_letters WHERE subscriber = ?1 AND seq = ?2", p, {}, nullptr);
    return rc;
  });
  if (st < 0) {
    if (st != KEEL_ERR_NOT_FOUND) s.log->warn("dead letter not resubmitted publisher={} subscriber={} seq={} error=\"{}\"",
                                              publisher, subscriber, seq, error);
    return st;
  }
  s.log->info("dead letter resubmitted publisher={} subscriber={} seq={}", publisher, subscriber, seq);
  s.wake_streams(*pit->second);
  return KEEL_OK;
}

keel_status Bus::discard(std::string_view publisher, std::string_view subscriber, std::int64_t seq, bool durable) {
  auto& s = *impl_;
  if (!durable) {
    std::lock_guard lock(s.dead_mutex);
    auto it = std::find_if(s.dead.begin(), s.dead.end(), [&](const DeadLetter& x) {
      return x.publisher == publisher && x.subscriber == subscriber && x.seq == seq;
    });
    if (it == s.dead.end()) return KEEL_ERR_NOT_FOUND;
    s.dead.erase(it);
    return KEEL_OK;
  }
  const auto pit = s.pubs.find(publisher);
  if (pit == s.pubs.end() || pit->second->decl.durable.empty()) return KEEL_ERR_NOT_FOUND;
  const keel_sql_param p[2] = {bytes_param(subscriber), int_param(seq)};
  keel_sql_result r{};
  r.struct_size = sizeof r;
  const auto st = pit->second->decl.database->exec_host(
      KEEL_TXN_NONE, "DELETE FROM _keel_dead_letters WHERE subscriber = ?1 AND seq = ?2", p, {}, &r);
  if (st < 0) return st;
  if (r.changes == 0) return KEEL_ERR_NOT_FOUND;
  s.log->info("dead letter discarded publisher={} subscriber={} seq={}", publisher, subscriber, seq);
  return KEEL_OK;
}

}  // namespace keel::host::events
