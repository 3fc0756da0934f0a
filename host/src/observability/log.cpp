#include "observability/log.hpp"

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <unordered_map>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <spdlog/sinks/sink.h>
#include <spdlog/spdlog.h>

#include <keel/sdk/json.hpp>

namespace keel::host::observability {
namespace {

namespace fs = std::filesystem;

// Lines waiting for the writer beyond this are dropped (and counted) rather than queued.
constexpr std::size_t kMaxPendingBytes = std::size_t{8} << 20;

std::atomic<std::uint64_t> g_lines{0}, g_dropped{0}, g_write_errors{0}, g_rotations{0};
std::atomic<LogFormat> g_format{LogFormat::kText};
thread_local const LogContext* tl_context = nullptr;

void say(const std::string& text) noexcept { [[maybe_unused]] const auto n = ::write(2, text.data(), text.size()); }

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

  void push(std::string_view line) noexcept {
    std::unique_lock lock(queue_mutex_);
    if (!running_) {  // before init() or after shutdown(): write on the caller's thread
      lock.unlock();
      std::lock_guard io(io_mutex_);
      write_batch(line);
      return;
    }
    if (pending_.size() + line.size() > kMaxPendingBytes) {
      g_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const bool was_empty = pending_.empty();
    try {
      pending_.append(line);
    } catch (...) {  // out of memory: the line is lost, the caller is not
      g_dropped.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    if (was_empty) cv_.notify_one();
  }

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
  }

 private:
  void run() {
    std::string batch;
    std::unique_lock lock(queue_mutex_);
    for (;;) {
      cv_.wait(lock, [this] { return stopping_ || !pending_.empty(); });
      if (pending_.empty()) return;  // stopping, and everything is written
      batch.swap(pending_);
      lock.unlock();
      {
        std::lock_guard io(io_mutex_);
        write_batch(batch);
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
  std::string pending_;
  bool running_ = false, stopping_ = false;
  std::thread thread_;

  std::mutex io_mutex_;  // the target; held by whoever writes
  int fd_ = 2;
  fs::path file_;
  std::uint64_t size_ = 0, max_bytes_ = 0, lost_ = 0;
  std::uint32_t max_files_ = 5;
  bool failing_ = false;
};

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

// Text: "2026-11-25T11:32:36.123456Z info  [http] message req=... trace_id=... span_id=..."
// JSON: {"ts":"...Z","level":"info","logger":"http","thread":N,"msg":"...","request_id":...}
void format_line(const spdlog::details::log_msg& msg, LogFormat format, std::string& out) {
  out.clear();
  long micros = 0;
  const auto second = utc_second(msg.time, micros);
  char frac[16];
  const auto nfrac = std::snprintf(frac, sizeof frac, ".%06ldZ", micros);
  const auto level = spdlog::level::to_string_view(msg.level);
  const std::string_view name(msg.logger_name.data(), msg.logger_name.size());
  const std::string_view payload(msg.payload.data(), msg.payload.size());
  const LogContext* ctx = tl_context;
  if (format == LogFormat::kJson) {
    out += R"({"ts":")";
    out += second;
    out.append(frac, static_cast<std::size_t>(nfrac));
    out += R"(","level":")";
    out.append(level.data(), level.size());
    out += R"(","logger":")";
    append_json_escaped(out, name);
    out += R"(","thread":)";
    out += std::to_string(msg.thread_id);
    out += R"(,"msg":")";
    append_json_escaped(out, payload);
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
  out += name;
  out += "] ";
  out += payload;
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

class LineSink final : public spdlog::sinks::sink {
 public:
  void log(const spdlog::details::log_msg& msg) override {
    thread_local std::string line;
    format_line(msg, g_format.load(std::memory_order_relaxed), line);
    Writer::instance().push(line);
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
