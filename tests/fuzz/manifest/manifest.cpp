// Fuzz target: the manifest checker (package/manifest.*) on the JSON text of a plugin's
// .keel_manifest section. Property, a trap when broken: a manifest the checker accepts for this
// host's ABI is not refused by pre-flight (plugins::check_together, the check start-up, reload
// and drop-in run) when the plugin is alone and its config gives every required key a value:
// its routes build into a route table, its config schema applies, its dependencies raise no
// cycle (a missing one is left to another host of a cluster).

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include <keel/plugin.h>

#include "package/manifest.hpp"
#include "plugins/preflight.hpp"

namespace {

using keel::host::package::ConfigType;
using keel::host::package::Manifest;

void check(bool property) {
  if (!property) __builtin_trap();
}

// A value of `type` for a required config key.
nlohmann::json value_of(ConfigType type) {
  switch (type) {
    case ConfigType::kString: return "";
    case ConfigType::kInteger: return 0;
    case ConfigType::kNumber: return 0.5;
    case ConfigType::kBoolean: return false;
    case ConfigType::kArray: return nlohmann::json::array();
    case ConfigType::kObject: return nlohmann::json::object();
  }
  return nullptr;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  auto parsed = keel::host::package::parse_manifest(std::string_view(reinterpret_cast<const char*>(data), size));
  auto* manifest = std::get_if<Manifest>(&parsed);
  if (manifest == nullptr || manifest->abi_major != KEEL_ABI_VERSION_MAJOR) return 0;

  keel::host::config::Config config;
  config.cluster.nats_url = "nats://127.0.0.1:4222";
  nlohmann::json settings = nlohmann::json::object();
  for (const auto& key : manifest->config)
    if (key.required) settings[key.name] = value_of(key.type);
  config.plugin_sections[manifest->name].settings_json = settings.dump();

  std::vector<keel::host::plugins::Candidate> set(1);
  set[0].file = manifest->name + ".so";
  set[0].manifest = std::move(*manifest);
  keel::host::plugins::check_together(set, config);
  check(set[0].error.empty());
  return 0;
}
