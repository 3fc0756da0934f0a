#include "http/listener.hpp"

#include <cerrno>
#include <charconv>
#include <cstring>
#include <stdexcept>

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace keel::host::http {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using unix_stream = asio::local::stream_protocol;
using error_code = boost::system::error_code;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

}  // namespace

std::string format_endpoint(const tcp::endpoint& ep) {
  const auto addr = ep.address();
  std::string out = addr.is_v6() ? "[" + addr.to_string() + "]" : addr.to_string();
  out += ':';
  out += std::to_string(ep.port());
  return out;
}

void ListenSocket::listen(asio::io_context& ctx) {
  if (spec.starts_with("unix:")) listen_unix(ctx);
  else listen_tcp(ctx);
}

void ListenSocket::listen_tcp(asio::io_context& ctx) {
  const auto colon = spec.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("listen address '" + spec + "' is not HOST:PORT");
  std::string host = spec.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned port = 0;
  const auto port_text = std::string_view(spec).substr(colon + 1);
  const auto [end, perr] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (perr != std::errc{} || end != port_text.data() + port_text.size() || port > 65535)
    throw std::runtime_error("listen address '" + spec + "' has an invalid port");
  error_code ec;
  auto address = asio::ip::make_address(host == "localhost" ? "127.0.0.1" : host, ec);
  if (ec) throw std::runtime_error("listen address '" + spec + "': '" + host + "' is not an IP address");
  const tcp::endpoint endpoint(address, static_cast<std::uint16_t>(port));
  auto& acc = tcp_acceptor.emplace(ctx);
  acc.open(endpoint.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(endpoint, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) throw std::runtime_error("cannot listen on " + spec + ": " + ec.message());
  bound = acc.local_endpoint();
}

void ListenSocket::listen_unix(asio::io_context& ctx) {
  const std::string path = spec.substr(5);
  const auto fail = [&](const std::string& why) { throw std::runtime_error("cannot listen on " + spec + ": " + why); };
  error_code ec;
  struct stat st {};
  if (::lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) fail("the path exists and is not a socket; remove it or choose another path");
    unix_stream::socket probe(ctx);
    probe.connect(unix_stream::endpoint(path), ec);
    if (!ec) fail("another process is listening on it (is keel already running?)");
    if (::unlink(path.c_str()) != 0) fail(std::string("cannot remove the stale socket file: ") + std::strerror(errno));
    ec = {};
  }
  auto& acc = unix_acceptor.emplace(ctx);
  acc.open(unix_stream(), ec);
  if (!ec) acc.bind(unix_stream::endpoint(path), ec);
  if (ec) fail(ec.message());
  unix_path_ = path;
  if (::chmod(path.c_str(), 0600) != 0) fail(std::string("cannot make the socket file private: ") + std::strerror(errno));
  acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) fail(ec.message());
}

asio::awaitable<std::tuple<error_code, tcp::socket>> ListenSocket::accept(asio::io_context& ctx) {
  if (tcp_acceptor) co_return co_await tcp_acceptor->async_accept(ctx, kAsTuple);
  auto [ec, peer] = co_await unix_acceptor->async_accept(ctx, kAsTuple);
  tcp::socket socket(ctx);
  if (!ec) {
    const auto fd = peer.release(ec);
    if (!ec) socket.assign(tcp::v4(), fd, ec);
    if (ec) ::close(fd);
  }
  co_return std::tuple<error_code, tcp::socket>{ec, std::move(socket)};
}

void ListenSocket::close() noexcept {
  error_code ec;
  if (tcp_acceptor) tcp_acceptor->close(ec);
  if (unix_acceptor) unix_acceptor->close(ec);
  backoff.cancel();
  remove_socket_file();
}

void ListenSocket::remove_socket_file() noexcept {
  if (unix_path_.empty()) return;
  ::unlink(unix_path_.c_str());
  unix_path_.clear();
}

std::string ListenSocket::address() const { return unix_acceptor ? spec : format_endpoint(bound); }

}  // namespace keel::host::http
