// CodeCopy on Windows: CopyFileW into the private directory under a name never used before,
// then the copy held open with FILE_SHARE_READ only: while held, an open for writing or deleting
// it fails with a sharing violation, and the loader (which opens for reading) still maps it.
#include "platform/code_copy.hpp"

#include <windows.h>

#include <atomic>

#include "platform/windows_error.hpp"

namespace keel::host::platform {

std::variant<CodeCopy, std::string> CodeCopy::make(const std::filesystem::path& file, const std::string& name,
                                                   const std::filesystem::path& directory) {
  static std::atomic<std::uint64_t> copies{0};
  std::error_code ec;
  std::filesystem::create_directories(directory, ec);
  if (ec) return "cannot create " + directory.string() + ": " + ec.message();
  const auto copy = directory / (name + "." + std::to_string(::GetCurrentProcessId()) + "." +
                                 std::to_string(copies.fetch_add(1)) + file.extension().string());
  if (!::CopyFileW(file.c_str(), copy.c_str(), TRUE)) return "CopyFileW: " + system_message(::GetLastError());
  // CopyFileW copies attributes too: a read-only copy could not be deleted once let go.
  ::SetFileAttributesW(copy.c_str(), FILE_ATTRIBUTE_NORMAL);
  const HANDLE held = ::CreateFileW(copy.c_str(), GENERIC_READ, FILE_SHARE_READ, nullptr, OPEN_EXISTING,
                                    FILE_ATTRIBUTE_NORMAL, nullptr);
  if (held == INVALID_HANDLE_VALUE) {
    auto error = "holding the copy: " + system_message(::GetLastError());
    ::DeleteFileW(copy.c_str());
    return error;
  }
  return CodeCopy(reinterpret_cast<std::intptr_t>(held), copy);
}

void CodeCopy::close() noexcept {
  ::CloseHandle(reinterpret_cast<HANDLE>(handle_));
  ::DeleteFileW(path_.c_str());
}

}  // namespace keel::host::platform
