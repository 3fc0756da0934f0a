#include "http/server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <ctime>
#include <list>
#include <optional>
#include <span>
#include <stdexcept>
#include <thread>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <netinet/tcp.h>  // TCP_USER_TIMEOUT
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>

#include "common/thread_poster.hpp"
#include "http/header_scanner.hpp"
#include "http/listener.hpp"
#include "http/request_parser.hpp"
#include "http/tls.hpp"
#include "observability/hex.hpp"
#include "observability/log.hpp"
#include "observability/trace.hpp"

namespace keel::host::http {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
namespace ssl = asio::ssl;
using TlsStream = boost::beast::ssl_stream<tcp::socket>;
using Clock = std::chrono::steady_clock;
using error_code = boost::system::error_code;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);
using namespace std::string_view_literals;  // literals appended without strlen on the response path

// How often each I/O thread checks connection deadlines. Timeouts are enforced by this sweep
// instead of one timer per read, so a request costs no timer syscalls (nginx-style coarse timers).
constexpr auto kSweepInterval = std::chrono::milliseconds(100);
// After an error response the connection is half-closed and the rest of the request is read
// and discarded for a while, so the client sees the response rather than a reset (lingering close).
constexpr auto kLingerTime = std::chrono::milliseconds(2000);
constexpr std::size_t kLingerMaxBytes = 1 << 20;
constexpr std::size_t kReadChunk = 16384;

// ---------------------------------------------------------------------------------------------
// Small per-thread helpers used when writing every response.

// IMF-fixdate (RFC 9110 §5.6.7), recomputed at most once per second per thread.
std::string_view http_date(std::time_t now) {
  thread_local std::time_t cached_second = 0;
  thread_local std::array<char, 32> cached{};
  thread_local std::size_t cached_len = 0;
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    cached_len = std::strftime(cached.data(), cached.size(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_second = now;
  }
  return {cached.data(), cached_len};
}

// Unique enough for correlation, never a security token: the span ids' per-thread generator.
void generate_request_id(std::array<char, 16>& out) { observability::write_hex(out.data(), observability::random_bits(), 8); }

bool safe_field_text(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

// Appends every piece with one resize.
void append_parts(std::string& out, std::span<const std::string_view> parts) {
  std::size_t size = 0;
  for (const std::string_view p : parts) size += p.size();
  const std::size_t at = out.size();
  out.resize(at + size);
  char* dst = out.data() + at;
  for (const std::string_view p : parts) {
    std::memcpy(dst, p.data(), p.size());
    dst += p.size();
  }
}

// "HTTP/1.1 <status> <reason>\r\nDate: <IMF-fixdate>\r\nServer: keel\r\n": rebuilt when the
// second or the status differs from this thread's last response (nearly always the same).
// Plain arrays: no thread_local with a destructor (mingw-w64 runs those unreliably).
std::string_view status_line_and_date(unsigned status) {
  thread_local std::time_t cached_second = 0;
  thread_local unsigned cached_status = 0;
  thread_local std::array<char, 192> cached{};
  thread_local std::size_t cached_len = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second || status != cached_status) {
    char digits[8];
    const auto end = std::to_chars(digits, digits + sizeof digits, status).ptr;
    const std::array<std::string_view, 7> parts{"HTTP/1.1 "sv, {digits, static_cast<std::size_t>(end - digits)}, " "sv,
                                                reason_phrase(status), "\r\nDate: "sv, http_date(now),
                                                "\r\nServer: keel\r\n"sv};
    cached_len = 0;
    for (const std::string_view p : parts) {
      const std::size_t n = std::min(p.size(), cached.size() - cached_len);  // reasons are short
      std::memcpy(cached.data() + cached_len, p.data(), n);
      cached_len += n;
    }
    cached_second = now;
    cached_status = status;
  }
  return {cached.data(), cached_len};
}

}  // namespace

// ---------------------------------------------------------------------------------------------

class Server::Impl {
 public:
  class SessionCore;
  template <class Stream>
  class Session;

  // One event loop and the connections it owns. Touched only from its own thread, except
  // `ctx` (thread-safe) and the atomics.
  struct IoThread {
    asio::io_context ctx{1};
    std::list<SessionCore*> sessions;
    bool draining = false;
    Clock::time_point drain_deadline{};
    std::thread thread;
  };

  Impl(ServerOptions options, Handler& handler)
      : options_(std::move(options)),
        handler_(handler),
        http_log_(observability::logger("http")),
        access_log_(observability::logger("access")) {
    const auto n = std::max<std::uint32_t>(1, options_.io_threads);
    for (std::uint32_t i = 0; i < n; ++i) threads_.push_back(std::make_unique<IoThread>());
    listeners_.push_back(std::make_unique<ListenSocket>(Listener::kPublic, options_.listen, threads_[0]->ctx));
    if (!options_.admin_listen.empty())
      listeners_.push_back(std::make_unique<ListenSocket>(Listener::kAdmin, options_.admin_listen, threads_[0]->ctx));
  }

  ~Impl() {
    if (started_ && !joined_) {
      shutdown(std::chrono::milliseconds(0));
      wait();
    }
  }

  void listen();
  void start();
  void shutdown(std::chrono::milliseconds drain_timeout);
  void wait();

