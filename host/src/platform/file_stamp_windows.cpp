// file_stamp on Windows: GetFileInformationByHandle on a handle opened for attributes only.
#include "platform/file_stamp.hpp"

#include <windows.h>

namespace keel::host::platform {
namespace {
std::uint64_t join(DWORD high, DWORD low) { return (std::uint64_t{high} << 32) | low; }
}  // namespace

std::optional<FileStamp> file_stamp(const std::filesystem::path& file) noexcept {
  const HANDLE handle = ::CreateFileW(file.c_str(), FILE_READ_ATTRIBUTES,
                                      FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                                      FILE_FLAG_BACKUP_SEMANTICS, nullptr);
  if (handle == INVALID_HANDLE_VALUE) return std::nullopt;
  BY_HANDLE_FILE_INFORMATION info{};
  const bool ok = ::GetFileInformationByHandle(handle, &info) != 0;
  ::CloseHandle(handle);
  if (!ok) return std::nullopt;
  // FILETIME counts 100 ns intervals since 1601: in nanoseconds it would not fit 64 bits.
  const auto modified = join(info.ftLastWriteTime.dwHighDateTime, info.ftLastWriteTime.dwLowDateTime);
  return FileStamp{join(info.nFileSizeHigh, info.nFileSizeLow), static_cast<std::int64_t>(modified),
                   join(info.nFileIndexHigh, info.nFileIndexLow)};
}

}  // namespace keel::host::platform
