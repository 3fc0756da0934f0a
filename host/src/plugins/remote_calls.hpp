#pragma once
// plugins::RemoteCalls: where call() sends a call for a plugin this host does not load when the
// host is in a cluster (docs/cluster.md "Calls"). Implemented above plugins/ (cluster/) and given
// to the PluginHost before start(), so this folder knows nothing of NATS.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.hpp"

namespace keel::host::plugins {

/// One call for another host, everything copied.
struct RemoteCall {
  std::string caller, target;  ///< plugin names
  std::string method;
  std::string path;  ///< under the target's mount, with the query, as the caller gave it
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::string request_id, traceparent, tracestate;  ///< traceparent: the call's span
  std::chrono::steady_clock::time_point deadline;
};

class RemoteCalls {
 public:
  virtual ~RemoteCalls() = default;
  /// The versions of `plugin` other hosts announce, as far as this one knows (one per host
  /// serving it; empty: no other host does).
  [[nodiscard]] virtual std::vector<std::string> versions(std::string_view plugin) const = 0;
  /// Sends `call`; `reply` is completed with the callee's answer (or 502/503 when none can
  /// come) unless it expired first. False, with `reply` untouched, when the call cannot be sent
  /// (the link is down). Never blocks; thread-safe.
  virtual bool send(const RemoteCall& call, std::shared_ptr<http::AsyncReply> reply) = 0;
  /// Tells the hosts serving `call.target` that this host refused `call` (the caller did not
  /// declare the target), so their logs show the attempt as well (headers and body are not
  /// sent). Fire and forget: never blocks; thread-safe.
  virtual void report_refused(const RemoteCall& call) = 0;
};

}  // namespace keel::host::plugins
