#include "plugins/placement.hpp"

#include <array>
#include <stdexcept>
#include <utility>

#include "plugins/host_impl.hpp"

namespace keel::host::plugins {

namespace {

// Every place a plugin can run, by the isolation mode that selects it ([plugins] isolation,
// [plugin.<name>] isolation; config.cpp lists the same names).
constexpr std::array<std::pair<std::string_view, PlacementFactory>, 2> kPlacements{{
    {"in-process", place_in_process},
    {"process", place_in_runner},
}};

}  // namespace

std::unique_ptr<Placement> place_plugin(std::string_view mode, PluginHost::Impl& host, Plugin& p, platform::CodeCopy code) {
  for (const auto& [name, factory] : kPlacements)
    if (name == mode) return factory(host, p, std::move(code));
  throw std::runtime_error("no way to run a plugin with isolation = \"" + std::string(mode) + "\"");
}

}  // namespace keel::host::plugins
