#include "observability/log.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <mutex>
#include <unordered_map>

#include <spdlog/async.h>
#include <spdlog/async_logger.h>
#include <spdlog/details/thread_pool.h>
#include <spdlog/formatter.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <keel/sdk/json.hpp>

namespace keel::host::observability {
namespace {

// One JSON object per line: {"ts":"2026-11-25T11:32:36.123456Z","level":"info","logger":"http","msg":"..."}.
class JsonFormatter final : public spdlog::formatter {
 public:
  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string line;
    line.reserve(msg.payload.size() + 96);
    line += R"({"ts":")";
    const auto since_epoch = msg.time.time_since_epoch();
    const auto secs = std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(since_epoch - secs).count();
    const std::time_t t = static_cast<std::time_t>(secs.count());
    std::tm tm{};
    gmtime_r(&t, &tm);
    char stamp[40];
    const auto n = std::snprintf(stamp, sizeof stamp, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900,
                                 tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                                 static_cast<long>(micros));
    line.append(stamp, static_cast<std::size_t>(n));
    line += R"(","level":")";
    const auto level = spdlog::level::to_string_view(msg.level);
    line.append(level.data(), level.size());
    line += R"(","logger":")";
    append_json_escaped(line, std::string_view(msg.logger_name.data(), msg.logger_name.size()));
    line += R"(","thread":)";
    line += std::to_string(msg.thread_id);
    line += R"(,"msg":")";
    append_json_escaped(line, std::string_view(msg.payload.data(), msg.payload.size()));
    line += "\"}\n";
    dest.append(line.data(), line.data() + line.size());
  }
  [[nodiscard]] std::unique_ptr<spdlog::formatter> clone() const override { return std::make_unique<JsonFormatter>(); }
};

struct State {
  std::mutex mutex;
  std::shared_ptr<spdlog::details::thread_pool> pool;
  spdlog::sink_ptr sink;
  spdlog::level::level_enum level = spdlog::level::info;
  std::unordered_map<std::string, std::shared_ptr<spdlog::logger>> loggers;
};

State& state() {
  static State s;
  return s;
}

std::unique_ptr<spdlog::formatter> make_formatter(LogFormat format) {
  if (format == LogFormat::kJson) return std::make_unique<JsonFormatter>();
  return std::make_unique<spdlog::pattern_formatter>("%Y-%m-%dT%H:%M:%S.%fZ %-5l [%n] %v", spdlog::pattern_time_type::utc);
}

std::shared_ptr<spdlog::logger> make_logger(State& s, const std::string& name) {
  // overrun_oldest: under a log storm the oldest queued lines are dropped instead of blocking
  // the I/O thread that is logging; a request never waits for the log.
  auto log = std::make_shared<spdlog::async_logger>(name, s.sink, s.pool, spdlog::async_overflow_policy::overrun_oldest);
  log->set_level(s.level);
  log->flush_on(spdlog::level::trace);
  return log;
}

}  // namespace

void init(const LogOptions& options) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.pool) s.pool = std::make_shared<spdlog::details::thread_pool>(8192, 1);
  s.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  s.sink->set_formatter(make_formatter(options.format));
  s.level = spdlog::level::from_str(options.level);
  for (auto& [name, log] : s.loggers) {
    log->sinks().assign(1, s.sink);
    log->set_level(s.level);
  }
}

std::shared_ptr<spdlog::logger> logger(std::string_view name) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.pool) {
    s.pool = std::make_shared<spdlog::details::thread_pool>(8192, 1);
    s.sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    s.sink->set_formatter(make_formatter(LogFormat::kText));
  }
  std::string key(name);
  auto it = s.loggers.find(key);
  if (it == s.loggers.end()) it = s.loggers.emplace(key, make_logger(s, key)).first;
  return it->second;
}

void shutdown() noexcept {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  for (auto& [name, log] : s.loggers) {
    try {
      log->flush();
    } catch (...) {  // flushing is best effort at exit
    }
  }
  s.loggers.clear();
  s.pool.reset();  // joins the writer thread after it drained the queue
}

void append_json_escaped(std::string& out, std::string_view text) { sdk::append_json_escaped(out, text); }

}  // namespace keel::host::observability