  tcp::endpoint local_endpoint() const { return listeners_[0]->bound; }
  std::string admin_address() const {
    for (const auto& l : listeners_)
      if (l->kind == Listener::kAdmin) return l->address();
    return {};
  }
  std::uint64_t connection_count() const noexcept { return connections_.load(std::memory_order_relaxed); }

 private:
  asio::awaitable<void> accept_loop(ListenSocket& listener);
  asio::awaitable<void> sweep_loop(IoThread& io);
  void refuse(tcp::socket socket);
  template <class Stream>
  void spawn_session(IoThread& io, tcp::socket socket, const ListenSocket& listener);

  ServerOptions options_;
  Handler& handler_;
  TlsContext* tls_ = options_.tls.get();  // null: plain HTTP
  std::shared_ptr<spdlog::logger> http_log_;
  std::shared_ptr<spdlog::logger> access_log_;
  std::vector<std::unique_ptr<IoThread>> threads_;
  std::vector<std::unique_ptr<ListenSocket>> listeners_;  ///< [0] is the public listener
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<bool> stopping_{false};
  std::size_t next_thread_ = 0;
  bool started_ = false;
  bool joined_ = false;
};

// What a client connection is, whatever its stream (a plain socket or TLS over one): deadlines,
// the per-request state and every step that does no I/O. Lives in its coroutine; registered
// with its IoThread so the sweeper can enforce deadlines and shutdown can find idle connections.
// The sweeper and shutdown act on the TCP socket under the stream (raw_), so they need no
// virtual call and the plain path pays nothing for TLS.
class Server::Impl::SessionCore : public std::enable_shared_from_this<SessionCore> {
 public:
  // `socket` is read here (peer, options) and then moved into the derived session's stream.
  SessionCore(Impl& server, IoThread& io, tcp::socket& socket, const ListenSocket& listener)
      : server_(server), io_(io), reply_timer_(socket.get_executor()),
        buffer_(static_cast<std::size_t>(server.options_.max_header_bytes) + kReadChunk), listener_(listener.kind) {
    it_ = io_.sessions.insert(io_.sessions.end(), this);
    error_code ec;
    if (listener.is_unix()) {  // a unix socket's peer has no address, and no Nagle to turn off
      remote_ = "unix";
      return;
    }
    const auto peer = socket.remote_endpoint(ec);
    if (!ec) remote_ = format_endpoint(peer);
    socket.set_option(tcp::no_delay(true), ec);
  }

  ~SessionCore() {
    io_.sessions.erase(it_);
    server_.connections_.fetch_sub(1, std::memory_order_relaxed);
  }

  SessionCore(const SessionCore&) = delete;
  SessionCore& operator=(const SessionCore&) = delete;

  // Called by the sweeper on this thread.
  void check_deadline(Clock::time_point now) {
    if (deadline_ <= now && !timed_out_) {
      timed_out_ = true;
      error_code ec;
      raw_->cancel(ec);
    }
  }
  // Called on this thread when shutdown begins: a connection between requests closes now, and
  // a streamed body ends.
  void on_drain() {
    if (idle_) {
      error_code ec;
      raw_->cancel(ec);
    } else if (streaming_) {
      reply_timer_.cancel();
    }
  }
  void force_close() {
    error_code ec;
    raw_->cancel(ec);
    raw_->close(ec);
    reply_timer_.cancel();
  }

 protected:
  enum class ReadResult { kOk, kEof, kTimeout, kError, kFull };

  void set_deadline(std::chrono::milliseconds budget) {
    deadline_ = Clock::now() + budget;
    timed_out_ = false;
  }
  ScanResult scan_buffered(HeaderScanner& scanner, bool& begun);
  void prepare_request();  // the parsed request's views into request_
  std::optional<Deferred> handle_request();
  asio::awaitable<void> await_reply(Deferred& deferred);
  // While streaming nothing is read, so the client's end is watched: a close, a reset or any
  // byte (nothing is owed after the request) ends the stream at once, not at its next write.
  // A client that vanishes without a word is cut by TCP_USER_TIMEOUT once a write goes unacked.
  void watch_peer() {
#ifdef TCP_USER_TIMEOUT
    if (remote_ != "unix") {
      const unsigned ms = static_cast<unsigned>(server_.options_.write_timeout.count());
      ::setsockopt(raw_->native_handle(), IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof ms);
    }
#endif
    raw_->async_wait(tcp::socket::wait_read, [weak = weak_from_this()](const error_code& wec) {
      if (wec == asio::error::operation_aborted) return;
      if (auto self = weak.lock(); self && self->streaming_) {
        self->peer_gone_ = true;
        self->reply_timer_.cancel();
      }
    });
  }
  // What a BodyStream calls when it has more: posts to this thread, where the wait ends.
  std::function<void()> stream_waker() {
    return [weak = weak_from_this(), ex = reply_timer_.get_executor()] {
      asio::post(ex, [weak] {
        if (auto self = weak.lock(); self && self->streaming_) {
          self->stream_woken_ = true;
          self->reply_timer_.cancel();
        }
      });
    };
  }
  // Builds the status line and header fields into head_out_; true when the body goes too.
  bool build_head(bool head, bool close);
  void set_failure(unsigned status, std::string_view reason);
  void log_access(std::size_t bytes_out);
  // The request id (the client's X-Request-Id when valid, else a new one) and the request's
  // span (W3C: continues the client's trace when exactly one valid traceparent came).
  void assign_request_ids() {
    request_.request_id = {};
    std::string_view traceparent, tracestate;
    int traceparents = 0;
    for (const auto& h : headers_) {
      if (h.name.size() == 12 && request_.request_id.empty() && iequals(h.name, "x-request-id") &&
          valid_request_id(h.value)) {
        request_.request_id = h.value;
      } else if (h.name.size() == 11 && iequals(h.name, "traceparent")) {
        traceparent = h.value;
        ++traceparents;
      } else if (h.name.size() == 10 && iequals(h.name, "tracestate")) {
        tracestate = h.value;
      }
    }
    if (request_.request_id.empty()) {
      generate_request_id(generated_id_);
      request_.request_id = {generated_id_.data(), generated_id_.size()};
    }
    span_ = observability::Span::start(traceparents == 1 ? traceparent : std::string_view{});
    request_.traceparent = span_.traceparent();
    request_.tracestate = span_.parent_id().empty() ? std::string_view{} : tracestate;
  }

