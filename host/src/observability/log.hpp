#pragma once
// Logging set-up for the host: one named spdlog logger per subsystem ("http", "access",
// "plugins", "config", ...) sharing one asynchronous sink, so an I/O thread never blocks on a
// slow or full stderr. Thread-safe after init(); logger() may be called from any thread.

#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

namespace keel::host::observability {

enum class LogFormat { kText, kJson };

struct LogOptions {
  std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::kText;
};

/// Install sinks and the default level. Safe to call again (e.g. after the config is read):
/// existing loggers switch to the new sinks and level.
void init(const LogOptions& options);

/// The logger named `name`, created on first use with the current sinks and level.
[[nodiscard]] std::shared_ptr<spdlog::logger> logger(std::string_view name);

/// Flush and stop the background writer; call once before the process exits.
void shutdown() noexcept;

/// Escape `text` for inclusion in a JSON string (no surrounding quotes); invalid UTF-8 becomes U+FFFD.
void append_json_escaped(std::string& out, std::string_view text);

}  // namespace keel::host::observability
