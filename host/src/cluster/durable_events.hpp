#pragma once
// cluster::DurableEvents: durable events between hosts over NATS JetStream (docs/cluster.md
// "Events"). The publisher's outbox stays the source of truth: a relay (a bus subscriber of every
// durable topic, events::Endpoint::relay) publishes each committed event to one JetStream stream
// with the event id as deduplication id, and the bus saves the relay's cursor only after
// JetStream acknowledged it. Each subscribing plugin here consumes through one durable consumer,
// shared by its replicas on every host, one event at a time (MaxAckPending 1: per-topic order),
// and acknowledges after its handler returned; failures are redelivered with the bus's backoff,
// then dead-lettered here. An event a plugin already got on the publisher's host is skipped.

#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "cluster/directory.hpp"
#include "cluster/nats_link.hpp"
#include "config/config.hpp"
#include "events/bus.hpp"

namespace keel::host::cluster {

class DurableEvents {
 public:
  DurableEvents(const config::Config& cfg, std::string node, NatsLink& link, events::Bus& bus, const Directory& directory);
  ~DurableEvents();  ///< stops relaying and consuming
  DurableEvents(const DurableEvents&) = delete;
  DurableEvents& operator=(const DurableEvents&) = delete;

  /// Called by the announcer on every round while the link is up: creates the stream when it is
  /// missing, resumes the relay, and runs one consumer per subscribing plugin in `subscribers`.
  void tick(const std::vector<std::string>& subscribers);
  /// Stops relaying (the relay's patterns go) and every consumer. Idempotent.
  void stop();
  /// {"stream":{...},"consumers":[{"plugin","pending","ack_pending","redelivered"}],"relayed":N}.
  [[nodiscard]] std::string admin_json() const;

  /// The bus subscriber name of the relay (not a plugin name: those are [a-z][a-z0-9_]*).
  static constexpr const char* kRelay = "~cluster";

 private:
  struct Relay;
  struct Consumer;
  void consume(Consumer& c);

  const config::ClusterConfig cfg_;
  const config::EventsConfig events_cfg_;
  const std::string node_, stream_, subject_;
  NatsLink& link_;
  events::Bus& bus_;
  const Directory& directory_;
  std::shared_ptr<Relay> relay_;
  std::mutex mutex_;
  std::map<std::string, std::unique_ptr<Consumer>> consumers_;
  std::atomic<bool> stream_ready_{false};
};

}  // namespace keel::host::cluster