  Impl& server_;
  IoThread& io_;
  tcp::socket* raw_ = nullptr;  // the TCP socket under the derived session's stream
  asio::steady_timer reply_timer_;
  const AsyncReply* waiting_reply_ = nullptr;
  std::list<SessionCore*>::iterator it_;
  boost::beast::flat_buffer buffer_;
  std::string remote_;
  Clock::time_point deadline_ = Clock::time_point::max();
  bool timed_out_ = false;
  bool idle_ = false;
  bool streaming_ = false;     // writing a BodyStream; reply_timer_ waits for its wake-ups
  bool stream_woken_ = false;  // the stream woke the connection since the last pull
  bool peer_gone_ = false;     // while streaming: the client closed, reset or sent something
  Listener listener_;

  // Per-request state, reused across requests to keep the steady state allocation-free.
  std::string header_block_;
  std::vector<Header> headers_;
  std::string body_;
  std::string head_out_;
  Response response_;
  Request request_;
  std::array<char, 16> generated_id_{};
  observability::Span span_;
  Clock::time_point started_at_{};
};

// The request loop over one stream type: tcp::socket (plain HTTP) or TlsStream. Everything
// here reads or writes the stream; a template, so each kind of connection has its own code and
// the plain one is exactly what it was without TLS.
template <class Stream>
class Server::Impl::Session final : public SessionCore {
 public:
  static constexpr bool kTls = std::is_same_v<Stream, TlsStream>;

  Session(Impl& server, IoThread& io, tcp::socket socket, const ListenSocket& listener,
          std::shared_ptr<ssl::context> tls)
      : SessionCore(server, io, socket, listener), tls_context_(std::move(tls)), stream_(make_stream(std::move(socket))) {
    raw_ = &boost::beast::get_lowest_layer(stream_);
  }

  asio::awaitable<void> run();

 private:
  Stream make_stream(tcp::socket socket) {
    if constexpr (kTls) return Stream(std::move(socket), *tls_context_);
    else return socket;
  }
  asio::awaitable<ReadResult> read_some();
  asio::awaitable<std::size_t> read_header(HeaderScanner& scanner, bool begun);
  asio::awaitable<bool> read_body(RequestParser& parser, bool head);
  asio::awaitable<void> serve_large_body(bool head);
  asio::awaitable<void> serve_stream(bool head);
  asio::awaitable<bool> write_response(bool head, bool close);
  asio::awaitable<void> fail_and_close(unsigned status, std::string_view reason, bool head);
  asio::awaitable<void> linger_and_close();
  asio::awaitable<bool> handshake();
  asio::awaitable<void> send_close_notify();

  std::shared_ptr<ssl::context> tls_context_;  // TLS: outlives stream_ (declared before it)
  Stream stream_;
};

template <class Stream>
asio::awaitable<Server::Impl::SessionCore::ReadResult> Server::Impl::Session<Stream>::read_some() {
  const std::size_t room = buffer_.max_size() - buffer_.size();
  if (room == 0) co_return ReadResult::kFull;
  auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(std::min(room, kReadChunk)), kAsTuple);
  buffer_.commit(n);
  if (!ec) co_return ReadResult::kOk;
  if (ec == asio::error::operation_aborted && timed_out_) co_return ReadResult::kTimeout;
  if (ec == asio::error::eof) co_return ReadResult::kEof;
  co_return ReadResult::kError;
}

asio::awaitable<void> Server::Impl::SessionCore::await_reply(Deferred& deferred) {
  auto& reply = *deferred.reply;
  // The waker runs on whichever thread completes the reply; it only posts to this connection's
  // thread, where the timer is cancelled if this session is still waiting for that reply.
  auto waker = [weak = weak_from_this(), ex = reply_timer_.get_executor(), r = &reply] {
    asio::post(ex, [weak, r] {
      if (auto self = weak.lock(); self && self->waiting_reply_ == r) self->reply_timer_.cancel();
    });
  };
  if (reply.set_waker(std::move(waker))) {
    waiting_reply_ = &reply;
    deadline_ = Clock::time_point::max();  // the reply deadline below governs this phase
    reply_timer_.expires_at(deferred.deadline);
    co_await reply_timer_.async_wait(kAsTuple);
    waiting_reply_ = nullptr;
  }
  if (reply.expire()) {
    response_.clear();
    response_.set_error(504, "timeout", reply.timeout_message);
  } else {
    response_ = reply.take();
  }
  for (const auto& h : reply.extra_headers) response_.headers.push_back(h);
}

