#pragma once
// The live tail of the host's log (the console's Logs view, GET /admin/logs): the lines the log
// sink produces, kept in a ring in memory with their parts (time, level, logger, message, ids)
// while at least one reader is open, so readers can filter them and follow them as they come.
// With no reader open the sink's only cost is one relaxed atomic load per line. Lines the level
// setting ([log] level) filters out are never made, so they never reach the tail either.
// Thread-safe: record() is called by whichever thread logs; readers from any thread.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "observability/log.hpp"

namespace keel::host::observability {

/// A line as the tail keeps it. `level`: 0 trace, 1 debug, 2 info, 3 warn, 4 error, 5 critical.
struct TailLine {
  std::uint64_t seq = 0;  ///< 1, 2, ... in the order the lines were recorded
  std::int64_t time_ns = 0;  ///< system clock
  int level = 2;
  std::string logger, message, request_id, trace_id, span_id;
};

/// "trace" .. "critical" for 0..5; -1 for any other name.
[[nodiscard]] int tail_level(std::string_view name) noexcept;
[[nodiscard]] std::string_view tail_level_name(int level) noexcept;

/// Which lines a reader wants. Empty fields match everything.
struct TailFilter {
  int min_level = 0;
  /// The lines of logger "plugin.<plugin>", and the lines that name it as a field value
  /// (plugin=, caller=, target=, publisher=, subscriber=, name=).
  std::string plugin;
  /// With `plugin`: also the access lines whose request target starts with this (its mount).
  std::string path_prefix;
  std::string request_id;  ///< exactly this request id
  [[nodiscard]] bool matches(const TailLine& line) const noexcept;
};

/// Ring capacity in lines, and the longest message kept (longer ones are cut, marked " [...]").
inline constexpr std::size_t kTailLines = 4096;
inline constexpr std::size_t kTailMessageBytes = 4096;
/// Readers open at once; a reader asked for beyond this is refused.
inline constexpr std::size_t kMaxTailReaders = 8;

/// True while a reader is open: the sink records lines only then.
[[nodiscard]] bool tail_recording() noexcept;

/// Records one line (call only when tail_recording(); a line that races with the last reader
/// closing is simply kept). `context` may be null.
void tail_record(std::int64_t time_ns, int level, std::string_view logger, std::string_view message,
                 const LogContext* context) noexcept;

/// The lines the ring holds that match `filter`, oldest first, at most `limit` (the newest).
[[nodiscard]] std::vector<TailLine> tail_snapshot(const TailFilter& filter, std::size_t limit);

/// One follower of the tail. Lines recorded after it opened (and up to `backlog` matching lines
/// from before) come out of read() in order; lines the ring overwrote before they were read are
/// counted as lost. Close it (or destroy it) to stop recording when it is the last.
class TailReader {
 public:
  ~TailReader();
  TailReader(const TailReader&) = delete;
  TailReader& operator=(const TailReader&) = delete;

  /// Opens a reader; null when kMaxTailReaders are open. `wake` is called (on the thread that
  /// records, under the tail's lock: it must only post or signal) when a matching line comes
  /// after the last read(); at most once per read().
  [[nodiscard]] static std::unique_ptr<TailReader> open(TailFilter filter, std::size_t backlog,
                                                        std::function<void()> wake);

  /// Appends up to `max_lines` matching lines to `out`; adds to `lost` the lines (matching or
  /// not) the ring overwrote before this reader reached them. Nothing once closed.
  void read(std::vector<TailLine>& out, std::size_t max_lines, std::uint64_t& lost);
  /// Stops following: no wake after this returns, read() gives nothing. Idempotent.
  void close() noexcept;
  /// The sequence number of the newest line when the reader opened (0: none yet). Numbers only
  /// grow while the process runs, so a client that sees a smaller one knows the host restarted.
  [[nodiscard]] std::uint64_t newest_at_open() const noexcept;

  struct State;  // shared with the ring (log_tail.cpp)

 private:
  explicit TailReader(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

}  // namespace keel::host::observability
