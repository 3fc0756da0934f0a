#pragma once
// cluster::NatsLink: this host's one connection to NATS (docs/cluster.md), over the C client
// (libnats). With durable_events.cpp, the only files that see <nats/nats.h>. It connects in the background, reconnects
// forever, and reports its state; subscriptions deliver on the client's delivery threads.
// Thread-safe.

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

struct __natsConnection;  // <nats/nats.h>'s natsConnection, for cluster/durable_events.cpp

namespace keel::host::cluster {

struct LinkOptions {
  std::vector<std::string> servers;  ///< "nats://HOST:PORT", in the order given
  std::string name;                  ///< the connection's name on the server (the node)
  std::string token;                 ///< or user + password; never logged
  std::string user, password;
  std::int64_t connect_timeout_ms = 2000;
  std::int64_t reconnect_wait_ms = 250;
};

/// One received message; valid during the callback only.
struct Message {
  std::string_view subject;
  std::string_view reply;  ///< where an answer goes; empty when none is wanted
  std::string_view data;
  bool no_responders = false;  ///< the server's answer to a request nobody subscribes to
};

class NatsLink {
 public:
  using OnMessage = std::function<void(const Message&)>;
  /// Called (on a client thread) when the link comes up (true) or goes down (false).
  using OnState = std::function<void(bool up)>;

  /// Starts connecting; returns at once when no server answers (the link retries in the
  /// background, forever). Throws std::runtime_error for options the client refuses.
  NatsLink(const LinkOptions& options, OnState on_state);
  ~NatsLink();  ///< closes the connection; no callback runs after it returns
  NatsLink(const NatsLink&) = delete;
  NatsLink& operator=(const NatsLink&) = delete;

  [[nodiscard]] bool up() const noexcept { return up_.load(std::memory_order_acquire); }
  /// The server this link is connected to ("nats://127.0.0.1:4222"), or empty.
  [[nodiscard]] std::string connected_url() const;

  /// Publishes `data` on `subject`, with `reply` as where the answer goes, on the calling thread
  /// (which may wait for the socket, up to the write deadline). False when the link cannot take
  /// it (down and its reconnect buffer full, closed, over the server's max_payload).
  bool publish(std::string_view subject, std::string_view data, std::string_view reply = {});
  /// The same from the link's sender thread, so the caller (an I/O thread, the timer thread)
  /// never waits for the network. False when the queue is full (kMaxQueuedBytes); `failed`
  /// runs on the sender thread when the publish itself fails.
  bool publish_async(std::string subject, std::string data, std::string reply = {},
                     std::function<void()> failed = nullptr);
  /// The largest message the server takes (its max_payload; 1 MiB by default), 0 while unknown.
  [[nodiscard]] std::int64_t max_payload() const;
  static constexpr std::size_t kMaxQueuedBytes = 64u << 20;

  /// Keeps `object` alive until the client has closed this connection and called its last
  /// callback: for the closure of a callback the client calls on its own threads.
  void retain_until_closed(std::shared_ptr<void> object);

  class Subscription;
  /// Subscribes to `subject` (in queue group `queue` when not empty); `fn` runs on the client's
  /// delivery thread for the subscription, one message at a time. Throws std::runtime_error.
  std::unique_ptr<Subscription> subscribe(const std::string& subject, const std::string& queue, OnMessage fn);

  /// A unique inbox subject prefix for replies to this host ("_INBOX.<random>").
  [[nodiscard]] std::string new_inbox() const;

  /// Flushes what is buffered to the server, waiting up to `timeout_ms`. False on timeout or down.
  bool flush(std::int64_t timeout_ms);

  /// The client's connection, for JetStream (cluster/durable_events.cpp); valid while this lives.
  [[nodiscard]] __natsConnection* native() const noexcept;

  /// After every link and everything made from it is destroyed: waits (up to `timeout_ms`) for
  /// the client library's threads to finish and its memory to be released, so no callback of it
  /// runs past this point and nothing of it is left at exit.
  static void release_library(std::int64_t timeout_ms);

 private:
  struct Impl;
  void send_loop();
  std::unique_ptr<Impl> impl_;
  std::atomic<bool> up_{false};
};

/// Unsubscribes when destroyed; no callback of it runs after the destructor returns.
class NatsLink::Subscription {
 public:
  ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

 private:
  friend class NatsLink;
  struct State;
  explicit Subscription(std::shared_ptr<State> s);
  std::shared_ptr<State> state_;  // shared with the client's closure until its completion callback
};

}  // namespace keel::host::cluster
