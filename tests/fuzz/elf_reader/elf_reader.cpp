// Fuzz target: the ELF reader (package/elf_reader.*) on any file dropped into the plugin
// directory, then the manifest section's framing (package/manifest.hpp). Properties, each a
// trap when broken:
// - reading the image in memory and reading it as a file (range by range, with pread) give the
//   same answer: the same section bytes or the same error;
// - a section read is bytes of the file, at most 16 MiB.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include <sys/mman.h>
#include <unistd.h>

#include <keel/plugin.h>

#include "package/elf_reader.hpp"
#include "package/manifest.hpp"

namespace {

using keel::host::package::ImageError;
using keel::host::package::read_elf_section;
using keel::host::package::read_elf_section_from_file;

void check(bool property) {
  if (!property) __builtin_trap();
}

bool same(const std::variant<std::string, ImageError>& a, const std::variant<std::string, ImageError>& b) {
  if (a.index() != b.index()) return false;
  if (const auto* s = std::get_if<std::string>(&a)) return *s == std::get<std::string>(b);
  return std::get<ImageError>(a).message == std::get<ImageError>(b).message;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view image(reinterpret_cast<const char*>(data), size);
  const auto in_memory = read_elf_section(image, KEEL_MANIFEST_SECTION);

  // One memory file, rewritten for every input: the file reader reads it through its path.
  static const int fd = memfd_create("elf", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  check(fd >= 0 && ftruncate(fd, 0) == 0 && pwrite(fd, image.data(), image.size(), 0) == static_cast<ssize_t>(size));
  check(same(in_memory, read_elf_section_from_file(path, KEEL_MANIFEST_SECTION)));

  if (const auto* section = std::get_if<std::string>(&in_memory)) {
    check(section->size() <= (16u << 20) && image.find(*section) != std::string_view::npos);
    static_cast<void>(keel::host::package::manifest_text_from_section(*section));
  }
  return 0;
}
