#include "events/bus.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <limits>
#include <mutex>
#include <new>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <thread>
#include <tuple>
#include <unordered_map>

#include <fmt/format.h>

#include "abi/bytes.hpp"
#include "abi/status.hpp"
#include "common/block_pool.hpp"
#include "common/published.hpp"
#include "common/timer_queue.hpp"
#include "common/worker_pool.hpp"
#include "abi/topic.hpp"
#include "observability/hex.hpp"
#include "observability/log.hpp"
#include "observability/trace.hpp"
#include "storage/database.hpp"

namespace keel::host::events {
namespace {

using Clock = std::chrono::steady_clock;

using abi::view;
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
    " PRIMARY KEY (subscriber, seq));"
    // Every topic ever durable in this outbox: streams select them, so the events of a topic a
    // reload stopped declaring (or made in-memory) are still delivered.
    "CREATE TABLE IF NOT EXISTS _keel_outbox_topics (topic TEXT PRIMARY KEY)";

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

// The pools of event blocks: up to 256 and up to 1024 bytes, 8 MiB each at most. Never
// destroyed: a record may be released by a thread still running while statics are destroyed.
// Made while statics are initialised, before main(): no record may be made before then.
constexpr std::array<std::size_t, 2> kPoolBlockSizes{256, 1024};
BlockPool* const event_pools[2] = {new BlockPool(kPoolBlockSizes[0], 32768), new BlockPool(kPoolBlockSizes[1], 8192)};

}  // namespace

EventRecord::EventRecord(const Parts& parts, std::int64_t published, std::int64_t sequence)
    : published_unix_ns(published), seq(sequence) {
  // A traceparent is kept in its version-00 form of 55 characters (a later version's extra
  // fields dropped), and an invalid one is dropped with its tracestate (W3C): every record's is
  // valid and bounded, or empty, so a delivery may hand it on unchecked.
  const bool traced = observability::valid_traceparent(parts.traceparent);
  char version00[observability::Span::kLength];
  std::string_view traceparent;
  if (traced) {
    traceparent = parts.traceparent.substr(0, sizeof version00);
    if (!traceparent.starts_with("00")) {
      std::memcpy(version00, traceparent.data(), sizeof version00);
      version00[0] = version00[1] = '0';
      traceparent = std::string_view(version00, sizeof version00);
    }
  }
  const std::array<std::string_view, 8> fields{parts.event_id,
                                               parts.topic,
                                               parts.payload,
                                               parts.content_type,
                                               parts.publisher,
                                               traceparent,
                                               traced ? parts.tracestate : std::string_view{},
                                               parts.request_id};
  std::size_t total = 0;
  for (const auto f : fields) total += f.size();
  if (total > UINT32_MAX) throw std::length_error("event larger than 4 GiB");
  const std::size_t size = sizeof(Block) + total;
  const int pool = size <= kPoolBlockSizes[0] ? 0 : size <= kPoolBlockSizes[1] ? 1 : -1;
  const BlockPool::Block pooled = pool >= 0 ? event_pools[pool]->take() : BlockPool::Block{};
  block_ = new (pooled.data != nullptr ? pooled.data : ::operator new(size)) Block;
  if (pooled.data != nullptr) {
    block_->pool = static_cast<std::uint8_t>(pool + 1);
    block_->pool_index = pooled.index;
  }
  char* out = reinterpret_cast<char*>(block_ + 1);
  std::uint32_t at = 0;
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (!fields[i].empty()) std::memcpy(out + at, fields[i].data(), fields[i].size());
    at += static_cast<std::uint32_t>(fields[i].size());
    block_->end[i] = at;
  }
}

EventRecord::EventRecord(const EventRecord& other) noexcept
    : published_unix_ns(other.published_unix_ns), seq(other.seq), block_(other.block_) {
  if (block_ != nullptr) block_->refs.fetch_add(1, std::memory_order_relaxed);
}

EventRecord::EventRecord(EventRecord&& other) noexcept
    : published_unix_ns(other.published_unix_ns), seq(other.seq), block_(std::exchange(other.block_, nullptr)) {}

EventRecord& EventRecord::operator=(const EventRecord& other) noexcept {
  if (this != &other) *this = EventRecord(other);
  return *this;
}

EventRecord& EventRecord::operator=(EventRecord&& other) noexcept {
  if (this != &other) {
    release();
    published_unix_ns = other.published_unix_ns;
    seq = other.seq;
    block_ = std::exchange(other.block_, nullptr);
  }
  return *this;
}

EventRecord::~EventRecord() { release(); }

void EventRecord::release() noexcept {
  // The last handle frees the block; acquire so every other handle's reads come before it.
  if (block_ != nullptr && block_->refs.fetch_sub(1, std::memory_order_acq_rel) == 1) {
    const std::uint8_t pool = block_->pool;
    const std::uint32_t index = block_->pool_index;
    block_->~Block();
    if (pool != 0) {
      event_pools[pool - 1]->give(index);
    } else {
      ::operator delete(block_);
    }
  }
  block_ = nullptr;
}

