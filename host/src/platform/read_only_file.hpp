#pragma once
// A file opened for reading at offsets, the way the plugin-file readers need it (package/): one
// open, a size taken once, positioned reads that do not move a shared cursor. One
// implementation per platform, in its own file (read_only_file_posix.cpp,
// read_only_file_windows.cpp: open, close, read_at); host/CMakeLists.txt compiles the one for
// the target.

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>

namespace keel::host::platform {

class ReadOnlyFile {
 public:
  // Opens `path` for reading. Other processes may still rename or delete it, on Windows too (it
  // is shared for reading, writing and deletion), though Windows may refuse a rename *over* it
  // while it is open. On failure, the reason as "cannot open: <system message>" or
  // "cannot read: <system message>".
  static std::variant<ReadOnlyFile, std::string> open(const std::filesystem::path& path);

  ReadOnlyFile(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile& operator=(ReadOnlyFile&& other) noexcept;
  ReadOnlyFile(const ReadOnlyFile&) = delete;
  ReadOnlyFile& operator=(const ReadOnlyFile&) = delete;
  ~ReadOnlyFile();

  // The size when the file was opened.
  [[nodiscard]] std::uint64_t size() const noexcept { return size_; }
  // Reads exactly `len` bytes at `offset` into `out`; false on an error or end of file first.
  // Safe to call from several threads at once.
  bool read_at(std::uint64_t offset, char* out, std::size_t len) const noexcept;

 private:
  // A file descriptor, or a Windows HANDLE, as an integer: no system header here. -1 is "none"
  // for both (INVALID_HANDLE_VALUE is (HANDLE)-1).
  using Handle = std::intptr_t;
  static constexpr Handle kClosed = -1;
  ReadOnlyFile(Handle handle, std::uint64_t size) noexcept : handle_(handle), size_(size) {}
  void close() noexcept;

  Handle handle_;
  std::uint64_t size_;
};

}  // namespace keel::host::platform