void Server::Impl::SessionCore::log_access(std::size_t bytes_out) {
  if (!server_.options_.access_log || !server_.access_log_->should_log(spdlog::level::info)) return;
  const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started_at_).count();
  // Formatted on the log writer's thread; the request's span ids go with it (JSON: fields).
  observability::log_access({request_.method, request_.target, remote_, span_.parent_id(),
                             static_cast<unsigned>(response_.status), bytes_out, micros,
                             {request_.request_id, span_.trace_id(), span_.span_id()}});
}

bool Server::Impl::SessionCore::build_head(bool head, bool close) {
  auto& r = response_;
  const bool no_body = r.status == 204 || r.status == 304 || (r.status >= 100 && r.status < 200);
  // The fixed fields go in as pieces sized once and copied once: a response head costs one
  // resize, not a capacity check per fragment.
  std::array<std::string_view, 16> parts;
  std::size_t count = 0;
  const auto add = [&](std::string_view piece) { parts[count++] = piece; };
  add(status_line_and_date(r.status));
  char length[24];
  if (!no_body) {
    if (!r.content_type.empty() && safe_field_text(r.content_type)) {
      add("Content-Type: "sv);
      add(r.content_type);
      add("\r\n"sv);
    }
    if (r.stream) [[unlikely]] {
      if (request_.version == 11) add("Transfer-Encoding: chunked\r\n"sv);  // HTTP/1.0: until the close
    } else {
      add("Content-Length: "sv);
      add({length, static_cast<std::size_t>(std::to_chars(length, length + sizeof length, r.body.size()).ptr - length)});
      add("\r\n"sv);
    }
  }
  if (!request_.request_id.empty()) {
    add("X-Request-Id: "sv);
    add(request_.request_id);
    add("\r\n"sv);
  }
  auto& out = head_out_;
  out.clear();
  append_parts(out, {parts.data(), count});
  for (const auto& [name, value] : r.headers) {
    // Response splitting guard: a field a handler built from user input must not inject lines.
    if (name.empty() || !safe_field_text(name) || !safe_field_text(value) || name.find(':') != std::string::npos) {
      server_.http_log_->warn("dropped invalid response header req={} name_bytes={}", request_.request_id, name.size());
      continue;
    }
    const std::array<std::string_view, 4> field{name, ": "sv, value, "\r\n"sv};
    append_parts(out, field);
  }
  if (close) out += "Connection: close\r\n\r\n"sv;
  else if (request_.version == 10) out += "Connection: keep-alive\r\n\r\n"sv;
  else out += "\r\n"sv;

  return !head && !no_body && !r.body.empty();
}

template <class Stream>
asio::awaitable<bool> Server::Impl::Session<Stream>::write_response(bool head, bool close) {
  const bool send_body = build_head(head, close);
  set_deadline(server_.options_.write_timeout);
  // One gather write (writev) for header and body; the body is never copied (TLS: Beast's
  // flat_stream coalesces them into one record).
  const std::array<asio::const_buffer, 2> buffers{asio::buffer(head_out_), asio::buffer(response_.body)};
  auto [ec, n] = co_await asio::async_write(stream_, std::span(buffers.data(), send_body ? 2 : 1), kAsTuple);
  log_access(n);
  if (ec) {
    server_.http_log_->debug("write failed peer={} req={} error={}", remote_, request_.request_id,
                             timed_out_ ? "timeout" : ec.message());
    co_return false;
  }
  co_return true;
}

template <class Stream>
asio::awaitable<void> Server::Impl::Session<Stream>::linger_and_close() {
  if constexpr (kTls) co_await send_close_notify();
  error_code ec;
  raw_->shutdown(tcp::socket::shutdown_send, ec);
  if (!ec) {
    set_deadline(std::chrono::duration_cast<std::chrono::milliseconds>(kLingerTime));
    std::size_t discarded = 0;
    std::array<char, 4096> sink;
    while (discarded < kLingerMaxBytes) {
      // TLS too: what still comes is read off the TCP socket and thrown away undecrypted.
      auto [rec, n] = co_await raw_->async_read_some(asio::buffer(sink), kAsTuple);
      if (rec) break;
      discarded += n;
    }
  }
  raw_->close(ec);
}

// TLS: the handshake comes first, under the header-read deadline (a client that opens a
// connection and says nothing holds it no longer than one that sends half a header). Until the
// handshake is done the connection counts as idle: shutdown closes it at once.
template <class Stream>
asio::awaitable<bool> Server::Impl::Session<Stream>::handshake() {
  set_deadline(server_.options_.header_read_timeout);
  idle_ = true;
  auto [ec] = co_await stream_.async_handshake(ssl::stream_base::server, kAsTuple);
  idle_ = false;
  if (!ec) co_return true;
  if (!io_.draining) server_.tls_->handshake_failed(remote_, ec.message(), timed_out_);
  error_code cec;
  raw_->close(cec);
  co_return false;
}