void write_event_id(std::int64_t now_unix_ns, char (&out)[36]) {
  const auto ms = static_cast<std::uint64_t>(now_unix_ns / 1000000);
  const std::uint64_t r1 = observability::random_bits(), r2 = observability::random_bits();
  // UUIDv7: 48-bit Unix milliseconds, version 7, 12 random bits, variant 10, 62 random bits.
  const std::uint64_t hi = (ms << 16) | 0x7000u | (r1 & 0x0FFFu);
  const std::uint64_t lo = (r2 & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;
  // 8-4-4-4-12 lowercase hex digits: the 32 digits at once, then placed around the dashes.
  char digits[32];
  observability::write_hex(digits, hi, 8);
  observability::write_hex(digits + 16, lo, 8);
  std::memcpy(out, digits, 8);
  out[8] = '-';
  std::memcpy(out + 9, digits + 8, 4);
  out[13] = '-';
  std::memcpy(out + 14, digits + 12, 4);
  out[18] = '-';
  std::memcpy(out + 19, digits + 16, 4);
  out[23] = '-';
  std::memcpy(out + 24, digits + 20, 12);
}

// ---------------------------------------------------------------------------------------------

struct Bus::Impl {
  Impl(const config::EventsConfig& c, WorkerPool& p, TimerQueue& t)
      : cfg(c), pool(p), timers(t), log(observability::logger("events")) {}

  const config::EventsConfig& cfg;
  WorkerPool& pool;
  TimerQueue& timers;
  std::shared_ptr<spdlog::logger> log;

  // --- subscribers and their in-memory inboxes (one per subscriber name, for the bus's life) ---
  struct Sub {
    Endpoint ep;  // patterns change under `membership`; name, deliver and execute never
    std::mutex mutex;
    std::deque<EventRecord> inbox;
    std::atomic<std::uint32_t> reserved{0};  // inbox size plus publishes about to push
    bool scheduled = false;                  // a drain is queued, running or waiting to retry
    std::uint32_t attempt = 0;               // failed deliveries of the inbox head
    DeliveryCounters counters;
  };

  // --- publishers, their topics and durable streams ---
  struct Pub;
  struct Topic {  // counters of one declared topic; kept when the declaration goes
    std::string name;
    std::atomic<bool> durable{false};  // as declared last
    Counter published, refused;
  };

  /// One durable (publisher, subscriber) pair: the subscriber's matching durable topics.
  struct Stream {
    Pub* pub = nullptr;
    Sub* sub = nullptr;
    std::mutex mutex;
    // Set by rebuild() under `mutex`; a drain copies them when it starts.
    bool active = false;                       // the subscriber matches durable topics here
    std::string select_sql;                    // the next batch after a cursor
    std::shared_ptr<storage::Database> db;     // the publisher's outbox
    bool scheduled = false;
    bool wake = false;
    std::int64_t cursor = 0;     // delivered; only the drain job touches it
    std::int64_t persisted = 0;  // last value written to _keel_outbox_cursors
    Clock::time_point persisted_at{};
    std::atomic<std::int64_t> persisted_seen{0};
    std::uint32_t attempt = 0;
    DeliveryCounters counters;
  };

  // Group commit (docs/events.md "Publishing"): durable events published outside a
  // transaction at the same time by several threads share one outbox transaction. Each
  // publisher queues its row; whoever finds no commit in progress takes every queued row of the
  // same database, writes them in one transaction and hands each publisher its status. A publish
  // still returns only once its row is committed.
  struct GroupEntry {
    const EventRecord* event;
    storage::Database* database;
    keel_status status = KEEL_OK;
    std::string error;  // the failure's message (storage::last_error() is per thread)
    bool finished = false;
    bool alone = false;  // the shared transaction failed: write this row by itself
  };
  struct OutboxGroup {
    std::mutex mutex;
    std::condition_variable finished;
    std::vector<GroupEntry*> queued;
    bool writing = false;
  };

  struct Pub {
    std::string name;
    std::vector<std::string> topics, durable;    // as declared now
    std::shared_ptr<storage::Database> database;  // the attached outbox; null: none
    std::vector<std::string> known_durable;       // _keel_outbox_topics: every topic ever durable here
    StringMap<std::unique_ptr<Topic>> topic_stats;
    StringMap<std::unique_ptr<Stream>> streams;   // by subscriber
    std::atomic<std::int64_t> last_sweep_ns{0};
    Counter undeclared;  // publishes of topics not in the manifest, refused
    OutboxGroup group;   // durable publishes outside a transaction, committed together
  };

  // Everything the bus ever knew, under `membership`; elements are never destroyed before the
  // bus, so jobs and the fan-out table may point at them.
  mutable std::mutex membership;
  std::vector<std::unique_ptr<Sub>> subs;
  StringMap<std::unique_ptr<Pub>> pubs;

  /// Who receives what, rebuilt under `membership` on every change and swapped in at once.
  struct Routing {
    struct TopicRoute {
      Topic* stats = nullptr;
      bool durable = false;
      std::vector<Sub*> subs;  // in-memory fan-out
    };
    struct PubRoute {
      Pub* pub = nullptr;
      StringMap<TopicRoute> topics;
      std::shared_ptr<storage::Database> database;
      std::vector<Stream*> streams;  // active
    };
    StringMap<PubRoute> pubs;
    std::vector<Sub*> subs;  // with patterns
  };
  Published<Routing> routing{std::make_shared<const Routing>()};

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

  // --- membership ---

  Sub* find_sub(std::string_view name) const {
    const auto it = std::find_if(subs.begin(), subs.end(), [&](const auto& s) { return s->ep.name == name; });
    return it == subs.end() ? nullptr : it->get();
  }

  /// Prepares `db`'s outbox for `pub` (tables, the topics ever durable there, the commit
  /// listener) and returns the known durable topics; nullopt when `db` has no outbox and none
  /// is needed. Throws std::runtime_error when the tables cannot be written.
  std::optional<std::vector<std::string>> prepare_outbox(const std::string& pub, storage::Database& db,
                                                         const std::vector<std::string>& durable) {
    auto table_exists = [&](std::string_view table) {
      bool found = false;
      if (db.has_table(table, found) < 0)
        throw std::runtime_error("plugin '" + pub + "': cannot read its database schema: " + storage::last_error());
      return found;
    };
    const bool had_outbox = table_exists("_keel_outbox");
    if (!had_outbox && durable.empty()) return std::nullopt;
    const bool had_topics = had_outbox && table_exists("_keel_outbox_topics");
    std::vector<std::string> known;
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
      // An outbox written before the topics were recorded: its rows name them.
      if (rc >= 0 && had_outbox && !had_topics)
        rc = db.exec_host(txn, "INSERT INTO _keel_outbox_topics (topic) SELECT DISTINCT topic FROM _keel_outbox"
                          " ON CONFLICT (topic) DO NOTHING",
                          {}, {}, nullptr);
      for (const auto& t : durable) {
        const keel_sql_param p[1] = {bytes_param(t)};
        if (rc >= 0) rc = db.exec_host(txn, "INSERT INTO _keel_outbox_topics (topic) VALUES (?1) ON CONFLICT (topic) DO NOTHING", p, {}, nullptr);
      }
      auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
        static_cast<std::vector<std::string>*>(user)->push_back(text(v[0]));
        return 0;
      };
      if (rc >= 0)
        rc = db.exec_host(txn, "SELECT topic FROM _keel_outbox_topics ORDER BY topic", {}, {sink, &known}, nullptr);
      return rc;
    });
    if (st < 0) throw std::runtime_error("plugin '" + pub + "': cannot prepare the event outbox: " + error);
    return known;
  }

  Stream& stream_for(Pub& pub, Sub& sub, const std::shared_ptr<storage::Database>& db) {
    auto& slot = pub.streams[sub.ep.name];
    if (slot) return *slot;
    slot = std::make_unique<Stream>();
    slot->pub = &pub;
    slot->sub = &sub;
    const keel_sql_param p[1] = {bytes_param(sub.ep.name)};
    std::int64_t cursor = 0;
    auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
      *static_cast<std::int64_t*>(user) = v[0].integer;
      return 1;
    };
    if (db->exec_host(KEEL_TXN_NONE, "SELECT delivered_seq FROM _keel_outbox_cursors WHERE subscriber = ?1", p,
                      {sink, &cursor}, nullptr) < 0)
      log->error("cannot read the event cursor publisher={} subscriber={} error=\"{}\"; starting from the "
                 "beginning of the outbox",
                 pub.name, sub.ep.name, storage::last_error());
    slot->cursor = slot->persisted = cursor;
    slot->persisted_seen.store(cursor);
    return *slot;
  }

  /// Builds the fan-out table from the members and swaps it in; then wakes every active stream
  /// (one new to its subscriber or with new topics may have a backlog). Under `membership`.
  void rebuild() {
    auto next = std::make_shared<Routing>();
    for (const auto& sub : subs)
      if (!sub->ep.patterns.empty()) next->subs.push_back(sub.get());
    for (auto& [name, pub] : pubs) {
      auto& route = next->pubs[name];
      route.pub = pub.get();
      route.database = pub->database;
      for (const auto& t : pub->topics) {
        const bool durable = std::find(pub->durable.begin(), pub->durable.end(), t) != pub->durable.end();
        auto& stats = pub->topic_stats[t];
        if (!stats) {
          stats = std::make_unique<Topic>();
          stats->name = t;
        }
        stats->durable.store(durable, std::memory_order_relaxed);
        Routing::TopicRoute r{stats.get(), durable, {}};
        if (!durable)
          for (auto* sub : next->subs)
            if (!sub->ep.relay && abi::matches_any(sub->ep.patterns, t)) r.subs.push_back(sub);
        route.topics.emplace(t, std::move(r));
      }
      for (const auto& sub : subs) {
        std::string in;  // the known durable topics it matches; topics are [a-z0-9_.]
        if (pub->database)
          for (const auto& t : pub->known_durable)
            if (abi::matches_any(sub->ep.patterns, t)) in += (in.empty() ? "'" : ", '") + t + "'";
        const auto existing = pub->streams.find(sub->ep.name);
        if (in.empty()) {
          if (existing != pub->streams.end()) {
            std::lock_guard lock(existing->second->mutex);
            existing->second->active = false;
          }
          continue;
        }
        auto& stream = stream_for(*pub, *sub, pub->database);
        {
          std::lock_guard lock(stream.mutex);
          stream.active = true;
          stream.db = pub->database;
          stream.select_sql = fmt::format(
              "SELECT {} FROM _keel_outbox WHERE seq > ?1 AND (target IS NULL OR target = ?2) AND topic IN ({})"
              " ORDER BY seq LIMIT ?3",
              kEventColumns, in);
        }
        route.streams.push_back(&stream);
      }
    }
    routing.publish(next);
    for (const auto& [name, route] : next->pubs) wake_streams(route);
  }

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
    std::vector<EventRecord> batch;
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
      const auto& e = batch[i];
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
                 e.topic(), e.event_id(), attempt, abi::status_name(st));
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
              attempts, abi::status_name(st));
    if (cfg.dead_letter_capacity == 0) return;
    std::lock_guard lock(dead_mutex);
    DeadLetter d{std::string(e.publisher()), subscriber, next_dead++, false, e, attempts, st,
                 unix_ns() / 1000000};
    dead.push_back(std::move(d));
    while (dead.size() > cfg.dead_letter_capacity) dead.pop_front();
  }

  keel_status publish_memory(const Routing::TopicRoute& topic, const EventRecord::Parts& parts, std::int64_t now,
                             std::string& error) {
    // Reserve a slot in every inbox first, so the event goes to all subscribers or to none.
    for (std::size_t i = 0; i < topic.subs.size(); ++i) {
      if (topic.subs[i]->reserved.fetch_add(1, std::memory_order_relaxed) >= cfg.queue_capacity) {
        for (std::size_t j = 0; j <= i; ++j) topic.subs[j]->reserved.fetch_sub(1, std::memory_order_relaxed);
        topic.stats->refused.add();
        error = "subscriber '" + topic.subs[i]->ep.name + "' has " + std::to_string(cfg.queue_capacity) +
                " events waiting ([events] queue_capacity); retry later";
        return KEEL_ERR_BUSY;
      }
    }
    topic.stats->published.add();
    auto* other_hosts = remote.load(std::memory_order_acquire);
    if (topic.subs.empty() && other_hosts == nullptr) return KEEL_OK;
    const EventRecord event(parts, now, 0);
    for (auto* sub : topic.subs) push(*sub, event);
    if (other_hosts != nullptr) {
      std::vector<std::string> here;
      here.reserve(topic.subs.size());
      for (const auto* sub : topic.subs) here.push_back(sub->ep.name);
      other_hosts->published(event, here);
    }
    return KEEL_OK;
  }

  // Queues `e` in `sub`'s inbox (a slot is reserved already) and schedules a drain if needed.
  void push(Sub& sub, const EventRecord& e) {
    bool schedule = false;
    {
      // `delivering` is read under the inbox lock: begin_delivery() sets it before it checks
      // each inbox under the same lock, so an event is never left unscheduled.
      std::lock_guard lock(sub.mutex);
      sub.inbox.push_back(e);
      if (!sub.scheduled && delivering.load(std::memory_order_acquire)) schedule = sub.scheduled = true;
    }
    if (schedule) schedule_inbox(sub);
  }

  std::atomic<RemoteEvents*> remote{nullptr};

  // --- durable delivery ---

  void wake_streams(const Routing::PubRoute& route) {
    for (auto* s : route.streams) wake(*s);
  }

  /// Wakes the streams of the publisher named `name` (its commit listener: any thread).
  void wake_publisher(std::string_view name) {
    const auto r = routing.load();  // owned: this runs inside a plugin's commit, at any depth
    if (const auto it = r->pubs.find(name); it != r->pubs.end()) wake_streams(it->second);
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

  keel_status persist_cursor(Stream& s, storage::Database& db) {
    if (s.cursor == s.persisted) return KEEL_OK;
    const keel_sql_param p[2] = {bytes_param(s.sub->ep.name), int_param(s.cursor)};
    const auto st = db.exec_host(KEEL_TXN_NONE, kSaveCursor, p, {}, nullptr);
    if (st >= 0) {
      s.persisted = s.cursor;
      s.persisted_at = Clock::now();
      s.persisted_seen.store(s.cursor, std::memory_order_relaxed);
    } else {
      log->warn("event cursor not saved publisher={} subscriber={} seq={} error=\"{}\" (events after the last saved "
                "cursor will be delivered again)",
                s.pub->name, s.sub->ep.name, s.cursor, storage::last_error());
    }
    return st;
  }

  /// Moves a durable event that exhausted its attempts to the dead letters and past the cursor,
  /// in one transaction.
  keel_status bury_durable(Stream& s, storage::Database& db, const EventRecord& e, std::uint32_t attempts,
                           keel_status status, std::string& error) {
    const auto st = in_transaction(db, error, [&](keel_txn txn) {
      const keel_sql_param p[6] = {bytes_param(s.sub->ep.name), int_param(e.seq), int_param(attempts),
                                   int_param(status), int_param(unix_ns() / 1000000), int_param(e.seq)};
      auto rc = db.exec_host(txn,
                             "INSERT INTO _keel_dead_letters (subscriber, seq, event_id, topic, payload,"
                             " content_type, published_ns, traceparent, tracestate, request_id, attempts, last_status,"
                             " failed_ms) SELECT ?1, seq, event_id, topic, payload, content_type, published_ns,"
                             " traceparent, tracestate, request_id, ?3, ?4, ?5 FROM _keel_outbox WHERE seq = ?6"
                             " ON CONFLICT (subscriber, seq) DO UPDATE SET attempts = excluded.attempts,"
                             " last_status = excluded.last_status, failed_ms = excluded.failed_ms",
                             std::span<const keel_sql_param>(p, 6), {}, nullptr);
      const keel_sql_param c[2] = {bytes_param(s.sub->ep.name), int_param(e.seq)};
      if (rc >= 0) rc = db.exec_host(txn, kSaveCursor, c, {}, nullptr);
      return rc;
    });
    if (st < 0) return st;
    s.cursor = s.persisted = e.seq;
    s.persisted_seen.store(e.seq, std::memory_order_relaxed);
    log->warn("event dead-lettered publisher={} subscriber={} topic={} id={} seq={} attempts={} status={}",
              s.pub->name, s.sub->ep.name, e.topic(), e.event_id(), e.seq, attempts, abi::status_name(status));
    return KEEL_OK;
  }

  void drain_later(Stream& s, std::chrono::milliseconds delay) {
    after(delay, [this, &s] { run_on(*s.sub, [this, &s] { drain_stream(s); }); });
  }

  void drain_stream(Stream& s) {
    std::string select_sql;
    std::shared_ptr<storage::Database> db;
    {
      std::lock_guard lock(s.mutex);
      s.wake = false;
      if (!s.active) {  // its subscriber no longer matches: the cursor stays where it is
        s.scheduled = false;
        return;
      }
      select_sql = s.select_sql;
      db = s.db;
    }
    std::vector<EventRecord> batch;
    const keel_sql_param p[3] = {int_param(s.cursor), bytes_param(s.sub->ep.name),
                                 int_param(static_cast<std::int64_t>(cfg.batch))};
    struct Read {
      std::vector<EventRecord>* batch;
      std::string_view publisher;
    } read{&batch, s.pub->name};
    auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
      auto& r = *static_cast<Read*>(user);
      r.batch->push_back(record_from(v, r.publisher));
      return 0;
    };
    if (db->exec_host(KEEL_TXN_NONE, select_sql, p, {sink, &read}, nullptr) < 0) {
      log->error("cannot read the outbox publisher={} subscriber={} error=\"{}\"; retrying in 1 s", s.pub->name,
                 s.sub->ep.name, storage::last_error());
      drain_later(s, std::chrono::seconds(1));
      return;
    }
    for (std::size_t i = 0; i < batch.size();) {
      auto attempt = s.attempt + 1;
      std::size_t taken = 0;
      keel_status st = KEEL_OK;
      if (s.sub->ep.deliver_batch) {
        std::tie(taken, st) = s.sub->ep.deliver_batch(std::span<const EventRecord>(batch).subspan(i), attempt);
        taken = std::min(taken, batch.size() - i);
      } else if (st = s.sub->ep.deliver(batch[i], attempt); st >= 0) {
        taken = 1;
      }
      if (taken > 0) {
        s.counters.delivered.add(taken);
        s.cursor = batch[i + taken - 1].seq;
        s.attempt = 0;
        attempt = 1;  // the first event not taken has had this one attempt
        i += taken;
        if (i == batch.size() || st >= 0) continue;
      } else if (st >= 0) {
        st = KEEL_ERR_INTERNAL;  // a relay that took nothing and named no reason
      }
      const EventRecord& e = batch[i];
      if (st == KEEL_ERR_UNAVAILABLE) {  // the subscriber is stopping: resume after a restart
        static_cast<void>(persist_cursor(s, *db));
        std::lock_guard lock(s.mutex);
        s.scheduled = false;
        return;
      }
      s.counters.failed.add();
      if (attempt >= cfg.max_attempts) {
        static_cast<void>(persist_cursor(s, *db));
        std::string error;
        if (bury_durable(s, *db, e, attempt, st, error) < 0) {
          log->error("cannot dead-letter event publisher={} subscriber={} seq={} error=\"{}\"; retrying in 1 s",
                     s.pub->name, s.sub->ep.name, e.seq, error);
          drain_later(s, std::chrono::seconds(1));
          return;
        }
        s.counters.dead_lettered.add();
        s.attempt = 0;
        ++i;
        continue;
      }
      s.attempt = attempt;
      s.counters.retried.add();
      static_cast<void>(persist_cursor(s, *db));
      drain_later(s, backoff(attempt));
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
      static_cast<void>(persist_cursor(s, *db));
    sweep(*s.pub, *db);
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
  /// Delivered means: by every active stream of the publisher (a stream whose subscriber left
  /// does not hold the outbox back).
  void sweep(Pub& pub, storage::Database& db) {
    const auto now = unix_ns();
    auto last = pub.last_sweep_ns.load();
    if (now - last < 10'000'000'000 || !pub.last_sweep_ns.compare_exchange_strong(last, now)) return;
    const auto r = routing.load();
    const auto route = r->pubs.find(pub.name);
    if (route == r->pubs.end() || route->second.database.get() != &db) return;
    std::int64_t min_cursor = std::numeric_limits<std::int64_t>::max();
    for (auto* s : route->second.streams) min_cursor = std::min(min_cursor, s->persisted_seen.load());
    const keel_sql_param p[2] = {int_param(min_cursor), int_param(now - cfg.retention.count() * 1000000)};
    keel_sql_result res{};
    res.struct_size = sizeof res;
    if (db.exec_host(KEEL_TXN_NONE, "DELETE FROM _keel_outbox WHERE seq <= ?1 AND published_ns < ?2", p, {}, &res) >= 0 &&
        res.changes > 0)
      log->debug("outbox retention publisher={} deleted={}", pub.name, res.changes);
  }

  static constexpr std::string_view kOutboxInsert =
      "INSERT INTO _keel_outbox (event_id, topic, payload, content_type, published_ns, traceparent, tracestate,"
      " request_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)";

  static keel_status append_outbox(storage::Database& db, keel_txn txn, const EventRecord& e) {
    const keel_sql_param p[8] = {bytes_param(e.event_id()),    bytes_param(e.topic()),
                                 bytes_param(e.payload(), KEEL_SQL_BLOB), bytes_param(e.content_type()),
                                 int_param(e.published_unix_ns), bytes_param(e.traceparent()),
                                 bytes_param(e.tracestate()), bytes_param(e.request_id())};
    return db.append_in_commit_order(txn, "_keel_outbox", kOutboxInsert, p);
  }

  /// Writes the rows of `batch` (one database): one row on its own, several in one transaction.
  /// When the shared transaction fails, every row is marked to be written by its own publisher,
  /// which then gets its own row's status (and its own deadline).
  static void write_group(const std::vector<GroupEntry*>& batch) {
    auto& db = *batch.front()->database;
    if (batch.size() == 1) {
      auto& only = *batch.front();
      only.status = append_outbox(db, KEEL_TXN_NONE, *only.event);
      if (only.status < 0) only.error = storage::last_error();
      return;
    }
    std::string error;
    const auto st = in_transaction(db, error, [&](keel_txn txn) {
      for (const auto* entry : batch)
        if (const auto rc = append_outbox(db, txn, *entry->event); rc < 0) return rc;
      return KEEL_OK;
    });
    for (auto* entry : batch) entry->alone = st < 0;
  }

  /// Commits `e` outside a transaction, with whatever other threads publish to the same outbox
  /// meanwhile; returns its status once its row is committed (or failed).
  keel_status publish_grouped(Pub& pub, storage::Database& db, const EventRecord& e, std::string& error) {
    GroupEntry mine{&e, &db, KEEL_OK, {}, false, false};
    auto& g = pub.group;
    std::unique_lock lock(g.mutex);
    g.queued.push_back(&mine);
    // Out of memory while taking a batch: this row leaves the queue before its frame does.
    struct Dequeue {
      std::unique_lock<std::mutex>& lock;
      OutboxGroup& g;
      GroupEntry* entry;
      ~Dequeue() {
        if (entry == nullptr) return;
        if (!lock.owns_lock()) lock.lock();
        std::erase(g.queued, entry);
      }
    } dequeue{lock, g, &mine};
    while (!mine.finished) {
      if (g.writing) {
        g.finished.wait(lock);
        continue;
      }
      // Lead: take every queued row of this row's database (a reload may have moved the outbox;
      // rows of another database wait for the next round).
      std::vector<GroupEntry*> batch;
      const auto split = std::stable_partition(g.queued.begin(), g.queued.end(),
                                               [&](const GroupEntry* q) { return q->database != mine.database; });
      batch.assign(split, g.queued.end());
      g.queued.erase(split, g.queued.end());
      g.writing = true;
      lock.unlock();
      try {
        write_group(batch);
      } catch (...) {  // never leave the others waiting: each tries alone (and meets its own error)
        for (auto* entry : batch) entry->alone = true;
      }
      lock.lock();
      g.writing = false;
      for (auto* entry : batch) entry->finished = true;
      g.finished.notify_all();
    }
    dequeue.entry = nullptr;  // finished: no longer queued
    lock.unlock();
    if (mine.alone) {
      mine.status = append_outbox(db, KEEL_TXN_NONE, e);
      if (mine.status < 0) mine.error = storage::last_error();
    }
    if (mine.status < 0) error = "outbox write failed: " + mine.error;
    return mine.status;
  }

  keel_status publish_durable(const Routing::PubRoute& route, const Routing::TopicRoute& topic, const EventRecord& e,
                              keel_txn txn, std::string& error) {
    auto& db = *route.database;
    keel_status st = KEEL_OK;
    if (txn == KEEL_TXN_NONE && !db.read_only_here()) {
      st = publish_grouped(*route.pub, db, e, error);
    } else if (st = append_outbox(db, txn, e); st < 0) {  // (a read-only run: refused here)
      error = "outbox write failed: " + storage::last_error();
    }
    if (st < 0) {
      topic.stats->refused.add();
      return st;
    }
    topic.stats->published.add();
    if (txn == KEEL_TXN_NONE) {
      wake_streams(route);
      sweep(*route.pub, db);  // also keeps the outbox of a publisher without subscribers bounded
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

void Bus::set_publisher(Publisher publisher) {
  auto& s = *impl_;
  if (!publisher.durable.empty() && publisher.database == nullptr)
    throw std::runtime_error("plugin '" + publisher.name + "' declares durable topics but has no database");
  std::lock_guard lock(s.membership);
  auto& slot = s.pubs[publisher.name];
  if (!slot) {
    slot = std::make_unique<Impl::Pub>();
    slot->name = publisher.name;
  }
  auto& pub = *slot;
  std::optional<std::vector<std::string>> known;
  if (publisher.database) known = s.prepare_outbox(pub.name, *publisher.database, publisher.durable);  // may throw
  if (publisher.database != pub.database) {
    if (known) {
      const auto name = pub.name;
      publisher.database->set_commit_listener([impl = &s, name] { impl->wake_publisher(name); });
    }
  }
  pub.database = known ? std::move(publisher.database) : nullptr;
  pub.known_durable = known.value_or(std::vector<std::string>{});
  pub.topics = std::move(publisher.topics);
  pub.durable = std::move(publisher.durable);
  s.rebuild();
}

void Bus::set_subscriber(Endpoint endpoint) {
  auto& s = *impl_;
  std::lock_guard lock(s.membership);
  if (auto* existing = s.find_sub(endpoint.name)) {
    existing->ep.patterns = std::move(endpoint.patterns);
  } else {
    auto sub = std::make_unique<Impl::Sub>();
    sub->ep = std::move(endpoint);
    s.subs.push_back(std::move(sub));
  }
  s.rebuild();
}

void Bus::start() {
  auto& s = *impl_;
  std::lock_guard lock(s.membership);
  if (s.started) return;
  s.started = true;
  s.running.store(true);
  s.log->info("event bus started publishers={} subscribers={}", s.pubs.size(), s.subs.size());
}

void Bus::begin_delivery() {
  auto& s = *impl_;
  if (!s.running.load() || s.delivering.exchange(true)) return;
  std::lock_guard lock(s.membership);
  for (auto& sub : s.subs) s.kick_inbox(*sub);
  // Deliver what was committed but not delivered before the last stop or crash.
  const auto r = s.routing.load();
  for (const auto& [name, route] : r->pubs) s.wake_streams(route);
}

void Bus::resume_subscriber(std::string_view subscriber) {
  auto& s = *impl_;
  const auto r = s.routing.load();
  for (const auto& [name, route] : r->pubs)
    for (auto* stream : route.streams)
      if (stream->sub->ep.name == subscriber) s.wake(*stream);
}

void Bus::stop(std::chrono::milliseconds drain) {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  s.delivering.store(false);
  {
    std::unique_lock lock(s.jobs_mutex);
    for (auto id : s.pending_timers) s.timers.cancel(id);
    s.pending_timers.clear();
    if (!s.jobs_done.wait_for(lock, drain, [&] { return s.jobs == 0; }))
      s.log->warn("event deliveries still running after drain_ms={} jobs={}", drain.count(), s.jobs);
    // Queued jobs that did not run yet return at once (running is false); wait for them too, so
    // no job outlives the bus.
    s.jobs_done.wait(lock, [&] { return s.jobs == 0; });
  }
  std::lock_guard members(s.membership);
  for (auto& sub : s.subs) {
    std::lock_guard l(sub->mutex);
    if (!sub->inbox.empty())
      s.log->warn("in-memory events dropped at stop subscriber={} count={}", sub->ep.name, sub->inbox.size());
  }
}

keel_status Bus::publish(std::string_view publisher, const keel_publish_args& args, keel_txn txn,
                         std::string_view request_id, std::string& error) {
  auto& s = *impl_;
  // This thread's copy of the fan-out table; nothing below reads it again, so the reference
  // stays valid to the end (Published::current).
  const auto& r = s.routing.current();
  const auto pit = r.pubs.find(publisher);
  const auto topic_name = view(args.topic);
  const Impl::Routing::TopicRoute* topic = nullptr;
  if (pit != r.pubs.end()) {
    if (auto t = pit->second.topics.find(topic_name); t != pit->second.topics.end()) topic = &t->second;
  }
  if (topic == nullptr) {
    if (pit != r.pubs.end()) pit->second.pub->undeclared.add();
    error = "topic '" + std::string(topic_name) + "' is not in the manifest's events.publishes";
    return KEEL_ERR_PERMISSION_DENIED;
  }
  if (args.flags != 0) {
    topic->stats->refused.add();
    error = "publish flags must be 0";
    return KEEL_ERR_INVALID_ARGUMENT;
  }
  if (args.payload.len > s.cfg.max_payload_bytes) {
    topic->stats->refused.add();
    error = "payload of " + std::to_string(args.payload.len) + " bytes is over [events] max_payload_bytes (" +
            std::to_string(s.cfg.max_payload_bytes) + ")";
    return KEEL_ERR_TOO_LARGE;
  }
  if (txn != KEEL_TXN_NONE && !topic->durable) {
    topic->stats->refused.add();
    error = "topic '" + topic->stats->name + "' is in-memory: only durable topics (events.durable) can be published in "
            "a transaction; publish it after the commit";
    return KEEL_ERR_INVALID_ARGUMENT;
  }
  const auto now = unix_ns();
  char id[36];
  write_event_id(now, id);
  const EventRecord::Parts parts{std::string_view(id, sizeof id), topic->stats->name, view(args.payload),
                                 view(args.content_type),         pit->second.pub->name, view(args.traceparent),
                                 view(args.tracestate),           request_id};
  // A durable event only needs the outbox: it is delivered after the next start if the bus is
  // stopped. An in-memory one needs a running bus.
  if (topic->durable) return s.publish_durable(pit->second, *topic, EventRecord(parts, now, 0), txn, error);
  if (!s.running.load(std::memory_order_acquire)) {
    error = "the event bus is not running (stopping, or not started yet)";
    return KEEL_ERR_UNAVAILABLE;
  }
  return s.publish_memory(*topic, parts, now, error);
}

void Bus::set_remote(RemoteEvents* remote) noexcept { impl_->remote.store(remote, std::memory_order_release); }

keel_status Bus::deliver_remote(std::string_view subscriber, const EventRecord::Parts& parts,
                                std::int64_t published_unix_ns) {
  auto& s = *impl_;
  if (!s.running.load(std::memory_order_acquire)) return KEEL_ERR_UNAVAILABLE;
  Impl::Sub* sub = nullptr;
  {
    std::lock_guard lock(s.membership);  // patterns change under it; the Sub itself stays
    sub = s.find_sub(subscriber);
    if (sub == nullptr || !abi::matches_any(sub->ep.patterns, parts.topic)) return KEEL_ERR_NOT_FOUND;
  }
  if (sub->reserved.fetch_add(1, std::memory_order_relaxed) >= s.cfg.queue_capacity) {
    sub->reserved.fetch_sub(1, std::memory_order_relaxed);
    return KEEL_ERR_BUSY;
  }
  s.push(*sub, EventRecord(parts, published_unix_ns, 0));
  return KEEL_OK;
}

std::vector<std::string> Bus::subscribers() const {
  std::vector<std::string> out;
  std::lock_guard lock(impl_->membership);
  for (const auto& sub : impl_->subs)
    if (!sub->ep.relay && !sub->ep.patterns.empty()) out.push_back(sub->ep.name);
  return out;
}

std::vector<std::string> Bus::subscribers_of(std::string_view topic) const {
  std::vector<std::string> out;
  std::lock_guard lock(impl_->membership);
  for (const auto& sub : impl_->subs)
    if (!sub->ep.relay && abi::matches_any(sub->ep.patterns, topic)) out.push_back(sub->ep.name);
  return out;
}

std::pair<std::size_t, keel_status> Bus::deliver_external(std::string_view subscriber,
                                                          std::span<const ExternalEvent> events,
                                                          std::chrono::milliseconds wait,
                                                          const std::function<bool(std::size_t)>& still_waiting) {
  auto& s = *impl_;
  if (events.empty()) return {0, KEEL_OK};
  const std::size_t full = events.size();
  if (!s.delivering.load(std::memory_order_acquire)) return {0, KEEL_ERR_UNAVAILABLE};
  Impl::Sub* sub = nullptr;
  std::size_t matching = 0;  // the run of events, from the first, that the subscriber's patterns match
  {
    std::lock_guard lock(s.membership);
    sub = s.find_sub(subscriber);
    if (sub == nullptr || sub->ep.relay) return {0, KEEL_ERR_NOT_FOUND};
    while (matching < events.size() && abi::matches_any(sub->ep.patterns, events[matching].parts.topic)) ++matching;
  }
  if (matching == 0) return {0, KEEL_ERR_NOT_FOUND};
  events = events.first(matching);
  // The job owns copies: the caller may give up waiting (and free its buffers) before it ends.
  struct Job {
    std::vector<EventRecord> events;
    std::vector<std::uint32_t> attempts;
    std::mutex mutex;
    std::condition_variable done;
    std::size_t delivered = 0;          // guarded by mutex
    std::optional<keel_status> status;  // set when the job ends
    bool cancelled = false;             // the caller gave up: stop after the event in hand
  };
  auto job = std::make_shared<Job>();
  job->events.reserve(events.size());
  job->attempts.reserve(events.size());
  for (const auto& e : events) {
    job->events.emplace_back(e.parts, e.published_unix_ns, 0);
    job->attempts.push_back(e.attempt);
  }
  const bool posted = sub->ep.execute([sub, job] {
    keel_status st = KEEL_OK;
    for (std::size_t i = 0; i < job->events.size(); ++i) {
      {
        std::lock_guard lock(job->mutex);
        if (job->cancelled) break;
      }
      st = sub->ep.deliver(job->events[i], job->attempts[i]);
      if (st >= 0) sub->counters.delivered.add();
      else if (st != KEEL_ERR_UNAVAILABLE) sub->counters.failed.add();
      if (st < 0) break;
      std::lock_guard lock(job->mutex);
      ++job->delivered;
    }
    {
      std::lock_guard lock(job->mutex);
      job->status = st;
    }
    job->done.notify_one();
  });
  if (!posted) return {0, KEEL_ERR_UNAVAILABLE};
  // `wait` is per event: it starts again whenever the job moves on to the next one.
  auto give_up = std::chrono::steady_clock::now() + wait;
  std::size_t seen = 0;
  std::unique_lock lock(job->mutex);
  while (!job->done.wait_for(lock, std::chrono::seconds(1), [&] { return job->status.has_value(); })) {
    if (job->delivered != seen) {
      seen = job->delivered;
      give_up = std::chrono::steady_clock::now() + wait;
    }
    if (std::chrono::steady_clock::now() >= give_up) {
      job->cancelled = true;
      return {job->delivered, KEEL_ERR_TIMEOUT};
    }
    if (still_waiting) {
      const auto so_far = job->delivered;
      lock.unlock();
      const bool go_on = still_waiting(so_far);
      lock.lock();
      if (!go_on && !job->status) {
        job->cancelled = true;
        return {job->delivered, KEEL_ERR_UNAVAILABLE};
      }
    }
  }
  if (job->delivered < job->events.size()) return {job->delivered, *job->status};
  return {job->delivered, matching < full ? KEEL_ERR_NOT_FOUND : KEEL_OK};  // then one its patterns do not match
}

std::chrono::milliseconds Bus::retry_delay(std::uint32_t attempt) const noexcept { return impl_->backoff(attempt); }

void Bus::bury(std::string_view subscriber, const EventRecord::Parts& parts, std::int64_t published_unix_ns,
               std::uint32_t attempts, keel_status last) {
  auto& s = *impl_;
  if (auto* sub = [&] {
        std::lock_guard lock(s.membership);
        return s.find_sub(subscriber);
      }())
    sub->counters.dead_lettered.add();
  s.bury(std::string(subscriber), EventRecord(parts, published_unix_ns, 0), attempts, last);
}

std::vector<TopicStats> Bus::topics() const {
  std::vector<TopicStats> out;
  std::lock_guard lock(impl_->membership);
  for (const auto& [name, pub] : impl_->pubs) {
    for (const auto& [t, topic] : pub->topic_stats)
      out.push_back({name, t, topic->durable.load(std::memory_order_relaxed), topic->published.get(),
                     topic->refused.get()});
    if (const auto n = pub->undeclared.get(); n > 0) out.push_back({name, "", false, 0, n});
  }
  std::sort(out.begin(), out.end(),
            [](const auto& a, const auto& b) { return std::tie(a.publisher, a.topic) < std::tie(b.publisher, b.topic); });
  return out;
}

std::vector<SubscriptionStats> Bus::subscriptions() const {
  auto& s = *impl_;
  std::vector<SubscriptionStats> out;
  const auto r = s.routing.load();
  for (const auto* sub : r->subs) {
    SubscriptionStats st;
    st.subscriber = sub->ep.name;
    st.delivered = sub->counters.delivered.get();
    st.failed = sub->counters.failed.get();
    st.retried = sub->counters.retried.get();
    st.dead_lettered = sub->counters.dead_lettered.get();
    st.queued = sub->reserved.load(std::memory_order_relaxed);
    out.push_back(std::move(st));
  }
  for (const auto& [name, route] : r->pubs) {
    for (auto* stream : route.streams) {
      SubscriptionStats st;
      st.publisher = name;
      st.subscriber = stream->sub->ep.name;
      st.delivered = stream->counters.delivered.get();
      st.failed = stream->counters.failed.get();
      st.retried = stream->counters.retried.get();
      st.dead_lettered = stream->counters.dead_lettered.get();
      // Lag: committed events for this subscriber after its saved cursor.
      std::string sql;
      {
        std::lock_guard lock(stream->mutex);
        sql = stream->select_sql;
      }
      sql.replace(sql.find(kEventColumns), kEventColumns.size(), "count(*)");
      sql = sql.substr(0, sql.find(" ORDER BY"));
      const keel_sql_param p[2] = {int_param(stream->persisted_seen.load()), bytes_param(stream->sub->ep.name)};
      std::int64_t lag = 0;
      auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
        *static_cast<std::int64_t*>(user) = v[0].integer;
        return 1;
      };
      if (route.database->exec_host(KEEL_TXN_NONE, sql, p, {sink, &lag}, nullptr) >= 0) st.lag = lag;
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
  const auto r = s.routing.load();
  for (const auto& [name, route] : r->pubs) {
    if (!route.database) continue;
    struct Ctx {
      std::vector<DeadLetter>* out;
      const std::string* publisher;
    } ctx{&out, &route.pub->name};
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
    static_cast<void>(route.database->exec_host(
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
    Impl::Sub* target = nullptr;
    {
      std::lock_guard lock(s.membership);
      target = s.find_sub(subscriber);
    }
    if (target == nullptr) return KEEL_ERR_NOT_FOUND;
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
    auto& sub = *target;
    sub.reserved.fetch_add(1);
    {
      std::lock_guard lock(sub.mutex);
      sub.inbox.push_back(std::move(d.event));
    }
    s.kick_inbox(sub);
    return KEEL_OK;
  }
  const auto r = s.routing.load();
  const auto pit = r->pubs.find(publisher);
  if (pit == r->pubs.end() || !pit->second.database) return KEEL_ERR_NOT_FOUND;
  auto& db = *pit->second.database;
  std::string error;
  const auto st = in_transaction(db, error, [&](keel_txn txn) {
    const keel_sql_param p[2] = {bytes_param(subscriber), int_param(seq)};
    keel_sql_result res{};
    res.struct_size = sizeof res;
    // The same event (same id) again, addressed to this subscriber only, at the end of the outbox.
    auto rc = db.exec_host(txn,
                           "INSERT INTO _keel_outbox (event_id, topic, payload, content_type, published_ns, traceparent,"
                           " tracestate, request_id, target) SELECT event_id, topic, payload, content_type, published_ns,"
                           " traceparent, tracestate, request_id, subscriber FROM _keel_dead_letters"
                           " WHERE subscriber = ?1 AND seq = ?2",
                           p, {}, &res);
    if (rc >= 0 && res.changes == 0) rc = KEEL_ERR_NOT_FOUND;
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
  s.wake_streams(pit->second);
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
  const auto r = s.routing.load();
  const auto pit = r->pubs.find(publisher);
  if (pit == r->pubs.end() || !pit->second.database) return KEEL_ERR_NOT_FOUND;
  const keel_sql_param p[2] = {bytes_param(subscriber), int_param(seq)};
  keel_sql_result res{};
  res.struct_size = sizeof res;
  const auto st = pit->second.database->exec_host(
      KEEL_TXN_NONE, "DELETE FROM _keel_dead_letters WHERE subscriber = ?1 AND seq = ?2", p, {}, &res);
  if (st < 0) return st;
  if (res.changes == 0) return KEEL_ERR_NOT_FOUND;
  s.log->info("dead letter discarded publisher={} subscriber={} seq={}", publisher, subscriber, seq);
  return KEEL_OK;
}

}  // namespace keel::host::events
