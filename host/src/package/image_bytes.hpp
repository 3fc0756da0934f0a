#pragma once
// Where the binary readers' bytes come from: an image in memory, or a file read range by range
// (a dropped-in file may be huge or sparse; only its headers and one section are read). Both
// answer "are these `len` bytes at `offset` there?" the same way, so a reader gives the same
// result for a file and for its contents. Used by elf_reader.cpp and pe_reader.cpp only.

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

#include "package/image_error.hpp"
#include "platform/read_only_file.hpp"

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
  explicit FileBytes(const platform::ReadOnlyFile& file) : file_(file) {}
  [[nodiscard]] std::uint64_t size() const { return file_.size(); }
  bool read(std::uint64_t offset, std::uint64_t len, std::string& out) const {
    if (offset > file_.size() || file_.size() - offset < len) return false;
    out.resize(len);
    return file_.read_at(offset, out.data(), out.size());
  }

 private:
  const platform::ReadOnlyFile& file_;
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
  auto opened = platform::ReadOnlyFile::open(file);
  if (auto* error = std::get_if<std::string>(&opened)) return ImageError{std::move(*error)};
  return read(FileBytes(std::get<platform::ReadOnlyFile>(opened)));
}

}  // namespace keel::host::package::detail
