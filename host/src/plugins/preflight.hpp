#pragma once
// Pre-flight: everything that can be known about plugin files and the set they would form with
// the config, without running any plugin code. Start-up, reload, drop-in and `keel plugin
// inspect` all use it.

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "package/manifest.hpp"
#include "package/plugin_image.hpp"

namespace keel::host::plugins {

/// What pre-flight found about one file in the plugin directory (no plugin code runs).
struct Candidate {
  std::filesystem::path file;
  std::optional<package::Manifest> manifest;  ///< set when the manifest was read and is valid
  std::string error;                 ///< non-empty: why this file cannot be loaded
  std::string sha256;
  // For a set that adds one plugin to those running (reload, drop-in): `running` members are
  // what runs now and are never the ones refused: a check they would fail because of the
  // `incoming` one (a version outside a dependent's range) fails the incoming one instead, and
  // their config is not checked again.
  bool running = false;
  bool incoming = false;
  bool config_error = false;  ///< set by check_together: `error` is about [plugin.<name>]
  package::ImageFormat format = package::kNativeImageFormat;  ///< of the file, once its manifest section was read
};

/// Read and check every *.so in `directory` against `cfg` without loading any of them:
/// permissions, ELF, manifest, ABI major, duplicate names, sha256 allowlist, dependencies
/// (presence, version ranges, cycles), config schema and route conflicts. Disabled plugins are
/// reported with error "disabled in config". Sorted by file name.
[[nodiscard]] std::vector<Candidate> preflight(const std::filesystem::path& directory, const config::Config& cfg);

/// Same checks for one extra file as if it were dropped into the directory (for `keel plugin inspect`).
[[nodiscard]] Candidate preflight_file(const std::filesystem::path& file, const config::Config& cfg);

/// The checks of one file alone: permissions, ELF, manifest, ABI major, the sha256 allowlist,
/// `enabled` in its config section. Never throws.
[[nodiscard]] Candidate read_candidate(const std::filesystem::path& file, const config::Config& cfg);
/// The checks of a set of candidates together (config schema, duplicate names, dependencies and
/// their ranges, cycles, route conflicts): marks each one that cannot run with the reason. A
/// failure propagates to every dependent; of two colliding plugins the later one fails; every
/// member of a dependency cycle fails, however long the cycle.
void check_together(std::vector<Candidate>& all, const config::Config& cfg);
/// Where a plugin's routes are mounted: [plugin.<name>] mount, else /api/<name>.
[[nodiscard]] std::string mount_of(const package::Manifest& m, const config::Config& cfg);
/// The *.so files of `directory`, sorted by name; empty if it cannot be read.
[[nodiscard]] std::vector<std::filesystem::path> list_plugin_files(const std::filesystem::path& directory);

}  // namespace keel::host::plugins
