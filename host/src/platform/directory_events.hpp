#pragma once
// Notice from the operating system that something in one directory changed, for the plugin
// directory watcher (plugins/watcher.cpp): inotify on Linux (directory_events_linux.cpp),
// ReadDirectoryChangesW on Windows (directory_events_windows.cpp). A notice says "look again",
// never what changed: the watcher scans the directory itself, and keeps a periodic full scan as
// the safety net for notices the system dropped. Without notices (none offered, or `notify`
// false) wait() only sleeps until its timeout or wake(), and the watcher polls.

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace keel::host::platform {

class DirectoryEvents {
 public:
  // kNothing: the timeout passed, or the notices were about other files only.
  enum class Wait { kChanged, kWoken, kNothing };

  // Watches `directory` for files whose name ends in `suffix` that are created, written,
  // renamed, deleted or have their attributes changed. With `notify` false, or when the system
  // refuses (mechanism() then says so), there are no notices. Throws std::runtime_error only if
  // what wake() needs cannot be made (the process is out of descriptors or handles).
  DirectoryEvents(const std::filesystem::path& directory, std::string_view suffix, bool notify);
  ~DirectoryEvents();
  DirectoryEvents(const DirectoryEvents&) = delete;
  DirectoryEvents& operator=(const DirectoryEvents&) = delete;

  // True when notices arrive; false when only polling is possible.
  [[nodiscard]] bool notifies() const noexcept;
  // "inotify", "ReadDirectoryChangesW", or "polling" with why there are no notices, e.g.
  // "polling (inotify_add_watch: No such file or directory)".
  [[nodiscard]] std::string mechanism() const;

  // Waits up to `timeout` for a notice (kChanged) or a wake() (kWoken; it wins over a notice).
  // One thread waits at a time. Notices are collected from the first call on (Windows starts its
  // read there, on the waiting thread): call wait(0ms) before a first scan so that no change
  // between the scan and the first real wait goes unnoticed.
  Wait wait(std::chrono::milliseconds timeout);
  // From any thread: the wait() in progress, or the next one, returns kWoken. Stays set.
  void wake() noexcept;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace keel::host::platform
