#pragma once
// What identifies one version of a file without reading it, for the plugin directory watcher:
// size, modification time and the file's identity on its volume (inode; file index on Windows),
// so a file replaced by a rename is a new version even with the same size and time.
// file_stamp_posix.cpp, file_stamp_windows.cpp.

#include <compare>
#include <cstdint>
#include <filesystem>
#include <optional>

namespace keel::host::platform {

struct FileStamp {
  std::uint64_t size = 0;
  std::int64_t modified = 0;  ///< compared, never converted: ns on Linux, 100 ns units on Windows
  std::uint64_t identity = 0;
  friend bool operator==(const FileStamp&, const FileStamp&) = default;
};

// The stamp of `file`, or nothing if it cannot be looked at (gone, no permission).
std::optional<FileStamp> file_stamp(const std::filesystem::path& file) noexcept;

}  // namespace keel::host::platform
