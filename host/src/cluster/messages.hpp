#pragma once
// What travels between hosts (docs/cluster.md "Messages"): a forwarded HTTP request and its
// answer, in the process-isolation runner's wire format (isolation/wire.hpp: the same Writer and
// Reader, the same request Context, the same keel_response encoding). Pure functions.

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"
#include "isolation/wire.hpp"

namespace keel::host::cluster {

/// Bumped when a message's layout changes; a host answers a message of another version with
/// 502 and says which versions met.
inline constexpr std::uint32_t kClusterWireVersion = 1;

/// A request between hosts: an HTTP request a client sent to the entry host, or a
/// plugin-to-plugin call (`caller` set). Views: into the message it was decoded from, or into
/// what the sender encodes it from.
struct ForwardedRequest {
  isolation::Context context;  ///< request id, the entry host's hop traceparent, nanoseconds left
  std::string_view origin;     ///< the node that sends it
  std::string_view caller;     ///< a call: the calling plugin (on `origin`); empty for HTTP
  std::string_view method;
  std::string_view target;     ///< HTTP: the request-target; a call: the path (and query) under the callee's mount
  std::string_view remote_address, tracestate, body;
  std::vector<http::Header> headers;
};

[[nodiscard]] std::string encode_forwarded_request(const ForwardedRequest& f);
/// False when the message is malformed or of another version (`error` says which).
[[nodiscard]] bool decode_forwarded_request(std::string_view data, ForwardedRequest& out, std::string& error);

/// The answer `res` (plus `extra` header fields) from node `node`.
[[nodiscard]] std::string encode_forwarded_response(const http::Response& res,
                                                    const std::vector<std::pair<std::string, std::string>>& extra,
                                                    std::string_view node);
/// Fills `out` (owning copies) and `node`; false when malformed or of another version.
[[nodiscard]] bool decode_forwarded_response(std::string_view data, http::Response& out, std::string& node,
                                             std::string& error);

/// An in-memory event published on host `origin`, for the subscribers of other hosts; `here`:
/// the plugins that already got it on `origin` (they are not delivered to again).
struct ForwardedEvent {
  std::string_view origin;
  std::int64_t published_unix_ns = 0;
  std::string_view event_id, topic, payload, content_type, publisher, traceparent, tracestate, request_id;
  std::vector<std::string_view> here;
};
[[nodiscard]] std::string encode_forwarded_event(const ForwardedEvent& e);
/// False when malformed, of another version, or its topic or names are out of grammar.
[[nodiscard]] bool decode_forwarded_event(std::string_view data, ForwardedEvent& out, std::string& error);

}  // namespace keel::host::cluster
