#pragma once
// Reads one named section out of a PE32+ DLL (a Windows plugin) without loading it, as
// elf_reader.hpp does for ELF: so a host on any platform can check a .dll's manifest, and
// `keel plugin inspect` reads both formats everywhere. Every offset and size in the file is
// bounds-checked, so a truncated or hostile file gives an error, never a crash.
// Pure functions; thread-safe.

#include <filesystem>
#include <string>
#include <string_view>
#include <variant>

#include "package/image_error.hpp"

namespace keel::host::package {

/// The first bytes of every PE file (the DOS header's signature): how a file is told to be one.
inline constexpr std::string_view kPeMagic = "MZ";

namespace detail {
class FileBytes;
}  // namespace detail

/// The bytes of section `section` (a name of at most 8 bytes, as the section table holds it)
/// in `image` (a PE32+ DLL's contents), or an error. The bytes are the section's VirtualSize
/// (its size before the linker padded it to the file alignment), at most its raw size.
[[nodiscard]] std::variant<std::string, ImageError> read_pe_section(std::string_view image, std::string_view section);

/// Same, over a file already open (plugin_image.cpp reads its first bytes, then the section).
[[nodiscard]] std::variant<std::string, ImageError> read_pe_section(const detail::FileBytes& file, std::string_view section);

/// Same, from a file on disk.
[[nodiscard]] std::variant<std::string, ImageError> read_pe_section_from_file(const std::filesystem::path& file,
                                                                              std::string_view section);

}  // namespace keel::host::package
