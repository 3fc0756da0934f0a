#pragma once
// Starts the real keel binary on 127.0.0.1:0 with a generated config in a temp dir, and stops it
// through the SIGTERM path. The integration tests' one way to get a running host.

#include <chrono>
#include <filesystem>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "process.hpp"
#include "temp_dir.hpp"

namespace keel::test {

struct HostOptions {
  std::string config_toml;               ///< extra TOML appended to the generated config
  std::vector<std::string> env;          ///< extra environment ("K=V")
  void (*child_setup)() = nullptr;       ///< runs in the child before exec (e.g. setrlimit)
  /// Plugin files copied into a private plugin directory; empty = the build's plugins/ directory.
  std::vector<std::filesystem::path> plugins;
  /// [server] data_dir; empty = "data" in the host's temp dir. Set it to restart on the same data.
  std::filesystem::path data_dir;
  /// Command words put before the keel binary (e.g. {"unshare", ...}); empty = run it directly.
  std::vector<std::string> wrapper;
};

/// Options for a host that loads exactly `plugins`, with `config` appended to its config file.
HostOptions with_plugins(std::vector<std::filesystem::path> plugins, std::string config = {});

/// Path of a fixture plugin built from tests/integration/fixtures/<name>/.
std::filesystem::path fixture(const std::string& name);
/// Path of an example plugin built from plugins/<name>/.
std::filesystem::path example_plugin(const std::string& name);

class KeelHost {
 public:
  explicit KeelHost(const HostOptions& options);
  /// A host whose config has `config_toml` appended.
  explicit KeelHost(const std::string& config_toml = {}) : KeelHost(HostOptions{config_toml, {}, nullptr, {}, {}, {}}) {}
  ~KeelHost();
  KeelHost(const KeelHost&) = delete;
  KeelHost& operator=(const KeelHost&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// The admin listener's address as the host bound it ([admin] listen): "127.0.0.1:PORT" or
  /// "unix:/path"; empty when the admin API shares the public listener.
  [[nodiscard]] const std::string& admin_address() const noexcept { return admin_address_; }
  /// The port of a TCP admin listener (0 when there is none).
  [[nodiscard]] std::uint16_t admin_port() const;
  [[nodiscard]] Process& process() noexcept { return *process_; }
  [[nodiscard]] const TempDir& dir() const noexcept { return dir_; }
  /// The directory the host scans for plugins.
  [[nodiscard]] const std::filesystem::path& plugin_dir() const noexcept { return plugin_dir_; }
  /// The host's [server] data_dir (plugin databases live there).
  [[nodiscard]] const std::filesystem::path& data_dir() const noexcept { return data_dir_; }
  /// The config file the host was started with.
  [[nodiscard]] std::filesystem::path config_file() const { return dir_.path() / "keel.toml"; }
  /// The KEEL_STORAGE_* settings the host got from the harness ("K=V"; empty unless a postgres:
  /// variant runs), for command-line tools that must find the same databases.
  [[nodiscard]] const std::vector<std::string>& storage_env() const noexcept { return storage_env_; }
  /// SIGTERM, then wait up to `timeout`; returns the exit code (nullopt if still running).
  std::optional<int> stop(std::chrono::milliseconds timeout = std::chrono::seconds(15));
  /// Sleeps a random time in [lo, hi), then SIGKILL; returns the exit code (128 + 9 when killed).
  std::optional<int> kill_at_random(std::chrono::milliseconds lo, std::chrono::milliseconds hi);

 private:
  TempDir dir_;
  std::unique_ptr<Process> process_;
  std::uint16_t port_ = 0;
  std::string admin_address_;
  std::vector<std::string> storage_env_;
  std::filesystem::path plugin_dir_;
  std::filesystem::path data_dir_;
};

}  // namespace keel::test
