#pragma once
// events::Bus routes events from publishing plugins to subscribing plugins (docs/events.md).
//
// In-memory topics: publish copies the event once and queues a reference in the inbox of every
// subscriber whose patterns match (bounded: KEEL_ERR_BUSY when an inbox is full, nothing queued);
// a drain job on the subscriber's executor delivers inbox events one at a time, in order.
// Durable topics: the event is a row of the publisher's outbox table (_keel_outbox, in the
// publisher's own database, inside the publisher's transaction when there is one). One stream
// per (publisher, subscriber) reads committed rows after its persisted cursor, delivers them in
// order, and persists the cursor after each batch: at-least-once, across crashes.
// Failures are retried with exponential backoff (the subscriber's stream waits, keeping order),
// then dead-lettered. Every member is thread-safe.
//
// Membership is dynamic: publishers and subscribers join, change their declarations and leave
// while events flow (a plugin reloaded or dropped in at run time). Who receives what is an
// immutable fan-out table, rebuilt on each change and swapped in at once; the publish path
// reads it without locking. Subscribers, streams and topic counters, once created, live as long
// as the bus, so a delivery in progress never outlives what it touches.
//
// The transport seam: the bus talks to plugins only through Endpoint (deliver one event, run a
// job on the subscriber's executor) and stores durable events only through storage::Database,
// so a bridge to an external broker can replace the local fan-out without touching plugins.

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <keel/plugin.h>
#include <keel/storage.h>

#include "abi/event_sink.hpp"
#include "abi/topic.hpp"
#include "config/config.hpp"

namespace keel::host {
class WorkerPool;
class TimerQueue;
}  // namespace keel::host

namespace keel::host::storage {
class Database;
}

namespace keel::host::events {

/// One published event as the bus keeps it: a handle to one immutable block (a reference count,
/// the field offsets and the text of every field), so an event is one block however many
/// subscribers it goes to, and a copy costs an atomic increment. Blocks of events up to 1 KiB
/// come from lock-free pools, not the allocator (common/block_pool.hpp). The accessors view into
/// the block while a handle to it lives. Copies may be used from different threads.
class EventRecord {
 public:
  struct Parts {
    std::string_view event_id;  ///< UUIDv7 text, unique, stable across redeliveries
    std::string_view topic;
    std::string_view payload;
    std::string_view content_type;
    std::string_view publisher;
    std::string_view traceparent;  ///< kept only when valid (with tracestate): else both empty
    std::string_view tracestate;
    std::string_view request_id;  ///< of the request that published it; empty outside a request
  };
  EventRecord() noexcept = default;
  EventRecord(const Parts& parts, std::int64_t published_unix_ns, std::int64_t seq);
  EventRecord(const EventRecord& other) noexcept;
  EventRecord(EventRecord&& other) noexcept;
  EventRecord& operator=(const EventRecord& other) noexcept;
  EventRecord& operator=(EventRecord&& other) noexcept;
  ~EventRecord();

  [[nodiscard]] std::string_view event_id() const noexcept { return field(0); }
  [[nodiscard]] std::string_view topic() const noexcept { return field(1); }
  [[nodiscard]] std::string_view payload() const noexcept { return field(2); }
  [[nodiscard]] std::string_view content_type() const noexcept { return field(3); }
  [[nodiscard]] std::string_view publisher() const noexcept { return field(4); }
  [[nodiscard]] std::string_view traceparent() const noexcept { return field(5); }
  [[nodiscard]] std::string_view tracestate() const noexcept { return field(6); }
  [[nodiscard]] std::string_view request_id() const noexcept { return field(7); }

  std::int64_t published_unix_ns = 0;
  std::int64_t seq = 0;  ///< outbox row (durable); 0 for in-memory events

