#pragma once
// cluster::DurableEvents: durable events between hosts over NATS JetStream (docs/cluster.md
// "Events"). The publisher's outbox stays the source of truth: a relay (a bus subscriber of every
// durable topic, events::Endpoint::relay) publishes each committed event to one JetStream stream
// with the event id as deduplication id, and the bus saves the relay's cursor only after
// JetStream acknowledged them (in batches). Each subscribing plugin here consumes through one
// durable consumer, shared by its replicas on every host, [cluster] durable_batch events at a time,
// in stream order, and acknowledges each after its handler returned; a failure is retried here
// with the bus's backoff before the rest of its batch, then dead-lettered here. An event a plugin
// already got on the publisher's host is skipped.

#include <atomic>
#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cluster/nats_link.hpp"
#include "config/config.hpp"
#include "events/bus.hpp"

struct __natsMsg;

namespace keel::host::cluster {

class DurableEvents {
 public:
  /// Whether a plugin of this name is started here now (a stopped or removed one is no
  /// subscriber, whatever the bus still holds for it).
  using Started = std::function<bool(std::string_view plugin)>;

  /// Starts its own thread: every `interval` while the link is up it checks the stream (creates
  /// it when missing), resumes the relay, and runs one consumer per started subscribing plugin.
  /// JetStream calls never hold up the announcements.
  DurableEvents(const config::Config& cfg, std::string node, NatsLink& link, events::Bus& bus, Started started);
  ~DurableEvents();  ///< stops relaying and consuming
  DurableEvents(const DurableEvents&) = delete;
  DurableEvents& operator=(const DurableEvents&) = delete;

  /// Stops relaying (the relay's patterns go) and every consumer. Idempotent.
  void stop();
  /// {"stream","ready","messages","bytes","last_seq","relayed","consumers":[{"plugin","pending",
  /// "ack_pending","redelivered"}]}: the stream's state and each consumer's lag as last read
  /// (every announce interval).
  [[nodiscard]] std::string admin_json() const;

  /// The bus subscriber name of the relay (not a plugin name: those are [a-z][a-z0-9_]*).
  static constexpr const char* kRelay = "~cluster";

 private:
  struct Relay;
  struct Consumer;
  void maintain();
  bool ensure_stream();
  bool ensure_consumer(const Consumer& c) const;
  void consume(Consumer& c);
  void handle_batch(Consumer& c, std::span<__natsMsg*> msgs);  // natsMsg of <nats/nats.h>

  const config::ClusterConfig cfg_;
  const config::EventsConfig events_cfg_;
  const std::string node_, stream_, subject_;
  NatsLink& link_;
  events::Bus& bus_;
  Started started_;
  std::shared_ptr<Relay> relay_;
  mutable std::mutex mutex_;  // consumers_ (never held across a JetStream call)
  std::map<std::string, std::unique_ptr<Consumer>> consumers_;
  std::atomic<bool> stream_ready_{false};
  std::atomic<std::uint64_t> stream_messages_{0}, stream_bytes_{0}, stream_last_seq_{0};
  std::mutex stop_mutex_;
  std::condition_variable stop_wake_;
  bool stopping_ = false;
  std::thread maintainer_;
};

}  // namespace keel::host::cluster