// TLS: a close_notify alert before the TCP shutdown, so the client can tell the end of the
// connection from a truncation. One direction only (RFC 8446 §6.1 allows it): telling OpenSSL
// the peer's alert already came makes SSL_shutdown send ours and return at once instead of
// waiting for the client's.
template <class Stream>
asio::awaitable<void> Server::Impl::Session<Stream>::send_close_notify() {
  SSL_set_shutdown(stream_.native_handle(), SSL_RECEIVED_SHUTDOWN);
  set_deadline(server_.options_.write_timeout);
  auto [ec] = co_await stream_.async_shutdown(kAsTuple);
  (void)ec;  // the TCP connection closes next either way
}

void Server::Impl::SessionCore::set_failure(unsigned status, std::string_view reason) {
  server_.http_log_->debug("rejected request status={} reason=\"{}\" peer={} req={}", status, reason, remote_,
                           request_.request_id);
  response_.clear();
  response_.set_error(status, error_code_for(status), reason);
}

template <class Stream>
asio::awaitable<void> Server::Impl::Session<Stream>::fail_and_close(unsigned status, std::string_view reason,
                                                                    bool head) {
  set_failure(status, reason);
  const bool written = co_await write_response(head, true);
  if (written) co_await linger_and_close();
}

// Reads up to the end of the request header (empty lines before it skipped) and returns the
// header's size; 0 when the connection ends instead (closed, timed out, or an error answered).
// Scans what the buffer holds (dropping empty lines before the request line first): the whole
// header, an error, or more to read. A plain function, so a header that arrived in one read
// (nearly always) costs no coroutine frame of its own.
ScanResult Server::Impl::SessionCore::scan_buffered(HeaderScanner& scanner, bool& begun) {
  auto data = std::string_view(static_cast<const char*>(buffer_.data().data()), buffer_.size());
  if (!begun) {
    // RFC 9112 §2.2: empty lines before a request line are skipped.
    if (const auto skip = HeaderScanner::leading_empty_lines(data); skip != 0) {
      buffer_.consume(skip);
      data.remove_prefix(skip);
    }
    begun = !data.empty() && data != "\r";
    if (!begun) return {};
  }
  return scanner.scan(data);
}

// Reads until the header is complete (scan_buffered wanted more): its size, or 0 when the
// connection ends instead (closed, timed out, or an error answered).
template <class Stream>
asio::awaitable<std::size_t> Server::Impl::Session<Stream>::read_header(HeaderScanner& scanner, bool begun) {
  for (;;) {
    const auto r = co_await read_some();
    if (begun && r == ReadResult::kTimeout) {
      co_await fail_and_close(408, "request header not received in time", false);
      co_return 0;
    }
    if (begun && r == ReadResult::kFull) {
      co_await fail_and_close(431, "request header fields too large", false);
      co_return 0;
    }
    if (r != ReadResult::kOk) co_return 0;
    const auto scan = scan_buffered(scanner, begun);
    if (scan.kind == ScanResult::Kind::kComplete) co_return scan.header_size;
    if (scan.kind == ScanResult::Kind::kError) {
      co_await fail_and_close(scan.status, scan.reason, false);
      co_return 0;
    }
  }
}

// Reads the rest of the body into body_; false when the connection ends instead (closed, timed
// out, or an error answered).
template <class Stream>
asio::awaitable<bool> Server::Impl::Session<Stream>::read_body(RequestParser& parser, bool head) {
  error_code ec;
  if (!parser.is_done()) {
    if (parser.expects_continue() && request_.version == 11 && buffer_.size() == 0) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      auto [wec, wn] = co_await asio::async_write(stream_, asio::buffer(kContinue), kAsTuple);
      if (wec) co_return false;
    }
    while (!parser.is_done()) {
      if (buffer_.size() != 0) {
        const auto used = parser.put(buffer_.data(), ec);
        buffer_.consume(used);
        if (ec == bhttp::error::need_more) {
          ec = {};
        } else if (ec) {
          const auto failure = parser.failure().status != 0 ? parser.failure() : map_parse_error(ec, header_block_);
          co_await fail_and_close(failure.status, failure.reason, head);
          co_return false;
        }
        if (parser.is_done()) break;
        if (used != 0) continue;
      }
      const auto r = co_await read_some();
      if (r == ReadResult::kTimeout) {
        co_await fail_and_close(408, "request body not received in time", head);
        co_return false;
      }
      if (r == ReadResult::kFull) {
        co_await fail_and_close(400, "chunk header or trailer line too long", head);
        co_return false;
      }
      if (r != ReadResult::kOk) co_return false;
    }
  }
  co_return true;
}

