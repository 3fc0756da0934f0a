// Fuzz target: a plugin file of either format (package/plugin_image.*, and through it the PE
// reader package/pe_reader.* and the ELF reader), then the manifest section's framing. Properties,
// each a trap when broken:
// - reading the image in memory and reading it as a file (range by range) give the same answer:
//   the same format and section bytes, or the same error;
// - the format is the one the first bytes say, and a section read is bytes of the file, at most
//   16 MiB.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>

#include <sys/mman.h>
#include <unistd.h>

#include "package/manifest.hpp"
#include "package/plugin_image.hpp"

namespace {

using keel::host::package::ImageError;
using keel::host::package::ImageFormat;
using keel::host::package::ManifestSection;

void check(bool property) {
  if (!property) __builtin_trap();
}

bool same(const std::variant<ManifestSection, ImageError>& a, const std::variant<ManifestSection, ImageError>& b) {
  if (a.index() != b.index()) return false;
  if (const auto* s = std::get_if<ManifestSection>(&a))
    return s->format == std::get<ManifestSection>(b).format && s->bytes == std::get<ManifestSection>(b).bytes;
  return std::get<ImageError>(a).message == std::get<ImageError>(b).message;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view image(reinterpret_cast<const char*>(data), size);
  const auto in_memory = keel::host::package::read_manifest_section(image);

  // One memory file, rewritten for every input: the file reader reads it through its path.
  static const int fd = memfd_create("plugin", MFD_CLOEXEC);
  static const std::string path = "/proc/self/fd/" + std::to_string(fd);
  check(fd >= 0 && ftruncate(fd, 0) == 0 && pwrite(fd, image.data(), image.size(), 0) == static_cast<ssize_t>(size));
  check(same(in_memory, keel::host::package::read_manifest_section_from_file(path)));

  if (const auto* section = std::get_if<ManifestSection>(&in_memory)) {
    check(image.starts_with(section->format == ImageFormat::kPe ? "MZ" : "\x7f" "ELF"));
    check(section->bytes.size() <= (16u << 20) && image.find(section->bytes) != std::string_view::npos);
    static_cast<void>(keel::host::package::manifest_text_from_section(section->bytes));
  }
  return 0;
}
