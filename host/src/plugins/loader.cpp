#include "plugins/loader.hpp"

#include <cstddef>
#include <cstring>

#include <boost/dll/shared_library.hpp>

namespace keel::host::plugins {

struct Library::Impl {
  boost::dll::shared_library lib;
};

std::string abi_to_string(std::uint32_t packed) {
  return std::to_string(KEEL_ABI_MAJOR(packed)) + "." + std::to_string(KEEL_ABI_MINOR(packed));
}

Library::Library(const std::filesystem::path& file, std::string_view manifest_text) : impl_(std::make_unique<Impl>()) {
  // RTLD_NOW: unresolved symbols fail here, not at the first call into the plugin.
  // RTLD_LOCAL: one plugin's symbols never satisfy another's (dlopen(3)).
  boost::dll::fs::error_code ec;
  impl_->lib.load(boost::dll::fs::path(file), boost::dll::load_mode::rtld_now | boost::dll::load_mode::rtld_local, ec);
  if (ec) throw PluginLoadError(file, "dlopen failed: " + ec.message());
  if (!impl_->lib.has(KEEL_PLUGIN_ENTRY_SYMBOL))
    throw PluginLoadError(file, "entry symbol " KEEL_PLUGIN_ENTRY_SYMBOL
                                " not found (a plugin for another ABI major, or not built with KEEL_PLUGIN)");
  // Boost.DLL needs the function type, not a pointer type (TOOLCHAIN.md pitfall 2).
  auto& entry = impl_->lib.get<const keel_plugin*()>(KEEL_PLUGIN_ENTRY_SYMBOL);
  const keel_plugin* table = entry();
  if (table == nullptr) throw PluginLoadError(file, KEEL_PLUGIN_ENTRY_SYMBOL " returned NULL");

  const auto plugin_abi = table->abi_version;
  if (KEEL_ABI_MAJOR(plugin_abi) != KEEL_ABI_VERSION_MAJOR)
    throw PluginLoadError(file, "ABI major mismatch: plugin built for ABI " + abi_to_string(plugin_abi) +
                                    ", host implements ABI " + abi_to_string(KEEL_ABI_VERSION) +
                                    "; rebuild the plugin against this host's keel/plugin.h");
  // Every 1.0 member must be present; a newer minor may be larger (its extra members are ignored).
  constexpr auto kMinSize = offsetof(keel_plugin, health) + sizeof(table->health);
  if (table->struct_size < kMinSize)
    throw PluginLoadError(file, "plugin table too small: struct_size " + std::to_string(table->struct_size) +
                                    " < " + std::to_string(kMinSize) + " bytes of ABI 1.0");
  if (table->create == nullptr || table->destroy == nullptr)
    throw PluginLoadError(file, "plugin table lacks the required create or destroy hook");
  if (table->manifest == nullptr || std::strlen(table->manifest) != manifest_text.size() ||
      std::memcmp(table->manifest, manifest_text.data(), manifest_text.size()) != 0)
    throw PluginLoadError(file, "keel_plugin.manifest differs from the .keel_manifest section; it must point at "
                                "keel_manifest_data from KEEL_PLUGIN_MANIFEST");
  table_ = table;
}

Library::~Library() {
  table_ = nullptr;
  impl_->lib.unload();
}

std::string Library::abi_string() const { return abi_to_string(table_->abi_version); }

}  // namespace keel::host::plugins
