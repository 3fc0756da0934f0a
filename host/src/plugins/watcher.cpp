#include "plugins/watcher.hpp"

#include <atomic>
#include <map>
#include <optional>
#include <string>
#include <thread>

#include "package/plugin_image.hpp"
#include "platform/directory_events.hpp"
#include "platform/file_stamp.hpp"

namespace keel::host::plugins {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

// Every plugin file in `dir` and the version it is at.
std::map<std::string, platform::FileStamp> scan(const fs::path& dir) {
  std::map<std::string, platform::FileStamp> out;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!package::is_plugin_file(e.path())) continue;
    if (auto stamp = platform::file_stamp(e.path())) out[e.path().filename().string()] = *stamp;
  }
  return out;
}

}  // namespace

struct DirectoryWatcher::Impl {
  WatchOptions options;
  std::function<void()> on_change;
  std::thread thread;
  std::unique_ptr<platform::DirectoryEvents> events;
  std::atomic<bool> running{false};

  void run() {
    // Notices start before the first scan: a change in between is not left to the next full scan.
    if (events->wait(std::chrono::milliseconds(0)) == platform::DirectoryEvents::Wait::kWoken) return;
    auto known = scan(options.directory);
    std::optional<Clock::time_point> dirty_since;  // a change seen, not reported yet
    auto last_change = Clock::now();
    auto next_scan = Clock::now() + options.rescan;
    while (running.load()) {
      const auto now = Clock::now();
      // Rounded up: a wait rounded down to 0 ms just before a deadline would spin.
      auto wait = std::chrono::ceil<std::chrono::milliseconds>(next_scan - now);
      if (dirty_since) wait = std::min(wait, std::chrono::ceil<std::chrono::milliseconds>(last_change + options.debounce - now));
      const auto woke = events->wait(wait);
      if (woke == platform::DirectoryEvents::Wait::kWoken) break;  // stop()
      if (woke == platform::DirectoryEvents::Wait::kChanged) {
        dirty_since = dirty_since.value_or(Clock::now());
        last_change = Clock::now();
      }
      if (Clock::now() >= next_scan) {  // the safety net, and the only source without notices
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
  if (s.running.load()) return {};
  // First, so that a constructor that throws leaves the watcher stopped.
  s.events = std::make_unique<platform::DirectoryEvents>(s.options.directory, package::kNativePluginSuffix,
                                                         !s.options.force_polling);
  s.running.store(true);
  const auto every = std::to_string(s.options.rescan.count()) + " ms";
  const std::string how = s.events->notifies() ? s.events->mechanism() + ", full scan every " + every
                                               : s.events->mechanism() + " every " + every;
  s.thread = std::thread([this] { impl_->run(); });
  return how;
}

void DirectoryWatcher::stop() {
  auto& s = *impl_;
  if (!s.running.exchange(false)) return;
  s.events->wake();
  if (s.thread.joinable()) s.thread.join();
  s.events.reset();
}

}  // namespace keel::host::plugins
