#pragma once
// Deploying a plugin over the admin API (POST /admin/plugins, the console's "Deploy"): the body is
// the plugin file. It is written into the plugin directory under a name no scan reads, then
// PluginHost::deploy pre-flights it (no plugin code runs) and, unless this is a dry run, renames
// it over <directory>/<manifest name>.so (or the running plugin's file) and reloads or starts it;
// a refusal puts the previous file back. The file name comes from the manifest, never from the
// client: nothing is written outside the plugin directory. The answer carries the report
// `keel plugin inspect --json` prints. docs/operations.md "Deploying a plugin over the admin API".

#include <string>

#include <nlohmann/json.hpp>

#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::app {

struct UploadResult {
  unsigned status = 200;  ///< 200 (dry run, replaced), 201 (a new plugin), 400, 409/422 (refused), 500
  nlohmann::ordered_json body;
};

/// Pre-flights `file_bytes` and, unless `dry_run`, installs and starts or reloads it. Blocks
/// (file writes, a reload's drain): run on the admin thread. Never throws.
[[nodiscard]] UploadResult upload_plugin(std::string_view file_bytes, bool dry_run, plugins::PluginHost& plugins);

}  // namespace keel::host::app
