#pragma once
// A uniquely named directory under the system temp dir, removed with everything in it on destruction.

#include <filesystem>
#include <string_view>

namespace keel::test {

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  [[nodiscard]] const std::filesystem::path& path() const noexcept { return path_; }
  /// Write `content` to path()/name (creating parent directories) and return the full path.
  std::filesystem::path write(std::string_view name, std::string_view content) const;

 private:
  std::filesystem::path path_;
};

}  // namespace keel::test
