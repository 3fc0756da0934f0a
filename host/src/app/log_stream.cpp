#include "app/log_stream.hpp"

#include <charconv>
#include <ctime>
#include <mutex>
#include <string>

#include "http/query.hpp"
#include "observability/log.hpp"
#include "observability/log_tail.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::app {
namespace {

namespace obs = observability;

constexpr std::size_t kDefaultBacklog = 100, kMaxBacklog = 1000;
constexpr std::size_t kDefaultLimit = 500;
constexpr std::size_t kLinesPerPull = 256;

struct Query {
  obs::TailFilter filter;
  std::size_t backlog = kDefaultBacklog;
  std::size_t limit = kDefaultLimit;
};

bool parse_count(std::string_view text, std::size_t max, std::size_t& out) {
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc{} && end == text.data() + text.size() && out <= max;
}

// Fills `q` from the query string; false with a 400 or 404 in `res` when a parameter is wrong.
bool parse(const http::Request& req, http::Response& res, const plugins::PluginHost& plugins, bool stream, Query& q) {
  std::string error, value;
  http::for_each_query_pair(req.query, [&](std::string_view name, std::string_view raw) {
    value.clear();
    http::append_form_decoded(value, raw);
    if (name == "level") {
      q.filter.min_level = obs::tail_level(value);
      if (q.filter.min_level < 0) error = "level must be one of trace, debug, info, warn, error, critical";
    } else if (name == "plugin") {
      q.filter.plugin = value;
    } else if (name == "request_id") {
      if (!http::valid_request_id(value)) error = "request_id must be 1 to 128 of A-Z a-z 0-9 . _ : -";
      q.filter.request_id = value;
    } else if (name == "backlog" && stream) {
      if (!parse_count(value, kMaxBacklog, q.backlog)) error = "backlog must be a number from 0 to 1000";
    } else if (name == "limit" && !stream) {
      if (!parse_count(value, obs::kTailLines, q.limit) || q.limit == 0)
        error = "limit must be a number from 1 to " + std::to_string(obs::kTailLines);
    } else {
      error = "unknown query parameter '" + std::string(name.substr(0, 64)) + "'; this endpoint takes level, plugin, " +
              "request_id and " + (stream ? "backlog" : "limit");
    }
    return error.empty();
  });
  if (!error.empty()) {
    res.set_error(400, "bad_request", error);
    return false;
  }
  if (q.filter.plugin.empty()) return true;
  for (const auto& st : plugins.statuses())
    if (st.name == q.filter.plugin) {
      q.filter.path_prefix = st.mount;  // its access lines
      return true;
    }
  res.set_error(404, "not_found", "no plugin named '" + q.filter.plugin.substr(0, 64) + "' (GET /admin/plugins lists them)");
  return false;
}

// "2026-12-07T12:53:55.123456Z"
void append_time(std::string& out, std::int64_t ns) {
  const std::time_t secs = static_cast<std::time_t>(ns / 1'000'000'000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char text[40];
  const int n = std::snprintf(text, sizeof text, "%04d-%02d-%02dT%02d:%02d:%02d.%06ldZ", tm.tm_year + 1900, tm.tm_mon + 1,
                              tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                              static_cast<long>(ns % 1'000'000'000 / 1000));
  out.append(text, static_cast<std::size_t>(n));
}

// {"seq":N,"ts":"...","level":"info","logger":"access","msg":"...","request_id":"...",...}
void append_line_json(std::string& out, const obs::TailLine& line) {
  out += R"({"seq":)";
  out += std::to_string(line.seq);
  out += R"(,"ts":")";
  append_time(out, line.time_ns);
  out += R"(","level":")";
  out += obs::tail_level_name(line.level);
  out += R"(","logger":")";
  obs::append_json_escaped(out, line.logger);
  out += R"(","msg":")";
  obs::append_json_escaped(out, line.message);
  out += '"';
  const auto field = [&out](std::string_view key, std::string_view value) {
    if (value.empty()) return;
    out += R"(,")";
    out += key;
    out += R"(":")";
    obs::append_json_escaped(out, value);
    out += '"';
  };
  field("request_id", line.request_id);
  field("trace_id", line.trace_id);
  field("span_id", line.span_id);
  out += '}';
}

// Where the tail's wake-ups go: nowhere until the server starts the stream, nowhere after it closes.
struct WakeRelay {
  std::mutex mutex;
  std::function<void()> wake;
  bool pending = false;  // a line came before start()

  void fire() {
    std::lock_guard lock(mutex);
    if (wake) wake();
    else pending = true;
  }
};

class LogStream final : public http::BodyStream {
 public:
  LogStream(std::unique_ptr<obs::TailReader> reader, std::shared_ptr<WakeRelay> relay)
      : reader_(std::move(reader)), relay_(std::move(relay)) {}

  void start(std::function<void()> wake) override {
    std::lock_guard lock(relay_->mutex);
    relay_->wake = std::move(wake);
    if (relay_->pending) relay_->wake();
  }

  bool pull(std::string& out, bool idle) override {
    if (!opened_) {  // first: where the numbering stands, so a client resuming can tell a restart
      opened_ = true;
      out += "event: open\ndata: {\"newest\":";
      out += std::to_string(reader_->newest_at_open());
      out += "}\n\n";
    }
    lines_.clear();
    std::uint64_t lost = 0;
    reader_->read(lines_, kLinesPerPull, lost);
    if (lost != 0) {
      out += "event: lost\ndata: {\"lost\":";
      out += std::to_string(lost);
      out += "}\n\n";
    }
    for (const auto& line : lines_) {
      out += "id: ";
      out += std::to_string(line.seq);
      out += "\ndata: ";
      append_line_json(out, line);
      out += "\n\n";
    }
    if (out.empty() && idle) out += ": idle\n\n";
    return true;
  }

  void close() noexcept override {
    reader_->close();  // no wake from the tail after this
    std::function<void()> wake;
    std::lock_guard lock(relay_->mutex);
    wake.swap(relay_->wake);
  }

 private:
  std::unique_ptr<obs::TailReader> reader_;
  std::shared_ptr<WakeRelay> relay_;
  std::vector<obs::TailLine> lines_;
  bool opened_ = false;
};

}  // namespace

void logs_api(const http::Request& req, http::Response& res, const std::vector<std::string_view>& seg,
              const plugins::PluginHost& plugins) {
  const bool stream = seg.size() == 3 && seg[2] == "stream";
  if (seg.size() != 2 && !stream) return res.set_error(404, "not_found", "no such admin path");
  if (req.method != "GET" && req.method != "HEAD") return res.set_method_not_allowed("GET, HEAD");
  Query q;
  if (!parse(req, res, plugins, stream, q)) return;
  if (!stream) {
    std::string out = R"({"recording":)";
    out += obs::tail_recording() ? "true" : "false";
    out += R"(,"lines":[)";
    bool first = true;
    for (const auto& line : obs::tail_snapshot(q.filter, q.limit)) {
      if (!first) out += ',';
      first = false;
      append_line_json(out, line);
    }
    out += "]}";
    return res.set_json(200, std::move(out));
  }
  auto relay = std::make_shared<WakeRelay>();
  auto reader = obs::TailReader::open(std::move(q.filter), q.backlog, [relay] { relay->fire(); });
  if (!reader) {
    res.set_error(503, "unavailable", "too many log streams are open (" + std::to_string(obs::kMaxTailReaders) +
                                          "); close one and try again");
    res.headers.emplace_back("Retry-After", "5");
    return;
  }
  obs::logger("admin")->info("log stream opened from={} req={}", req.remote_address, req.request_id);
  res.status = 200;
  res.content_type = "text/event-stream; charset=utf-8";
  res.headers.emplace_back("Cache-Control", "no-store");
  res.stream = std::make_shared<LogStream>(std::move(reader), std::move(relay));
}

}  // namespace keel::host::app
