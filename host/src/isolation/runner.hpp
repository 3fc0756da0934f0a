#pragma once
// isolation::Runner is the host's side of one plugin generation running in a keel-plugin-runner
// child process (docs/isolation.md). It starts the process with its limits, hands the plugin
// host a keel_plugin table whose hooks are frames to the runner, serves the runner's calls of
// the host API with the host's own functions (inside the request context they carry), and
// supervises the process: it pings it, and when it crashes or hangs it answers what was in
// flight (502), rolls back its open transactions, restarts it with exponential backoff — or,
// after too many crashes in a window, reports the plugin quarantined. Thread-safe; the table's
// hooks keep plugin.h's threading rules.

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <keel/plugin.h>

#include "config/config.hpp"
#include "isolation/wire.hpp"

namespace keel::host::isolation {

/// Crash and restart counts of one plugin, shared by its generations (counters never go back).
struct RunnerCounters {
  std::atomic<std::uint64_t> crashes{0};
  std::atomic<std::uint64_t> restarts{0};
  std::atomic<std::uint64_t> busy{0};  ///< the runner's calls of the host API answered busy (queue full)
};

/// What the plugin host hears from a runner without asking; called on the runner's supervisor
/// thread, never while a hook of the plugin host is waiting on that thread.
class RunnerListener {
 public:
  virtual ~RunnerListener() = default;
  /// A crashed runner was started again (and re-created and re-started as the plugin was):
  /// durable deliveries paused by the crash can resume.
  virtual void runner_restarted(const std::string& plugin) = 0;
  /// The runner crashed max_crashes times within crash_window: it is not restarted again until
  /// the plugin is created again (enable or reload). The plugin must leave routing.
  virtual void runner_quarantined(const std::string& plugin, const std::string& reason) = 0;
};

struct RunnerOptions {
  std::string plugin;                  ///< manifest name
  std::filesystem::path binary;        ///< keel-plugin-runner
  std::string manifest_json;           ///< as read from the file; the runner checks the table against it
  config::RunnerSettings settings;
  /// Directories holding the host's data (data_dir, the config's and the log file's directory,
  /// the plugin directory): a runner in a mount namespace sees them empty.
  std::vector<std::filesystem::path> hidden;
  std::uint32_t queue_limit = 1024;    ///< hooks waiting in the runner beyond which it answers busy
  std::int32_t log_level = 2;          ///< the plugin logger's level now (keel_log_level)
  bool serialized = false;             ///< manifest "concurrency": "serialized": one hook at a time
  std::vector<bool> blocking_routes;   ///< by route index: the manifest marks the route "blocking"
  FrameLimits frame_limits;            ///< what the runner may send ([server] max_body_bytes, [events] max_payload_bytes)
};

struct RunnerStatus {
  int pid = 0;                         ///< 0 while no process runs
  std::string state;                   ///< starting, running, restarting, quarantined, stopped
  std::uint64_t crashes = 0, restarts = 0;  ///< of the plugin, over every generation
  std::string last_crash;              ///< why the last process ended unasked
  std::vector<std::string> limits;     ///< limits applied to the process, e.g. "RLIMIT_AS=268435456"
};

class Runner {
 public:
  /// Starts the runner on the plugin code in `code_fd` (duplicated; the caller keeps its own)
  /// and exchanges hello. Throws std::runtime_error saying why when the process cannot start
  /// or refuses the plugin (its table, ABI or manifest).
  Runner(RunnerOptions options, int code_fd, RunnerListener& listener, std::shared_ptr<RunnerCounters> counters);
  ~Runner();  ///< ends the process (killed if it does not exit) and joins every thread
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  /// The table to call the plugin through; its hooks find this runner through
  /// keel_host_ctx::runner (create) and the instance pointer (the rest).
  [[nodiscard]] const keel_plugin& table() const noexcept;
  /// The ABI version the plugin was built against, as the runner read it from its table.
  [[nodiscard]] std::uint32_t abi_version() const noexcept;
  [[nodiscard]] RunnerStatus status() const;
  /// The plugin's logger level changed: the runner's log_level() answers it from now on.
  void set_log_level(std::int32_t level);

  struct Impl;
  [[nodiscard]] Impl& impl() noexcept;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::host::isolation
