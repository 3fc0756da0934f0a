// read_process_stats on Linux: /proc/self/stat, /proc/stat's btime (once), /proc/self/fd.
#include "platform/process_stats.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <ctime>
#include <fstream>
#include <string>
#include <string_view>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace keel::host::platform {
namespace {

// Reads a small file into `buf` with plain system calls (no allocation); -1 on failure.
long read_small_file(const char* path, char* buf, std::size_t cap) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t n = 0;
  while (n < cap) {
    const auto r = ::read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      ::close(fd);
      return -1;
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return static_cast<long>(n);
}

// The "btime" line of /proc/stat: boot time in seconds since the epoch (proc(5)). It does not
// change while the system runs, so it is read once; 0 if it cannot be read.
std::uint64_t boot_time_seconds() noexcept {
  static const std::uint64_t btime = [] {
    try {
      std::ifstream in("/proc/stat");
      std::string line;
      while (std::getline(in, line)) {
        if (!line.starts_with("btime ")) continue;
        std::uint64_t v = 0;
        std::from_chars(line.data() + 6, line.data() + line.size(), v);
        return v;
      }
    } catch (...) {  // allocation failure: report no boot time rather than terminate
    }
    return std::uint64_t{0};
  }();
  return btime;
}

double seconds(const timespec& t) noexcept {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

}  // namespace

std::optional<ProcessStats> read_process_stats() noexcept {
  // proc(5), /proc/[pid]/stat: "pid (comm) state ppid ...". comm may hold spaces and ')', so
  // the fields are counted from the last ')'; field 3 (state) is the first after it.
  char buf[4096];
  const long n = read_small_file("/proc/self/stat", buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  std::string_view text(buf, static_cast<std::size_t>(n));
  const auto paren = text.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  text.remove_prefix(paren + 1);

  std::uint64_t utime = 0, stime = 0, threads = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
  int field = 2;
  while (!text.empty() && field < 24) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    const auto end = std::min(text.find(' '), text.size());
    const auto token = text.substr(0, end);
    text.remove_prefix(end);
    ++field;
    std::uint64_t* target = nullptr;
    switch (field) {
      case 14: target = &utime; break;
      case 15: target = &stime; break;
      case 20: target = &threads; break;
      case 22: target = &start_ticks; break;
      case 23: target = &vsize; break;
      case 24: target = &rss_pages; break;
      default: break;
    }
    if (target) std::from_chars(token.data(), token.data() + token.size(), *target);
  }
  if (field < 24) return std::nullopt;

  const long ticks = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (ticks <= 0 || page <= 0) return std::nullopt;
  const double hz = static_cast<double>(ticks);

  ProcessStats st;
  st.cpu_seconds = static_cast<double>(utime + stime) / hz;
  st.threads = threads;
  st.virtual_bytes = vsize;
  st.resident_bytes = rss_pages * static_cast<std::uint64_t>(page);
  const double started_after_boot = static_cast<double>(start_ticks) / hz;
  // starttime counts from boot on CLOCK_BOOTTIME, so the uptime does not follow wall-clock steps.
  timespec now{};
  if (::clock_gettime(CLOCK_BOOTTIME, &now) == 0)
    st.uptime_seconds = std::max(0.0, seconds(now) - started_after_boot);
  if (const auto btime = boot_time_seconds(); btime > 0) {
    st.start_time_seconds = static_cast<double>(btime) + started_after_boot;
  } else if (::clock_gettime(CLOCK_REALTIME, &now) == 0) {
    st.start_time_seconds = seconds(now) - st.uptime_seconds;
  }

  if (DIR* dir = ::opendir("/proc/self/fd")) {
    std::uint64_t fds = 0;
    while (const dirent* e = ::readdir(dir))
      if (e->d_name[0] != '.') ++fds;
    ::closedir(dir);
    st.open_fds = fds > 0 ? fds - 1 : 0;  // not counting the descriptor opendir() itself held
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) st.max_fds = limit.rlim_cur;
  return st;
}

}  // namespace keel::host::platform
