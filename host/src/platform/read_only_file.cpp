#include "platform/read_only_file.hpp"

// What ReadOnlyFile does the same on every platform; open, close and read_at are per platform.
namespace keel::host::platform {

ReadOnlyFile::ReadOnlyFile(ReadOnlyFile&& other) noexcept : handle_(other.handle_), size_(other.size_) {
  other.handle_ = kClosed;
}

ReadOnlyFile& ReadOnlyFile::operator=(ReadOnlyFile&& other) noexcept {
  if (this != &other) {
    close();
    handle_ = other.handle_;
    size_ = other.size_;
    other.handle_ = kClosed;
  }
  return *this;
}

ReadOnlyFile::~ReadOnlyFile() { close(); }

}  // namespace keel::host::platform
