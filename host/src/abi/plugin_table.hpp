#pragma once
// What every loader of a plugin file checks in the keel_plugin table keel_plugin_entry_v1
// returned, before any hook runs: the host (plugins/loader.cpp), the runner
// (runner/serve_plugin.cpp) and the installed test host (devkit/test_host.cpp). Header-only: the
// runner links none of the host's libraries.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include <keel/plugin.h>

namespace keel::host::abi {

/// "MAJOR.MINOR" of a packed ABI version.
[[nodiscard]] inline std::string abi_to_string(std::uint32_t packed) {
  return std::to_string(KEEL_ABI_MAJOR(packed)) + "." + std::to_string(KEEL_ABI_MINOR(packed));
}

/// Why `table` cannot be used; empty when it can. It must be of this ABI major, hold every ABI
/// 1.0 member (a newer minor may be larger: its extra members are ignored), have create and
/// destroy, and point `manifest` at the same text as `manifest_text`, which came from
/// `manifest_source` (e.g. "the .keel_manifest section"). `loader` names who checks, for the
/// ABI message ("host", "runner").
[[nodiscard]] inline std::string plugin_table_problem(const keel_plugin* table, std::string_view manifest_text,
                                                      std::string_view manifest_source, std::string_view loader) {
  if (table == nullptr) return KEEL_PLUGIN_ENTRY_SYMBOL " returned NULL";
  if (KEEL_ABI_MAJOR(table->abi_version) != KEEL_ABI_VERSION_MAJOR)
    return "ABI major mismatch: plugin built for ABI " + abi_to_string(table->abi_version) + ", " +
           std::string{loader} + " implements ABI " + abi_to_string(KEEL_ABI_VERSION) +
           "; rebuild the plugin against this host's keel/plugin.h";
  constexpr auto kMinSize = offsetof(keel_plugin, health) + sizeof(table->health);
  if (table->struct_size < kMinSize)
    return "plugin table too small: struct_size " + std::to_string(table->struct_size) + " < " +
           std::to_string(kMinSize) + " bytes of ABI 1.0";
  if (table->create == nullptr || table->destroy == nullptr)
    return "plugin table lacks the required create or destroy hook";
  const std::size_t length = table->manifest == nullptr ? 0 : std::strlen(table->manifest);
  if (table->manifest == nullptr || std::string_view{table->manifest, length} != manifest_text)
    return "keel_plugin.manifest differs from " + std::string{manifest_source} + " (" + std::to_string(length) +
           " vs " + std::to_string(manifest_text.size()) +
           " bytes); it must point at keel_manifest_data from KEEL_PLUGIN_MANIFEST";
  return {};
}

}  // namespace keel::host::abi
