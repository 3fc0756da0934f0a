#pragma once
// A real HAProxy (Debian's) in front of Keel hosts for cluster tests: round robin over the
// hosts, each checked with GET /readyz, on a loopback port, run in the foreground and stopped by
// the test. docs/cluster.md shows the same configuration.

#include <cstdint>
#include <memory>
#include <vector>

#include "process.hpp"
#include "temp_dir.hpp"

namespace keel::test {

class HAProxy {
 public:
  /// Balances over the hosts listening on `ports` (127.0.0.1); REQUIREs that it started.
  explicit HAProxy(const std::vector<std::uint16_t>& ports);
  ~HAProxy();
  HAProxy(const HAProxy&) = delete;
  HAProxy& operator=(const HAProxy&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  [[nodiscard]] Process& process() { return *process_; }

 private:
  TempDir dir_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Process> process_;
};

}  // namespace keel::test
