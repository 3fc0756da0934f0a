#pragma once
// The server's listening sockets (private to http/, Asio types): a TCP acceptor for HOST:PORT,
// or a unix-socket acceptor for "unix:/path" (the admin listener only). Connections from either
// come out as a tcp::socket holding the descriptor, so one session type serves both. Used from
// the server's first I/O thread only.

#include <optional>
#include <string>
#include <tuple>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/steady_timer.hpp>

#include "http/message.hpp"

namespace keel::host::http {

/// "127.0.0.1:8080", "[::1]:8080".
[[nodiscard]] std::string format_endpoint(const boost::asio::ip::tcp::endpoint& ep);

struct ListenSocket {
  ListenSocket(Listener k, std::string s, boost::asio::io_context& ctx) : kind(k), spec(std::move(s)), backoff(ctx) {}
  ListenSocket(const ListenSocket&) = delete;
  ListenSocket& operator=(const ListenSocket&) = delete;
  ~ListenSocket() { remove_socket_file(); }

  /// Binds and listens on `spec`. Throws std::runtime_error naming the address and what to do.
  /// unix:/path: a socket file left by a process that died is replaced; one a live process
  /// listens on, or a file that is not a socket, is left alone and refused. The file is 0600
  /// before anyone can connect (a connect succeeds only after listen()).
  void listen(boost::asio::io_context& ctx);
  /// One connection, as a tcp::socket on `ctx` (a unix one keeps its descriptor).
  boost::asio::awaitable<std::tuple<boost::system::error_code, boost::asio::ip::tcp::socket>> accept(
      boost::asio::io_context& ctx);
  /// Stops accepting and removes a unix socket's file. Idempotent.
  void close() noexcept;
  /// "HOST:PORT" (the bound port) or "unix:/path".
  [[nodiscard]] std::string address() const;
  [[nodiscard]] bool is_unix() const noexcept { return unix_acceptor.has_value(); }

  const Listener kind;
  const std::string spec;  ///< as configured: HOST:PORT or unix:/path
  std::optional<boost::asio::ip::tcp::acceptor> tcp_acceptor;
  std::optional<boost::asio::local::stream_protocol::acceptor> unix_acceptor;
  boost::asio::ip::tcp::endpoint bound;  ///< TCP: the bound address
  boost::asio::steady_timer backoff;     ///< waits between failed accepts

 private:
  void listen_tcp(boost::asio::io_context& ctx);
  void listen_unix(boost::asio::io_context& ctx);
  void remove_socket_file() noexcept;
  std::string unix_path_;  ///< the socket file while it is ours
};

}  // namespace keel::host::http
