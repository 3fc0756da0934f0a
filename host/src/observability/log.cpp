#include "observability/log.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <span>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/details/os.h>
#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include <keel/sdk/json.hpp>

#include "observability/log_tail.hpp"

namespace keel::host::observability {
namespace {

namespace fs = std::filesystem;

// Lines waiting for the writer beyond this are dropped (and counted) rather than queued.
constexpr std::size_t kMaxPendingBytes = std::size_t{8} << 20;
// Access entries wait up to kFlushInterval (or until kFlushBytes are queued) to be written with
// others; any other line is written at once. After kQuietIntervals without a line the writer
// sleeps until the next one.
constexpr auto kFlushInterval = std::chrono::milliseconds(10);
constexpr std::size_t kFlushBytes = 64 * 1024;
constexpr int kQuietIntervals = 20;

std::atomic<std::uint64_t> g_lines{0}, g_dropped{0}, g_write_errors{0}, g_rotations{0};
std::atomic<LogFormat> g_format{LogFormat::kText};
thread_local const LogContext* tl_context = nullptr;

void say(const std::string& text) noexcept { [[maybe_unused]] const auto n = ::write(2, text.data(), text.size()); }

// "2026-11-25T11:32:36" for the current second, cached per thread.
std::string_view utc_second(std::chrono::system_clock::time_point t, long& micros) {
  thread_local std::int64_t cached = -1;
  thread_local char text[64];
  const auto since = t.time_since_epoch();
  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since);
  micros = static_cast<long>(std::chrono::duration_cast<std::chrono::microseconds>(since - secs).count());
  if (secs.count() != cached) {
    cached = secs.count();
    const std::time_t tt = static_cast<std::time_t>(cached);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                  tm.tm_hour, tm.tm_min, tm.tm_sec);
  }
  return {text, 19};
}

/// One line's parts, whoever formats them: a spdlog message on the logging thread, or an
/// access-log entry on the writer thread.
struct LineParts {
  std::chrono::system_clock::time_point time;
  std::string_view level;
  std::string_view logger;
  std::string_view payload;
  std::size_t thread_id = 0;
  const LogContext* context = nullptr;
};

// Text: "2026-11-25T11:32:36.123456Z info  [http] message req=... trace_id=... span_id=..."
// JSON: {"ts":"...Z","level":"info","logger":"http","thread":N,"msg":"...","request_id":...}
// Appends to `out`.
void format_line(const LineParts& line, LogFormat format, std::string& out) {
  long micros = 0;
  const auto second = utc_second(line.time, micros);
  char frac[16];
  const auto nfrac = std::snprintf(frac, sizeof frac, ".%06ldZ", micros);
  const auto level = line.level;
  const LogContext* ctx = line.context;
  if (format == LogFormat::kJson) {
    out += R"({"ts":")";
    out += second;
    out.append(frac, static_cast<std::size_t>(nfrac));
    out += R"(","level":")";
    out.append(level.data(), level.size());
    out += R"(","logger":")";
    append_json_escaped(out, line.logger);
    out += R"(","thread":)";
    out += std::to_string(line.thread_id);
    out += R"(,"msg":")";
    append_json_escaped(out, line.payload);
    out += '"';
    if (ctx != nullptr) {
      const auto field = [&out](std::string_view key, std::string_view value) {
        if (value.empty()) return;
        out += R"(,")";
        out += key;
        out += R"(":")";
        append_json_escaped(out, value);
        out += '"';
      };
      field("request_id", ctx->request_id);
      field("trace_id", ctx->trace_id);
      field("span_id", ctx->span_id);
    }
    out += "}\n";
    return;
  }
  out += second;
  out.append(frac, static_cast<std::size_t>(nfrac));
  out += ' ';
  out.append(level.data(), level.size());
  if (level.size() < 5) out.append(5 - level.size(), ' ');
  out += " [";
  out += line.logger;
  out += "] ";
  out += line.payload;
  if (ctx != nullptr) {
    const auto field = [&out](std::string_view key, std::string_view value) {
      if (value.empty()) return;
      out += ' ';
      out += key;
      out += value;
    };
    field("req=", ctx->request_id);
    field("trace_id=", ctx->trace_id);
    field("span_id=", ctx->span_id);
  }
  out += '\n';
}

// --- access-log entries, formatted by the writer thread ---
//
// In the writer's queue an entry is a fixed header followed by its strings, each a 32-bit length
// and the bytes. A queued line of any other logger is a header with kind kLine and one string.

enum class EntryKind : std::uint8_t { kLine, kAccess };

struct EntryHeader {
  EntryKind kind = EntryKind::kLine;
  LogFormat format = LogFormat::kText;  // when it was queued (a SIGHUP may change it before it is written)
  std::uint16_t status = 0;
  std::int64_t time_ns = 0;  // system clock
  std::uint64_t thread_id = 0;
  std::uint64_t bytes = 0;
  std::int64_t duration_us = 0;
};

