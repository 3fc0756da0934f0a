#pragma once
// Where the binary readers' bytes come from: an image in memory, or a file read range by range
// (a dropped-in file may be huge or sparse; only its headers and one section are read). Both
// answer "are these `len` bytes at `offset` there?" the same way, so a reader gives the same
// result for a file and for its contents. Used by elf_reader.cpp and pe_reader.cpp only.

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "package/image_error.hpp"

namespace keel::host::package::detail {

class ImageBytes {
 public:
  explicit ImageBytes(std::string_view image) : image_(image) {}
  [[nodiscard]] std::uint64_t size() const { return image_.size(); }
  // `len` bytes at `offset` into `out`; false if they are not all there.
  bool read(std::uint64_t offset, std::uint64_t len, std::string& out) const {
    if (offset > image_.size() || image_.size() - offset < len) return false;
    out.assign(image_.substr(offset, len));
    return true;
  }

 private:
  std::string_view image_;
};

class FileBytes {
 public:
  FileBytes(int fd, std::uint64_t size) : fd_(fd), size_(size) {}
  [[nodiscard]] std::uint64_t size() const { return size_; }
  bool read(std::uint64_t offset, std::uint64_t len, std::string& out) const {
    if (offset > size_ || size_ - offset < len) return false;
    out.resize(len);
    for (std::uint64_t done = 0; done < len;) {
      const auto n = ::pread(fd_, out.data() + done, len - done, static_cast<off_t>(offset + done));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      done += static_cast<std::uint64_t>(n);
    }
    return true;
  }

 private:
  int fd_;
  std::uint64_t size_;
};

// A trivially copyable `T` (a header, little-endian as the file) at `offset`.
template <typename T, typename Bytes>
bool load(const Bytes& bytes, std::uint64_t offset, T& out) {
  std::string raw;
  if (!bytes.read(offset, sizeof(T), raw)) return false;
  std::memcpy(&out, raw.data(), sizeof(T));
  return true;
}

// Opens `file` and returns `read(const FileBytes&)` over it (a variant that holds ImageError),
// or the ImageError that names what failed to open or stat it.
template <typename Read>
auto with_file(const std::filesystem::path& file, Read&& read) -> decltype(read(std::declval<const FileBytes&>())) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ImageError{"cannot open: " + std::string(std::strerror(errno))};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    const int e = errno;
    ::close(fd);
    return ImageError{"cannot read: " + std::string(std::strerror(e))};
  }
  auto result = read(FileBytes(fd, static_cast<std::uint64_t>(st.st_size)));
  ::close(fd);
  return result;
}

}  // namespace keel::host::package::detail
