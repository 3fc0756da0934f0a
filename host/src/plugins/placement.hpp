#pragma once
// Where one generation of a plugin runs. The plugin host reaches a plugin only through the
// keel_plugin table its placement hands out: dispatch, calls, event delivery, health, stop and
// destroy go through that table whatever the placement. What differs between placements (how
// the code is loaded and let go, what the admin API shows about it, how a log level reaches it)
// is behind this interface, and a placement is chosen by name from the plugin's configured
// isolation mode in one table (placement.cpp).
//
// Today: "in-process" (placement_in_process.cpp: the code mapped into this process) and
// "process" (placement_process.cpp: a keel-plugin-runner child, isolation/). A new place to run
// plugins (another host, say) is a new file with a factory and one line in that table.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include <keel/plugin.h>

#include "platform/code_copy.hpp"

namespace keel::host::plugins {

struct PluginStatus;

class Placement {
 public:
  virtual ~Placement() = default;  ///< lets the code go: unmapped, or its process ended
  Placement(const Placement&) = delete;
  Placement& operator=(const Placement&) = delete;

  /// The table the host calls the plugin through; valid as long as the placement.
  [[nodiscard]] virtual const keel_plugin& table() const noexcept = 0;
  /// The ABI version the plugin's code was built against (packed, as in its table).
  [[nodiscard]] virtual std::uint32_t abi_version() const noexcept = 0;
  /// Fills what this placement's hooks find in the plugin's context (before create()).
  virtual void attach(keel_host_ctx& ctx) noexcept { static_cast<void>(ctx); }
  /// Adds what the admin API shows about where the plugin runs (a runner's pid, state...).
  virtual void describe(PluginStatus& out) const { static_cast<void>(out); }
  /// The plugin's logger level changed (the in-process code asks the host each time).
  virtual void set_log_level(std::int32_t level) { static_cast<void>(level); }
  /// The placement gave up on this generation (a runner that crashed too often): it stays out of
  /// routing until it is enabled or reloaded.
  [[nodiscard]] virtual bool quarantined() const { return false; }
  /// The plugin's hooks run on the thread that calls them (in this process): a "storage": "read"
  /// route can then be served on the I/O thread with a reader reserved there.
  [[nodiscard]] virtual bool runs_on_caller_thread() const noexcept { return false; }

 protected:
  Placement() = default;
};

}  // namespace keel::host::plugins
