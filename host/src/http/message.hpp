#pragma once
// The HTTP exchange as the rest of the host sees it: plain structs with no Beast or Asio types.
// A Request is a set of views into the connection's buffers, valid only during Handler::handle().
// A Response is owned by the connection and reused across requests (clear() keeps capacity).

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "abi/field_syntax.hpp"

namespace keel::host::http {

struct Header {
  std::string_view name;
  std::string_view value;
};

/// Which of the server's listeners a connection came in on ([server] listen or [admin] listen),
/// or kCluster: another host of the cluster forwarded it (only plugin routes answer those).
enum class Listener : unsigned char { kPublic, kAdmin, kCluster };

struct Request {
  std::string_view method;     ///< as received, e.g. "GET"
  std::string_view target;     ///< raw request-target, e.g. "/api/hello/greet/x?y=1"
  std::string_view path;       ///< target up to '?', still percent-encoded
  std::string_view query;      ///< after '?', without it; empty if none
  unsigned version = 11;       ///< 10 or 11
  std::span<const Header> headers;
  std::string_view body;
  std::string_view request_id;
  std::string_view traceparent;  ///< this request's span as handlers receive it: "00-<trace>-<span>-<flags>"
  std::string_view tracestate;   ///< the client's tracestate when its traceparent was valid; else empty
  std::string_view remote_address;  ///< "127.0.0.1:53412"; "unix" on a unix socket
  Listener listener = Listener::kPublic;  ///< the listener the connection came in on
  /// kCluster: the plugin on another host that made this a plugin-to-plugin call; else empty.
  std::string_view caller_plugin;
  std::chrono::steady_clock::time_point deadline;

  /// First header named `name` (ASCII case-insensitive), or empty.
  [[nodiscard]] std::string_view header(std::string_view name) const noexcept;
};

/// A response body written as it is made, for as long as it lasts (Server-Sent Events: the
/// admin log tail). The server sends the head with chunked framing (HTTP/1.0: the body ends when
/// the connection closes), then what pull() gives as it comes, and closes the connection when
/// the stream ends, a write fails or times out, or the server shuts down. A client that goes
/// away is noticed at the next write: pull() is called at least every idle_interval(), so a
/// stream that writes something then (a heartbeat) is never held longer than that.
/// Only the connection's I/O thread calls these, in the order start, pull..., close (close
/// alone when the head could not be sent, or for HEAD).
class BodyStream {
 public:
  virtual ~BodyStream() = default;
  /// `wake` may be called from any thread, any number of times until close() returns, when
  /// there is more to pull; it only posts to the I/O thread.
  virtual void start(std::function<void()> wake) = 0;
  /// Appends to `out` what is ready (possibly nothing). `idle`: idle_interval() passed without
  /// a wake. Returns false when the stream has ended (what was appended still goes out).
  virtual bool pull(std::string& out, bool idle) = 0;
  /// The server is done with the stream: `wake` must not be called after this returns.
  virtual void close() noexcept = 0;
  [[nodiscard]] virtual std::chrono::milliseconds idle_interval() const noexcept { return std::chrono::seconds(15); }
};

struct Response {
  unsigned status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  ///< extra fields; framing fields are the server's
  /// Set (with status 200): the body is this stream, not `body` (see BodyStream).
  std::shared_ptr<BodyStream> stream;

  void clear() noexcept {
    status = 200;
    content_type.clear();
    body.clear();
    headers.clear();
    if (stream) [[unlikely]] stream.reset();
  }
  /// Fill with Keel's standard error body: {"error":{"code":"...","message":"..."}}.
  void set_error(unsigned http_status, std::string_view code, std::string_view message);
  void set_json(unsigned http_status, std::string json_body);
  /// 405 with the standard error body and the Allow field (RFC 9110 section 15.5.6).
  void set_method_not_allowed(std::string_view allow);
};

/// A response that a handler will deliver later, from any thread. Created by the handler,
/// shared with the connection, which waits for it until the deadline. Thread-safe.
class AsyncReply {
 public:
  /// Deliver the response. Returns false (and drops `response`) if the reply was already
  /// completed or has expired (deadline passed, client gone, shutdown).
  bool complete(Response&& response);
  /// Server side: give up waiting. Returns false if a response was delivered first.
  bool expire() noexcept;
  /// True while neither completed nor expired: someone still waits for the answer.
  [[nodiscard]] bool awaited();
  /// Server side: `waker` runs once, on the completing thread, when complete() succeeds. If the
  /// reply is already complete, returns false and does not store it (the caller proceeds).
  bool set_waker(std::function<void()> waker);
  /// Server side: after complete() succeeded, move the response out.
  [[nodiscard]] Response take();
  /// Runs `fn(status, body_bytes)` once when the reply completes (the response's status) or
  /// expires (504, 0): on the thread that does it, or at once if that already happened. For
  /// metrics; `fn` must be quick and must not touch this reply.
  void on_finish(std::function<void(unsigned, std::size_t)> fn);

  /// Message of the 504 sent if the deadline passes, e.g. "plugin 'orders' did not answer in 30000 ms".
  std::string timeout_message = "the handler did not answer in time";
  /// Fields the server adds to whatever response goes out (e.g. CORS); set before returning it.
  std::vector<std::pair<std::string, std::string>> extra_headers;

 private:
  std::mutex mutex_;
  enum class State { kPending, kCompleted, kExpired } state_ = State::kPending;
  Response response_;
  std::function<void()> waker_;
  std::function<void(unsigned, std::size_t)> on_finish_;
  unsigned finished_status_ = 0;
  std::size_t finished_bytes_ = 0;
};

/// A handler's promise to answer later (see AsyncReply); `deadline` bounds the wait (504).
struct Deferred {
  std::shared_ptr<AsyncReply> reply;
  std::chrono::steady_clock::time_point deadline;
};

/// Where the server sends every well-formed request. Called on the connection's I/O thread.
/// Either fill `response` and return nullopt, or return a Deferred and complete it later.
class Handler {
 public:
  virtual ~Handler() = default;
  virtual std::optional<Deferred> handle(const Request& request, Response& response) = 0;
  /// A request whose Content-Length is over ServerOptions::max_body_bytes, before its body is
  /// read (`request` has no body): the larger limit the handler takes it with (an upload), or 0
  /// to refuse it. On 0 the server sends `response` if the handler filled one (401, say), else
  /// 413, and closes the connection. Called on the I/O thread; the default refuses.
  virtual std::uint64_t large_body_limit(const Request& /*request*/, Response& /*response*/) { return 0; }
};

/// RFC 9110 reason phrase for `status` ("Unknown" for unregistered codes).
[[nodiscard]] std::string_view reason_phrase(unsigned status) noexcept;
/// Machine-readable error code used in JSON error bodies, e.g. 404 -> "not_found".
[[nodiscard]] std::string_view error_code_for(unsigned status) noexcept;

/// An X-Request-Id the host takes as it is: 1..128 characters of [A-Za-z0-9._:-]. Anything else
/// is replaced (from a client) or dropped (from a runner).
[[nodiscard]] bool valid_request_id(std::string_view id) noexcept;
/// An HTTP token (RFC 9110 section 5.6.2): a method or a header field name.
using abi::valid_token;
/// A header field value the host will write: no CR, LF or NUL.
using abi::valid_field_value;
[[nodiscard]] bool iequals(std::string_view a, std::string_view b) noexcept;

}  // namespace keel::host::http
