// ReadOnlyFile on Windows: CreateFileW, GetFileSizeEx, ReadFile at an OVERLAPPED offset.
#include "platform/read_only_file.hpp"

#include <windows.h>

#include "platform/windows_error.hpp"

namespace keel::host::platform {
namespace {
HANDLE as_handle(std::intptr_t handle) { return reinterpret_cast<HANDLE>(handle); }
}  // namespace

std::variant<ReadOnlyFile, std::string> ReadOnlyFile::open(const std::filesystem::path& path) {
  // Shared for deletion and writing too: a plugin file being read for its manifest must not stop
  // an operator from moving or deleting it, as on Linux.
  const HANDLE file = ::CreateFileW(path.c_str(), GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                                    nullptr, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, nullptr);
  if (file == INVALID_HANDLE_VALUE) return "cannot open: " + system_message(::GetLastError());
  LARGE_INTEGER size{};
  if (!::GetFileSizeEx(file, &size)) {
    const DWORD error = ::GetLastError();
    ::CloseHandle(file);
    return "cannot read: " + system_message(error);
  }
  return ReadOnlyFile(reinterpret_cast<std::intptr_t>(file), static_cast<std::uint64_t>(size.QuadPart));
}

void ReadOnlyFile::close() noexcept {
  if (handle_ != kClosed) ::CloseHandle(as_handle(handle_));
  handle_ = kClosed;
}

bool ReadOnlyFile::read_at(std::uint64_t offset, char* out, std::size_t len) const noexcept {
  for (std::size_t done = 0; done < len;) {
    // An OVERLAPPED offset on a synchronous handle is a positioned read (like pread).
    OVERLAPPED at{};
    const std::uint64_t position = offset + done;
    at.Offset = static_cast<DWORD>(position & 0xFFFFFFFFu);
    at.OffsetHigh = static_cast<DWORD>(position >> 32);
    const std::size_t left = len - done;
    const DWORD chunk = left > 0x40000000u ? 0x40000000u : static_cast<DWORD>(left);
    DWORD n = 0;
    if (!::ReadFile(as_handle(handle_), out + done, chunk, &n, &at) || n == 0) return false;
    done += n;
  }
  return true;
}

}  // namespace keel::host::platform
