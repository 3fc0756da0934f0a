#include "platform/code_copy.hpp"

#include <utility>

// What CodeCopy does the same on every platform; make and close are per platform.
namespace keel::host::platform {

CodeCopy::CodeCopy(CodeCopy&& other) noexcept
    : handle_(std::exchange(other.handle_, kNone)), path_(std::move(other.path_)) {
  other.path_.clear();
}

CodeCopy& CodeCopy::operator=(CodeCopy&& other) noexcept {
  if (this != &other) {
    reset();
    handle_ = std::exchange(other.handle_, kNone);
    path_ = std::move(other.path_);
    other.path_.clear();
  }
  return *this;
}

void CodeCopy::reset() noexcept {
  if (handle_ != kNone) close();
  handle_ = kNone;
  path_.clear();
}

}  // namespace keel::host::platform
