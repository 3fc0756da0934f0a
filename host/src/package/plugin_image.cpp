#include "package/plugin_image.hpp"

#include <algorithm>

#include <keel/plugin.h>

#include "package/elf_reader.hpp"
#include "package/image_bytes.hpp"
#include "package/pe_reader.hpp"

namespace keel::host::package {
namespace {

// Which format `head` (a file's first bytes) starts, or an error that says what the file is not.
std::variant<ImageFormat, ImageError> format_of(std::string_view head) {
  if (head.starts_with(kElfMagic)) return ImageFormat::kElf;
  if (head.starts_with(kPeMagic)) return ImageFormat::kPe;
  return ImageError{"not a plugin: neither an ELF shared object (.so) nor a PE32+ DLL (.dll)"};
}

std::variant<ManifestSection, ImageError> section_or_error(ImageFormat format,
                                                           std::variant<std::string, ImageError> read) {
  if (auto* error = std::get_if<ImageError>(&read)) return std::move(*error);
  auto bytes = std::get<std::string>(std::move(read));
  if (format == ImageFormat::kPe) {
    // GNU ld rounds a PE section's VirtualSize up to its alignment (4 bytes for .keelmf) and
    // fills the rest with NULs. The document ends at its own NUL: keep that one, drop the
    // padding after it (two documents stay two: the NUL between them is not at the end).
    const auto last = bytes.find_last_not_of('\0');
    if (last != std::string::npos && last + 2 < bytes.size()) bytes.resize(last + 2);
  }
  return ManifestSection{format, std::move(bytes)};
}

}  // namespace

bool is_plugin_file(const std::filesystem::path& file) {
  // On the native string (wide on Windows): a name that does not convert cannot throw here.
  const auto extension = file.extension().native();
  if (extension.size() != kNativePluginSuffix.size()) return false;
  return std::equal(extension.begin(), extension.end(), kNativePluginSuffix.begin(), [](auto a, char b) {
    if (a == static_cast<decltype(a)>(b)) return true;
    // The suffix is ASCII: fold an ASCII capital only.
    return kFileNamesIgnoreCase && a >= 'A' && a <= 'Z' && static_cast<char>(a - 'A' + 'a') == b;
  });
}

std::string_view describe(ImageFormat format) noexcept {
  return format == ImageFormat::kElf ? "ELF shared object (.so)" : "PE32+ DLL (.dll)";
}

std::variant<ManifestSection, ImageError> read_manifest_section(std::string_view image) {
  const auto format = format_of(image.substr(0, 4));
  if (const auto* error = std::get_if<ImageError>(&format)) return *error;
  if (std::get<ImageFormat>(format) == ImageFormat::kElf)
    return section_or_error(ImageFormat::kElf, read_elf_section(image, KEEL_MANIFEST_SECTION));
  return section_or_error(ImageFormat::kPe, read_pe_section(image, KEEL_MANIFEST_SECTION_PE));
}

// One open: the first bytes tell the format, and that reader reads the same open file (a file
// replaced by a rename in between cannot be judged by one and read as the other).
std::variant<ManifestSection, ImageError> read_manifest_section_from_file(const std::filesystem::path& file) {
  return detail::with_file(file, [](const detail::FileBytes& bytes) -> std::variant<ManifestSection, ImageError> {
    std::string head;
    if (!bytes.read(0, std::min<std::uint64_t>(4, bytes.size()), head)) head.clear();
    const auto format = format_of(head);
    if (const auto* error = std::get_if<ImageError>(&format)) return *error;
    if (std::get<ImageFormat>(format) == ImageFormat::kElf)
      return section_or_error(ImageFormat::kElf, read_elf_section(bytes, KEEL_MANIFEST_SECTION));
    return section_or_error(ImageFormat::kPe, read_pe_section(bytes, KEEL_MANIFEST_SECTION_PE));
  });
}

}  // namespace keel::host::package
