#pragma once
// Opens a plugin shared object (Boost.DLL, RTLD_NOW | RTLD_LOCAL), finds keel_plugin_entry_v1
// and checks the table it returns against this host's ABI before any hook is called.
// A Library must outlive every pointer taken from it. Not thread-safe; used at load/unload.

#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <keel/plugin.h>

namespace keel::host::plugins {

/// A plugin that could not be loaded: names the file and says why (with dlerror() text and
/// both ABI versions where they matter).
class PluginLoadError : public std::runtime_error {
 public:
  PluginLoadError(const std::filesystem::path& file, const std::string& reason)
      : std::runtime_error(file.string() + ": " + reason), reason_(reason) {}
  [[nodiscard]] const std::string& reason() const noexcept { return reason_; }

 private:
  std::string reason_;
};

class Library {
 public:
  /// dlopen `file` and validate its plugin table. `manifest_text` is the manifest read from the
  /// file's section: the table's manifest pointer must hold the same bytes. Throws PluginLoadError.
  Library(const std::filesystem::path& file, std::string_view manifest_text);
  ~Library();
  Library(const Library&) = delete;
  Library& operator=(const Library&) = delete;

  [[nodiscard]] const keel_plugin& table() const noexcept { return *table_; }
  /// ABI version the plugin was built against, e.g. "1.0".
  [[nodiscard]] std::string abi_string() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  const keel_plugin* table_ = nullptr;
};

}  // namespace keel::host::plugins
