#pragma once
// The host's log over the admin API (docs/operations.md "Live log tail"), read from the tail
// (observability/log_tail.hpp):
//   GET /admin/logs/stream  Server-Sent Events: "event: open" with the newest sequence number,
//                           then each matching line as it is logged ("id: <seq>", "data: <JSON
//                           line>"), "event: lost" when matching lines were overwritten before
//                           they could be sent, a ": idle" comment after 15 s without a line
//   GET /admin/logs         the matching lines the tail holds now, as JSON
// Both take level=trace|debug|info|warn|error|critical (the least severe shown), plugin=NAME,
// request_id=ID; the stream takes backlog=N (matching lines from before it opened, default 100),
// the snapshot limit=N (default 500). The tail records only while a stream is open.

#include <string_view>
#include <vector>

#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::app {

/// Answers /admin/logs and /admin/logs/stream (`seg`: the path's segments, "admin" first).
void logs_api(const http::Request& req, http::Response& res, const std::vector<std::string_view>& seg,
              const plugins::PluginHost& plugins);

}  // namespace keel::host::app
