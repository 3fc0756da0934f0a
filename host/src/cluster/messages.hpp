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

/// A forwarded request as decoded: views into the message it came in.
struct ForwardedRequest {
  isolation::Context context;  ///< request id, the entry host's traceparent, nanoseconds left
  std::string_view origin;     ///< the node that received it from the client
  std::string_view method, target, remote_address, tracestate, body;
  std::vector<http::Header> headers;
};

/// The request `req` as the entry host `origin` forwards it: `traceparent` is the forwarding
/// hop's span, `remaining_ns` what is left of the deadline.
[[nodiscard]] std::string encode_forwarded_request(const http::Request& req, std::string_view origin,
                                                   std::string_view traceparent, std::int64_t remaining_ns);
/// False when the message is malformed or of another version (`error` says which).
[[nodiscard]] bool decode_forwarded_request(std::string_view data, ForwardedRequest& out, std::string& error);

/// The answer `res` (plus `extra` header fields) from node `node`.
[[nodiscard]] std::string encode_forwarded_response(const http::Response& res,
                                                    const std::vector<std::pair<std::string, std::string>>& extra,
                                                    std::string_view node);
/// Fills `out` (owning copies) and `node`; false when malformed or of another version.
[[nodiscard]] bool decode_forwarded_response(std::string_view data, http::Response& out, std::string& node,
                                             std::string& error);

}  // namespace keel::host::cluster
