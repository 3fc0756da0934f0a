#pragma once
// What `keel plugin inspect --json` prints about a plugin file and its pre-flight, and what
// POST /admin/plugins answers before and after an upload: one shape for both.

#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "package/manifest.hpp"
#include "plugins/preflight.hpp"

namespace keel::host::app {

/// {"file", "ok", ["error"], ["sha256"], ["manifest": {name, version, abi, host_abi, description,
/// concurrency, mount, dependencies, routes (each with its "mounted_path"), events (publishes,
/// subscribes, durable), permissions, config (type, required, description, secret, default,
/// minimum, maximum, enum), migrations (version, description, checksum)}], ["warnings"]} for a
/// pre-flighted candidate; `file` is the path shown, the mount is `cfg`'s for the plugin.
[[nodiscard]] nlohmann::ordered_json inspect_json(const plugins::Candidate& c, const std::string& file,
                                                  const config::Config& cfg);

/// "string", "integer", ... for a config key's declared type.
[[nodiscard]] std::string_view type_name(package::ConfigType t);

}  // namespace keel::host::app