constexpr std::size_t kAccessStrings = 7;  // method, target, peer, parent_id, request_id, trace_id, span_id

void put_string(std::string& out, std::string_view text) {
  const auto n = static_cast<std::uint32_t>(text.size());
  out.append(reinterpret_cast<const char*>(&n), sizeof n);
  out.append(text);
}

std::string_view get_string(std::string_view& in) {
  std::uint32_t n = 0;
  std::memcpy(&n, in.data(), sizeof n);
  const auto text = in.substr(sizeof n, n);
  in.remove_prefix(sizeof n + n);
  return text;
}

/// Appends to `out` the text lines of the queued entries in `queued`.
void format_entries(std::string_view queued, std::string& out) {
  std::string payload;
  while (queued.size() >= sizeof(EntryHeader)) {
    EntryHeader h;
    std::memcpy(&h, queued.data(), sizeof h);
    queued.remove_prefix(sizeof h);
    if (h.kind == EntryKind::kLine) {
      out += get_string(queued);
      continue;
    }
    std::array<std::string_view, kAccessStrings> f;
    for (auto& x : f) x = get_string(queued);
    payload.clear();
    fmt::format_to(std::back_inserter(payload), "request method={} target={} status={} bytes={} duration_us={} peer={}",
                   f[0], f[1], h.status, h.bytes, h.duration_us, f[2]);
    if (!f[3].empty()) fmt::format_to(std::back_inserter(payload), " parent_id={}", f[3]);
    const LogContext ctx{f[4], f[5], f[6]};
    if (tail_recording()) [[unlikely]]
      tail_record(h.time_ns, spdlog::level::info, "access", payload, &ctx);
    const auto time = std::chrono::system_clock::time_point(
        std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::nanoseconds(h.time_ns)));
    format_line({time, "info", "access", payload, static_cast<std::size_t>(h.thread_id), &ctx}, h.format, out);
  }
}

// The one writer thread and its target (standard error or a file with rotation).
class Writer {
 public:
  static Writer& instance() {
    static auto* w = new Writer;  // never destroyed: threads may log during static destruction
    return *w;
  }

  void configure(const LogOptions& o) {
    int fd = 2;
    std::uint64_t size = 0;
    if (!o.file.empty()) {
      std::error_code ec;
      fs::create_directories(o.file.parent_path(), ec);  // on failure, open() says why
      fd = open_file(o.file, size);
      if (fd < 0)
        throw std::runtime_error("cannot open log file " + o.file.string() + ": " + std::strerror(errno) +
                                 " (check [log] file and that its directory exists and is writable)");
    }
    {
      std::lock_guard io(io_mutex_);
      if (fd_ > 2) ::close(fd_);
      fd_ = fd;
      file_ = o.file;
      size_ = size;
      max_bytes_ = o.file.empty() ? 0 : o.max_file_bytes;
      max_files_ = o.max_files;
      failing_ = false;
    }
    std::lock_guard lock(queue_mutex_);
    if (!running_) {
      running_ = true;
      thread_ = std::thread([this] { run(); });
    }
  }

  /// Queues a formatted line, written at once (with whatever else is queued): lines other than
  /// the access log's are few, and whoever reads the log expects them without delay.
  void push_line(std::string_view line) noexcept {
    EntryHeader h;
    h.kind = EntryKind::kLine;
    push(h, {&line, 1}, line.size(), true);
  }

  /// Queues an access-log entry; the writer thread formats it, within kFlushInterval.
  void push_access(const AccessEntry& e) noexcept {
    EntryHeader h;
    h.kind = EntryKind::kAccess;
    h.format = g_format.load(std::memory_order_relaxed);
    h.status = static_cast<std::uint16_t>(e.status);
    h.time_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
                    .count();
    h.thread_id = spdlog::details::os::thread_id();
    h.bytes = e.bytes;
    h.duration_us = e.duration_us;
    const std::string_view fields[kAccessStrings] = {e.method,           e.target,           e.peer,
                                                     e.parent_id,        e.context.request_id, e.context.trace_id,
                                                     e.context.span_id};
    // About the line it becomes, for the queue's bound.
    std::size_t text = 96;
    for (const auto& f : fields) text += f.size();
    push(h, fields, text, false);
  }