// A request whose Content-Length is over max_body_bytes (the parser stopped at that field): its
// header parsed again without a body limit, then the handler's large_body_limit() decides before
// any of the body is read. Served alone: the connection closes after the answer. Off the hot path.
template <class Stream>
asio::awaitable<void> Server::Impl::Session<Stream>::serve_large_body(bool head) {
  const auto& opt = server_.options_;
  RequestParser parser(headers_, body_, opt.max_target_bytes);
  parser.header_limit(opt.max_header_bytes + 4);
  parser.eager(true);
  parser.body_limit(boost::none);  // the handler sets the limit below
  error_code ec;
  parser.put(asio::buffer(header_block_), ec);
  if (ec) {
    const auto failure = parser.failure().status != 0 ? parser.failure() : map_parse_error(ec, header_block_);
    co_await fail_and_close(failure.status, failure.reason, head);
    co_return;
  }
  prepare_request();
  response_.clear();
  std::uint64_t limit = 0;
  try {
    limit = server_.handler_.large_body_limit(request_, response_);
  } catch (const std::exception& e) {
    server_.http_log_->error("handler threw req={} target={} error=\"{}\"", request_.request_id, request_.target, e.what());
    response_.clear();
  }
  const auto length = parser.content_length();
  if (limit == 0 || !length || *length > limit) {
    if (limit == 0 && response_.status >= 400) {
      if (co_await write_response(head, true)) co_await linger_and_close();
      co_return;
    }
    co_await fail_and_close(413, limit == 0 ? "request body too large" : "request body larger than this endpoint takes",
                            head);
    co_return;
  }
  parser.body_limit(limit);
  set_deadline(opt.request_timeout);
  if (!parser.is_done() && !co_await read_body(parser, head)) co_return;
  set_deadline(opt.request_timeout);  // the handler's time starts when the body is in, not before
  if (auto deferred = handle_request()) co_await await_reply(*deferred);
  if (response_.stream) {
    co_await serve_stream(head);
    co_return;
  }
  if (co_await write_response(head, true)) co_await linger_and_close();
}

// A response whose body is a BodyStream: the head, then each piece the stream gives as it comes
// (chunked), then the connection closes. Waits on reply_timer_: a wake-up from the stream (posted
// here) or a shutdown cancels it, idle_interval() lets it expire. Off the hot path.
template <class Stream>
asio::awaitable<void> Server::Impl::Session<Stream>::serve_stream(bool head) {
  const auto body = response_.stream;
  build_head(head, true);  // chunked framing, by response_.stream
  response_.stream.reset();
  const bool chunked = request_.version == 11;
  set_deadline(server_.options_.write_timeout);
  auto [hec, sent] = co_await asio::async_write(stream_, asio::buffer(head_out_), kAsTuple);
  bool ok = !hec && !head;
  if (ok) {
    streaming_ = true;
    stream_woken_ = false;
    peer_gone_ = false;
    try {
      body->start(stream_waker());
      watch_peer();
    } catch (const std::exception& e) {  // out of memory: the stream ends before it began
      server_.http_log_->error("response stream failed req={} error=\"{}\"", request_.request_id, e.what());
      ok = false;
    }
    std::string data;
    char size_line[24];
    bool more = true, idle = false;
    while (ok && more) {
      data.clear();
      stream_woken_ = false;
      try {
        more = body->pull(data, idle) && !io_.draining && !peer_gone_;
      } catch (const std::exception& e) {
        server_.http_log_->error("response stream failed req={} error=\"{}\"", request_.request_id, e.what());
        data.clear();  // a piece cut short would be a broken event
        more = false;
      }
      if (peer_gone_) break;
      idle = false;
      if (!data.empty()) {
        auto* end = std::to_chars(size_line, size_line + sizeof size_line - 2, data.size(), 16).ptr;
        *end++ = '\r';
        *end++ = '\n';
        const std::array<asio::const_buffer, 3> frame{asio::buffer(size_line, static_cast<std::size_t>(end - size_line)),
                                                      asio::buffer(data), asio::buffer("\r\n"sv)};
        set_deadline(server_.options_.write_timeout);
        const std::span<const asio::const_buffer> all(frame);
        auto [wec, n] = co_await asio::async_write(stream_, chunked ? all : all.subspan(1, 1), kAsTuple);
        sent += n;
        ok = !wec;
        continue;  // pull again before waiting
      }
      if (!more || stream_woken_) continue;
      deadline_ = Clock::time_point::max();  // waiting for data is not a stalled write
      reply_timer_.expires_after(body->idle_interval());
      auto [tec] = co_await reply_timer_.async_wait(kAsTuple);
      idle = !tec;
    }
    streaming_ = false;
    ok = ok && !peer_gone_;
    if (ok && chunked) {
      set_deadline(server_.options_.write_timeout);
      auto [eec, n] = co_await asio::async_write(stream_, asio::buffer("0\r\n\r\n"sv), kAsTuple);
      sent += n;
      ok = !eec;
    }
  }
  body->close();
  log_access(sent);
  if (ok || head) {
    if constexpr (kTls) co_await send_close_notify();
    error_code sec;
    raw_->shutdown(tcp::socket::shutdown_send, sec);
  }
  error_code cec;
  raw_->close(cec);
}

void Server::Impl::SessionCore::prepare_request() {
  const auto target = request_.target;
  const auto q = target.find('?');
  request_.path = target.substr(0, q);
  request_.query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
  request_.headers = headers_;
  request_.body = body_;
  request_.remote_address = remote_;
  request_.listener = listener_;
  request_.deadline = deadline_;
}

