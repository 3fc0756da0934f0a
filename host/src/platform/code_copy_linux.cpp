// CodeCopy on Linux: the file's bytes in a memfd, sealed once written (its size and bytes can
// never change again, whoever holds a descriptor: the code a runner restarts from is the code
// that was checked), read through /proc/self/fd/<n>.
#include "platform/code_copy.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

namespace keel::host::platform {
namespace {

std::string system_error(const char* what) { return std::string(what) + ": " + std::strerror(errno); }

// Copies all of `in` to `out`; false with errno set on an error.
bool copy_all(int in, int out) {
  char buf[65536];
  for (;;) {
    const auto n = ::read(in, buf, sizeof buf);
    if (n == 0) return true;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return false;
    for (ssize_t done = 0; done < n;) {
      const auto w = ::write(out, buf + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      if (w == 0) errno = EIO;
      if (w <= 0) return false;
      done += w;
    }
  }
}

}  // namespace

std::variant<CodeCopy, std::string> CodeCopy::make(const std::filesystem::path& file, const std::string& name,
                                                   const std::filesystem::path& /*directory: in memory here*/) {
  const int in = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) return system_error("cannot open it");
  const int out = ::memfd_create(("keel:" + name).c_str(), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (out < 0) {
    auto error = system_error("memfd_create");
    ::close(in);
    return error;
  }
  const bool copied = copy_all(in, out);
  const int copy_errno = errno;
  ::close(in);
  if (!copied) {
    ::close(out);
    return std::string("reading it into the copy: ") + std::strerror(copy_errno);
  }
  if (::fcntl(out, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) != 0) {
    auto error = system_error("sealing the in-memory copy");
    ::close(out);
    return error;
  }
  return CodeCopy(out, "/proc/self/fd/" + std::to_string(out));
}

void CodeCopy::close() noexcept { ::close(static_cast<int>(handle_)); }

}  // namespace keel::host::platform
