#include "app/app.hpp"

#include <atomic>
#include <csignal>
#include <fstream>
#include <pthread.h>
#include <stdexcept>
#include <system_error>

#include "http/server.hpp"
#include "observability/log.hpp"

namespace keel::host::app {
namespace {

// Endpoints the host answers itself. Unknown paths get 404; a known path with the wrong
// method gets 405 with Allow (RFC 9110 §15.5.6).
class BuiltinHandler final : public http::Handler {
 public:
  explicit BuiltinHandler(const std::atomic<bool>& draining) : draining_(draining) {}

  void handle(const http::Request& req, http::Response& res) override {
    const bool get = req.method == "GET" || req.method == "HEAD";
    if (req.path == "/healthz") {
      if (!get) return method_not_allowed(res);
      return res.set_json(200, R"({"status":"alive"})");
    }
    if (req.path == "/readyz") {
      if (!get) return method_not_allowed(res);
      if (draining_.load(std::memory_order_relaxed))
        return res.set_error(503, "unavailable", "host is shutting down");
      return res.set_json(200, R"({"status":"ready","plugins":[]})");
    }
    res.set_error(404, "not_found", "no route for this path");
  }

 private:
  static void method_not_allowed(http::Response& res) {
    res.set_error(405, "method_not_allowed", "this path allows GET, HEAD");
    res.headers.emplace_back("Allow", "GET, HEAD");
  }
  const std::atomic<bool>& draining_;
};

http::ServerOptions server_options(const config::Config& c) {
  http::ServerOptions o;
  o.listen = c.server.listen;
  o.io_threads = c.server.io_threads;
  o.max_connections = c.server.max_connections;
  o.max_header_bytes = c.http.max_header_bytes;
  o.max_target_bytes = c.http.max_target_bytes;
  o.max_body_bytes = c.http.max_body_bytes;
  o.header_read_timeout = c.http.header_read_timeout;
  o.idle_timeout = c.http.idle_timeout;
  o.request_timeout = c.http.request_timeout;
  o.write_timeout = c.http.write_timeout;
  o.access_log = c.log.access_log;
  return o;
}

void write_port_file(const std::filesystem::path& file, std::uint16_t port) {
  // Written to a temporary name and renamed, so a reader never sees a half-written number.
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << '\n';
    if (!out) throw std::runtime_error("cannot write port file " + tmp.string());
  }
  std::filesystem::rename(tmp, file);
}

}  // namespace

App::App(config::Config config) : config_(std::move(config)) {}

int App::run(const ServeOptions& options) {
  // Block the shutdown signals in every thread (the I/O threads inherit this mask); this
  // thread then takes them synchronously with sigwait, so no handler runs in signal context.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto log = observability::logger("keel");
  if (options.listen) config_.server.listen = *options.listen;
  std::atomic<bool> draining{false};
  BuiltinHandler handler(draining);
  http::Server server(server_options(config_), handler);
  server.listen();
  server.start();
  if (options.port_file) write_port_file(*options.port_file, server.local_port());
  log->info("keel started version={} config={} address={}", KEEL_VERSION, config_.source.string(),
            server.local_address());

  int signal = 0;
  sigwait(&signals, &signal);
  log->info("shutdown requested signal={} drain_timeout_ms={} connections={}", strsignal(signal),
            config_.server.drain_timeout.count(), server.connection_count());
  draining.store(true);
  server.shutdown(config_.server.drain_timeout);
  server.wait();
  log->info("keel stopped");
  return 0;
}

}  // namespace keel::host::app
