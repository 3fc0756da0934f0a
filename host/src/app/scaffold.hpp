#pragma once
// `keel new plugin`: a ready out-of-tree plugin project, built with find_package(Keel) from the
// installed package alone: CMakeLists.txt, manifest.json (checked at build time), the plugin in
// C or C++, a unit test on the installed test host, a keel.toml and a README
// (docs/plugin-guide.md "Start a plugin").

#include <filesystem>
#include <string>
#include <vector>

namespace keel::host::app {

struct ScaffoldOptions {
  std::string name;          ///< the plugin's name: [a-z][a-z0-9_]*
  bool c = false;            ///< C11 instead of C++20
  bool storage = false;      ///< a key-value store in its own database (ext:keel.storage/1)
  bool events = false;       ///< publishes <name>.greeted and subscribes to it
  std::filesystem::path dir; ///< empty: ./<name>

  /// Where the project goes: `dir`, or ./<name>.
  [[nodiscard]] std::filesystem::path project_dir() const { return dir.empty() ? std::filesystem::path{name} : dir; }
};

/// Writes the project. Refuses (std::runtime_error naming the problem) an invalid name, or a
/// directory that exists and is not empty; writes nothing then. Returns the files written,
/// relative to the project directory.
std::vector<std::string> scaffold_plugin(const ScaffoldOptions& options);

}  // namespace keel::host::app
