// file_stamp on POSIX systems: stat(2).
#include "platform/file_stamp.hpp"

#include <sys/stat.h>

namespace keel::host::platform {

std::optional<FileStamp> file_stamp(const std::filesystem::path& file) noexcept {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return std::nullopt;
  return FileStamp{static_cast<std::uint64_t>(st.st_size),
                   static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec,
                   static_cast<std::uint64_t>(st.st_ino)};
}

}  // namespace keel::host::platform
