#pragma once
// The HTTP/1.1 server: one acceptor per listener (the public one, and optionally the admin one;
// each request says which it came in on), N I/O threads each running its own event loop, one
// coroutine per connection, over plain TCP or TLS (ServerOptions::tls, shared by every TCP
// listener). Beast and Asio stay inside server.cpp, listener.cpp, tls.cpp and request_parser.*
// (compile time), so this header is plain C++. listen()/start()/shutdown()/wait() may be called
// from any one thread; shutdown() is also safe from a signal-handling thread while the server runs.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

#include "http/message.hpp"

namespace keel::host::http {

class TlsContext;

struct ServerOptions {
  std::string listen = "127.0.0.1:8080";  ///< HOST:PORT, IPv6 as [::1]:8080; port 0 = ephemeral
  /// A second listener whose requests carry Listener::kAdmin: "" = none, HOST:PORT, or
  /// "unix:/path" (the socket file is created 0600, a stale one replaced, removed at shutdown).
  std::string admin_listen;
  std::uint32_t io_threads = 1;
  std::uint32_t max_connections = 10000;
  std::uint32_t max_header_bytes = 16384;
  std::uint32_t max_target_bytes = 8192;
  std::uint64_t max_body_bytes = 1048576;
  std::chrono::milliseconds header_read_timeout{10000};
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds write_timeout{30000};
  bool access_log = true;
  /// Set: every connection is TLS with the context's current certificate (http/tls.hpp); a
  /// second listener may share the same context. Null: plain HTTP.
  std::shared_ptr<TlsContext> tls;
};

class Server {
 public:
  /// `handler` must outlive the server and be callable from every I/O thread at once.
  Server(ServerOptions options, Handler& handler);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  /// Bind and listen. Throws std::runtime_error naming the address on failure.
  void listen();
  /// The bound address as "HOST:PORT" (the real port when 0 was asked for). After listen().
  [[nodiscard]] std::string local_address() const;
  [[nodiscard]] std::uint16_t local_port() const;
  /// The admin listener's bound address: "HOST:PORT" (the real port) or "unix:/path"; "" if none.
  [[nodiscard]] std::string admin_address() const;
  /// Start the I/O threads and begin accepting. Returns immediately.
  void start();
  /// Stop accepting; finish in-flight requests (answered with Connection: close), close idle
  /// connections at once, and force-close whatever is left after `drain_timeout`. Idempotent.
  void shutdown(std::chrono::milliseconds drain_timeout);
  /// Block until every I/O thread has finished (after shutdown()).
  void wait();
  /// Connections currently open.
  [[nodiscard]] std::uint64_t connection_count() const noexcept;

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::host::http
