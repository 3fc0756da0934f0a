#pragma once
// A private copy of a plugin file that nobody can change, made before the plugin's code is
// loaded: the file in the plugin directory can then be rewritten, replaced or deleted while
// this generation runs, and the bytes that are hashed, checked against the allowlist and loaded
// are the same. Linux: a sealed in-memory file (code_copy_linux.cpp: memfd_create, then seals
// against writing, growing and shrinking). Windows: a copy in a private directory held open with
// read sharing only, so it can be neither written nor deleted while held (code_copy_windows.cpp).

#include <cstdint>
#include <filesystem>
#include <string>
#include <variant>

namespace keel::host::platform {

class CodeCopy {
 public:
  // Copies `file`. `name` names the copy (the memfd's name, the Windows file's); `directory` is
  // where a platform that keeps the copy in a file puts it (Windows; created if missing; the
  // host's data directory). On failure, the reason: "<what failed>: <system message>".
  static std::variant<CodeCopy, std::string> make(const std::filesystem::path& file, const std::string& name,
                                                  const std::filesystem::path& directory);

  CodeCopy(CodeCopy&& other) noexcept;
  CodeCopy& operator=(CodeCopy&& other) noexcept;
  CodeCopy(const CodeCopy&) = delete;
  CodeCopy& operator=(const CodeCopy&) = delete;
  ~CodeCopy() { reset(); }

  // A path that reads the copy while it is held, to hash and load it: "/proc/self/fd/<n>" on
  // Linux, the copy's own file on Windows. Empty once let go.
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  [[nodiscard]] bool held() const noexcept { return handle_ != kNone; }
  // Lets the copy go: closed, and on Windows its file deleted (which succeeds once nothing maps
  // it: let the loaded library go first). What was mapped from it stays mapped. Idempotent.
  void reset() noexcept;

 private:
  using Handle = std::intptr_t;  // a descriptor, or a Windows HANDLE; -1 is none for both
  static constexpr Handle kNone = -1;
  CodeCopy(Handle handle, std::filesystem::path path) noexcept : handle_(handle), path_(std::move(path)) {}
  void close() noexcept;  // per platform

  Handle handle_ = kNone;
  std::filesystem::path path_;
};

}  // namespace keel::host::platform
