#pragma once
// Watches the plugin directory for plugin files (*.so; *.dll on Windows) that appear, change or
// disappear, and reports them once they have been quiet for a debounce interval (a file still
// being written is not reported until its writer stops). The system's notices when it offers
// them (inotify, ReadDirectoryChangesW: platform/directory_events.hpp), with a periodic full scan
// as a safety net (missed notices, queue overflow); polling only when there are none.
// The callback runs on the watcher's own thread, never concurrently with itself.

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>

namespace keel::host::plugins {

struct WatchOptions {
  std::filesystem::path directory;
  std::chrono::milliseconds debounce{500};  ///< quiet time after the last change before reporting
  std::chrono::milliseconds rescan{2000};   ///< full scan interval (the poll interval without notices)
  bool force_polling = false;               ///< tests: behave as if the system gave no notices
};

class DirectoryWatcher {
 public:
  /// `on_change` is called with no arguments after a debounced change; it re-reads the directory.
  DirectoryWatcher(WatchOptions options, std::function<void()> on_change);
  ~DirectoryWatcher();  ///< stop()
  DirectoryWatcher(const DirectoryWatcher&) = delete;
  DirectoryWatcher& operator=(const DirectoryWatcher&) = delete;

  /// Starts the thread. Returns a description of the mechanism ("inotify, full scan every N ms",
  /// "polling every N ms", or why there are no notices).
  std::string start();
  /// Stops and joins the thread (waits for a callback in progress). Idempotent.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::host::plugins
