#pragma once
// SHA-256 (FIPS 180-4) of a byte string or a file, as lowercase hex. Used for the per-plugin
// sha256 allowlist and for content-addressing plugin copies. Pure; thread-safe.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace keel::host::package {

[[nodiscard]] std::string sha256_hex(std::string_view data);
/// nullopt if the file cannot be read.
[[nodiscard]] std::optional<std::string> sha256_file_hex(const std::filesystem::path& file);

}  // namespace keel::host::package
