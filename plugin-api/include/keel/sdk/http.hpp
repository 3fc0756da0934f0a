#pragma once
// HTTP-facing SDK types: Request (a read-only view of one routed request), Responder (the
// once-only completion handle), CallRequest/CallResponse (plugin-to-plugin calls through the
// host), and the small Field/TraceContext value types they share.
// Views (Request, Fields, CallResponse) are valid only during the hook that received them;
// Responder may be moved to and used from any thread.

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/status.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace keel::sdk {
namespace detail {
struct Access;
}  // namespace detail

/// A name/value pair: an HTTP header, a path parameter or a query parameter.
struct Field {
  std::string_view name{};
  std::string_view value{};
};
/// Spelling used where a Field is an HTTP header.
using Header = Field;

/// W3C trace context (https://www.w3.org/TR/trace-context/) to propagate with publish or call.
struct TraceContext {
  std::string_view traceparent{};  ///< e.g. "00-<trace-id>-<parent-id>-01"; empty = none
  std::string_view tracestate{};   ///< vendor entries; may be empty
};

/// Content type used by Responder::respond when none is given.
inline constexpr std::string_view kTextPlain = "text/plain; charset=utf-8";
/// Content type used by Responder::json.
inline constexpr std::string_view kApplicationJson = "application/json";

/// Read-only list of fields owned by the host (headers, path or query parameters), in the
/// order received; repeated names appear once per occurrence.
/// @warning Valid only while the hook that produced it runs.
class Fields {
 public:
  /// Forward iterator yielding Field values.
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::input_iterator_tag;
    using value_type = Field;
    using difference_type = std::ptrdiff_t;
    using reference = Field;
    using pointer = void;

    iterator() noexcept = default;
    Field operator*() const noexcept { return Field{detail::view(kv_->name), detail::view(kv_->value)}; }
    iterator& operator++() noexcept {
      ++kv_;
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator old = *this;
      ++kv_;
      return old;
    }
    friend bool operator==(const iterator&, const iterator&) noexcept = default;

   private:
    friend class Fields;
    explicit iterator(const keel_host_kv* kv) noexcept : kv_{kv} {}
    const keel_host_kv* kv_ = nullptr;
  };

  /// An empty list.
  Fields() noexcept = default;

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] bool empty() const noexcept { return count_ == 0; }
  /// The i-th field; i < size().
  [[nodiscard]] Field operator[](std::size_t i) const noexcept {
    return Field{detail::view(items_[i].name), detail::view(items_[i].value)};
  }
  [[nodiscard]] iterator begin() const noexcept { return iterator{items_}; }
  [[nodiscard]] iterator end() const noexcept { return iterator{items_ == nullptr ? nullptr : items_ + count_}; }

  /// Value of the first field named exactly `name`.
  [[nodiscard]] std::optional<std::string_view> find(std::string_view name) const noexcept {
    for (Field f : *this) {
      if (f.name == name) return f.value;
    }
    return std::nullopt;
  }
  /// Value of the first field whose name equals `name` ignoring ASCII case (HTTP headers).
  [[nodiscard]] std::optional<std::string_view> find_ci(std::string_view name) const noexcept {
    for (Field f : *this) {
      if (detail::iequals(f.name, name)) return f.value;
    }
    return std::nullopt;
  }

 private:
  friend struct detail::Access;
  explicit Fields(keel_host_kv_list list) noexcept
      : items_{list.count == 0 ? nullptr : list.items}, count_{list.items == nullptr ? 0 : list.count} {}

  const keel_host_kv* items_ = nullptr;
  std::size_t count_ = 0;
};

