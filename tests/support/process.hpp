#pragma once
// Runs the real `keel` binary for integration tests: spawns it with arguments, captures its
// stderr/stdout into a file, waits for the port file, and stops it with a signal. Every wait is
// bounded; the destructor kills a process that is still running.

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace keel::test {

class Process {
 public:
  /// Start `binary` with `args`; output goes to `log_file`. `env` entries ("K=V") are added to
  /// the current environment. `setup` runs in the child before exec (e.g. setrlimit).
  Process(const std::string& binary, const std::vector<std::string>& args, std::filesystem::path log_file,
          const std::vector<std::string>& env = {}, void (*setup)() = nullptr);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }
  /// Send `sig` (e.g. SIGTERM).
  void signal(int sig) const;
  /// Wait up to `timeout` for exit; returns the exit code (128+signal if killed), or nullopt.
  std::optional<int> wait(std::chrono::milliseconds timeout);
  /// Everything the process wrote so far.
  [[nodiscard]] std::string output() const;
  /// Wait up to `timeout` until output() contains `text`.
  bool wait_for_output(const std::string& text, std::chrono::milliseconds timeout) const;

 private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::filesystem::path log_file_;
};

/// Poll `file` until it holds a port number (up to `timeout`); throws if it never appears.
std::uint16_t wait_for_port_file(const std::filesystem::path& file, const Process& process,
                                 std::chrono::milliseconds timeout = std::chrono::seconds(20));

/// CPU time (user + system) consumed by `pid` so far, from /proc/PID/stat.
std::chrono::milliseconds cpu_time(pid_t pid);

}  // namespace keel::test
