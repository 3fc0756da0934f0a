#include "temp_dir.hpp"

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

namespace keel::test {

TempDir::TempDir() {
  std::string pattern = (std::filesystem::temp_directory_path() / "keel-test-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) throw std::runtime_error("mkdtemp failed for " + pattern);
  path_ = pattern;
}

TempDir::~TempDir() {
  // KEEL_TEST_KEEP_DIRS=1 keeps every test's directory (configs, host logs, databases) to debug a failure.
  if (const char* keep = std::getenv("KEEL_TEST_KEEP_DIRS"); keep != nullptr && std::string_view{keep} == "1") return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::filesystem::path TempDir::write(std::string_view name, std::string_view content) const {
  auto file = path_ / name;
  std::filesystem::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
  if (!out) throw std::runtime_error("cannot write " + file.string());
  return file;
}

}  // namespace keel::test