/// One request routed to this plugin: an HTTP request under /api/<plugin>, or a call from
/// another plugin (caller_plugin() is then set). All accessors are cheap views.
/// @warning Valid only during on_request; copy what an asynchronous answer needs. Not copyable,
/// so it cannot be captured by value by mistake.
class Request {
 public:
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  /// Upper-case method, e.g. "GET".
  [[nodiscard]] std::string_view method() const noexcept { return bytes(&keel_request::method); }
  /// Full path as received, percent-encoded, without the query: "/api/orders/42".
  [[nodiscard]] std::string_view path() const noexcept { return bytes(&keel_request::path); }
  /// The complete request body.
  [[nodiscard]] std::string_view body() const noexcept { return bytes(&keel_request::body); }
  /// Peer address "ip:port"; empty for plugin-to-plugin calls.
  [[nodiscard]] std::string_view remote_address() const noexcept { return bytes(&keel_request::remote_address); }
  /// The id the host logs as req=...; include it in log lines about this request.
  [[nodiscard]] std::string_view request_id() const noexcept { return bytes(&keel_request::request_id); }
  /// Name of the calling plugin for a plugin-to-plugin call; empty for HTTP requests.
  [[nodiscard]] std::string_view caller_plugin() const noexcept { return bytes(&keel_request::caller_plugin); }
  /// Index of the matched route in the manifest's "routes" array.
  [[nodiscard]] std::uint32_t route_index() const noexcept {
    return KEEL_SDK_FIELD_OR(r_, keel_request, route_index, std::uint32_t{0});
  }
  /// When the host gives up and answers 504 itself; nullopt when there is no deadline.
  [[nodiscard]] std::optional<std::chrono::steady_clock::time_point> deadline() const noexcept {
    const std::int64_t ns = KEEL_SDK_FIELD_OR(r_, keel_request, deadline_mono_ns, std::int64_t{0});
    if (ns == 0) return std::nullopt;
    // The ABI uses CLOCK_MONOTONIC, which is steady_clock's clock in libstdc++ and libc++ on Linux.
    return std::chrono::steady_clock::time_point{
        std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::nanoseconds{ns})};
  }
  /// Trace context of this request's span, to pass on to publish() and call().
  [[nodiscard]] TraceContext trace() const noexcept {
    return TraceContext{bytes(&keel_request::traceparent), bytes(&keel_request::tracestate)};
  }

  /// "{name}" captures of the matched route template, percent-decoded, in template order.
  [[nodiscard]] Fields path_params() const noexcept { return list(&keel_request::path_params); }
  /// Query parameters, percent-decoded, in order; repeats kept.
  [[nodiscard]] Fields query_params() const noexcept { return list(&keel_request::query); }
  /// Request headers as received, in order.
  [[nodiscard]] Fields headers() const noexcept { return list(&keel_request::headers); }

  /// The decoded value of path parameter `name` (from "{name}" or "{name...}").
  [[nodiscard]] std::optional<std::string_view> path_param(std::string_view name) const noexcept {
    return path_params().find(name);
  }
  /// The first decoded value of query parameter `name`.
  [[nodiscard]] std::optional<std::string_view> query(std::string_view name) const noexcept {
    return query_params().find(name);
  }
  /// The first value of header `name`, compared case-insensitively.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept {
    return headers().find_ci(name);
  }

 private:
  friend struct detail::Access;
  explicit Request(const keel_request* request) noexcept : r_{request} {}

  // Every member is read through struct_size, so a host struct shorter than this SDK's view
  // yields empty values instead of out-of-bounds reads.
  [[nodiscard]] std::string_view bytes(keel_host_bytes keel_request::*member) const noexcept {
    return within(member) ? detail::view(r_->*member) : std::string_view{};
  }
  [[nodiscard]] Fields list(keel_host_kv_list keel_request::*member) const noexcept;
  template <class T>
  [[nodiscard]] bool within(T keel_request::*member) const noexcept {
    const auto offset = reinterpret_cast<const char*>(&(r_->*member)) - reinterpret_cast<const char*>(r_);
    return static_cast<std::size_t>(offset) + sizeof(T) <= r_->struct_size;
  }

  const keel_request* r_;
};

/// Completes one request, exactly once, now or later, from any thread. Move-only.
/// The first successful respond()/json() wins; a second one is refused by the host (which logs
/// it) and returns StatusCode::kAlreadyCompleted.
/// @warning Destroying a Responder that was never completed does NOT answer the request: the
/// host times the request out (504) at its deadline. Complete every responder you accept.
/// A Responder must not be used after the plugin's stop() has returned.
class Responder {
 public:
  /// An empty responder; respond() on it returns kInvalidArgument.
  Responder() noexcept = default;
  Responder(Responder&& other) noexcept : host_{other.host_}, id_{std::exchange(other.id_, KEEL_RESPONDER_NONE)} {}
  Responder& operator=(Responder&& other) noexcept {
    if (this != &other) {
      host_ = other.host_;
      id_ = std::exchange(other.id_, KEEL_RESPONDER_NONE);
    }
    return *this;
  }
  Responder(const Responder&) = delete;
  Responder& operator=(const Responder&) = delete;
  /// Does not complete the request (see the class comment).
  ~Responder() = default;

