#include "plugins/loader.hpp"

#include <boost/dll/shared_library.hpp>

#include "abi/plugin_table.hpp"

namespace keel::host::plugins {

struct Library::Impl {
  boost::dll::shared_library lib;
};

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
  if (auto why = abi::plugin_table_problem(table, manifest_text, "the .keel_manifest section", "host"); !why.empty())
    throw PluginLoadError(file, why);
  table_ = table;
}

Library::~Library() {
  table_ = nullptr;
  impl_->lib.unload();
}

std::string Library::abi_string() const { return abi::abi_to_string(table_->abi_version); }

}  // namespace keel::host::plugins