 private:
  // The block's header; the fields' bytes follow it in the same allocation.
  struct Block {
    std::atomic<std::uint32_t> refs{1};
    std::array<std::uint32_t, 8> end{};  // end offset of each field in the bytes
    std::uint32_t pool_index = 0;        // the block's index in its pool
    std::uint8_t pool = 0;               // 0: from operator new; else which pool (1, 2)
  };
  void release() noexcept;  // drops this handle's share of the block
  [[nodiscard]] std::string_view field(std::size_t i) const noexcept {
    if (block_ == nullptr) return {};
    const std::uint32_t begin = i == 0 ? 0 : block_->end[i - 1];
    return {reinterpret_cast<const char*>(block_ + 1) + begin, block_->end[i] - begin};
  }
  Block* block_ = nullptr;  // null for a default-constructed record: every field empty
};

/// How the bus reaches one subscribing plugin.
struct Endpoint {
  std::string name;
  std::vector<std::string> patterns;  ///< empty: receives nothing (left, or subscribes to nothing)
  /// Calls the plugin's on_event; returns its status. KEEL_ERR_UNAVAILABLE means "not
  /// accepting now" (stopping): durable delivery pauses, in-memory events are dropped.
  std::function<keel_status(const EventRecord&, std::uint32_t attempt)> deliver;
  /// Runs a job where the plugin's hooks may run (the worker pool, or its serial queue).
  std::function<bool(std::function<void()>)> execute;
  /// Not a plugin but a relay of durable events (a cluster's, to other hosts): it gets durable
  /// topics only, and is not one of subscribers().
  bool relay = false;
  /// Optional, for a relay: takes a run of durable events in commit order at once and returns how
  /// many of them (a prefix) it took, and the status of the first one it did not take (ignored
  /// when it took them all). `attempt` is the first event's. Set, it replaces `deliver` for
  /// durable events: the cursor moves past the prefix only.
  std::function<std::pair<std::size_t, keel_status>(std::span<const EventRecord>, std::uint32_t attempt)> deliver_batch{};
};

/// One publishing plugin.
struct Publisher {
  std::string name;
  std::vector<std::string> topics;   ///< manifest events.publishes
  std::vector<std::string> durable;  ///< manifest events.durable (a subset of topics)
  /// The outbox's home: required when durable is non-empty. With a database whose outbox holds
  /// events, they are delivered even when nothing is durable any more; null detaches it.
  std::shared_ptr<storage::Database> database;
};

/// Counters for metrics (issue 8 exports them).
struct TopicStats {
  std::string publisher;
  std::string topic;  ///< "" for the publisher's refused publishes of undeclared topics
  bool durable = false;
  std::uint64_t published = 0;
  std::uint64_t refused = 0;  ///< undeclared, busy or too large
};
struct SubscriptionStats {
  std::string publisher;   ///< durable streams: the publisher; in-memory inbox: empty
  std::string subscriber;
  std::uint64_t delivered = 0;
  std::uint64_t failed = 0;        ///< handler failures (each attempt)
  std::uint64_t retried = 0;
  std::uint64_t dead_lettered = 0;
  std::uint64_t queued = 0;        ///< in-memory events waiting
  std::int64_t lag = 0;            ///< durable events committed but not yet delivered
};

/// A dead letter, durable (in the publisher's database) or in memory.
struct DeadLetter {
  std::string publisher;
  std::string subscriber;
  std::int64_t seq = 0;  ///< durable: the outbox row; in-memory: a counter
  bool durable = false;
  EventRecord event;
  std::uint32_t attempts = 0;
  keel_status last_status = KEEL_OK;
  std::int64_t failed_unix_ms = 0;
};

/// Where in-memory events also go when the host is in a cluster (implemented in cluster/, which
/// sits above this folder): published() runs on the publishing thread after the local fan-out,
/// with the names of the local subscribers that got the event; it must not block.
class RemoteEvents {
 public:
  virtual ~RemoteEvents() = default;
  virtual void published(const EventRecord& event, const std::vector<std::string>& delivered_here) = 0;
};

class Bus final : public abi::EventSink {
 public:
  Bus(const config::EventsConfig& cfg, WorkerPool& pool, TimerQueue& timers);
  ~Bus() override;  ///< stop()
  Bus(const Bus&) = delete;
  Bus& operator=(const Bus&) = delete;

  // --- membership: before start() and at run time ---
  /// Adds a publisher or replaces its declarations; takes effect for the next publish. A topic
  /// no longer declared is refused from then on, but what its outbox holds is still delivered.
  /// Durable topics create the outbox tables on first use; every topic ever durable in a
  /// database stays known there (_keel_outbox_topics), so its events are never stranded.
  /// Throws std::runtime_error (naming the plugin) when the outbox cannot be prepared; nothing
  /// changes then.
  void set_publisher(Publisher publisher);
  /// Adds a subscriber or replaces its patterns (the deliver and execute of its first
  /// registration stay). New matches start with the events published from then on (in-memory)
  /// and from the saved cursor (durable: a subscriber new to a publisher gets its retained
  /// outbox); events no longer matched stop coming.
  void set_subscriber(Endpoint endpoint);
  /// Accepts publishes; in-memory events queue up until begin_delivery(). Idempotent.
  void start();
  /// Starts delivering (once every subscriber is started): queued events and durable backlogs.
  void begin_delivery();
  /// Durable deliveries to `subscriber` paused because it was not accepting (KEEL_ERR_UNAVAILABLE)
  /// start again from their saved cursors. Call when it accepts again.
  void resume_subscriber(std::string_view subscriber);
  /// Stops delivering; waits (bounded by `drain`) for deliveries in progress. Idempotent.
  void stop(std::chrono::milliseconds drain = std::chrono::milliseconds(5000));

