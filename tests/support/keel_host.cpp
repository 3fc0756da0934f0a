#include "keel_host.hpp"

#include <csignal>

#ifndef KEEL_BINARY
#error "KEEL_BINARY must name the keel executable"
#endif
#ifndef KEEL_PLUGIN_DIR
#define KEEL_PLUGIN_DIR "plugins"
#endif

namespace keel::test {

KeelHost::KeelHost(const HostOptions& options) {
  // Paths go through the environment so that options.config_toml may open any section itself.
  const auto config_file = dir_.write("keel.toml", options.config_toml);
  auto env = options.env;
  env.insert(env.begin(), {"KEEL_SERVER_DATA_DIR=" + (dir_.path() / "data").string(),
                           std::string("KEEL_PLUGINS_DIRECTORY=") + KEEL_PLUGIN_DIR});
  const auto port_file = dir_.path() / "port";
  process_ = std::make_unique<Process>(
      KEEL_BINARY,
      std::vector<std::string>{"serve", "--config", config_file.string(), "--listen", "127.0.0.1:0", "--port-file",
                               port_file.string()},
      dir_.path() / "keel.log", env, options.child_setup);
  port_ = wait_for_port_file(port_file, *process_);
}

KeelHost::~KeelHost() {
  if (!stop()) process_->signal(SIGKILL);
}

std::optional<int> KeelHost::stop(std::chrono::milliseconds timeout) {
  process_->signal(SIGTERM);
  return process_->wait(timeout);
}

}  // namespace keel::test
