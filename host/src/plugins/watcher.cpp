#include "plugins/watcher.hpp"

#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <thread>
#include <tuple>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

namespace keel::host::plugins {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// What identifies a version of a file without reading it: size, mtime (ns), inode.
using Stamp = std::tuple<std::uintmax_t, std::int64_t, std::uint64_t>;

std::map<std::string, Stamp> scan(const fs::path& dir) {
  std::map<std::string, Stamp> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (e.path().extension() != ".so") continue;
    struct stat st{};
    if (::stat(e.path().c_str(), &st) != 0) continue;
    out[e.path().filename().string()] = {static_cast<std::uintmax_t>(st.st_size),
                                         static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                                         static_cast<std::uint64_t>(st.st_ino)};
  }
  return out;
}

}  // namespace

struct DirectoryWatcher::Impl {
  WatchOptions options;
  std::function<void()> on_change;
  std::thread thread;
  int inotify = -1, wake = -1;
  std::atomic<bool> running{false};

  void run() {
    auto known = scan(options.directory);
    std::optional<Clock::time_point> dirty_since;  // a change seen, not reported yet
    auto last_change = Clock::now();
    auto next_scan = Clock::now() + options.rescan;
    alignas(inotify_event) char buf[8192];
    while (running.load()) {
      const auto now = Clock::now();
      auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_scan - now);
      if (dirty_since) wait = std::min(wait, std::chrono::duration_cast<std::chrono::milliseconds>(last_change + options.debounce - now));
      pollfd fds[2] = {{wake, POLLIN, 0}, {inotify, POLLIN, 0}};
      const int n = ::poll(fds, inotify >= 0 ? 2 : 1, static_cast<int>(std::max<long long>(wait.count(), 0)));
      if (n > 0 && (fds[0].revents & POLLIN) != 0) break;  // stop()
      if (n > 0 && inotify >= 0 && (fds[1].revents & POLLIN) != 0) {
        const auto len = ::read(inotify, buf, sizeof buf);
        for (ssize_t off = 0; len > 0 && off < len;) {
          const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
          const std::string name = ev->len > 0 ? ev->name : "";
          if ((ev->mask & IN_Q_OVERFLOW) != 0 || name.ends_with(".so")) {
            dirty_since = dirty_since.value_or(Clock::now());
            last_change = Clock::now();
          }
          off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
        }
      }
      if (Clock::now() >= next_scan) {  // the safety net, and the only source without inotify
        next_scan = Clock::now() + options.rescan;
        auto now_files = scan(options.directory);
        if (now_files != known) {
          known = std::move(now_files);
          dirty_since = dirty_since.value_or(Clock::now());
          last_change = Clock::now();
        }
      }
      if (dirty_since && Clock::now() >= last_change + options.debounce) {
        // Quiet long enough: report once, with the directory as it is now.
        known = scan(options.directory);
        dirty_since.reset();
        on_change();
      }
    }
  }
};

DirectoryWatcher::DirectoryWatcher(WatchOptions options, std::function<void()> on_change)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->on_change = std::move(on_change);
}

DirectoryWatcher::~DirectoryWatcher() { stop(); }

std::string DirectoryWatcher::start() {
  auto& s = *impl_;
  if (s.running.exchange(true)) return {};
  s.wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  std::string how;
  if (!s.options.force_polling) {
    s.inotify = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (s.inotify >= 0 &&
        ::inotify_add_watch(s.inotify, s.options.directory.c_str(),
                            IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB) < 0) {
      ::close(s.inotify);
      s.inotify = -1;
    }
  }
  if (s.inotify >= 0) how = "inotify, full scan every " + std::to_string(s.options.rescan.count()) + " ms";
  else how = "polling every " + std::to_string(s.options.rescan.count()) + " ms";
  s.thread = std::thread([this] { impl_->run(); });
  return how;
}

void DirectoryWatcher::stop() {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto w = ::write(s.wake, &one, sizeof one);
  if (s.thread.joinable()) s.thread.join();
  if (s.inotify >= 0) ::close(s.inotify);
  if (s.wake >= 0) ::close(s.wake);
  s.inotify = s.wake = -1;
}

}  // namespace keel::host::plugins
