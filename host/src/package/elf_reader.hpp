#pragma once
// Reads one named section out of an ELF64 shared object without loading it: the way the host
// gets a plugin's manifest before running any of the plugin's code. Every offset and size in the
// file is bounds-checked, so a truncated or hostile file gives an error, never a crash.
// Pure functions; thread-safe.

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include "package/image_error.hpp"

namespace keel::host::package {

/// The first bytes of every ELF file (e_ident[0..3]): how a file is told to be one.
inline constexpr std::string_view kElfMagic = "\x7f" "ELF";

namespace detail {
class FileBytes;
}  // namespace detail

/// The bytes of section `section` in `image` (an ELF64 little-endian file's contents), or an error.
[[nodiscard]] std::variant<std::string, ImageError> read_elf_section(std::string_view image, std::string_view section);

/// Same, over a file already open (plugin_image.cpp reads its first bytes, then the section).
[[nodiscard]] std::variant<std::string, ImageError> read_elf_section(const detail::FileBytes& file, std::string_view section);

/// Same, from a file on disk.
[[nodiscard]] std::variant<std::string, ImageError> read_elf_section_from_file(const std::filesystem::path& file,
                                                                               std::string_view section);

}  // namespace keel::host::package
