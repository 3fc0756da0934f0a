#pragma once
// GET /metrics: the host's counters and gauges in the Prometheus text exposition format 0.0.4
// (docs/operations.md "Metrics" lists every family). No authentication, like /healthz. Runs on
// the I/O thread: it only reads counters (a few short locks, /proc/self) and writes text.

#include <string>

#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}
namespace keel::host::http {
class TlsContext;
}
namespace keel::host::cluster {
class Cluster;
}

namespace keel::host::app {

/// Appends every metric family to `out`; the keel_tls_* families when `tls` is set, the
/// keel_cluster_* ones when `cluster` is.
void write_metrics(std::string& out, plugins::PluginHost& plugins, const http::TlsContext* tls = nullptr,
                   const cluster::Cluster* cluster = nullptr);

/// Answers GET or HEAD /metrics into `res` (the caller has checked the method).
void handle_metrics(http::Response& res, plugins::PluginHost& plugins, const http::TlsContext* tls = nullptr,
                    const cluster::Cluster* cluster = nullptr);

}  // namespace keel::host::app
