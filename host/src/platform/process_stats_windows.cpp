// read_process_stats on Windows: GetProcessTimes (start and CPU times), GetProcessMemoryInfo
// (working set, private commit), GetProcessHandleCount, and a thread snapshot for the count.
#include "platform/process_stats.hpp"

#include <windows.h>

#include <psapi.h>
#include <tlhelp32.h>

namespace keel::host::platform {
namespace {

// FILETIME counts 100 ns intervals; as a point in time, since 1601-01-01 UTC.
std::uint64_t ticks(const FILETIME& t) { return (std::uint64_t{t.dwHighDateTime} << 32) | t.dwLowDateTime; }
constexpr std::uint64_t kUnixEpochTicks = 116444736000000000ULL;  // 1970-01-01 as FILETIME
constexpr double kTicksPerSecond = 1e7;

// This process's threads, from a snapshot of the system's; 0 if none can be taken.
std::uint64_t count_threads() noexcept {
  const HANDLE snapshot = ::CreateToolhelp32Snapshot(TH32CS_SNAPTHREAD, 0);
  if (snapshot == INVALID_HANDLE_VALUE) return 0;
  const DWORD self = ::GetCurrentProcessId();
  std::uint64_t threads = 0;
  THREADENTRY32 entry{};
  entry.dwSize = sizeof entry;
  for (BOOL more = ::Thread32First(snapshot, &entry); more; more = ::Thread32Next(snapshot, &entry))
    if (entry.th32OwnerProcessID == self) ++threads;
  ::CloseHandle(snapshot);
  return threads;
}

}  // namespace

std::optional<ProcessStats> read_process_stats() noexcept {
  const HANDLE self = ::GetCurrentProcess();
  FILETIME created{}, exited{}, kernel{}, user{};
  if (!::GetProcessTimes(self, &created, &exited, &kernel, &user)) return std::nullopt;
  PROCESS_MEMORY_COUNTERS_EX memory{};
  memory.cb = sizeof memory;
  if (!::GetProcessMemoryInfo(self, reinterpret_cast<PROCESS_MEMORY_COUNTERS*>(&memory), sizeof memory))
    return std::nullopt;

  ProcessStats st;
  st.cpu_seconds = static_cast<double>(ticks(kernel) + ticks(user)) / kTicksPerSecond;
  const std::uint64_t start = ticks(created);
  st.start_time_seconds = start > kUnixEpochTicks ? static_cast<double>(start - kUnixEpochTicks) / kTicksPerSecond : 0;
  FILETIME now{};
  ::GetSystemTimeAsFileTime(&now);
  st.uptime_seconds = ticks(now) > start ? static_cast<double>(ticks(now) - start) / kTicksPerSecond : 0;
  st.resident_bytes = memory.WorkingSetSize;
  st.virtual_bytes = memory.PrivateUsage;
  st.threads = count_threads();
  DWORD handles = 0;
  if (::GetProcessHandleCount(self, &handles)) st.open_fds = handles;
  return st;
}

}  // namespace keel::host::platform
