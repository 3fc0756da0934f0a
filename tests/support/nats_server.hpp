#pragma once
// A real nats-server (Debian's, with JetStream) for cluster tests: on a loopback port, with its
// store in a temporary directory, started and stopped by the test. Every wait is bounded.

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "process.hpp"
#include "temp_dir.hpp"

namespace keel::test {

class NatsServer {
 public:
  /// Starts nats-server -js on 127.0.0.1, on a free port, with `args` added (e.g. {"--user", "u",
  /// "--pass", "p"}); REQUIREs that it became ready.
  explicit NatsServer(std::vector<std::string> args = {});
  ~NatsServer();
  NatsServer(const NatsServer&) = delete;
  NatsServer& operator=(const NatsServer&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// "nats://127.0.0.1:PORT".
  [[nodiscard]] std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }
  /// TOML for a host of this cluster: [cluster] with this server, node `node` and a short
  /// announcement interval, plus `extra` lines.
  [[nodiscard]] std::string cluster_toml(const std::string& node, const std::string& extra = {}) const;

  /// SIGTERM and wait (the store stays); start() brings it back on the same port and store.
  void stop();
  void start();
  [[nodiscard]] bool running() const noexcept { return process_ != nullptr; }
  [[nodiscard]] Process& process() { return *process_; }

 private:
  void launch(const std::string& port_arg);
  TempDir dir_;
  std::vector<std::string> args_;
  std::unique_ptr<Process> process_;
  std::uint16_t port_ = 0;
  int starts_ = 0;
};

}  // namespace keel::test