// Hands the parsed request to the handler: response_ holds its answer, or the reply to wait for
// comes back.
std::optional<Deferred> Server::Impl::SessionCore::handle_request() {
  prepare_request();
  response_.clear();
  std::optional<Deferred> deferred;
  try {
    deferred = server_.handler_.handle(request_, response_);
  } catch (const std::exception& e) {
    server_.http_log_->error("handler threw req={} target={} error=\"{}\"", request_.request_id, request_.target,
                             e.what());
    response_.clear();
    response_.set_error(500, "internal", "internal error");
  }
  return deferred;
}

template <class Stream>
asio::awaitable<void> Server::Impl::Session<Stream>::run() {
  const auto& opt = server_.options_;
  if constexpr (kTls) {
    if (!co_await handshake()) co_return;
  }
  HeaderScanner scanner(opt.max_header_bytes, opt.max_target_bytes + 64);

  for (;;) {
    // ---- wait for the first byte of the next request (keep-alive idle) --------------------
    request_ = Request{};
    started_at_ = {};
    scanner.reset();
    if (buffer_.size() == 0) {
      if (io_.draining) co_return;
      idle_ = true;
      set_deadline(opt.idle_timeout);
      const auto r = co_await read_some();
      idle_ = false;
      if (r != ReadResult::kOk) co_return;  // closed, idle timeout, or drain: no response owed
    }
    set_deadline(opt.header_read_timeout);
    started_at_ = Clock::now();

    // ---- header: Keel's framing scan, then Beast's parse of the complete block -------------
    bool begun = false;
    const auto scan = scan_buffered(scanner, begun);
    if (scan.kind == ScanResult::Kind::kError) {
      co_await fail_and_close(scan.status, scan.reason, false);
      co_return;
    }
    std::size_t header_size = scan.header_size;
    if (scan.kind != ScanResult::Kind::kComplete) header_size = co_await read_header(scanner, begun);
    if (header_size == 0) co_return;

    // The header is copied out of the read buffer so the views the parser hands out stay valid
    // while the buffer is reused for the body.
    header_block_.assign(static_cast<const char*>(buffer_.data().data()), header_size);
    buffer_.consume(header_size);
    RequestParser parser(headers_, body_, opt.max_target_bytes);
    parser.header_limit(opt.max_header_bytes + 4);
    parser.body_limit(opt.max_body_bytes);
    parser.eager(true);
    error_code ec;
    parser.put(asio::buffer(header_block_), ec);
    request_.method = parser.method();
    request_.target = parser.target();
    request_.version = parser.version();
    const bool head = request_.method == "HEAD";
    assign_request_ids();
    if (ec) {
      // Over max_body_bytes by its Content-Length: the handler may take it with a larger limit.
      if (ec == bhttp::error::body_limit) {
        co_await serve_large_body(head);
        co_return;
      }
      const auto failure = parser.failure().status != 0 ? parser.failure() : map_parse_error(ec, header_block_);
      co_await fail_and_close(failure.status, failure.reason, head);
      co_return;
    }

    // ---- body ---------------------------------------------------------------------------------
    set_deadline(opt.request_timeout);
    if (!parser.is_done() && !co_await read_body(parser, head)) co_return;

    // ---- dispatch -----------------------------------------------------------------------------
    if (auto deferred = handle_request()) co_await await_reply(*deferred);
    if (response_.stream) [[unlikely]] {
      co_await serve_stream(head);
      co_return;
    }

    const bool close = !parser.keep_alive() || io_.draining;
    const bool written = co_await write_response(head, close);
    if (!written) co_return;
    if (close) {
      if constexpr (kTls) co_await send_close_notify();
      error_code sec;
      raw_->shutdown(tcp::socket::shutdown_send, sec);
      raw_->close(sec);
      co_return;
    }
  }
}

// ---------------------------------------------------------------------------------------------

void Server::Impl::listen() {
  for (auto& l : listeners_) l->listen(threads_[0]->ctx);
}

template <class Stream>
void Server::Impl::spawn_session(IoThread& io, tcp::socket socket, const ListenSocket& listener) {
  std::shared_ptr<ssl::context> tls;
  if constexpr (std::is_same_v<Stream, TlsStream>) tls = tls_->current();  // this connection's for its whole life
  auto session = std::make_shared<Session<Stream>>(*this, io, std::move(socket), listener, std::move(tls));
  asio::co_spawn(io.ctx, [session]() -> asio::awaitable<void> { co_await session->run(); },
                 [log = http_log_](const std::exception_ptr& e) {
                   if (!e) return;
                   try {
                     std::rethrow_exception(e);
                   } catch (const std::exception& ex) {
                     log->error("connection dropped after unexpected error=\"{}\"", ex.what());
                   }
                 });
}

