#pragma once
// App wires the host together for `keel serve`: logging, HTTP server, built-in endpoints,
// signal handling and the start-up/shutdown order. Owns everything it creates; run() blocks
// the calling thread until SIGINT/SIGTERM and returns the process exit code.

#include <filesystem>
#include <optional>
#include <string>

#include "config/config.hpp"

namespace keel::host::app {

struct ServeOptions {
  std::optional<std::string> listen;               ///< overrides [server] listen
  std::optional<std::filesystem::path> port_file;  ///< written with the bound port once serving
};

class App {
 public:
  explicit App(config::Config config);
  /// Serve until SIGINT or SIGTERM, then drain and return 0. Throws on start-up failure.
  int run(const ServeOptions& options);

 private:
  config::Config config_;
};

/// The `keel` command line: serve, config check, --version. Returns the exit code.
int run_cli(int argc, char** argv);

}  // namespace keel::host::app
