#pragma once
// Deploying a plugin over the admin API (POST /admin/plugins, the console's "Deploy"): the body is
// the plugin file. It is written beside the plugin directory's files under a name no scan
// reads, pre-flighted exactly as `keel plugin inspect` does (manifest, ABI, sha256 allowlist,
// dependencies, config, route conflicts: no plugin code runs), and only then, unless this is a
// dry run, renamed over <directory>/<manifest name>.so (or the file the running plugin of that
// name came from) and reloaded or started. A reload the host refuses puts the previous file
// back, so what is on disk stays what runs. The file name comes from the manifest, never from the
// client: nothing can be written outside the plugin directory. docs/operations.md "Deploy".

#include <string>

#include <nlohmann/json.hpp>

#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::app {

struct UploadResult {
  unsigned status = 200;  ///< 200 (dry run, replaced), 201 (a new plugin), 400, 422 (pre-flight), 409/500 (start)
  nlohmann::ordered_json body;
};

/// Pre-flights `file_bytes` and, unless `dry_run`, installs and starts or reloads it. Blocks
/// (file writes, a reload's drain): run on the admin thread. Never throws.
[[nodiscard]] UploadResult upload_plugin(std::string_view file_bytes, bool dry_run, plugins::PluginHost& plugins);

}  // namespace keel::host::app
