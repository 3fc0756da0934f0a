#pragma once
// Logging for the host: one named spdlog logger per subsystem ("http", "access", "trace",
// "plugins", "plugin.<name>", ...) sharing one sink. The sink formats each line on the calling
// thread (so it can add the request id and trace of the work that thread is doing) and hands it
// to one writer thread; access-log entries (log_access) go to it unformatted and wait up to
// 10 ms to be written together (any other line is written at once): a request never waits for
// the disk and a logged request does not wake the writer, a full queue drops lines (counted),
// and a failing write (disk full, I/O error) is counted and reported, never thrown. The writer
// writes to standard error or to a file with optional size-based rotation.
// Thread-safe after init(); logger() may be called from any thread.

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <spdlog/logger.h>

namespace keel::host::observability {

enum class LogFormat { kText, kJson };

struct LogOptions {
  std::string level = "info";  ///< trace, debug, info, warn, error, critical, off
  LogFormat format = LogFormat::kText;
  std::filesystem::path file;        ///< empty: standard error
  std::uint64_t max_file_bytes = 0;  ///< rotate before the file would grow past this; 0 = never
  std::uint32_t max_files = 5;       ///< rotated files kept: <file>.1 (newest) .. <file>.<max_files>
};

/// Install the sink's target, format and default level. Safe to call again (e.g. after the
/// config is read): existing loggers keep working and switch with it. Throws std::runtime_error
/// naming the file when the log file cannot be opened (nothing changes then).
void init(const LogOptions& options);

/// The logger named `name`, created on first use with the current level.
[[nodiscard]] std::shared_ptr<spdlog::logger> logger(std::string_view name);

/// Write what is queued and stop the writer thread; later lines are written synchronously.
void shutdown() noexcept;

/// Counters of the log writer since the process started (exported on /metrics).
struct LogStats {
  std::uint64_t lines = 0;         ///< lines written
  std::uint64_t dropped = 0;       ///< lines dropped because the queue was full
  std::uint64_t write_errors = 0;  ///< lines lost to failed writes (disk full, I/O error)
  std::uint64_t rotations = 0;
};
[[nodiscard]] LogStats log_stats() noexcept;

/// What the current thread is working for: lines logged on this thread while a LogScope is
/// alive carry these ids (JSON: "request_id", "trace_id", "span_id"; text: req=, trace_id=,
/// span_id= at the end). The views must outlive the scope.
struct LogContext {
  std::string_view request_id, trace_id, span_id;
};

class LogScope {
 public:
  explicit LogScope(const LogContext& context) noexcept;
  ~LogScope();
  LogScope(const LogScope&) = delete;
  LogScope& operator=(const LogScope&) = delete;

 private:
  LogContext value_;
  const LogContext* saved_;
};

/// One request served, for the "access" logger: the line "request method=M target=T status=S
/// bytes=B duration_us=D peer=P[ parent_id=X]" at info, with the context's ids, as if logged
/// inside a LogScope of `context`.
struct AccessEntry {
  std::string_view method, target, peer, parent_id;
  unsigned status = 0;
  std::uint64_t bytes = 0;
  std::int64_t duration_us = 0;
  LogContext context;
};
/// Queues `entry` for the writer thread, which formats it: the caller only copies the fields
/// (the request path pays no formatting). Check logger("access")->should_log(info) first.
void log_access(const AccessEntry& entry) noexcept;

/// Escape `text` for inclusion in a JSON string (no surrounding quotes); invalid UTF-8 becomes U+FFFD.
void append_json_escaped(std::string& out, std::string_view text);

/// True when `text` holds a control character (below 0x20, or DEL): a line break that would
/// start a forged log line, or a terminal escape.
[[nodiscard]] bool has_control(std::string_view text) noexcept;
/// `text` with every control character written as an escape (\n, \r, \t, \xNN), so text from
/// a plugin stays on its own log line and cannot drive a terminal.
[[nodiscard]] std::string escape_control(std::string_view text);

}  // namespace keel::host::observability