  /// False once moved from (or default-constructed).
  [[nodiscard]] bool valid() const noexcept { return id_ != KEEL_RESPONDER_NONE; }
  /// The host's id for this request's responder, for log lines.
  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }

  /// Sends `status` (100..599) with `body`, `content_type` and extra `headers`. The host copies
  /// everything before returning. Thread-safe; may be called from any thread.
  /// @return ok; kAlreadyCompleted on a second completion; kTimeout when the host already
  /// answered 504; kUnavailable when the client went away; kInvalidArgument for a bad status,
  /// header or an empty responder (the request then stays pending); kTooLarge; kUnsupported.
  Status respond(int status, std::string_view body = {}, std::string_view content_type = kTextPlain,
                 std::span<const Header> headers = {}) const noexcept {
    if (id_ == KEEL_RESPONDER_NONE) {
      return detail::make_status(KEEL_ERR_INVALID_ARGUMENT, "respond on an empty responder (moved from?)");
    }
    if (host_.api == nullptr || !KEEL_HAS_FN(host_.api, keel_host_api, respond)) {
      return detail::make_status(KEEL_ERR_UNSUPPORTED, "host lacks respond");
    }
    try {
      const detail::KvBuffer kv{headers};
      keel_response response{};
      response.struct_size = static_cast<std::uint32_t>(sizeof(keel_response));
      response.status = static_cast<std::int32_t>(status);
      response.headers = kv.list();
      response.content_type = detail::lend(content_type);
      response.body = detail::lend(body);
      const keel_status rc = host_.api->respond(host_.ctx, id_, &response);
      if (rc >= 0) return {};
      std::string message{"respond refused responder="};
      detail::append_decimal(message, id_);
      return detail::make_status(rc, message);
    } catch (...) {
      return detail::make_status(KEEL_ERR_INTERNAL, "respond failed: out of memory");
    }
  }
  /// Same as above, for a braced list of headers: `{{"cache-control", "no-store"}}`.
  Status respond(int status, std::string_view body, std::string_view content_type,
                 std::initializer_list<Header> headers) const noexcept {
    return respond(status, body, content_type, std::span<const Header>{headers.begin(), headers.size()});
  }
  /// Sends `json_body` as application/json.
  Status json(int status, std::string_view json_body, std::span<const Header> headers = {}) const noexcept {
    return respond(status, json_body, kApplicationJson, headers);
  }
  /// Sends `json_body` as application/json with a braced list of headers.
  Status json(int status, std::string_view json_body, std::initializer_list<Header> headers) const noexcept {
    return respond(status, json_body, kApplicationJson, std::span<const Header>{headers.begin(), headers.size()});
  }

 private:
  friend struct detail::Access;
  Responder(detail::HostRef host, std::uint64_t id) noexcept : host_{host}, id_{id} {}

  detail::HostRef host_;
  std::uint64_t id_ = KEEL_RESPONDER_NONE;
};

/// A request to another plugin's route, sent with Host::call. The views need only outlive the
/// call() invocation: the host copies everything before call() returns.
struct CallRequest {
  std::string_view target{};                 ///< manifest name of the plugin to call
  std::string_view method = "GET";           ///< HTTP method
  std::string_view path = "/";               ///< path below the target's mount, may carry "?query"
  std::span<const Header> headers{};         ///< request headers
  std::string_view body{};                   ///< request body
  std::chrono::milliseconds timeout{0};      ///< 0 = the host's default request timeout
  TraceContext trace{};                      ///< usually the incoming Request::trace()
};

/// The answer to a Host::call, handed to its completion handler. Empty (status() == 0) when the
/// call failed before the target answered.
/// @warning Valid only while the completion handler runs; copy what you keep.
class CallResponse {
 public:
  CallResponse(const CallResponse&) = delete;
  CallResponse& operator=(const CallResponse&) = delete;

  /// HTTP status the target answered with; 0 when there is no response.
  [[nodiscard]] int status() const noexcept {
    return r_ == nullptr ? 0 : KEEL_SDK_FIELD_OR(r_, keel_call_response, status, std::int32_t{0});
  }
  /// Response headers.
  [[nodiscard]] Fields headers() const noexcept;
  /// The first value of header `name`, compared case-insensitively.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const noexcept {
    return headers().find_ci(name);
  }
  /// Content type; may be empty.
  [[nodiscard]] std::string_view content_type() const noexcept {
    return r_ == nullptr ? std::string_view{}
                         : detail::view(KEEL_SDK_FIELD_OR(r_, keel_call_response, content_type, keel_host_bytes{}));
  }
  /// Response body.
  [[nodiscard]] std::string_view body() const noexcept {
    return r_ == nullptr ? std::string_view{}
                         : detail::view(KEEL_SDK_FIELD_OR(r_, keel_call_response, body, keel_host_bytes{}));
  }

 private:
  friend struct detail::Access;
  explicit CallResponse(const keel_call_response* response) noexcept : r_{response} {}

  const keel_call_response* r_;
};

namespace detail {

/// Constructs the SDK's view types from ABI structs; the only way to make them.
struct Access {
  static Fields fields(keel_host_kv_list list) noexcept { return Fields{list}; }
  static Request request(const keel_request* request) noexcept { return Request{request}; }
  static Responder responder(HostRef host, keel_responder id) noexcept { return Responder{host, id}; }
  static CallResponse call_response(const keel_call_response* response) noexcept { return CallResponse{response}; }
};

}  // namespace detail

inline Fields Request::list(keel_host_kv_list keel_request::*member) const noexcept {
  return within(member) ? detail::Access::fields(r_->*member) : Fields{};
}

inline Fields CallResponse::headers() const noexcept {
  return r_ == nullptr ? Fields{}
                       : detail::Access::fields(KEEL_SDK_FIELD_OR(r_, keel_call_response, headers, keel_host_kv_list{}));
}

}  // namespace keel::sdk