  // --- other hosts (docs/cluster.md "Events") ---
  /// In-memory events published here also go to `remote` (null: nowhere). It must outlive the
  /// bus's publishes: set it before start(), clear it before it goes.
  void set_remote(RemoteEvents* remote) noexcept;
  /// An in-memory event another host published, for this host's subscriber `subscriber` only:
  /// queued as a local event would be (in order, retried, dead-lettered). KEEL_ERR_NOT_FOUND
  /// when `subscriber` is not here or none of its patterns matches; KEEL_ERR_BUSY when its inbox
  /// is full; KEEL_ERR_UNAVAILABLE when the bus is not running.
  keel_status deliver_remote(std::string_view subscriber, const EventRecord::Parts& parts, std::int64_t published_unix_ns);
  /// The subscribing plugins that subscribe to something now, by name (relays left out).
  [[nodiscard]] std::vector<std::string> subscribers() const;
  /// The subscribing plugins here whose patterns match `topic` (relays left out).
  [[nodiscard]] std::vector<std::string> subscribers_of(std::string_view topic) const;
  /// A durable event another host's outbox holds (for deliver_external()).
  struct ExternalEvent {
    EventRecord::Parts parts;
    std::int64_t published_unix_ns = 0;
    std::uint32_t attempt = 1;
  };
  /// Durable events another host's outbox holds, delivered to `subscriber` here now, in order,
  /// in one job on its executor (one hook at a time, as every delivery), stopping at the first
  /// failure; waits up to `wait` for the job. Returns how many were delivered and the status of
  /// the first one that was not (KEEL_OK when all were): on_event's status; KEEL_ERR_NOT_FOUND
  /// (no such subscriber, or no pattern matches that event's topic), KEEL_ERR_UNAVAILABLE
  /// (stopping, or the caller cancelled), KEEL_ERR_TIMEOUT (one event's handler ran past `wait`).
  /// Each counts as a delivery of `subscriber`; a final failure is for the caller to dead-letter
  /// (bury()). `still_waiting(delivered so far)` (when set) runs about every second meanwhile;
  /// false from it cancels: the job stops after the event in hand and the call returns at once.
  std::pair<std::size_t, keel_status> deliver_external(std::string_view subscriber, std::span<const ExternalEvent> events,
                                                       std::chrono::milliseconds wait,
                                                       const std::function<bool(std::size_t)>& still_waiting = nullptr);
  /// The delay before delivery attempt `attempt` + 1: [events] retry_base_ms, doubled per
  /// attempt, capped at retry_max_ms (the bus's own retries, and a cluster consumer's).
  [[nodiscard]] std::chrono::milliseconds retry_delay(std::uint32_t attempt) const noexcept;
  /// Records a dead letter of `subscriber` kept in memory (an event of another host's outbox).
  void bury(std::string_view subscriber, const EventRecord::Parts& parts, std::int64_t published_unix_ns,
            std::uint32_t attempts, keel_status last);

  /// Publishes an event. `txn` (durable topics only) writes it into that storage transaction:
  /// it is delivered if and only if the transaction commits.
  /// @return KEEL_OK; KEEL_ERR_PERMISSION_DENIED (topic not declared); KEEL_ERR_BUSY (an inbox is
  /// full); KEEL_ERR_INVALID_ARGUMENT (txn with an in-memory topic, bad flags);
  /// KEEL_ERR_UNAVAILABLE (not started or stopped); storage errors of the outbox write.
  /// `error` receives a message on failure.
  keel_status publish(std::string_view publisher, const keel_publish_args& args, keel_txn txn,
                      std::string_view request_id, std::string& error) override;

  // --- inspection and admin ---
  [[nodiscard]] std::vector<TopicStats> topics() const;
  [[nodiscard]] std::vector<SubscriptionStats> subscriptions() const;
  [[nodiscard]] std::vector<DeadLetter> dead_letters(std::size_t limit = 1000) const;
  /// Puts a dead letter back in line for its subscriber (same event id); removes it from the
  /// dead letters. KEEL_ERR_NOT_FOUND if there is no such dead letter.
  keel_status resubmit(std::string_view publisher, std::string_view subscriber, std::int64_t seq, bool durable);
  /// Deletes a dead letter. KEEL_ERR_NOT_FOUND if there is none.
  keel_status discard(std::string_view publisher, std::string_view subscriber, std::int64_t seq, bool durable);

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

/// Writes a new event id for the time `now_unix_ns` (nanoseconds since the Unix epoch) into
/// `out`: a UUIDv7 (time-ordered, 74 random bits), e.g. "0190f5a4-8c1e-7b3a-9d2f-...". No allocation.
void write_event_id(std::int64_t now_unix_ns, char (&out)[36]);

}  // namespace keel::host::events
