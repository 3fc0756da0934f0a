// ReadOnlyFile on POSIX systems: open(2), fstat(2), pread(2).
#include "platform/read_only_file.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace keel::host::platform {

std::variant<ReadOnlyFile, std::string> ReadOnlyFile::open(const std::filesystem::path& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "cannot open: " + std::string(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int error = errno;
    ::close(fd);
    return "cannot read: " + std::string(std::strerror(error));
  }
  return ReadOnlyFile(fd, static_cast<std::uint64_t>(st.st_size));
}

void ReadOnlyFile::close() noexcept {
  if (handle_ != kClosed) ::close(static_cast<int>(handle_));
  handle_ = kClosed;
}

bool ReadOnlyFile::read_at(std::uint64_t offset, char* out, std::size_t len) const noexcept {
  for (std::size_t done = 0; done < len;) {
    const auto n = ::pread(static_cast<int>(handle_), out + done, len - done, static_cast<off_t>(offset + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace keel::host::platform
