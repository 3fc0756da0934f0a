#pragma once
// This process as the standard process_* metrics describe it (the Prometheus client
// conventions), for /metrics: process_stats_linux.cpp reads /proc/self; process_stats_windows.cpp
// asks GetProcessTimes, GetProcessMemoryInfo and GetProcessHandleCount.

#include <cstdint>
#include <optional>

namespace keel::host::platform {

struct ProcessStats {
  double start_time_seconds = 0;  ///< since the Unix epoch
  double uptime_seconds = 0;      ///< since the process started (not following wall-clock steps on Linux)
  double cpu_seconds = 0;         ///< user + system
  std::uint64_t resident_bytes = 0;
  std::uint64_t virtual_bytes = 0;  ///< Linux: the address space; Windows: the private commit charge
  std::uint64_t threads = 0;
  std::optional<std::uint64_t> open_fds;  ///< descriptors (Windows: handles); unset when they cannot be counted
  std::optional<std::uint64_t> max_fds;   ///< soft RLIMIT_NOFILE; unset when unlimited (always on Windows)
};

/// This process's numbers now; nullopt when they cannot be read. Thread-safe, and cheap enough
/// for every scrape: a few system calls, no allocation on Linux.
[[nodiscard]] std::optional<ProcessStats> read_process_stats() noexcept;

}  // namespace keel::host::platform