void Server::Impl::refuse(tcp::socket socket) {
  // Over max_connections: a best-effort 503 without blocking, then close. A TLS listener just
  // closes: plain text is no answer a TLS client can read, and a handshake costs what it refuses.
  static constexpr std::string_view kBusy =
      "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: 73\r\n"
      "Connection: close\r\nRetry-After: 1\r\n\r\n"
      R"({"error":{"code":"unavailable","message":"too many connections to keel"}})";
  error_code ec;
  socket.non_blocking(true, ec);
  if (tls_ == nullptr) socket.write_some(asio::buffer(kBusy), ec);
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

// TLS, when configured, covers every TCP listener; the admin API's unix socket is local and
// private (0600), so it stays plain.
asio::awaitable<void> Server::Impl::accept_loop(ListenSocket& listener) {
  const bool tls = tls_ != nullptr && !listener.is_unix();
  auto last_fd_warning = Clock::time_point{};
  for (;;) {
    auto& target = *threads_[next_thread_];
    next_thread_ = (next_thread_ + 1) % threads_.size();
    auto [ec, socket] = co_await listener.accept(target.ctx);
    if (stopping_.load()) co_return;
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // Out of descriptors or memory: accepting again at once would spin on the same error.
      // Back off and keep serving the connections already open.
      const auto now = Clock::now();
      if (now - last_fd_warning > std::chrono::seconds(5)) {
        http_log_->warn("accept failed, backing off error=\"{}\" connections={}", ec.message(), connection_count());
        last_fd_warning = now;
      }
      listener.backoff.expires_after(std::chrono::milliseconds(100));
      co_await listener.backoff.async_wait(kAsTuple);
      continue;
    }
    // The admin listener is exempt, so a flood on the public one cannot lock the operator out.
    if (listener.kind == Listener::kPublic && connections_.load(std::memory_order_relaxed) >= options_.max_connections) {
      http_log_->debug("connection refused: max_connections={} reached", options_.max_connections);
      refuse(std::move(socket));
      continue;
    }
    connections_.fetch_add(1, std::memory_order_relaxed);
    asio::post(target.ctx, [this, &target, &listener, tls, s = std::move(socket)]() mutable {
      if (tls) spawn_session<TlsStream>(target, std::move(s), listener);
      else spawn_session<tcp::socket>(target, std::move(s), listener);
    });
  }
}

asio::awaitable<void> Server::Impl::sweep_loop(IoThread& io) {
  asio::steady_timer timer(io.ctx);
  for (;;) {
    timer.expires_after(kSweepInterval);
    co_await timer.async_wait(kAsTuple);
    const auto now = Clock::now();
    // Copy: a check may finish a session, which unregisters itself (on a later turn of the loop,
    // but keep the iteration independent of that detail).
    std::vector<SessionCore*> snapshot(io.sessions.begin(), io.sessions.end());
    if (io.draining && now >= io.drain_deadline) {
      for (auto* s : snapshot) s->force_close();
    } else {
      for (auto* s : snapshot) s->check_deadline(now);
    }
    if (io.draining && io.sessions.empty()) co_return;
  }
}

void Server::Impl::start() {
  started_ = true;
  for (auto& l : listeners_) asio::co_spawn(threads_[0]->ctx, accept_loop(*l), asio::detached);
  for (auto& t : threads_) {
    asio::co_spawn(t->ctx, sweep_loop(*t), asio::detached);
    t->thread = std::thread([&io = *t, log = http_log_] {
      // What this thread sends plugin runners while serving ready connections leaves after them.
      const ThreadPoster post_here = [&io](std::function<void()> job) { asio::post(io.ctx, std::move(job)); };
      thread_poster() = &post_here;
      try {
        io.ctx.run();
      } catch (const std::exception& e) {
        log->critical("I/O thread stopped error=\"{}\"", e.what());
      }
      thread_poster() = nullptr;
    });
  }
  http_log_->info("listening address={} io_threads={} max_connections={} tls={}", format_endpoint(local_endpoint()),
                  threads_.size(), options_.max_connections,
                  tls_ != nullptr ? "on min_version=" + std::string(to_string(tls_->options().min_version)) : "off");
  if (const auto admin = admin_address(); !admin.empty()) http_log_->info("listening admin_address={}", admin);
}

void Server::Impl::shutdown(std::chrono::milliseconds drain_timeout) {
  if (stopping_.exchange(true)) return;
  const auto deadline = Clock::now() + drain_timeout;
  asio::post(threads_[0]->ctx, [this] {
    for (auto& l : listeners_) l->close();
  });
  for (auto& t : threads_) {
    asio::post(t->ctx, [&io = *t, deadline] {
      io.draining = true;
      io.drain_deadline = deadline;
      std::vector<SessionCore*> snapshot(io.sessions.begin(), io.sessions.end());
      for (auto* s : snapshot) s->on_drain();
    });
  }
}

void Server::Impl::wait() {
  for (auto& t : threads_)
    if (t->thread.joinable()) t->thread.join();
  joined_ = true;
}

// ---------------------------------------------------------------------------------------------

Server::Server(ServerOptions options, Handler& handler) : impl_(std::make_unique<Impl>(std::move(options), handler)) {}
Server::~Server() = default;
void Server::listen() { impl_->listen(); }
std::string Server::local_address() const { return format_endpoint(impl_->local_endpoint()); }
std::uint16_t Server::local_port() const { return impl_->local_endpoint().port(); }
std::string Server::admin_address() const { return impl_->admin_address(); }
void Server::start() { impl_->start(); }
void Server::shutdown(std::chrono::milliseconds drain_timeout) { impl_->shutdown(drain_timeout); }
void Server::wait() { impl_->wait(); }
std::uint64_t Server::connection_count() const noexcept { return impl_->connection_count(); }

}  // namespace keel::host::http
