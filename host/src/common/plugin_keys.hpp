#pragma once
// The keys of a [plugin.<name>] config table that the host reads itself; every other key of the
// table belongs to the plugin and reaches it through its config schema. One list for both
// sides: the config reader takes exactly these (config/config.cpp), and a manifest may not
// declare one of them as a config key of its own (package/manifest.cpp), since the plugin would
// never see its value. docs/config.md "[plugin.<name>]" documents each of them.

#include <algorithm>
#include <array>
#include <string_view>

namespace keel::host {

inline constexpr std::array<std::string_view, 29> kHostPluginKeys{
    "enabled", "mount", "log_level", "sha256", "request_timeout_ms", "route_timeouts", "max_db_bytes",
    "storage_engine", "isolation",
    // the runner process (docs/isolation.md)
    "runner_threads", "runner_memory_bytes", "runner_cpu_seconds", "runner_cpu_percent",
    "runner_cgroup_memory_bytes", "runner_open_files", "runner_user", "runner_allow_root", "runner_network",
    "runner_restart_backoff_ms", "runner_restart_backoff_max_ms", "runner_max_crashes", "runner_crash_window_ms",
    "runner_ping_interval_ms", "runner_ping_timeout_ms", "runner_hook_timeout_ms",
    // the error budget (docs/isolation.md "Quarantine")
    "quarantine_error_rate", "quarantine_p99_ms", "quarantine_window_ms", "quarantine_min_requests"};

/// True when the host reads `key` of a [plugin.<name>] table itself.
[[nodiscard]] inline bool is_host_plugin_key(std::string_view key) {
  return std::find(kHostPluginKeys.begin(), kHostPluginKeys.end(), key) != kHostPluginKeys.end();
}

}  // namespace keel::host
