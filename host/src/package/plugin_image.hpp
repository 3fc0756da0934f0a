#pragma once
// A plugin file's manifest section, whichever binary format the file is: an ELF shared object
// (Linux, section ".keel_manifest") or a PE32+ DLL (Windows, section ".keelmf"; PE section
// names hold 8 bytes). The format is told by the file's first bytes, not by its name, and the
// section is read without loading the file. Reading either format works on every platform, so
// `keel plugin inspect` shows a .dll on Linux; only the native one can be loaded
// (kNativeImageFormat). Pure functions; thread-safe.

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include "package/image_error.hpp"

namespace keel::host::package {

enum class ImageFormat { kElf, kPe };

#if defined(_WIN32)
inline constexpr ImageFormat kNativeImageFormat = ImageFormat::kPe;
inline constexpr bool kFileNamesIgnoreCase = true;  ///< "Hello.DLL" is a .dll on Windows
#else
inline constexpr ImageFormat kNativeImageFormat = ImageFormat::kElf;
inline constexpr bool kFileNamesIgnoreCase = false;
#endif

/// The file name suffix of a plugin in `format`: ".so" or ".dll".
[[nodiscard]] constexpr std::string_view suffix(ImageFormat format) noexcept {
  return format == ImageFormat::kElf ? ".so" : ".dll";
}
/// What the plugin directory is scanned and watched for, and what an uploaded plugin is named.
inline constexpr std::string_view kNativePluginSuffix = suffix(kNativeImageFormat);
/// Whether `file`'s name ends in kNativePluginSuffix (without regard to case on Windows).
[[nodiscard]] bool is_plugin_file(const std::filesystem::path& file);

/// "ELF shared object (.so)" or "PE32+ DLL (.dll)".
[[nodiscard]] std::string_view describe(ImageFormat format) noexcept;

struct ManifestSection {
  ImageFormat format = kNativeImageFormat;
  std::string bytes;  ///< the section's bytes, as manifest_text_from_section() takes them
};

/// The manifest section of a plugin image in memory.
[[nodiscard]] std::variant<ManifestSection, ImageError> read_manifest_section(std::string_view image);

/// Same, from a file on disk.
[[nodiscard]] std::variant<ManifestSection, ImageError> read_manifest_section_from_file(const std::filesystem::path& file);

}  // namespace keel::host::package
