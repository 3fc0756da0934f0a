#pragma once
// App wires the host together for `keel serve`: logging, HTTP server, built-in endpoints,
// signal handling and the start-up/shutdown order. Owns everything it creates; run() blocks
// the calling thread until SIGINT/SIGTERM and returns the process exit code.

#include <filesystem>
#include <memory>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "observability/log.hpp"

namespace keel::host::http {
class TlsContext;
}

namespace keel::host::app {

/// The TLS context [server] tls_cert and tls_key ask for, loaded and checked (null when TLS is
/// off); every listener of the host shares it. Throws config::ConfigError naming the key and
/// the file when they cannot be used. `keel config check` and `keel serve` both call it.
[[nodiscard]] std::shared_ptr<http::TlsContext> load_tls(const config::Config& c);

/// The logging set-up a config asks for ([log] level, format, file, rotation).
[[nodiscard]] observability::LogOptions log_options(const config::Config& c);

struct ServeOptions {
  std::optional<std::string> listen;               ///< overrides [server] listen
  std::optional<std::filesystem::path> port_file;  ///< written with the bound port once serving
  /// Written (before port_file) with the admin listener's address, "HOST:PORT" or "unix:/path";
  /// an empty line without [admin] listen.
  std::optional<std::filesystem::path> admin_address_file;
};

class App {
 public:
  explicit App(config::Config config);
  /// Serve until SIGINT or SIGTERM, then drain and return 0. Throws on start-up failure.
  /// SIGHUP re-reads the config file (an invalid one is refused and the running one stays):
  /// logging, the [plugin.*] sections and the admin tokens apply at once, other changes wait for a
  /// restart; then the plugin directory is re-read (PluginHost::sync_directory). With TLS, the
  /// certificate and key files are read again first: new connections get them, or a bad pair is
  /// refused.
  int run(const ServeOptions& options);

 private:
  config::Config config_;
};

/// The `keel` command line: serve, config check, --version. Returns the exit code.
int run_cli(int argc, char** argv);

}  // namespace keel::host::app