 private:
  void push(const EntryHeader& h, std::span<const std::string_view> fields, std::size_t text_bytes,
            bool urgent) noexcept {
    std::unique_lock lock(queue_mutex_);
    if (!running_ || closed_) {  // before init(), or the writer is done: write on the caller's thread
      lock.unlock();
      try {
        std::string one;
        append_entry(one, h, fields);
        std::string line;
        format_entries(one, line);
        std::lock_guard io(io_mutex_);
        write_batch(line);
      } catch (...) {  // out of memory: the line is lost, the caller is not
        g_dropped.fetch_add(1, std::memory_order_relaxed);
      }
      return;
    }
    // The bound is on what is queued (headers and lengths included), not on the text it becomes.
    if (pending_.size() + sizeof h + text_bytes + 4 * fields.size() > kMaxPendingBytes) {
      g_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    try {
      append_entry(pending_, h, fields);
    } catch (...) {  // out of memory: the line is lost, the caller is not
      g_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const bool crossed = pending_text_ < kFlushBytes && pending_text_ + text_bytes >= kFlushBytes;
    pending_text_ += text_bytes;
    // The writer wakes by itself every kFlushInterval while lines come: waking it for each one
    // would cost a context switch per request. Only a writer asleep for good, or a full batch, is woken.
    if (urgent && !urgent_) {
      urgent_ = true;
      cv_.notify_one();
    } else if (idle_ || crossed) {
      cv_.notify_one();
    }
  }

  static void append_entry(std::string& out, const EntryHeader& h, std::span<const std::string_view> fields) {
    out.append(reinterpret_cast<const char*>(&h), sizeof h);
    for (const auto& f : fields) put_string(out, f);
  }

 public:
  void stop() noexcept {
    {
      std::lock_guard lock(queue_mutex_);
      if (!running_) return;
      stopping_ = true;
    }
    cv_.notify_one();
    thread_.join();
    std::lock_guard lock(queue_mutex_);
    running_ = false;
    stopping_ = false;
    closed_ = false;
  }

 private:
  void run() {
    std::string batch, text;
    int quiet = 0;  // intervals in a row without a line
    std::unique_lock lock(queue_mutex_);
    for (;;) {
      cv_.wait_for(lock, kFlushInterval, [this] { return stopping_ || urgent_ || pending_text_ >= kFlushBytes; });
      if (pending_.empty()) {
        if (stopping_) {  // everything is written; a line pushed from now on is written by its caller
          closed_ = true;
          return;
        }
        if (++quiet < kQuietIntervals) continue;
        idle_ = true;  // nothing for a while: sleep until a line comes
        cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
        idle_ = false;
        quiet = 0;
        continue;  // and gather what follows it for one interval
      }
      quiet = 0;
      batch.swap(pending_);
      pending_text_ = 0;
      urgent_ = false;
      lock.unlock();
      text.clear();
      try {
        format_entries(batch, text);
      } catch (...) {  // out of memory: what could not be formatted is lost, the process is not
        g_dropped.fetch_add(1, std::memory_order_relaxed);
      }
      {
        std::lock_guard io(io_mutex_);
        write_batch(text);
      }
      batch.clear();
      lock.lock();
    }
  }

  static int open_file(const fs::path& file, std::uint64_t& size) {
    const int fd = ::open(file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    struct stat st{};
    size = fd >= 0 && ::fstat(fd, &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : 0;
    return fd;
  }

  // Whole lines only: a file never ends in the middle of a line, and stays within max_bytes_
  // unless a single line is longer than that (it then gets a file of its own).
  void write_batch(std::string_view batch) {
    while (!batch.empty()) {
      std::size_t take = batch.size();
      if (max_bytes_ != 0 && size_ + batch.size() > max_bytes_) {
        const auto room = size_ < max_bytes_ ? max_bytes_ - size_ : 0;
        const auto nl = room == 0 ? std::string_view::npos : batch.rfind('\n', room - 1);
        take = nl == std::string_view::npos ? 0 : nl + 1;
        if (take == 0 && size_ > 0) {
          rotate();
          continue;
        }
        if (take == 0) take = std::min(batch.size(), batch.find('\n') + 1);
      }
      write_all(batch.substr(0, take));
      batch.remove_prefix(take);
    }
  }

  void write_all(std::string_view chunk) {
    const auto lines = static_cast<std::uint64_t>(std::count(chunk.begin(), chunk.end(), '\n'));
    if (fd_ < 0) {  // a rotation could not reopen the file: try again now
      std::uint64_t size = 0;
      fd_ = open_file(file_, size);
      size_ = size;
      if (fd_ < 0) return failed(errno, lines);
    }
    while (!chunk.empty()) {
      const auto n = ::write(fd_, chunk.data(), chunk.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return failed(n < 0 ? errno : EIO, lines);
      chunk.remove_prefix(static_cast<std::size_t>(n));
      size_ += static_cast<std::uint64_t>(n);
    }
    g_lines.fetch_add(lines, std::memory_order_relaxed);
    if (failing_) {
      failing_ = false;
      if (fd_ != 2)
        say("keel: log file " + file_.string() + ": writes work again; " + std::to_string(lost_) +
            " lines were lost while they failed\n");
    }
  }

  // A failed write loses its lines and nothing else; the first failure of a run is reported
  // on standard error (when that is not the target that fails).
  void failed(int err, std::uint64_t lines) {
    g_write_errors.fetch_add(lines, std::memory_order_relaxed);
    if (!failing_) {
      failing_ = true;
      lost_ = 0;
      if (fd_ != 2)
        say("keel: log file " + file_.string() + ": write failed (" + std::strerror(err) +
            "); log lines are dropped until writes work again\n");
    }
    lost_ += lines;
  }

  // <file>.N-1 -> <file>.N ... <file> -> <file>.1, then a new <file>.
  void rotate() {
    ::close(fd_);
    fd_ = -1;
    const auto numbered = [this](std::uint32_t i) { return fs::path(file_.string() + "." + std::to_string(i)); };
    std::error_code ec;
    if (max_files_ == 0) {
      fs::remove(file_, ec);
    } else {
      for (auto i = max_files_; i > 1; --i) fs::rename(numbered(i - 1), numbered(i), ec);
      fs::rename(file_, numbered(1), ec);
    }
    std::uint64_t size = 0;
    fd_ = open_file(file_, size);
    size_ = size;
    g_rotations.fetch_add(1, std::memory_order_relaxed);
  }

  std::mutex queue_mutex_;
  std::condition_variable cv_;
  std::string pending_;             // queued entries (EntryHeader + strings each)
  std::size_t pending_text_ = 0;     // about the bytes of text they become
  bool idle_ = false;                // the writer sleeps until a line comes
  bool urgent_ = false;              // a line other than an access entry is queued: write now
  bool closed_ = false;              // the writer thread has returned (stop() joins it)
  bool running_ = false, stopping_ = false;
  std::thread thread_;

  std::mutex io_mutex_;  // the target; held by whoever writes
  int fd_ = 2;
  fs::path file_;
  std::uint64_t size_ = 0, max_bytes_ = 0, lost_ = 0;
  std::uint32_t max_files_ = 5;
  bool failing_ = false;
};

class LineSink final : public spdlog::sinks::sink {
 public:
  void log(const spdlog::details::log_msg& msg) override {
    thread_local std::string line;
    line.clear();
    const auto level = spdlog::level::to_string_view(msg.level);
    const std::string_view logger(msg.logger_name.data(), msg.logger_name.size());
    const std::string_view payload(msg.payload.data(), msg.payload.size());
    format_line({msg.time, std::string_view(level.data(), level.size()), logger, payload, msg.thread_id, tl_context},
                g_format.load(std::memory_order_relaxed), line);
    Writer::instance().push_line(line);
    if (tail_recording()) [[unlikely]] {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(msg.time.time_since_epoch()).count();
      tail_record(ns, msg.level, logger, payload, tl_context);
    }
  }
  void flush() override {}
  void set_pattern(const std::string&) override {}
  void set_formatter(std::unique_ptr<spdlog::formatter>) override {}
};

struct State {
  std::mutex mutex;
  spdlog::sink_ptr sink = std::make_shared<LineSink>();
  spdlog::level::level_enum level = spdlog::level::info;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};

State& state() {
  static State s;
  return s;
}

}  // namespace

void init(const LogOptions& options) {
  Writer::instance().configure(options);  // throws before anything changes
  g_format.store(options.format, std::memory_order_relaxed);
  auto& s = state();
  std::lock_guard lock(s.mutex);
  s.level = spdlog::level::from_str(options.level);
  for (auto& [name, log] : s.loggers) log->set_level(s.level);
}

std::shared_ptr<spdlog::logger> logger(std::string_view name) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  std::string key(name);
  auto it = s.loggers.find(key);
  if (it == s.loggers.end()) {
    auto log = std::make_shared<spdlog::logger>(key, s.sink);
    log->set_level(s.level);
    it = s.loggers.emplace(std::move(key), std::move(log)).first;
  }
  return it->second;
}

void shutdown() noexcept { Writer::instance().stop(); }

void log_access(const AccessEntry& entry) noexcept { Writer::instance().push_access(entry); }

LogStats log_stats() noexcept {
  return {g_lines.load(std::memory_order_relaxed), g_dropped.load(std::memory_order_relaxed),
          g_write_errors.load(std::memory_order_relaxed), g_rotations.load(std::memory_order_relaxed)};
}

LogScope::LogScope(const LogContext& context) noexcept : value_(context), saved_(tl_context) { tl_context = &value_; }
LogScope::~LogScope() { tl_context = saved_; }

void append_json_escaped(std::string& out, std::string_view text) { sdk::append_json_escaped(out, text); }

bool has_control(std::string_view text) noexcept {
  return std::any_of(text.begin(), text.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u < 0x20 || u == 0x7f;
  });
}

std::string escape_control(std::string_view text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(text.size() + 8);
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace keel::host::observability
