#include "plugins/plugin_host.hpp"

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <keel/plugin.h>

#include "common/published.hpp"
#include "common/timer_queue.hpp"
#include "common/worker_pool.hpp"
#include "events/bus.hpp"
#include "abi/topic.hpp"
#include "isolation/runner.hpp"
#include "observability/log.hpp"
#include "observability/trace.hpp"
#include "abi/bytes.hpp"
#include "abi/current_request.hpp"
#include "abi/host_ctx.hpp"
#include "abi/status.hpp"
#include "package/elf_reader.hpp"
#include "plugins/error_budget.hpp"
#include "plugins/loader.hpp"
#include "package/sha256.hpp"
#include "plugins/watcher.hpp"
#include "storage/database.hpp"
#include "storage/migrations.hpp"
#include "storage/storage_api.hpp"

namespace keel::host::plugins {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

std::int64_t to_mono_ns(Clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

using abi::host_bytes;
using abi::view;

bool valid_token(std::string_view s) {
  if (s.empty()) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || std::strchr("!#$%&'*+-.^_`|~", c);
  });
}

bool valid_field_value(std::string_view s) {
  return std::none_of(s.begin(), s.end(), [](char c) { return c == '\r' || c == '\n' || c == '\0'; });
}

// keel_response (plugin-owned) -> http::Response (host-owned copy). Checks what it copies.
keel_status convert_response(const keel_response* r, http::Response& out, std::uint64_t max_body) {
  if (r == nullptr || r->struct_size < offsetof(keel_response, body) + sizeof(r->body)) return KEEL_ERR_INVALID_ARGUMENT;
  if (r->status < 100 || r->status > 599) return KEEL_ERR_INVALID_ARGUMENT;
  if (r->body.len > max_body) return KEEL_ERR_TOO_LARGE;
  if ((r->headers.count != 0 && r->headers.items == nullptr) || (r->body.len != 0 && r->body.ptr == nullptr))
    return KEEL_ERR_INVALID_ARGUMENT;
  const auto content_type = view(r->content_type);
  if (!valid_field_value(content_type)) return KEEL_ERR_INVALID_ARGUMENT;
  for (std::size_t i = 0; i < r->headers.count; ++i) {
    if (!valid_token(view(r->headers.items[i].name)) || !valid_field_value(view(r->headers.items[i].value)))
      return KEEL_ERR_INVALID_ARGUMENT;
  }
  out.clear();
  out.status = static_cast<unsigned>(r->status);
  out.content_type.assign(content_type);
  out.body.assign(view(r->body));
  for (std::size_t i = 0; i < r->headers.count; ++i) {
    const auto name = view(r->headers.items[i].name);
    // Framing fields belong to the server; a plugin cannot set them.
    if (http::iequals(name, "content-length") || http::iequals(name, "transfer-encoding") ||
        http::iequals(name, "connection") || http::iequals(name, "date") || http::iequals(name, "server"))
      continue;
    out.headers.emplace_back(std::string(name), std::string(view(r->headers.items[i].value)));
  }
  return KEEL_OK;
}

// Query string -> decoded name/value pairs ('+' is a space in form encoding). Invalid escapes
// are kept literally: the query is data for the plugin, not routing input.
void parse_query(std::string_view query, std::string& storage, std::vector<std::pair<std::size_t, std::size_t>>& spans) {
  storage.clear();
  spans.clear();
  storage.reserve(query.size() + 1);
  auto decode_into = [&storage](std::string_view s) {
    for (std::size_t i = 0; i < s.size(); ++i) {
      const char c = s[i];
      auto hex = [](char h) -> int {
        if (h >= '0' && h <= '9') return h - '0';
        if (h >= 'a' && h <= 'f') return h - 'a' + 10;
        if (h >= 'A' && h <= 'F') return h - 'A' + 10;
        return -1;
      };
      if (c == '+') {
        storage += ' ';
      } else if (c == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
        storage += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
        i += 2;
      } else {
        storage += c;
      }
    }
  };
  while (!query.empty()) {
    const auto amp = query.find('&');
    const auto pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
    if (pair.empty()) continue;
    const auto eq = pair.find('=');
    const auto n0 = storage.size();
    decode_into(pair.substr(0, eq));
    const auto n1 = storage.size();
    if (eq != std::string_view::npos) decode_into(pair.substr(eq + 1));
    spans.emplace_back(n0, n1);
    spans.emplace_back(n1, storage.size());
  }
}

// One decoded query name or value: a [begin, end) span of the storage parse_query filled.
std::string_view span_of(std::string_view storage, std::pair<std::size_t, std::size_t> span) {
  return storage.substr(span.first, span.second - span.first);
}

// Everything a request carries, owned, for handlers that run after the I/O thread moved on
// (worker pool, serialized queue, plugin-to-plugin calls).
struct OwnedRequest {
  std::string method, path, body, remote_address, request_id, caller, traceparent, tracestate;
  std::vector<std::pair<std::string, std::string>> headers, params, query;
  std::uint32_t route_index = 0;
  Clock::time_point deadline;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Responders: integer ids (never pointers) so a stale, repeated or foreign id is detected.

class ResponderTable {
 public:
  // id = (sequence << 24) | slot; sequences start at 1 and never repeat within a table.
  keel_responder acquire_sync(http::Response* target) {
    std::lock_guard lock(mutex_);
    auto& s = slot_for_new();
    s.state = State::kSync;
    s.sync_target = target;
    return s.id;
  }

  keel_responder acquire_async(std::shared_ptr<http::AsyncReply> reply) {
    std::lock_guard lock(mutex_);
    auto& s = slot_for_new();
    s.state = State::kAsync;
    s.reply = std::move(reply);
    return s.id;
  }

  // After on_request returned on the dispatching thread. Returns the reply to wait for, or
  // nullptr when the response is final (completed synchronously, or the handler failed).
  std::shared_ptr<http::AsyncReply> finish_sync(keel_responder id, bool failed) {
    std::lock_guard lock(mutex_);
    auto* s = find(id);
    if (s == nullptr || s->state != State::kSync) return nullptr;  // completed: slot already freed
    if (failed) {
      release(*s);
      return nullptr;
    }
    s->state = State::kAsync;
    s->sync_target = nullptr;
    s->reply = std::make_shared<http::AsyncReply>();
    return s->reply;
  }

  keel_status complete(keel_responder id, http::Response&& response) {
    std::shared_ptr<http::AsyncReply> reply;
    {
      std::lock_guard lock(mutex_);
      auto* s = find(id);
      if (s == nullptr) return (id >> 24) != 0 && (id >> 24) < next_seq_ ? KEEL_ERR_ALREADY_COMPLETED : KEEL_ERR_NOT_FOUND;
      if (s->state == State::kSync) {
        *s->sync_target = std::move(response);
        release(*s);
        return KEEL_OK;
      }
      reply = std::move(s->reply);
      release(*s);
    }
    return reply->complete(std::move(response)) ? KEEL_OK : KEEL_ERR_TIMEOUT;
  }

  // The host answers for the plugin (handler failed after deferring, or it is being stopped).
  void fail(keel_responder id, http::Response&& response) { (void)complete(id, std::move(response)); }

  // Requests acquired, not yet answered and still awaited (a drain need not wait for an answer
  // whose client already got a 504).
  std::size_t pending() {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& s : slots_)
      if (s.state == State::kSync || (s.state == State::kAsync && s.reply && s.reply->awaited())) ++n;
    return n;
  }

  // Plugin stopped: every pending request is answered 503.
  void abandon_all() {
    std::vector<std::shared_ptr<http::AsyncReply>> replies;
    {
      std::lock_guard lock(mutex_);
      for (auto& s : slots_) {
        if (s.state == State::kAsync && s.reply) replies.push_back(std::move(s.reply));
        if (s.state != State::kFree) release(s);
      }
    }
    for (auto& r : replies) {
      http::Response res;
      res.set_error(503, "unavailable", "plugin stopped before answering");
      r->complete(std::move(res));
    }
  }

 private:
  enum class State { kFree, kSync, kAsync };
  struct Slot {
    keel_responder id = 0;
    State state = State::kFree;
    http::Response* sync_target = nullptr;
    std::shared_ptr<http::AsyncReply> reply;
  };

  Slot& slot_for_new() {
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    auto& s = slots_[index];
    s.id = (next_seq_++ << 24) | index;
    return s;
  }
  Slot* find(keel_responder id) {
    const auto index = id & 0xFFFFFFu;
    if (index >= slots_.size()) return nullptr;
    auto& s = slots_[index];
    return s.id == id && s.state != State::kFree ? &s : nullptr;
  }
  void release(Slot& s) {
    s.state = State::kFree;
    s.sync_target = nullptr;
    s.reply.reset();
    free_.push_back(static_cast<std::uint32_t>(s.id & 0xFFFFFFu));
  }

  std::mutex mutex_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::uint64_t next_seq_ = 1;
};

// ---------------------------------------------------------------------------------------------

/// Lock-free counters behind RouteStats and CallStats: relaxed atomics, recorded on the request
/// path without any shared lock.
struct DurationCounters {
  std::array<std::atomic<std::uint64_t>, kHttpBuckets.size() + 1> buckets{};
  std::atomic<std::uint64_t> nanos{0};
  void observe(Clock::duration d) noexcept {
    const auto ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    nanos.fetch_add(ns, std::memory_order_relaxed);
    const double seconds = static_cast<double>(ns) / 1e9;
    std::size_t b = 0;
    while (b < kHttpBuckets.size() && seconds > kHttpBuckets[b]) ++b;
    buckets[b].fetch_add(1, std::memory_order_relaxed);
  }
  void snapshot(std::vector<std::uint64_t>& out, double& seconds) const {
    out.clear();
    for (const auto& b : buckets) out.push_back(b.load(std::memory_order_relaxed));
    seconds = static_cast<double>(nanos.load(std::memory_order_relaxed)) / 1e9;
  }
};

struct RouteCounters {
  std::array<std::atomic<std::uint64_t>, 5> by_class{};
  DurationCounters duration;
  std::atomic<std::uint64_t> in_flight{0}, request_bytes{0}, response_bytes{0};
  void begin(std::size_t body_bytes) noexcept {
    in_flight.fetch_add(1, std::memory_order_relaxed);
    request_bytes.fetch_add(body_bytes, std::memory_order_relaxed);
  }
  void finish(Clock::time_point start, unsigned status, std::size_t body_bytes) noexcept {
    const auto cls = std::clamp<unsigned>(status / 100, 1, 5) - 1;
    by_class[cls].fetch_add(1, std::memory_order_relaxed);
    response_bytes.fetch_add(body_bytes, std::memory_order_relaxed);
    duration.observe(Clock::now() - start);
    in_flight.fetch_sub(1, std::memory_order_relaxed);
  }
};

struct CallCounters {
  std::atomic<std::uint64_t> calls{0}, errors{0};
  DurationCounters duration;
};

struct ReloadCounters {
  std::atomic<std::uint64_t> succeeded{0}, refused{0};
  DurationCounters drain;  // retired generation: from the switch until it was destroyed
  std::string last_error;  // why the last refused reload was refused (under status_mutex)
};

struct Plugin {
  PluginHost::Impl* host = nullptr;
  std::size_t index = 0;
  std::string name;
  fs::path file;
  Manifest manifest;
  PluginState state = PluginState::kDiscovered;
  std::string reason;
  std::string mount;
  std::string config_json = "{}";
  std::chrono::milliseconds timeout{30000};
  std::vector<std::chrono::milliseconds> route_timeouts;  // per manifest route; 0 = plugin default
  struct OwnedFd {
    int fd = -1;
    void close() noexcept {
      if (fd >= 0) ::close(fd);
      fd = -1;
    }
    ~OwnedFd() { close(); }
  } code_fd;  // the in-memory copy, when it must stay open (declared before library: closed after it)
  std::unique_ptr<Library> library;             // in process: the mapped code
  std::unique_ptr<isolation::Runner> runner;    // isolation = "process": the runner process instead
  std::shared_ptr<isolation::RunnerCounters> runner_counters;  // crashes and restarts, across generations
  std::string quarantined;                      // why its runner was quarantined (state failed)
  std::shared_ptr<ErrorBudget> budget;          // [plugin.<name>] quarantine_*: null when not set
  const keel_plugin* table = nullptr;
  void* self = nullptr;
  keel_host_ctx ctx{};
  std::shared_ptr<spdlog::logger> log;
  ResponderTable responders;
  std::shared_ptr<SerialQueue> serial;
  std::mutex health_mutex;              // health() is never called concurrently for one instance
  std::shared_ptr<SerialQueue> events;  // event deliveries: one at a time (the serial queue if "serialized")
  std::atomic<bool> accepting{false};   // requests and calls may enter
  std::atomic<bool> may_call{false};    // the plugin may call others: from start() until stop() returns
  std::atomic<bool> hooks_closed{false};  // stop_plugin() began: queued work is answered, not run
  std::atomic<std::uint32_t> in_flight{0};
  std::atomic<std::uint32_t> callbacks_pending{0};
  // Calls this generation made that have not completed: stop_plugin() completes them at once
  // (KEEL_ERR_UNAVAILABLE) so every completion runs before destroy(), as plugin.h promises.
  std::mutex calls_mutex;
  std::map<std::uint64_t, std::function<void()>> live_calls;  // call id -> complete it now
  std::uint64_t next_call = 0;
  std::vector<std::size_t> dependencies;  // indices of plugins this one depends on
  // With ext:keel.storage/1: open from before the first generation's create() to after the last
  // one's destroy(); every generation of the plugin shares it.
  std::shared_ptr<storage::Database> database;
  // Counters outlive a reload: a new generation takes over the old one's (routes by method and
  // path), so Prometheus counters never go backwards.
  std::vector<std::shared_ptr<RouteCounters>> route_counters;  // one per manifest route
  std::shared_ptr<CallCounters[]> call_counters;  // one per plugin of the host, by index: calls made to it
  std::shared_ptr<ReloadCounters> reloads;

  // Generations: a reload builds a new Plugin for the same index; the old one is retired (it
  // drains, stops and is destroyed) while the new one serves.
  std::uint32_t generation = 1;
  std::atomic<bool> retired{false};  // replaced by a newer generation
  bool on_bus = false;               // the event bus has this generation's declarations
  bool loaded = false;               // its code was loaded (it may have been unloaded since)
  std::string sha256;                // of the file this generation was loaded from
};

using Generations = std::vector<std::shared_ptr<Plugin>>;

// The ABI the plugin's code was built against ("1.0"), wherever it runs; empty if not loaded.
std::string abi_of(const Plugin& p) {
  if (p.library) return p.library->abi_string();
  if (p.runner) return abi_to_string(p.runner->abi_version());
  return {};
}

namespace {

// Counts one answer of plugin `name` against its error budget; the answer that puts it over
// takes it out of routing (ErrorBudget::over), which is logged here once.
void spend(const std::shared_ptr<ErrorBudget>& budget, const std::string& name, unsigned status,
           Clock::time_point start) {
  if (budget && budget->record(status, Clock::now() - start))
    observability::logger("plugins")->error("plugin quarantined name={}: {}; POST /admin/plugins/{}/enable brings it back",
                                            name, budget->reason(), name);
}

// The answer for a plugin out of its error budget.
void set_quarantined(http::Response& response, const Plugin& p) {
  response.set_error(503, "quarantined", "plugin '" + p.name + "' is quarantined: " + p.budget->reason() +
                                             "; POST /admin/plugins/" + p.name + "/enable brings it back");
}

}  // namespace

// The plugin named `name` in `gens` (the first: pre-flight refuses a later file with that name).
Generations::const_iterator find_named(const Generations& gens, std::string_view name) {
  return std::find_if(gens.begin(), gens.end(), [name](const auto& g) { return g->name == name; });
}

using abi::CurrentRequestScope;
using abi::current_request_id;
using abi::http_status_for;
using abi::status_name;
using abi::with_current_trace;

struct PluginHost::Impl final : isolation::RunnerListener {
  Impl(const config::Config& c, WorkerPool& p, TimerQueue& t)
      : cfg(c),
        pool(p),
        timers(t),
        log(observability::logger("plugins")),
        span_log(c.log.spans ? observability::logger("trace") : nullptr),
        bus(c.events, p, t) {}

  // A copy: the [plugin.<name>] sections change on SIGHUP (apply_config, under admin_mutex and
  // status_mutex); every other part is fixed for the process.
  config::Config cfg;
  WorkerPool& pool;
  TimerQueue& timers;
  std::shared_ptr<spdlog::logger> log;
  std::shared_ptr<spdlog::logger> span_log;  // "trace": one line per call and event span; null when [log] spans = false
  events::Bus bus;
  // The current generation of every plugin, by index. Replaced only under admin_mutex and
  // status_mutex (a reload); readers on the request path use a RouteSnapshot instead.
  std::vector<std::shared_ptr<Plugin>> plugins;
  std::vector<std::shared_ptr<Plugin>> unmapped_later;  // retired generations whose code must stay mapped until stop()
  std::vector<std::size_t> order;  // start order (dependencies first)
  // What requests, calls and events are routed by: the route table and, by plugin index, the
  // generation its routes lead to. Replaced as a whole; a thread keeps its own reference.
  struct RouteSnapshot {
    std::shared_ptr<const http::RouteTable> table;
    std::vector<std::shared_ptr<Plugin>> gens;
  };
  // A thread keeps the snapshot it last routed by (Published): no atomic reference counting on
  // the request path. The one it keeps holds an old snapshot (and the retired generations in
  // it, never their code: that is unloaded on its own schedule) alive until its next request.
  Published<RouteSnapshot> routes{std::make_shared<const RouteSnapshot>()};
  void publish_routes(std::shared_ptr<const http::RouteTable> table) {
    auto snap = std::make_shared<RouteSnapshot>();
    snap->table = std::move(table);
    {
      std::lock_guard lock(status_mutex);
      snap->gens = plugins;
    }
    routes.publish(std::move(snap));
  }

  /// Lets one request, call or event delivery into generation `p`: true when it may run; the
  /// caller then holds one in_flight count until the work is done. A generation that stopped
  /// accepting (stopping, disabled, or retired by a reload) admits nothing. The count is taken
  /// before `accepting` is read (both sequentially consistent), so a drain that cleared
  /// `accepting` and then sees in_flight == 0 knows nothing can still enter.
  static bool admit(Plugin& p) {
    p.in_flight.fetch_add(1);
    if (p.accepting.load()) return true;
    p.in_flight.fetch_sub(1);
    return false;
  }
  /// Releases an admission when it goes out of scope, unless transferred to a job.
  struct Admission {
    Plugin* p;
    explicit Admission(Plugin* admitted) : p(admitted) {}
    ~Admission() {
      if (p != nullptr) p->in_flight.fetch_sub(1);
    }
    Admission(const Admission&) = delete;
    Admission& operator=(const Admission&) = delete;
    Plugin* transfer() { return std::exchange(p, nullptr); }
  };
  mutable std::mutex status_mutex;
  bool stopped = false;
  keel_host_api api{};

  /// A copy of `plugins` (the current generations), for readers off the control thread.
  std::vector<std::shared_ptr<Plugin>> current_generations() const {
    std::lock_guard lock(status_mutex);
    return plugins;
  }

  Plugin* find(std::string_view name) {
    const auto it = find_named(plugins, name);
    return it == plugins.end() ? nullptr : it->get();
  }

  void fail(Plugin& p, std::string reason) {
    {
      std::lock_guard lock(status_mutex);
      p.state = PluginState::kFailed;
      p.reason = std::move(reason);
    }
    log->error("plugin failed name={} file={} reason=\"{}\"", p.name, p.file.string(), p.reason);
  }
  void set_state(Plugin& p, PluginState s) {
    std::lock_guard lock(status_mutex);
    p.state = s;
  }

  bool open_storage(Plugin& p);
  void close_storage(Plugin& p) {
    p.ctx.storage = nullptr;
    if (p.database) p.database->close();
    std::lock_guard lock(status_mutex);  // storage_stats() reads p.database under it
    p.database.reset();
  }
  void load_and_create(Plugin& p);
  bool map_code(Plugin& p, const std::string& fd_path);
  bool create_plugin(Plugin& p);
  void configure(Plugin& p);
  std::shared_ptr<spdlog::logger> plugin_logger(const std::string& name) const;
  PluginHost::AdminResult install(const std::shared_ptr<Plugin>& old, const fs::path& file);
  void remove(const std::shared_ptr<Plugin>& p, PluginState final_state, const std::string& reason);
  void drain(Plugin& p, Clock::time_point since) const;
  /// Runs `action(plugin)` for the admin API under admin_mutex: 503 once the host is stopping,
  /// 404 for a name no plugin has.
  template <class F>
  PluginHost::AdminResult with_plugin(std::string_view name, F&& action) {
    std::lock_guard admin(admin_mutex);
    if (stopped) return {503, "the host is shutting down"};
    Plugin* p = find(name);
    if (p == nullptr) return {404, "no plugin named '" + std::string(name) + "'"};
    return action(*p);
  }
  void unload(const std::shared_ptr<Plugin>& p);
  std::string started_dependents(const Plugin& p) const;
  // Plugins added at run time get an index below this (call counters are sized by it).
  static constexpr std::size_t kMaxPlugins = 256;
  std::unique_ptr<DirectoryWatcher> watcher;

  // Admin actions (reload, disable, enable, SIGHUP) block for a drain: they run on a thread of
  // their own, not on the worker pool whose queued requests the drain waits for.
  struct AdminQueue {
    std::mutex mutex;
    std::condition_variable ready;
    std::deque<std::function<void()>> jobs;
    bool stopping = false;
    std::thread thread;
  } admin_queue;
  bool post_admin(std::function<void()> job) {
    auto& q = admin_queue;
    std::lock_guard lock(q.mutex);
    if (q.stopping) return false;
    q.jobs.push_back(std::move(job));
    if (!q.thread.joinable()) {
      q.thread = std::thread([&q] {
        std::unique_lock l(q.mutex);
        for (;;) {
          q.ready.wait(l, [&q] { return q.stopping || !q.jobs.empty(); });
          if (q.jobs.empty()) return;  // stopping, and every job ran
          auto next = std::move(q.jobs.front());
          q.jobs.pop_front();
          l.unlock();
          next();
          l.lock();
        }
      });
    }
    q.ready.notify_one();
    return true;
  }
  void stop_admin_queue() {
    {
      std::lock_guard lock(admin_queue.mutex);
      admin_queue.stopping = true;
    }
    admin_queue.ready.notify_one();
    if (admin_queue.thread.joinable()) admin_queue.thread.join();
  }
  void start_plugin(Plugin& p, bool publish_routes = true);
  void stop_plugin(Plugin& p, bool keep_storage = false);
  std::mutex admin_mutex;  // one disable/enable at a time
  void rebuild_routes();

  void connect_events();
  events::Endpoint endpoint_of(Plugin& p);
  bool isolated(const Plugin& p) const;
  bool start_runner(Plugin& p);
  void runner_restarted(const std::string& plugin) override;
  void runner_quarantined(const std::string& plugin, const std::string& reason) override;
  keel_status deliver_event(std::size_t index, const events::EventRecord& e, std::uint32_t attempt);
  keel_status run_handler(Plugin& p, const keel_request& req, keel_responder id, bool deferred);
  std::optional<http::Deferred> dispatch_owned(Plugin& p, std::shared_ptr<OwnedRequest> owned,
                                               std::shared_ptr<http::AsyncReply> reply, keel_responder id);
  keel_status call(Plugin& caller, const keel_call_args* args, keel_call_callback cb, void* user);
};

namespace {

// ---------------------------------------------------------------------------------------------
// The keel_host_api functions. Each is noexcept: a host failure becomes a status, never a throw.

Plugin& plugin_of(keel_host_ctx* ctx) { return *ctx->plugin; }

void api_log(keel_host_ctx* ctx, keel_log_level level, keel_plugin_bytes message) {
  if (ctx == nullptr) return;
  try {
    const auto lvl = static_cast<spdlog::level::level_enum>(std::clamp<keel_log_level>(level, KEEL_LOG_TRACE, KEEL_LOG_CRITICAL));
    plugin_of(ctx).log->log(lvl, "{}", view(message));
  } catch (...) {  // logging never fails the caller
  }
}

keel_log_level api_log_level(keel_host_ctx* ctx) {
  if (ctx == nullptr) return KEEL_LOG_OFF;
  return static_cast<keel_log_level>(plugin_of(ctx).log->level());
}

keel_status api_respond(keel_host_ctx* ctx, keel_responder responder, const keel_response* response) {
  if (ctx == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  auto& p = plugin_of(ctx);
  try {
    http::Response converted;
    const auto st = convert_response(response, converted, p.host->cfg.http.max_body_bytes);
    if (st != KEEL_OK) {
      p.log->warn("respond refused status={} responder={} reason={}", st, responder,
                  st == KEEL_ERR_TOO_LARGE ? "body over max_body_bytes" : "malformed response");
      return st;
    }
    const auto result = p.responders.complete(responder, std::move(converted));
    if (result == KEEL_ERR_ALREADY_COMPLETED)
      p.log->warn("respond called again for a completed request responder={}", responder);
    else if (result == KEEL_ERR_TIMEOUT)
      p.log->warn("late response dropped: the request already timed out responder={}", responder);
    else if (result == KEEL_ERR_NOT_FOUND)
      p.log->warn("respond with an unknown responder={}", responder);
    return result;
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}

keel_status api_publish(keel_host_ctx* ctx, const keel_publish_args* args) {
  if (ctx == nullptr || args == nullptr || args->struct_size < sizeof(keel_publish_args)) return KEEL_ERR_INVALID_ARGUMENT;
  auto& p = plugin_of(ctx);
  if (!p.may_call.load(std::memory_order_acquire)) return KEEL_ERR_UNAVAILABLE;
  try {
    std::string error;
    const auto st = p.host->bus.publish(p.name, with_current_trace(*args), KEEL_TXN_NONE, current_request_id(), error);
    if (st < 0) {
      // A full queue is back-pressure the publisher handles; everything else is a mistake to see.
      if (st == KEEL_ERR_BUSY) p.log->debug("publish refused topic={} error=\"{}\"", view(args->topic), error);
      else p.log->warn("publish refused topic={} status={} error=\"{}\"", view(args->topic), status_name(st), error);
    }
    return st;
  } catch (const std::exception& e) {
    p.log->error("publish failed inside the host error=\"{}\"", e.what());
    return KEEL_ERR_INTERNAL;
  }
}

keel_status api_call(keel_host_ctx* ctx, const keel_call_args* args, keel_call_callback cb, void* user) {
  if (ctx == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  auto& p = plugin_of(ctx);
  try {
    return p.host->call(p, args, cb, user);
  } catch (const std::exception& e) {
    p.log->error("call failed inside the host error=\"{}\"", e.what());
    return KEEL_ERR_INTERNAL;
  }
}

const void* api_get_extension(keel_host_ctx* ctx, const char* id) {
  if (ctx == nullptr || id == nullptr) return nullptr;
  auto& p = plugin_of(ctx);
  const std::string_view wanted{id};
  if (wanted == KEEL_STORAGE_EXTENSION_ID) {
    if (ctx->storage != nullptr) return &storage::storage_api_table();
    p.log->warn("extension refused id={}: the manifest lacks the permission \"ext:{}\"", wanted, wanted);
    return nullptr;
  }
  p.log->debug("extension not provided id={}", wanted);
  return nullptr;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Pre-flight: everything that can be known from the files and the config, with no plugin code.

namespace {

std::string check_permissions(const fs::path& file) {
  struct stat st{};
  if (::stat(file.c_str(), &st) != 0) return "cannot stat: " + std::string(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if ((st.st_mode & S_IWOTH) != 0)
    return "refused: the file is writable by others (mode " + std::to_string(st.st_mode & 07777) +
           "); run chmod o-w on it";
  struct stat dir{};
  if (::stat(file.parent_path().c_str(), &dir) == 0 && (dir.st_mode & S_IWOTH) != 0 && (dir.st_mode & S_ISVTX) == 0)
    return "refused: the plugin directory " + file.parent_path().string() + " is writable by others; run chmod o-w on it";
  return {};
}

std::string mount_of(const Manifest& m, const config::Config& cfg) {
  const auto it = cfg.plugin_sections.find(m.name);
  if (it != cfg.plugin_sections.end() && !it->second.mount.empty()) return it->second.mount;
  return "/api/" + m.name;
}

Candidate read_candidate(const fs::path& file, const config::Config& cfg) {
  Candidate c;
  c.file = file;
  if (auto perm = check_permissions(file); !perm.empty()) {
    c.error = perm;
    return c;
  }
  auto section = read_elf_section_from_file(file, KEEL_MANIFEST_SECTION);
  if (auto* err = std::get_if<ElfError>(&section)) {
    c.error = err->message;
    return c;
  }
  const auto bytes = std::get<std::string>(std::move(section));
  auto text_or_error = manifest_text_from_section(bytes);
  if (auto* err = std::get_if<ManifestError>(&text_or_error)) {
    c.error = "manifest section: " + err->str();
    return c;
  }
  const auto text = std::get<std::string_view>(text_or_error);
  auto parsed = parse_manifest(text);
  if (auto* errors = std::get_if<std::vector<ManifestError>>(&parsed)) {
    std::string all = "invalid manifest:";
    for (const auto& e : *errors) all += " " + e.str() + ";";
    all.pop_back();
    c.error = all;
    return c;
  }
  auto manifest = std::get<Manifest>(std::move(parsed));
  for (const auto& w : manifest.warnings)
    observability::logger("plugins")->warn("manifest warning file={} {}", file.string(), w.str());
  if (manifest.abi_major != KEEL_ABI_VERSION_MAJOR) {
    c.error = "ABI major mismatch: manifest says ABI " + std::to_string(manifest.abi_major) + "." +
              std::to_string(manifest.abi_minor) + ", host implements ABI " + abi_to_string(KEEL_ABI_VERSION);
    c.manifest = std::move(manifest);
    return c;
  }
  const auto section_it = cfg.plugin_sections.find(manifest.name);
  if (section_it != cfg.plugin_sections.end() && !section_it->second.sha256.empty()) {
    const auto sum = sha256_file_hex(file);
    c.sha256 = sum.value_or("");
    if (!sum || *sum != section_it->second.sha256) {
      c.error = "sha256 mismatch: config [plugin." + manifest.name + "] expects " + section_it->second.sha256 +
                ", file has " + c.sha256;
      c.manifest = std::move(manifest);
      return c;
    }
  }
  if (section_it != cfg.plugin_sections.end() && !section_it->second.enabled) c.error = "disabled in config";
  c.manifest = std::move(manifest);
  return c;
}

// Cross-file checks over the candidates still in play: names, dependencies, cycles, config,
// routes. Marks the losers with an error; never throws.
void check_together(std::vector<Candidate>& all, const config::Config& cfg) {
  auto ok = [](const Candidate& c) { return c.error.empty() && c.manifest; };
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!all[i].manifest) continue;
    auto [it, inserted] = by_name.emplace(all[i].manifest->name, i);
    if (!inserted && all[i].error.empty())
      all[i].error = "duplicate plugin name '" + all[i].manifest->name + "': already provided by " +
                     all[it->second].file.filename().string();
  }
  for (auto& c : all) {
    if (!ok(c)) continue;
    const auto sec = cfg.plugin_sections.find(c.manifest->name);
    auto applied = apply_config_schema(*c.manifest, sec == cfg.plugin_sections.end() ? "{}" : sec->second.settings_json);
    if (auto* issues = std::get_if<std::vector<ConfigIssue>>(&applied)) {
      std::string msg = "invalid config:";
      for (const auto& i : *issues) {
        std::string where;
        if (sec != cfg.plugin_sections.end()) {
          const auto pos = sec->second.key_positions.find(i.key);
          where = (pos != sec->second.key_positions.end() ? pos->second : sec->second.where).str() + ": ";
        }
        msg += " " + where + "[plugin." + c.manifest->name + "] " + i.key + ": " + i.message + ";";
      }
      msg.pop_back();
      c.error = msg;
    }
  }
  // Dependencies: repeat until stable, so a failure propagates to every dependent.
  auto check_dependencies = [&] {
    for (bool changed = true; changed;) {
      changed = false;
      for (auto& c : all) {
        if (!ok(c)) continue;
        for (const auto& dep : c.manifest->dependencies) {
          const auto it = by_name.find(dep.name);
          if (it == by_name.end()) {
            c.error = "missing dependency '" + dep.name + "' (" + dep.range.text() + "): no plugin with that name";
          } else if (const auto& target = all[it->second]; !ok(target)) {
            c.error = "dependency '" + dep.name + "' cannot start: " + target.error;
          } else if (!dep.range.contains(target.manifest->version)) {
            c.error = "dependency '" + dep.name + "' version " + target.manifest->version.str() +
                      " is outside the required range '" + dep.range.text() + "'";
          }
          if (!c.error.empty()) {
            changed = true;
            break;
          }
        }
      }
    }
  };
  check_dependencies();
  // Cycles: depth-first search over the remaining graph.
  std::map<std::string, int> mark;  // 0 new, 1 on stack, 2 done
  std::vector<std::string> stack;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    auto& m = mark[name];
    if (m == 2) return;
    if (m == 1) {
      auto start = std::find(stack.begin(), stack.end(), name);
      std::string cycle;
      for (auto it = start; it != stack.end(); ++it) cycle += *it + " -> ";
      cycle += name;
      for (auto it = start; it != stack.end(); ++it) all[by_name[*it]].error = "dependency cycle: " + cycle;
      return;
    }
    m = 1;
    stack.push_back(name);
    for (const auto& dep : all[by_name[name]].manifest->dependencies)
      if (by_name.count(dep.name) && ok(all[by_name[dep.name]])) visit(dep.name);
    stack.pop_back();
    m = 2;
  };
  for (auto& c : all)
    if (ok(c)) visit(c.manifest->name);
  // A plugin depending on a cycle member fails too.
  check_dependencies();
  // Route conflicts, in file order: a later plugin that collides with an earlier one fails.
  std::vector<http::RouteSpec> accepted;
  for (auto& c : all) {
    if (!ok(c)) continue;
    auto trial = accepted;
    const auto mount = mount_of(*c.manifest, cfg);
    for (std::uint32_t r = 0; r < c.manifest->routes.size(); ++r) {
      const auto& decl = c.manifest->routes[r];
      trial.push_back({decl.method, mount + decl.path, c.manifest->name, {0, r}});
    }
    auto built = http::RouteTable::build(trial);
    if (auto* conflicts = std::get_if<std::vector<http::RouteConflict>>(&built)) {
      std::string msg;
      for (const auto& k : *conflicts) msg += (msg.empty() ? "" : "; ") + k.message;
      c.error = msg;
    } else {
      accepted = std::move(trial);
    }
  }
}

// The bytes of `file` in an anonymous in-memory file; its fd, or -1 with `error`.
int memory_copy(const fs::path& file, const std::string& name, std::string& error) {
  const int in = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (in < 0) {
    error = std::strerror(errno);
    return -1;
  }
  const int out = ::memfd_create(("keel:" + name).c_str(), MFD_CLOEXEC);
  if (out < 0) {
    error = std::string("memfd_create: ") + std::strerror(errno);
    ::close(in);
    return -1;
  }
  char buf[65536];
  for (;;) {
    const auto n = ::read(in, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0 && errno == EINTR) continue;
    bool ok = n > 0;
    for (ssize_t done = 0; ok && done < n;) {
      const auto w = ::write(out, buf + done, static_cast<std::size_t>(n - done));
      if (w < 0 && errno == EINTR) continue;
      ok = w > 0;
      done += w > 0 ? w : 0;
    }
    if (!ok) {
      error = std::strerror(errno);
      ::close(in);
      ::close(out);
      return -1;
    }
  }
  ::close(in);
  return out;
}

std::vector<fs::path> list_plugin_files(const fs::path& directory) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec))
    if (entry.path().extension() == ".so") files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

}  // namespace

std::vector<Candidate> preflight(const fs::path& directory, const config::Config& cfg) {
  std::vector<Candidate> all;
  for (const auto& f : list_plugin_files(directory)) all.push_back(read_candidate(f, cfg));
  check_together(all, cfg);
  return all;
}

Candidate preflight_file(const fs::path& file, const config::Config& cfg) {
  std::vector<Candidate> all;
  const auto target = fs::weakly_canonical(file);
  for (const auto& f : list_plugin_files(cfg.plugins.directory))
    if (fs::weakly_canonical(f) != target) all.push_back(read_candidate(f, cfg));
  all.push_back(read_candidate(file, cfg));
  check_together(all, cfg);
  return all.back();
}

// ---------------------------------------------------------------------------------------------
// Lifecycle

std::string_view to_string(PluginState state) noexcept {
  switch (state) {
    case PluginState::kDiscovered: return "discovered";
    case PluginState::kLoaded: return "loaded";
    case PluginState::kCreated: return "created";
    case PluginState::kStarted: return "started";
    case PluginState::kStopping: return "stopping";
    case PluginState::kStopped: return "stopped";
    case PluginState::kFailed: return "failed";
    case PluginState::kDisabled: return "disabled";
  }
  return "unknown";
}

PluginHost::PluginHost(const config::Config& cfg, WorkerPool& pool, TimerQueue& timers)
    : impl_(std::make_unique<Impl>(cfg, pool, timers)) {
  auto& api = impl_->api;
  api.struct_size = sizeof(keel_host_api);
  api.abi_version = KEEL_ABI_VERSION;
  api.log = api_log;
  api.log_level = api_log_level;
  api.respond = api_respond;
  api.publish = api_publish;
  api.call = api_call;
  api.get_extension = api_get_extension;
  impl_->publish_routes(std::get<std::shared_ptr<const http::RouteTable>>(http::RouteTable::build({})));
}

PluginHost::~PluginHost() { stop(); }

// A plugin with ext:keel.storage/1 gets its database, migrated to the manifest's latest version,
// before any of its code runs. Returns false (plugin failed) when that is impossible.
bool PluginHost::Impl::open_storage(Plugin& p) {
  if (!has_permission(p.manifest, "ext:" KEEL_STORAGE_EXTENSION_ID)) return true;
  const auto file = storage::database_file(cfg.server.data_dir, p.name);
  storage::Options o;
  o.file = file;
  o.plugin = p.name;
  o.synchronous = cfg.storage.synchronous;
  o.busy_timeout = cfg.storage.busy_timeout;
  o.readers = cfg.storage.readers;
  o.statement_cache = cfg.storage.statement_cache;
  o.transaction_timeout = cfg.storage.transaction_timeout;
  o.max_bytes = cfg.storage.max_db_bytes;
  if (const auto sec = cfg.plugin_sections.find(p.name); sec != cfg.plugin_sections.end() && sec->second.max_db_bytes)
    o.max_bytes = *sec->second.max_db_bytes;
  try {
    std::error_code ec;
    fs::create_directories(cfg.server.data_dir, ec);
    if (ec) throw std::runtime_error("cannot create data_dir " + cfg.server.data_dir.string() + ": " + ec.message());
    p.database = std::make_shared<storage::Database>(std::move(o));
  } catch (const std::exception& e) {
    fail(p, e.what());
    return false;
  }
  if (auto why = storage::migrate(*p.database, p.manifest.migrations); !why.empty()) {
    p.database.reset();
    fail(p, why + " (database " + file.string() + ")");
    return false;
  }
  p.ctx.storage = p.database.get();
  log->info("plugin database ready name={} file={} migrations={}", p.name, file.string(), p.manifest.migrations.size());
  return true;
}

// Code is mapped from a private in-memory copy (a memfd), reached through a symlink with a name
// never used before (<data_dir>/.keel-load/<name>.<generation>.<pid>.<n>.so, removed once
// mapped). The dynamic loader recognises an already loaded library by path and by inode, so it
// never hands back an older mapping of a file replaced in place; the plugin directory's file may
// be rewritten while this generation runs; and no disk space is used. The copy is also what the
// sha256 describes and the allowlist checks.
void PluginHost::Impl::load_and_create(Plugin& p) {
  std::string error;
  p.code_fd.fd = memory_copy(p.file, p.name, error);
  if (p.code_fd.fd < 0) {
    fail(p, "cannot copy " + p.file.string() + " into memory for loading: " + error);
    return;
  }
  const std::string fd_path = "/proc/self/fd/" + std::to_string(p.code_fd.fd);
  p.sha256 = sha256_file_hex(fd_path).value_or("");
  // The allowlist is checked on the bytes that get mapped, not on the file as pre-flight saw it.
  if (const auto sec = cfg.plugin_sections.find(p.name);
      sec != cfg.plugin_sections.end() && !sec->second.sha256.empty() && sec->second.sha256 != p.sha256) {
    fail(p, "sha256 mismatch: config [plugin." + p.name + "] expects " + sec->second.sha256 + ", file has " + p.sha256);
    return;
  }
  if (isolated(p)) {
    if (!start_runner(p)) return;
  } else if (!map_code(p, fd_path)) {
    return;
  }
  p.loaded = true;
  if (p.table->abi_version != ((p.manifest.abi_major << 16) | p.manifest.abi_minor)) {
    fail(p, "manifest says ABI " + std::to_string(p.manifest.abi_major) + "." + std::to_string(p.manifest.abi_minor) +
                " but the plugin table says " + abi_of(p));
    return;
  }
  if (!p.manifest.routes.empty() && p.table->on_request == nullptr) {
    fail(p, "manifest declares routes but the plugin has no on_request hook");
    return;
  }
  if (!p.manifest.subscribes.empty() && p.table->on_event == nullptr) {
    fail(p, "manifest subscribes to events but the plugin has no on_event hook");
    return;
  }
  set_state(p, PluginState::kLoaded);
  log->info("plugin loaded name={} version={} abi={} file={} isolation={}", p.name, p.manifest.version.str(), abi_of(p),
            p.file.string(), p.runner ? "process" : "in-process");
  p.ctx.plugin = &p;
  p.ctx.bus = &bus;
  p.ctx.name = p.name;
  p.ctx.runner = p.runner.get();
  (void)create_plugin(p);
}

// In process: dlopen the copy in `fd_path` through a fresh symlink (above). False: failed.
bool PluginHost::Impl::map_code(Plugin& p, const std::string& fd_path) {
  static std::atomic<std::uint64_t> loads{0};
  const auto dir = cfg.server.data_dir / ".keel-load";
  const auto link = dir / (p.name + "." + std::to_string(p.generation) + "." + std::to_string(::getpid()) + "." +
                           std::to_string(loads.fetch_add(1)) + ".so");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec) fs::permissions(dir, fs::perms::owner_all, ec);
  if (!ec) fs::create_symlink(fd_path, link, ec);
  // Without the link (data_dir not writable), the fd path itself: unique while the fd stays open,
  // which it then does for as long as this generation exists.
  const fs::path load_path = ec ? fs::path(fd_path) : link;
  try {
    p.library = std::make_unique<Library>(load_path, p.manifest.json);
  } catch (const PluginLoadError& e) {
    if (!ec) fs::remove(link, ec);
    fail(p, e.reason());
    return false;
  }
  if (!ec) {
    fs::remove(link, ec);
    p.code_fd.close();  // mapped: the memory stays while the mapping does
  }
  p.table = &p.library->table();
  return true;
}

bool PluginHost::Impl::isolated(const Plugin& p) const {
  const auto sec = cfg.plugin_sections.find(p.name);
  const auto& mode = sec != cfg.plugin_sections.end() && !sec->second.isolation.empty() ? sec->second.isolation
                                                                                        : cfg.plugins.isolation;
  return mode == "process";
}

// isolation = "process": the code copy goes to a keel-plugin-runner child, which loads it and
// checks its table; the plugin host calls it through the runner's table. False: failed.
bool PluginHost::Impl::start_runner(Plugin& p) {
  isolation::RunnerOptions o;
  o.plugin = p.name;
  o.binary = cfg.plugins.runner;
  if (o.binary.empty()) {
    std::error_code ec;
    o.binary = fs::read_symlink("/proc/self/exe", ec).parent_path() / "keel-plugin-runner";
  }
  o.manifest_json = p.manifest.json;
  if (const auto sec = cfg.plugin_sections.find(p.name); sec != cfg.plugin_sections.end()) o.settings = sec->second.runner;
  o.queue_limit = cfg.server.worker_queue;
  o.log_level = static_cast<std::int32_t>(p.log->level());
  o.serialized = p.manifest.serialized;
  if (!p.runner_counters) p.runner_counters = std::make_shared<isolation::RunnerCounters>();
  try {
    p.runner = std::make_unique<isolation::Runner>(std::move(o), p.code_fd.fd, *this, p.runner_counters);
  } catch (const std::exception& e) {
    fail(p, std::string("cannot run it in its own process: ") + e.what());
    return false;
  }
  p.code_fd.close();  // the runner holds its own copy of the descriptor
  p.table = &p.runner->table();
  return true;
}

void PluginHost::Impl::runner_restarted(const std::string& plugin) { bus.resume_subscriber(plugin); }

// Too many crashes: the plugin leaves routing (state failed) until it is reloaded or enabled.
// On the admin thread, like every other change of a plugin's state.
void PluginHost::Impl::runner_quarantined(const std::string& plugin, const std::string& reason) {
  static_cast<void>(post_admin([this, plugin, reason] {
    std::lock_guard admin(admin_mutex);
    if (stopped) return;
    Plugin* p = find(plugin);
    if (p == nullptr || !p->runner || p->runner->status().state != "quarantined") return;
    p->accepting.store(false);
    {
      std::lock_guard lock(status_mutex);
      p->state = PluginState::kFailed;
      p->reason = "quarantined: " + reason + "; reload or enable it when fixed";
      p->quarantined = reason;
    }
    rebuild_routes();
  }));
}

// create() on the loaded library; false (plugin failed) when it fails.
bool PluginHost::Impl::create_plugin(Plugin& p) {
  void* self = nullptr;
  keel_status st = KEEL_ERR_INTERNAL;
  try {
    st = p.table->create(&api, &p.ctx, host_bytes(p.config_json), &self);
  } catch (...) {
    fail(p, "create() let an exception escape (plugins must not throw across the ABI)");
    return false;
  }
  if (st < 0) {
    fail(p, "create() failed with status " + std::to_string(st) + " (" + std::string(status_name(st)) + ")");
    return false;
  }
  p.self = self;
  set_state(p, PluginState::kCreated);
  return true;
}

void PluginHost::Impl::start_plugin(Plugin& p, bool publish_routes) {
  keel_status st = KEEL_OK;
  p.may_call.store(true);
  if (p.table->start != nullptr) {
    try {
      st = p.table->start(p.self);
    } catch (...) {
      st = KEEL_ERR_INTERNAL;
    }
  }
  if (st < 0) {
    p.may_call.store(false);
    fail(p, "start() failed with status " + std::to_string(st) + " (" + std::string(status_name(st)) + ")");
    return;
  }
  p.accepting.store(true);
  set_state(p, PluginState::kStarted);
  if (publish_routes) rebuild_routes();  // dependents may call this plugin from their own start()
  log->info("plugin started name={} version={} mount={} routes={}", p.name, p.manifest.version.str(), p.mount,
            p.manifest.routes.size());
}

// keep_storage: the database stays open (a plugin disabled at run time: the event bus may still
// read its outbox, and enable() creates it again on the same database).
void PluginHost::Impl::stop_plugin(Plugin& p, bool keep_storage) {
  if (p.self == nullptr) {
    if (!keep_storage) close_storage(p);  // opened, but create() failed or never ran
    return;
  }
  const bool was_started = p.state == PluginState::kStarted || p.state == PluginState::kFailed;
  p.accepting.store(false);
  p.hooks_closed.store(true);
  set_state(p, PluginState::kStopping);
  // Let hooks already inside the plugin return before stop() (bounded wait).
  for (int i = 0; i < 5000 && p.in_flight.load() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (was_started && p.table->stop != nullptr) {
    try {
      const auto st = p.table->stop(p.self);
      if (st < 0) log->warn("plugin stop() failed name={} status={}", p.name, st);
    } catch (...) {
      log->warn("plugin stop() let an exception escape name={}", p.name);
    }
  }
  p.may_call.store(false);
  p.responders.abandon_all();
  std::map<std::uint64_t, std::function<void()>> calls;
  {
    std::lock_guard lock(p.calls_mutex);
    calls.swap(p.live_calls);
  }
  for (auto& [id, complete_now] : calls) complete_now();  // each posts its completion to a worker
  for (int i = 0; i < 5000 && p.callbacks_pending.load() != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  try {
    p.table->destroy(p.self);
  } catch (...) {
    log->warn("plugin destroy() let an exception escape name={}", p.name);
  }
  p.self = nullptr;
  if (!keep_storage) close_storage(p);
  {
    std::lock_guard lock(status_mutex);
    if (p.state == PluginState::kStopping) p.state = PluginState::kStopped;
  }
  log->info("plugin stopped name={}", p.name);
}

namespace {

// What `p` publishes, as the event bus takes it.
events::Publisher publisher_of(const Plugin& p) {
  return {p.name, p.manifest.publishes, p.manifest.durable, p.database};
}

// What the previous generation `old` and the next one `next` publish together: while both run
// (the reload overlap), either may publish what it declared. A topic both declare takes the
// next generation's durability.
events::Publisher merged_publisher(const Plugin& old, const Plugin& next) {
  auto out = publisher_of(next);
  auto has = [](const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  for (const auto& t : old.manifest.publishes) {
    if (has(out.topics, t)) continue;
    out.topics.push_back(t);
    if (has(old.manifest.durable, t)) out.durable.push_back(t);
  }
  return out;
}

}  // namespace

// How the bus reaches `p`. Every delivery job of this subscriber (in-memory inbox and durable
// streams alike) runs on one serial queue: the plugin receives one event at a time, as
// plugin.h promises. The queue stays with the plugin across reloads (deliveries stay one at a
// time); each delivery goes to the generation current when it runs.
events::Endpoint PluginHost::Impl::endpoint_of(Plugin& p) {
  if (!p.events) p.events = p.serial ? p.serial : std::make_shared<SerialQueue>(pool, cfg.server.worker_queue);
  return {p.name, p.manifest.subscribes,
          [this, index = p.index](const events::EventRecord& e, std::uint32_t attempt) {
            return deliver_event(index, e, attempt);
          },
          [queue = p.events](std::function<void()> job) { return queue->post(std::move(job)); }};
}

// Every created plugin joins the event bus with what it publishes and subscribes to; the bus
// then accepts publishes (from start() on) and delivers once every plugin has started.
void PluginHost::Impl::connect_events() {
  for (auto i : order) {
    auto& p = *plugins[i];
    if (p.state != PluginState::kCreated) continue;
    try {
      bus.set_publisher(publisher_of(p));
    } catch (const std::exception& e) {
      fail(p, e.what());
      continue;
    }
    if (!p.manifest.subscribes.empty()) bus.set_subscriber(endpoint_of(p));
    p.on_bus = true;
  }
  bus.start();
}

keel_status PluginHost::Impl::deliver_event(std::size_t index, const events::EventRecord& e, std::uint32_t attempt) {
  Plugin* pp = routes.current().gens.at(index).get();
  for (int tries = 1; !admit(*pp); ++tries) {
    if (!pp->retired.load() || tries > 3) return KEEL_ERR_UNAVAILABLE;  // stopping or disabled: the bus pauses
    pp = routes.current(/*fresh=*/true).gens.at(index).get();
  }
  const Admission admission(pp);
  auto& p = *pp;
  if (p.budget && p.budget->over()) return KEEL_ERR_UNAVAILABLE;  // quarantined: durable deliveries pause
  // The generation current now receives what it subscribes to: an event matched by the patterns
  // of the generation it replaced, and no longer by its own, is acknowledged, not handed over.
  if (std::none_of(p.manifest.subscribes.begin(), p.manifest.subscribes.end(),
                   [&](const std::string& pattern) { return events::topic_matches(pattern, e.topic()); })) {
    p.log->debug("event skipped: not subscribed any more topic={} id={}", e.topic(), e.event_id());
    return KEEL_OK;
  }
  keel_event ev{};
  ev.struct_size = sizeof(keel_event);
  ev.delivery_attempt = attempt;
  ev.topic = host_bytes(e.topic());
  ev.payload = host_bytes(e.payload());
  ev.content_type = host_bytes(e.content_type());
  ev.event_id = host_bytes(e.event_id());
  ev.publisher = host_bytes(e.publisher());
  ev.timestamp_unix_ns = e.published_unix_ns;
  // The delivery is a span: a child of the publisher's span, the parent of the handler's calls.
  const auto span = observability::Span::start(e.traceparent());
  ev.traceparent = host_bytes(span.traceparent());
  ev.tracestate = host_bytes(e.tracestate());
  const auto start = Clock::now();
  keel_status st = KEEL_ERR_INTERNAL;
  {
    // Calls and publishes made by the handler carry the publishing request's id and this span.
    const CurrentRequestScope scope({&p.ctx, start + p.timeout, e.request_id(), span.traceparent()});
    try {
      st = p.table->on_event(p.self, &ev);
    } catch (...) {
      p.log->error("on_event let an exception escape topic={} id={}", e.topic(), e.event_id());
    }
  }
  const bool span_line = span_log && span_log->should_log(spdlog::level::info);
  if (st >= 0 && !span_line) return st;  // nothing to log: no second clock read
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  const observability::LogScope log_scope({e.request_id(), span.trace_id(), span.span_id()});
  if (st < 0)
    p.log->warn("event handler failed topic={} id={} publisher={} attempt={} status={} duration_us={}", e.topic(),
                e.event_id(), e.publisher(), attempt, status_name(st), us);
  if (span_line)
    span_log->info("span kind=event topic={} publisher={} subscriber={} event_id={} attempt={} status={} duration_us={}"
                   "{}{}",
                   e.topic(), e.publisher(), p.name, e.event_id(), attempt, status_name(st), us,
                   span.parent_id().empty() ? "" : " parent_id=", span.parent_id());
  return st;
}

void PluginHost::Impl::rebuild_routes() {
  std::vector<http::RouteSpec> specs;
  for (auto& p : plugins) {
    if (p->state != PluginState::kStarted) continue;
    for (std::uint32_t r = 0; r < p->manifest.routes.size(); ++r) {
      const auto& decl = p->manifest.routes[r];
      specs.push_back({decl.method, p->mount + decl.path, p->name, {static_cast<std::uint32_t>(p->index), r}});
    }
  }
  auto built = http::RouteTable::build(std::move(specs));
  if (auto* table = std::get_if<std::shared_ptr<const http::RouteTable>>(&built)) {
    publish_routes(*table);
  } else {
    // Pre-flight removed every conflict; reaching this means a bug, not bad input.
    for (const auto& c : std::get<std::vector<http::RouteConflict>>(built)) log->critical("route table: {}", c.message);
  }
}

// Logger plugin.<name>, at [plugin.<name>] log_level when set.
std::shared_ptr<spdlog::logger> PluginHost::Impl::plugin_logger(const std::string& name) const {
  auto named = observability::logger("plugin." + name);
  if (const auto sec = cfg.plugin_sections.find(name); sec != cfg.plugin_sections.end() && !sec->second.log_level.empty())
    named->set_level(spdlog::level::from_str(sec->second.log_level));
  return named;
}

// Mount, timeouts, config and queues from the config for a plugin whose manifest pre-flight
// accepted (so the config schema applies).
void PluginHost::Impl::configure(Plugin& p) {
  p.mount = mount_of(p.manifest, cfg);
  const auto sec = cfg.plugin_sections.find(p.name);
  p.timeout = cfg.http.request_timeout;
  if (sec != cfg.plugin_sections.end() && sec->second.request_timeout) p.timeout = *sec->second.request_timeout;
  p.route_timeouts.assign(p.manifest.routes.size(), std::chrono::milliseconds(0));
  if (sec != cfg.plugin_sections.end()) {
    for (const auto& [key, value] : sec->second.route_timeouts) {
      bool found = false;
      for (std::size_t r = 0; r < p.manifest.routes.size(); ++r) {
        if (p.manifest.routes[r].method + " " + p.manifest.routes[r].path == key) {
          p.route_timeouts[r] = value;
          found = true;
        }
      }
      if (!found) log->warn("route_timeouts key names no route of plugin name={} key=\"{}\"", p.name, key);
    }
  }
  p.config_json = std::get<std::string>(apply_config_schema(
      p.manifest, sec == cfg.plugin_sections.end() ? std::string_view("{}") : sec->second.settings_json));
  if (p.manifest.serialized) p.serial = std::make_shared<SerialQueue>(pool, cfg.server.worker_queue);
  if (sec != cfg.plugin_sections.end() && sec->second.budget.enabled())
    p.budget = std::make_shared<ErrorBudget>(sec->second.budget);
}

void PluginHost::start() {
  auto& s = *impl_;
  const auto& cfg = s.cfg;
  s.log->info("scanning plugins directory={}", cfg.plugins.directory.string());
  std::error_code ec;
  if (!fs::is_directory(cfg.plugins.directory, ec))
    s.log->warn("plugin directory does not exist directory={}; no plugins loaded", cfg.plugins.directory.string());
  auto candidates = preflight(cfg.plugins.directory, cfg);

  for (auto& c : candidates) {
    auto p = std::make_shared<Plugin>();
    p->host = &s;
    p->index = s.plugins.size();
    p->file = c.file;
    p->name = c.manifest ? c.manifest->name : c.file.stem().string();
    if (c.manifest) p->manifest = *c.manifest;
    p->log = s.plugin_logger(p->name);
    if (c.error == "disabled in config") {
      p->state = PluginState::kDisabled;
      p->reason = c.error;
      s.log->info("plugin disabled name={} file={}", p->name, c.file.string());
    } else if (!c.error.empty()) {
      p->state = PluginState::kFailed;
      p->reason = c.error;
      s.log->error("plugin refused file={} reason=\"{}\"", c.file.string(), c.error);
    } else {
      s.configure(*p);
    }
    s.plugins.push_back(std::move(p));
  }
  for (auto& p : s.plugins) {
    for (std::size_t r = 0; r < p->manifest.routes.size(); ++r) p->route_counters.push_back(std::make_shared<RouteCounters>());
    p->call_counters = std::shared_ptr<CallCounters[]>(new CallCounters[std::max(s.plugins.size(), Impl::kMaxPlugins)]());
    p->reloads = std::make_shared<ReloadCounters>();
  }
  for (const auto& [name, section] : cfg.plugin_sections) {
    if (s.find(name) == nullptr)
      s.log->warn("config has [plugin.{}] but no such plugin is in {} ({})", name, cfg.plugins.directory.string(),
                  section.where.str());
  }

  // Dependency order: pre-flight guaranteed every dependency of a non-failed plugin is present
  // and acyclic; a depth-first walk gives a topological order that keeps directory order otherwise.
  std::vector<int> mark(s.plugins.size(), 0);
  std::function<void(std::size_t)> visit = [&](std::size_t i) {
    if (mark[i] != 0) return;
    mark[i] = 1;
    auto& p = *s.plugins[i];
    for (const auto& dep : p.manifest.dependencies) {
      if (auto* d = s.find(dep.name)) {
        p.dependencies.push_back(d->index);
        visit(d->index);
      }
    }
    s.order.push_back(i);
  };
  for (std::size_t i = 0; i < s.plugins.size(); ++i)
    if (s.plugins[i]->state == PluginState::kDiscovered) visit(i);

  auto deps_ok = [&](const Plugin& p, PluginState needed) {
    for (auto d : p.dependencies) {
      const auto& dp = *s.plugins[d];
      if (dp.state != needed) return "dependency '" + dp.name + "' is " + std::string(to_string(dp.state)) +
                                     (dp.reason.empty() ? "" : " (" + dp.reason + ")");
    }
    return std::string{};
  };
  for (auto i : s.order) {
    auto& p = *s.plugins[i];
    if (auto why = deps_ok(p, PluginState::kCreated); !why.empty()) {
      s.fail(p, why);
      continue;
    }
    if (s.open_storage(p)) s.load_and_create(p);
  }
  s.connect_events();
  for (auto i : s.order) {
    auto& p = *s.plugins[i];
    if (p.state != PluginState::kCreated) continue;
    if (auto why = deps_ok(p, PluginState::kStarted); !why.empty()) {
      s.fail(p, why);
      continue;
    }
    s.start_plugin(p);
  }
  s.bus.begin_delivery();
  if (cfg.plugins.watch) {
    s.watcher = std::make_unique<DirectoryWatcher>(
        WatchOptions{cfg.plugins.directory, cfg.plugins.watch_debounce, cfg.plugins.watch_rescan, false},
        [this] { sync_directory(); });
    s.log->info("watching plugins directory={} ({})", cfg.plugins.directory.string(), s.watcher->start());
  }
  std::size_t started = 0;
  for (auto& p : s.plugins) started += p->state == PluginState::kStarted ? 1 : 0;
  s.log->info("plugins ready started={} total={}", started, s.plugins.size());
}

void PluginHost::stop() {
  auto& s = *impl_;
  if (s.watcher) s.watcher->stop();  // before admin_mutex: a sync in progress holds it
  s.stop_admin_queue();               // queued admin actions run first
  {
    std::lock_guard admin(s.admin_mutex);  // a disable or enable in progress finishes first
    if (s.stopped) return;
    s.stopped = true;  // later ones are refused (they may be queued on the pool stopped below)
  }
  s.publish_routes(std::get<std::shared_ptr<const http::RouteTable>>(http::RouteTable::build({})));
  s.bus.stop(s.cfg.server.drain_timeout);
  for (auto& p : s.plugins) p->accepting.store(false);
  for (auto it = s.order.rbegin(); it != s.order.rend(); ++it) s.stop_plugin(*s.plugins[*it]);
  // Unload only after every plugin is destroyed: a plugin may hold pointers into another's
  // code only through the host, but completions queued on the pool must have run.
  s.pool.stop();
  for (auto it = s.order.rbegin(); it != s.order.rend(); ++it) {
    s.plugins[*it]->library.reset();
    s.plugins[*it]->runner.reset();
  }
  for (auto& g : s.unmapped_later) g->library.reset();
}

bool PluginHost::post_admin_job(std::function<void()> job) { return impl_->post_admin(std::move(job)); }

PluginHost::AdminResult PluginHost::reload(std::string_view name) {
  auto& s = *impl_;
  return s.with_plugin(name, [&s](Plugin& found) -> AdminResult {
    const std::shared_ptr<Plugin> old = s.current_generations()[found.index];
    if (old->state != PluginState::kStarted && old->quarantined.empty())
      return {409, "plugin '" + old->name + "' is " + std::string(to_string(old->state)) +
                       "; only a started plugin can be reloaded (fix the file or the config and restart for the others)"};
    return s.install(old, old->file);
  });
}

// Unmaps a generation that no hook can enter any more, once nothing is inside it; otherwise keeps
// it mapped until the host stops. The library is moved out under status_mutex (statuses() reads
// it) and destroyed outside it.
void PluginHost::Impl::unload(const std::shared_ptr<Plugin>& p) {
  if (p->self != nullptr) stop_plugin(*p, /*keep_storage=*/true);  // e.g. failed in start(): destroy() first
  if (p->in_flight.load() != 0 || p->callbacks_pending.load() != 0) {
    log->warn("plugin generation kept mapped name={} generation={}: work still inside it", p->name, p->generation);
    unmapped_later.push_back(p);
    return;
  }
  std::unique_ptr<Library> library;
  std::unique_ptr<isolation::Runner> runner;  // ends its process when it goes, outside the lock
  {
    std::lock_guard lock(status_mutex);
    library = std::move(p->library);
    runner = std::move(p->runner);
  }
}

// Names of the started plugins that depend on `p`, comma-separated; empty if none.
std::string PluginHost::Impl::started_dependents(const Plugin& p) const {
  std::string out;
  for (const auto& other : current_generations())
    for (auto d : other->dependencies)
      if (d == p.index && other->state == PluginState::kStarted) out += (out.empty() ? "" : ", ") + other->name;
  return out;
}

// Waits until what `p` admitted has finished (work running or queued for it, deferred answers a
// client still waits for), at most [server] drain_timeout after `since`. `p` admits nothing new.
void PluginHost::Impl::drain(Plugin& p, Clock::time_point since) const {
  const auto deadline = since + cfg.server.drain_timeout;
  while ((p.in_flight.load() != 0 || p.responders.pending() != 0) && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// A started plugin whose file was removed or that the config disabled: drained, stopped and
// destroyed like a retired generation, then left in `final_state` with `reason`; its database
// stays open (the bus may still read its outbox). Under admin_mutex.
void PluginHost::Impl::remove(const std::shared_ptr<Plugin>& p, PluginState final_state, const std::string& reason) {
  log->info("plugin stopping name={} file={}: {}", p->name, p->file.string(), reason);
  p->accepting.store(false);
  set_state(*p, PluginState::kStopping);
  rebuild_routes();
  drain(*p, Clock::now());
  stop_plugin(*p, /*keep_storage=*/true);
  {
    std::lock_guard lock(status_mutex);
    p->state = final_state;
    p->reason = reason;
  }
  unload(p);
}

void PluginHost::sync_directory() {
  auto& s = *impl_;
  std::lock_guard admin(s.admin_mutex);
  if (s.stopped) return;
  const auto files = list_plugin_files(s.cfg.plugins.directory);
  const auto gens = s.current_generations();
  auto is_present = [&](const fs::path& f) { return std::find(files.begin(), files.end(), f) != files.end(); };
  for (const auto& g : gens) {
    if (g->state != PluginState::kStarted) continue;
    if (!is_present(g->file)) {
      const auto dependents = s.started_dependents(*g);
      if (dependents.empty()) s.remove(g, PluginState::kStopped, "its file " + g->file.string() + " was removed");
      else s.log->error("plugin file removed name={} file={}, but started plugins depend on it ({}): it keeps running "
                        "from its loaded copy", g->name, g->file.string(), dependents);
      continue;
    }
    if (sha256_file_hex(g->file).value_or(g->sha256) != g->sha256) static_cast<void>(s.install(g, g->file));
  }
  // Files no started plugin runs: a plugin that failed, stopped or whose file came back, or a new
  // one. Again while a pass started something: a dependency may come after its dependent.
  for (bool progress = true; progress;) {
    progress = false;
    const auto now = s.current_generations();
    for (const auto& f : files) {
      const auto running = std::any_of(now.begin(), now.end(), [&](const auto& g) {
        return g->file == f && g->state == PluginState::kStarted;
      });
      if (running) continue;
      const auto candidate = read_candidate(f, s.cfg);
      const auto name = candidate.manifest ? candidate.manifest->name : f.stem().string();
      const auto slot = find_named(now, name);
      AdminResult result{0, {}};
      if (slot == now.end()) {
        result = s.install(nullptr, f);
      } else {
        const auto& g = *slot;
        // Disabled (config or admin API), or running from another file: left alone.
        if (g->state == PluginState::kStarted || g->state == PluginState::kDisabled) continue;
        if (g->file != f && is_present(g->file)) continue;
        result = s.install(g, f);
      }
      progress = progress || result.status == 200;
    }
  }
}

// Starts what `file` holds as the next generation of `old` (a started plugin: reload; a stopped
// or failed one: start again) or, with `old` null, as a new plugin. Pre-flights it against the
// plugins running now; any failure leaves everything as it was. Under admin_mutex.
PluginHost::AdminResult PluginHost::Impl::install(const std::shared_ptr<Plugin>& old, const fs::path& file) {
  auto& s = *this;
  const bool running = old && old->state == PluginState::kStarted;
  auto refuse = [&](unsigned status, const std::string& why) {
    if (old) {
      old->reloads->refused.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(s.status_mutex);
      old->reloads->last_error = why;
    }
    if (running) {
      s.log->error("plugin reload refused name={} file={} reason=\"{}\"; version {} keeps serving", old->name,
                   file.string(), why, old->manifest.version.str());
      return AdminResult{status, "reload refused: " + why + "; version " + old->manifest.version.str() +
                                     " (generation " + std::to_string(old->generation) + ") keeps serving"};
    }
    s.log->error("plugin not started file={} reason=\"{}\"", file.string(), why);
    return AdminResult{status, "not started: " + why};
  };

  // Pre-flight the file as it is now, against the plugins that run now.
  const auto c = read_candidate(file, s.cfg);
  if (!c.error.empty() || !c.manifest) return refuse(422, c.file.string() + ": " + c.error);
  const Manifest& m = *c.manifest;
  if (old && m.name != old->name) return refuse(422, file.string() + " now declares plugin '" + m.name + "'");
  const auto storage_permission = "ext:" KEEL_STORAGE_EXTENSION_ID;
  if (old && old->database && !has_permission(m, storage_permission))
    return refuse(409, "its storage permission was removed; restart the host to apply it");
  const auto gens = s.current_generations();
  if (!old) {
    const auto same = find_named(gens, m.name);
    if (same != gens.end()) return refuse(409, "plugin '" + m.name + "' is already provided by " + (*same)->file.string());
    if (gens.size() >= kMaxPlugins) return refuse(409, "the host runs at most " + std::to_string(kMaxPlugins) + " plugins");
  }
  std::vector<std::size_t> dependencies;
  for (const auto& dep : m.dependencies) {
    const auto it = find_named(gens, dep.name);
    if (it == gens.end() || (*it)->state != PluginState::kStarted)
      return refuse(409, "dependency '" + dep.name + "' is not started");
    if (!dep.range.contains((*it)->manifest.version))
      return refuse(409, "dependency '" + dep.name + "' version " + (*it)->manifest.version.str() +
                             " is outside the required range '" + dep.range.text() + "'");
    for (const auto& back : (*it)->manifest.dependencies)
      if (back.name == m.name) return refuse(409, "dependency cycle: " + m.name + " -> " + dep.name + " -> " + m.name);
    dependencies.push_back((*it)->index);
  }
  for (const auto& g : gens) {
    if (g->state != PluginState::kStarted || g.get() == old.get()) continue;
    for (const auto& dep : g->manifest.dependencies)
      if (dep.name == m.name && !dep.range.contains(m.version))
        return refuse(409, "version " + m.version.str() + " is outside the range '" + dep.range.text() +
                               "' that plugin '" + g->name + "' requires");
  }
  const auto sec = s.cfg.plugin_sections.find(m.name);
  const auto applied = apply_config_schema(m, sec == s.cfg.plugin_sections.end() ? "{}" : sec->second.settings_json);
  if (const auto* issues = std::get_if<std::vector<ConfigIssue>>(&applied)) {
    std::string msg = "invalid config for the new version:";
    for (const auto& i : *issues) msg += " [plugin." + m.name + "] " + i.key + ": " + i.message + ";";
    msg.pop_back();
    return refuse(422, msg);
  }
  {
    std::vector<http::RouteSpec> specs;
    for (const auto& g : gens) {
      if (g->state != PluginState::kStarted || g.get() == old.get()) continue;
      for (std::uint32_t r = 0; r < g->manifest.routes.size(); ++r)
        specs.push_back({g->manifest.routes[r].method, g->mount + g->manifest.routes[r].path, g->name, {0, r}});
    }
    for (std::uint32_t r = 0; r < m.routes.size(); ++r)
      specs.push_back({m.routes[r].method, mount_of(m, s.cfg) + m.routes[r].path, m.name, {0, r}});
    const auto built = http::RouteTable::build(specs);
    if (const auto* conflicts = std::get_if<std::vector<http::RouteConflict>>(&built)) {
      std::string msg;
      for (const auto& k : *conflicts) msg += (msg.empty() ? "" : "; ") + k.message;
      return refuse(409, msg);
    }
  }

  // The new generation: the same index, logger, database, event queue and counters.
  auto next = std::make_shared<Plugin>();
  next->host = &s;
  next->index = old ? old->index : gens.size();
  next->name = m.name;
  next->file = file;
  next->manifest = m;
  next->log = old ? old->log : plugin_logger(m.name);
  next->generation = old ? old->generation + 1 : 1;
  next->dependencies = std::move(dependencies);
  s.configure(*next);
  next->events = old ? old->events : nullptr;
  if (next->serial) {  // a serialized plugin runs one hook at a time: requests and events share its queue
    if (old && old->serial) next->serial = old->serial;
    else if (next->events) next->serial = next->events;
  }
  next->database = old ? old->database : nullptr;
  next->ctx.storage = next->database.get();
  next->call_counters = old ? old->call_counters : std::shared_ptr<CallCounters[]>(new CallCounters[kMaxPlugins]());
  next->reloads = old ? old->reloads : std::make_shared<ReloadCounters>();
  for (const auto& decl : m.routes) {
    std::shared_ptr<RouteCounters> counters;
    for (std::size_t r = 0; old && r < old->manifest.routes.size() && !counters; ++r)
      if (old->manifest.routes[r].method == decl.method && old->manifest.routes[r].path == decl.path)
        counters = old->route_counters[r];
    next->route_counters.push_back(counters ? counters : std::make_shared<RouteCounters>());
  }
  if (next->database) {
    if (auto why = storage::migrate(*next->database, m.migrations); !why.empty()) return refuse(422, why);
  } else if (has_permission(m, storage_permission) && !s.open_storage(*next)) {
    return refuse(422, next->reason);
  }
  s.load_and_create(*next);
  if (next->state != PluginState::kCreated) {
    if (!old || !old->database) s.close_storage(*next);
    return refuse(422, next->reason);
  }
  // The bus takes the new declarations before start(), which may publish. The old generation
  // may publish what it declared until it stops: both sets count until then.
  const bool keep_storage = old && old->database;
  try {
    s.bus.set_publisher(running && old->on_bus ? merged_publisher(*old, *next) : publisher_of(*next));
  } catch (const std::exception& e) {
    s.stop_plugin(*next, keep_storage);
    return refuse(422, e.what());
  }
  s.start_plugin(*next, /*publish_routes=*/false);
  if (next->state != PluginState::kStarted) {
    const auto why = next->reason;
    try {  // what the bus had before (a plugin that never joined it leaves it, database and all)
      s.bus.set_publisher(old && old->on_bus ? publisher_of(*old) : events::Publisher{m.name, {}, {}, nullptr});
    } catch (const std::exception& e) {
      s.log->error("event bus: cannot restore the declarations of plugin name={} error=\"{}\"", m.name, e.what());
    }
    s.stop_plugin(*next, keep_storage);
    return refuse(422, why);
  }

  // Switch: from the next snapshot on, requests, calls and events go to the new generation; a
  // thread still routing by an older snapshot finds the old one retired and routes again.
  // The new snapshot is published before the old generation stops admitting, so a retry always
  // finds the new one.
  {
    std::lock_guard lock(s.status_mutex);
    if (old) s.plugins[old->index] = next;
    else s.plugins.push_back(next);
    next->reloads->last_error.clear();
  }
  s.rebuild_routes();
  // Subscriptions switch with the routes (a plugin that never subscribed has nothing to switch).
  if (!m.subscribes.empty() || next->events) s.bus.set_subscriber(s.endpoint_of(*next));
  next->on_bus = true;
  s.bus.resume_subscriber(next->name);  // durable deliveries paused while it was stopped
  if (!running) {
    if (old) {
      old->retired.store(true);
      unload(old);  // stopped, failed or never started
    }
    if (!old) order.push_back(next->index);  // stopped at shutdown like the others
    s.log->info("plugin started name={} version={} generation={} file={} sha256={}", next->name,
                next->manifest.version.str(), next->generation, file.string(), next->sha256);
    return {200, "plugin '" + next->name + "' started: version " + next->manifest.version.str() + ", generation " +
                     std::to_string(next->generation)};
  }
  old->retired.store(true);
  old->accepting.store(false);
  const auto switched = Clock::now();

  s.drain(*old, switched);
  s.stop_plugin(*old, /*keep_storage=*/true);
  old->reloads->drain.observe(Clock::now() - switched);
  s.unload(old);  // no call into its code can be in flight any more: unmapped
  try {  // only what the new generation declares from now on
    s.bus.set_publisher(publisher_of(*next));
  } catch (const std::exception& e) {
    s.log->warn("event bus: topics of the retired generation stay publishable name={} error=\"{}\"", next->name,
                e.what());
  }
  old->reloads->succeeded.fetch_add(1, std::memory_order_relaxed);
  const auto drain_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - switched).count();
  s.log->info("plugin reloaded name={} version={} -> {} generation={} sha256={} drain_ms={}", next->name,
              old->manifest.version.str(), next->manifest.version.str(), next->generation, next->sha256, drain_ms);
  return {200, "plugin '" + next->name + "' reloaded: version " + old->manifest.version.str() + " -> " +
                   next->manifest.version.str() + ", generation " + std::to_string(next->generation)};
}

PluginHost::AdminResult PluginHost::disable(std::string_view name) {
  auto& s = *impl_;
  return s.with_plugin(name, [&s](Plugin& p) -> AdminResult {
    if (p.state != PluginState::kStarted)
      return {409, "plugin '" + p.name + "' is " + std::string(to_string(p.state)) + "; only a started plugin can be disabled"};
    if (const auto dependents = s.started_dependents(p); !dependents.empty())
      return {409, "plugin '" + p.name + "' is a dependency of started plugins (" + dependents + "); disable them first"};
    s.log->info("plugin disabling name={} (admin API)", p.name);
    p.accepting.store(false);
    s.set_state(p, PluginState::kStopping);
    s.rebuild_routes();  // its routes answer 404 from now on; requests already inside finish
    s.stop_plugin(p, /*keep_storage=*/true);
    {
      std::lock_guard lock(s.status_mutex);
      p.state = PluginState::kDisabled;
      p.reason = "disabled through the admin API";
    }
    return {200, "plugin '" + p.name + "' disabled"};
  });
}

PluginHost::AdminResult PluginHost::enable(std::string_view name) {
  auto& s = *impl_;
  return s.with_plugin(name, [&s](Plugin& p) -> AdminResult {
    if (p.state == PluginState::kStarted && p.budget && p.budget->over()) {
      s.log->info("plugin back in routing name={} (admin API) after: {}", p.name, p.budget->reason());
      p.budget->reset();
      s.bus.resume_subscriber(p.name);  // durable deliveries paused while it was quarantined
      return {200, "plugin '" + p.name + "' is back in routing"};
    }
    if (p.state == PluginState::kStarted) return {200, "plugin '" + p.name + "' is already started"};
    const bool quarantined = p.state == PluginState::kFailed && !p.quarantined.empty() && p.runner;
    if (!quarantined && (p.state != PluginState::kDisabled || (!p.library && !p.runner)))
      return {409, "plugin '" + p.name + "' is " + std::string(to_string(p.state)) +
                       (p.reason.empty() ? "" : " (" + p.reason + ")") +
                       "; only a plugin disabled through the admin API or quarantined can be enabled (change the "
                       "config and restart for the others)"};
    for (auto d : p.dependencies) {
      const auto& dep = *s.plugins[d];
      if (dep.state != PluginState::kStarted)
        return {409, "plugin '" + p.name + "' depends on '" + dep.name + "', which is " +
                         std::string(to_string(dep.state)) + "; enable it first"};
    }
    s.log->info("plugin enabling name={} (admin API)", p.name);
    if (quarantined) s.stop_plugin(p, /*keep_storage=*/true);  // the instance its dead runner served
    {
      std::lock_guard lock(s.status_mutex);
      p.reason.clear();
      p.quarantined.clear();
    }
    p.hooks_closed.store(false);
    if (!s.create_plugin(p)) return {500, "plugin '" + p.name + "' failed to start again: " + p.reason};
    s.start_plugin(p);
    if (p.state != PluginState::kStarted) return {500, "plugin '" + p.name + "' failed to start again: " + p.reason};
    s.bus.resume_subscriber(p.name);  // durable deliveries paused while it was disabled
    return {200, "plugin '" + p.name + "' enabled"};
  });
}

events::Bus& PluginHost::bus() noexcept { return impl_->bus; }

std::vector<ApiRoute> PluginHost::api_routes() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<ApiRoute> out;
  for (const auto& p : impl_->plugins) {
    if (p->state != PluginState::kStarted) continue;
    for (std::uint32_t r = 0; r < p->manifest.routes.size(); ++r) {
      const auto& decl = p->manifest.routes[r];
      out.push_back({p->name, p->manifest.version.str(), p->manifest.description, decl.method, p->mount + decl.path,
                     decl.summary, r, decl.request, decl.responses, decl.query});
    }
  }
  return out;
}

std::vector<RouteStats> PluginHost::route_stats() const {
  std::vector<RouteStats> out;
  for (const auto& p : impl_->current_generations()) {
    for (std::size_t r = 0; r < p->route_counters.size(); ++r) {
      const auto& c = *p->route_counters[r];
      RouteStats st;
      st.plugin = p->name;
      st.method = p->manifest.routes[r].method;
      st.route = p->manifest.routes[r].path;
      for (std::size_t i = 0; i < st.by_class.size(); ++i) st.by_class[i] = c.by_class[i].load(std::memory_order_relaxed);
      c.duration.snapshot(st.buckets, st.seconds_total);
      st.in_flight = c.in_flight.load(std::memory_order_relaxed);
      st.request_bytes = c.request_bytes.load(std::memory_order_relaxed);
      st.response_bytes = c.response_bytes.load(std::memory_order_relaxed);
      out.push_back(std::move(st));
    }
  }
  return out;
}

std::vector<CallStats> PluginHost::call_stats() const {
  std::vector<CallStats> out;
  const auto all = impl_->current_generations();
  for (const auto& p : all) {
    if (!p->call_counters) continue;
    for (std::size_t t = 0; t < all.size(); ++t) {
      const auto& c = p->call_counters[t];
      const auto calls = c.calls.load(std::memory_order_relaxed);
      if (calls == 0) continue;
      CallStats st;
      st.caller = p->name;
      st.target = all[t]->name;
      st.calls = calls;
      st.errors = c.errors.load(std::memory_order_relaxed);
      c.duration.snapshot(st.buckets, st.seconds_total);
      out.push_back(std::move(st));
    }
  }
  return out;
}

std::vector<std::pair<std::string, storage::Stats>> PluginHost::storage_stats() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<std::pair<std::string, storage::Stats>> out;
  for (const auto& p : impl_->plugins)
    if (p->database) out.emplace_back(p->name, p->database->stats());
  return out;
}

std::vector<PluginStatus> PluginHost::statuses() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<PluginStatus> out;
  for (const auto& p : impl_->plugins) {
    PluginStatus st;
    st.name = p->name;
    st.version = p->manifest.name.empty() ? "" : p->manifest.version.str();
    st.abi = abi_of(*p);
    st.file = p->file;
    st.state = p->state;
    st.reason = p->reason;
    st.mount = p->mount;
    st.manifest_json = p->manifest.json;
    st.generation = p->loaded ? p->generation : 0;
    st.isolation = impl_->isolated(*p) ? "process" : "in-process";
    if (p->runner) {
      const auto r = p->runner->status();
      st.runner_pid = r.pid;
      st.runner_state = r.state;
      st.runner_last_crash = r.last_crash;
      st.runner_limits = r.limits;
    }
    if (p->runner_counters) {
      st.runner_crashes = p->runner_counters->crashes.load(std::memory_order_relaxed);
      st.runner_restarts = p->runner_counters->restarts.load(std::memory_order_relaxed);
    }
    st.quarantine = p->budget && p->budget->over() ? p->budget->reason() : p->quarantined;
    st.sha256 = p->sha256;
    if (p->reloads) {
      st.reloads_succeeded = p->reloads->succeeded.load(std::memory_order_relaxed);
      st.reloads_refused = p->reloads->refused.load(std::memory_order_relaxed);
      st.last_reload_error = p->reloads->last_error;
      p->reloads->drain.snapshot(st.drain_buckets, st.drain_seconds_total);
    }
    out.push_back(std::move(st));
  }
  return out;
}

std::vector<PluginStatus> PluginHost::statuses_with_health() const {
  auto out = statuses();
  const auto gens = impl_->current_generations();
  for (std::size_t i = 0; i < out.size() && i < gens.size(); ++i) {
    auto& p = *gens[i];
    if (out[i].state != PluginState::kStarted) continue;
    keel_health h = KEEL_HEALTH_PASS;
    std::string detail;
    if (!Impl::admit(p)) continue;  // before touching its table: admitted, its code stays mapped
    const Impl::Admission admission(&p);
    if (p.table != nullptr && p.table->health != nullptr) {
      std::lock_guard lock(p.health_mutex);
      keel_plugin_bytes out_detail{};
      try {
        h = p.table->health(p.self, &out_detail);
      } catch (...) {
        h = KEEL_HEALTH_FAIL;
        detail = "health() let an exception escape";
      }
      if (detail.empty()) detail.assign(view(out_detail));
    }
    out[i].health = h == KEEL_HEALTH_PASS ? "pass" : h == KEEL_HEALTH_WARN ? "warn" : "fail";
    out[i].health_detail = std::move(detail);
  }
  return out;
}

std::string PluginHost::not_ready_reason() const {
  std::string reason;
  for (const auto& st : statuses_with_health()) {
    std::string why;
    if (st.state != PluginState::kStarted && st.state != PluginState::kDisabled)
      why = "plugin '" + st.name + "' is " + std::string(to_string(st.state)) + (st.reason.empty() ? "" : ": " + st.reason);
    else if (st.health == "fail")
      why = "plugin '" + st.name + "' reports health fail" + (st.health_detail.empty() ? "" : ": " + st.health_detail);
    if (!why.empty()) reason += (reason.empty() ? "" : "; ") + why;
  }
  return reason;
}

const http::RouteTable& PluginHost::route_table_for_this_thread() const {
  return *impl_->routes.current().table;
}

// ---------------------------------------------------------------------------------------------
// Dispatch

keel_status PluginHost::Impl::run_handler(Plugin& p, const keel_request& req, keel_responder id, bool deferred) {
  const std::string_view request_id(req.request_id.ptr, req.request_id.len);
  keel_status st;
  {
    const CurrentRequestScope scope({&p.ctx, Clock::time_point(std::chrono::nanoseconds(req.deadline_mono_ns)), request_id,
                                     std::string_view(req.traceparent.ptr, req.traceparent.len)});
    try {
      st = p.table->on_request(p.self, &req, id);
    } catch (...) {
      // Only a plugin that bypasses the SDK can get here; C++ unwinding through a C frame is
      // not guaranteed, so this is a last resort that keeps the host alive for this request.
      p.log->error("on_request let an exception escape req={}", request_id);
      st = KEEL_ERR_INTERNAL;
    }
  }
  if (st < 0) {
    p.log->warn("request handler failed status={} ({}) req={}", st, status_name(st), request_id);
    if (deferred) {
      http::Response res;
      const auto code = http_status_for(st);
      res.set_error(code, http::error_code_for(code), "plugin '" + p.name + "' failed: " + std::string(status_name(st)));
      p.responders.fail(id, std::move(res));
    }
  }
  return st;
}

namespace {

// Build a keel_request over an OwnedRequest; the vectors hold the kv arrays it points into.
struct RequestView {
  keel_request req{};
  std::vector<keel_host_kv> headers, params, query;
  explicit RequestView(const OwnedRequest& o) {
    auto fill = [](std::vector<keel_host_kv>& out, const std::vector<std::pair<std::string, std::string>>& in) {
      out.reserve(in.size());
      for (const auto& [n, v] : in) out.push_back({host_bytes(n), host_bytes(v)});
    };
    fill(headers, o.headers);
    fill(params, o.params);
    fill(query, o.query);
    req.struct_size = sizeof(keel_request);
    req.route_index = o.route_index;
    req.method = host_bytes(o.method);
    req.path = host_bytes(o.path);
    req.path_params = {params.data(), params.size()};
    req.query = {query.data(), query.size()};
    req.headers = {headers.data(), headers.size()};
    req.body = host_bytes(o.body);
    req.remote_address = host_bytes(o.remote_address);
    req.request_id = host_bytes(o.request_id);
    req.caller_plugin = host_bytes(o.caller);
    req.deadline_mono_ns = to_mono_ns(o.deadline);
    req.traceparent = host_bytes(o.traceparent);
    req.tracestate = host_bytes(o.tracestate);
  }
};

// Reused per I/O thread so the synchronous path builds keel_request without allocating.
struct DispatchScratch {
  std::vector<keel_host_kv> headers, params, query;
  std::string query_storage;
  std::vector<std::pair<std::size_t, std::size_t>> query_spans;
};
thread_local DispatchScratch tl_scratch;

}  // namespace

// `p` must have admitted the request (admit()); the job releases that admission after the
// handler ran, so a draining generation waits for requests queued to it, not only running ones.
std::optional<http::Deferred> PluginHost::Impl::dispatch_owned(Plugin& p, std::shared_ptr<OwnedRequest> owned,
                                                               std::shared_ptr<http::AsyncReply> reply,
                                                               keel_responder id) {
  auto job = [this, &p, owned, id] {
    if (p.hooks_closed.load()) {  // stopped while this waited in the queue: it cannot run any more
      http::Response res;
      res.set_error(503, "unavailable", "plugin '" + p.name + "' stopped before handling the request");
      p.responders.fail(id, std::move(res));
    } else {
      const RequestView view(*owned);
      run_handler(p, view.req, id, true);
    }
    p.in_flight.fetch_sub(1);
  };
  const bool queued = p.serial ? p.serial->post(std::move(job)) : pool.post(std::move(job));
  if (!queued) {
    p.in_flight.fetch_sub(1);
    http::Response res;
    res.set_error(503, "unavailable", "plugin '" + p.name + "' is overloaded: worker queue full");
    p.responders.fail(id, std::move(res));
  }
  return http::Deferred{std::move(reply), owned->deadline};
}

std::optional<http::Deferred> PluginHost::dispatch(const http::MatchResult& first_match,
                                                   const http::MatchScratch& first_params, const http::Request& request,
                                                   http::Response& response) {
  auto& s = *impl_;
  const auto start = Clock::now();
  // The generation the thread's snapshot routes to; if a reload retired it since, match again on
  // the current snapshot (its routes may differ) instead of failing the request.
  const http::MatchResult* matched = &first_match;
  const http::MatchScratch* matched_params = &first_params;
  thread_local http::MatchScratch retry_scratch;
  http::MatchResult retry_match;
  // The snapshot `first_match` came from (route_table_for_this_thread() on this thread, with
  // nothing in between): its route indices and parameter views belong to it.
  std::shared_ptr<const Impl::RouteSnapshot> pinned;
  Plugin* pp = s.routes.pinned().gens.at(matched->target.owner).get();
  for (int attempt = 1; !Impl::admit(*pp); ++attempt) {
    if (!pp->retired.load() || attempt > 3) {
      auto& c = *pp->route_counters.at(matched->target.route);
      c.begin(request.body.size());
      response.set_error(503, "unavailable", "plugin '" + pp->name + "' is not accepting requests");
      c.finish(start, response.status, response.body.size());
      return std::nullopt;
    }
    // Retired by a reload: match again on the current snapshot, held here (not in the thread's
    // cache, which the matched table's views and the caller's table reference depend on).
    const std::string name = pp->name;
    pinned = s.routes.load();
    retry_match = pinned->table->match(request.method, request.path, retry_scratch);
    if (retry_match.kind == http::MatchResult::Kind::kMethodNotAllowed) {
      response.set_method_not_allowed(retry_match.allow);
      return std::nullopt;
    }
    if (retry_match.kind != http::MatchResult::Kind::kFound) {
      response.set_error(404, "not_found", "no route for this path (plugin '" + name + "' was reloaded)");
      return std::nullopt;
    }
    matched = &retry_match;
    matched_params = &retry_scratch;
    pp = pinned->gens.at(matched->target.owner).get();
  }
  // Admitted: p cannot be stopped until this request is answered or handed to a job.
  Impl::Admission admission(pp);
  auto& p = *pp;
  const auto& match = *matched;
  const auto& params = *matched_params;
  const auto route = match.target.route;
  auto& counters = *p.route_counters[route];
  counters.begin(request.body.size());
  if (p.budget && p.budget->over()) {
    set_quarantined(response, p);
    counters.finish(start, response.status, response.body.size());
    return std::nullopt;
  }
  auto count_when_done = [&p, route, start](http::AsyncReply& reply) {
    reply.on_finish([counters = p.route_counters[route], budget = p.budget, name = p.name, start](unsigned status,
                                                                                                  std::size_t bytes) {
      counters->finish(start, status, bytes);
      spend(budget, name, status, start);
    });
  };
  auto timeout = p.route_timeouts[route].count() != 0 ? p.route_timeouts[route] : p.timeout;
  const auto deadline = std::min(request.deadline, start + timeout);
  auto& sc = tl_scratch;
  parse_query(request.query, sc.query_storage, sc.query_spans);

  if (p.serial || p.manifest.routes[route].blocking) {
    // Off the I/O thread: copy what the handler needs, since it may outlive this call.
    auto owned = std::make_shared<OwnedRequest>();
    owned->method.assign(request.method);
    owned->path.assign(request.path);
    owned->body.assign(request.body);
    owned->remote_address.assign(request.remote_address);
    owned->request_id.assign(request.request_id);
    owned->traceparent.assign(request.traceparent);
    owned->tracestate.assign(request.tracestate);
    for (const auto& h : request.headers) owned->headers.emplace_back(h.name, h.value);
    for (std::size_t i = 0; i < params.param_count; ++i) owned->params.emplace_back(params.params[i].name, params.params[i].value);
    for (std::size_t i = 0; i + 1 < sc.query_spans.size(); i += 2)
      owned->query.emplace_back(span_of(sc.query_storage, sc.query_spans[i]), span_of(sc.query_storage, sc.query_spans[i + 1]));
    owned->route_index = route;
    owned->deadline = deadline;
    auto reply = std::make_shared<http::AsyncReply>();
    reply->timeout_message = "plugin '" + p.name + "' did not answer within " + std::to_string(timeout.count()) + " ms";
    count_when_done(*reply);
    const auto id = p.responders.acquire_async(reply);
    static_cast<void>(admission.transfer());  // released by the job
    return s.dispatch_owned(p, std::move(owned), std::move(reply), id);
  }

  // The fast path: call the handler right here on the I/O thread; no copies, no thread hop.
  sc.headers.clear();
  for (const auto& h : request.headers) sc.headers.push_back({host_bytes(h.name), host_bytes(h.value)});
  sc.params.clear();
  for (std::size_t i = 0; i < params.param_count; ++i)
    sc.params.push_back({host_bytes(params.params[i].name), host_bytes(params.params[i].value)});
  sc.query.clear();
  for (std::size_t i = 0; i + 1 < sc.query_spans.size(); i += 2)
    sc.query.push_back({host_bytes(span_of(sc.query_storage, sc.query_spans[i])),
                        host_bytes(span_of(sc.query_storage, sc.query_spans[i + 1]))});
  keel_request req{};
  req.struct_size = sizeof(keel_request);
  req.route_index = route;
  req.method = host_bytes(request.method);
  req.path = host_bytes(request.path);
  req.path_params = {sc.params.data(), sc.params.size()};
  req.query = {sc.query.data(), sc.query.size()};
  req.headers = {sc.headers.data(), sc.headers.size()};
  req.body = host_bytes(request.body);
  req.remote_address = host_bytes(request.remote_address);
  req.request_id = host_bytes(request.request_id);
  req.deadline_mono_ns = to_mono_ns(deadline);
  req.traceparent = host_bytes(request.traceparent);
  req.tracestate = host_bytes(request.tracestate);

  const auto id = p.responders.acquire_sync(&response);
  const keel_status st = s.run_handler(p, req, id, false);
  auto reply = p.responders.finish_sync(id, st < 0);
  if (reply) {
    reply->timeout_message = "plugin '" + p.name + "' did not answer within " + std::to_string(timeout.count()) + " ms";
    count_when_done(*reply);
    return http::Deferred{std::move(reply), deadline};
  }
  if (st < 0 && response.status == 200 && response.body.empty() && response.content_type.empty()) {
    const auto code = http_status_for(st);
    response.set_error(code, http::error_code_for(code), "plugin '" + p.name + "' failed: " + std::string(status_name(st)));
  } else if (st < 0) {
    p.log->warn("handler returned status={} after responding; the response stands req={}", st, request.request_id);
  }
  counters.finish(start, response.status, response.body.size());
  spend(p.budget, p.name, response.status, start);
  return std::nullopt;
}

// ---------------------------------------------------------------------------------------------
// Plugin-to-plugin calls: routed like HTTP, without a socket, always completed on a worker.

namespace {

struct CallState {
  std::atomic<bool> done{false};
  keel_call_callback cb = nullptr;
  void* user = nullptr;
  Plugin* caller = nullptr;
  CallCounters* counters = nullptr;
  Clock::time_point start{};
  std::uint64_t timer = 0;
  observability::Span span;  // the call: child of the caller's span, parent of the target's handler
  // The completion continues the caller's work: it runs with the caller's request id, deadline
  // and span, so what it calls or publishes stays in the same trace.
  std::string request_id, caller_traceparent;
  Clock::time_point deadline{};
  std::string target, method, path;  // for the span's log line
  std::uint64_t id = 0;              // in caller->live_calls
  std::shared_ptr<ErrorBudget> target_budget;  // the answer counts against the target's budget
  std::string target_name;
};

}  // namespace

keel_status PluginHost::Impl::call(Plugin& caller, const keel_call_args* args, keel_call_callback cb, void* user) {
  if (args == nullptr || cb == nullptr || args->struct_size < offsetof(keel_call_args, tracestate) + sizeof(args->tracestate))
    return KEEL_ERR_INVALID_ARGUMENT;
  if (!caller.may_call.load()) return KEEL_ERR_UNAVAILABLE;
  const auto target_name = view(args->target_plugin);
  const auto method = view(args->method);
  const auto full = view(args->path);
  if (!valid_token(method) || full.empty() || full.front() != '/') return KEEL_ERR_INVALID_ARGUMENT;
  const bool declared = std::any_of(caller.manifest.dependencies.begin(), caller.manifest.dependencies.end(),
                                    [&](const Dependency& d) { return d.name == target_name; });
  if (!declared && !has_permission(caller.manifest, "call:" + std::string(target_name))) {
    caller.log->warn("call refused: '{}' is not a declared dependency of '{}' (add it to the manifest's dependencies)",
                     target_name, caller.name);
    return KEEL_ERR_PERMISSION_DENIED;
  }
  // The target's current generation, admitted; one a reload retired meanwhile is looked up again.
  // A snapshot of its own: the thread's cached one may be what the calling handler's request
  // parameters point into (the fast path on an I/O thread).
  Plugin* target = nullptr;
  auto snap = routes.load();
  for (int attempt = 1;; ++attempt) {
    const auto it = find_named(snap->gens, target_name);
    if (it == snap->gens.end()) return KEEL_ERR_NOT_FOUND;
    target = it->get();
    if (admit(*target)) break;
    if (!target->retired.load() || attempt > 3) return KEEL_ERR_UNAVAILABLE;
    snap = routes.load();
  }
  Admission admission(target);
  if (target->budget && target->budget->over()) return KEEL_ERR_UNAVAILABLE;  // quarantined

  // Deadline: the call's own timeout, capped by what is left of the caller's current request.
  const auto now = Clock::now();
  auto deadline = now + (args->timeout_ms != 0 ? std::chrono::milliseconds(args->timeout_ms) : cfg.http.request_timeout);
  std::string request_id;
  std::string_view parent_span = view(args->traceparent);
  if (const auto* cur = abi::current_request(); cur != nullptr && cur->ctx == &caller.ctx) {
    deadline = std::min(deadline, cur->deadline);
    request_id.assign(cur->request_id);
    if (parent_span.empty()) parent_span = cur->traceparent;
  }
  auto state = std::make_shared<CallState>();
  state->span = observability::Span::start(parent_span);
  state->caller_traceparent.assign(parent_span);

  auto owned = std::make_shared<OwnedRequest>();
  const auto q = full.find('?');
  owned->method.assign(method);
  owned->path = target->mount + std::string(full.substr(0, q));
  owned->body.assign(view(args->body));
  owned->request_id = request_id;
  owned->caller = caller.name;
  owned->traceparent.assign(state->span.traceparent());
  owned->tracestate.assign(view(args->tracestate));
  owned->deadline = deadline;
  for (std::size_t i = 0; i < args->headers.count; ++i)
    owned->headers.emplace_back(view(args->headers.items[i].name), view(args->headers.items[i].value));
  std::string query_storage;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  parse_query(q == std::string_view::npos ? std::string_view{} : full.substr(q + 1), query_storage, spans);
  for (std::size_t i = 0; i + 1 < spans.size(); i += 2)
    owned->query.emplace_back(span_of(query_storage, spans[i]), span_of(query_storage, spans[i + 1]));

  state->cb = cb;
  state->user = user;
  state->caller = &caller;
  state->counters = &caller.call_counters[target->index];  // the array outlives the caller's generation
  state->start = Clock::now();
  state->request_id = owned->request_id;
  state->deadline = deadline;
  state->target_budget = target->budget;
  if (target->budget) state->target_name = target->name;
  if (span_log) {
    state->target = target->name;
    state->method = owned->method;
    state->path = owned->path;
  }
  caller.callbacks_pending.fetch_add(1);
  // Exactly one delivery, always on a worker thread (never inside call()).
  auto deliver = [this, state](keel_status result, std::shared_ptr<http::Response> response) {
    if (state->done.exchange(true)) return;
    {
      std::lock_guard lock(state->caller->calls_mutex);
      state->caller->live_calls.erase(state->id);
    }
    if (state->timer != 0) timers.cancel(state->timer);
    state->counters->calls.fetch_add(1, std::memory_order_relaxed);
    if (result < 0 || (response && response->status >= 500)) state->counters->errors.fetch_add(1, std::memory_order_relaxed);
    const auto elapsed = Clock::now() - state->start;
    state->counters->duration.observe(elapsed);
    spend(state->target_budget, state->target_name, response ? response->status : http_status_for(result), state->start);
    if (span_log) {
      const auto& sp = state->span;
      const observability::LogScope scope({state->request_id, sp.trace_id(), sp.span_id()});
      span_log->info("span kind=call caller={} target={} method={} path={} status={} duration_us={}{}{}",
                     state->caller->name, state->target, state->method, state->path,
                     response ? std::to_string(response->status) : std::string(status_name(result)),
                     std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count(),
                     sp.parent_id().empty() ? "" : " parent_id=", sp.parent_id());
    }
    auto job = [state, result, response] {
      std::vector<keel_host_kv> headers;
      keel_call_response r{};
      if (response) {
        for (const auto& [n, v] : response->headers) headers.push_back({host_bytes(n), host_bytes(v)});
        r.struct_size = sizeof(keel_call_response);
        r.status = static_cast<std::int32_t>(response->status);
        r.headers = {headers.data(), headers.size()};
        r.content_type = host_bytes(response->content_type);
        r.body = host_bytes(response->body);
      }
      {
        const CurrentRequestScope scope({&state->caller->ctx, state->deadline, state->request_id, state->caller_traceparent});
        state->cb(state->user, result, response ? &r : nullptr);
      }
      state->caller->callbacks_pending.fetch_sub(1);
    };
    if (!pool.post(job)) std::thread(job).detach();  // pool stopping: still deliver exactly once
  };

  {
    std::lock_guard lock(caller.calls_mutex);
    state->id = ++caller.next_call;
    caller.live_calls.emplace(state->id, [deliver] { deliver(KEEL_ERR_UNAVAILABLE, nullptr); });
  }
  auto reply = std::make_shared<http::AsyncReply>();
  reply->set_waker([reply_weak = std::weak_ptr<http::AsyncReply>(reply), deliver] {
    if (auto r = reply_weak.lock()) deliver(KEEL_OK, std::make_shared<http::Response>(r->take()));
  });
  state->timer = timers.schedule(deadline, [reply, deliver] {
    if (reply->expire()) deliver(KEEL_ERR_TIMEOUT, nullptr);
  });

  // Route through the same table as HTTP; the route must belong to the target plugin.
  http::MatchScratch scratch;
  const auto match = snap->table->match(owned->method, owned->path, scratch);
  if (match.kind != http::MatchResult::Kind::kFound || match.target.owner != target->index) {
    http::Response res;
    const unsigned code = match.kind == http::MatchResult::Kind::kMethodNotAllowed ? 405
                          : match.kind == http::MatchResult::Kind::kBadPath        ? 400
                                                                                   : 404;
    res.set_error(code, http::error_code_for(code), "no route " + owned->method + " " + std::string(full) +
                                                        " in plugin '" + target->name + "'");
    reply->complete(std::move(res));
    return KEEL_OK;
  }
  for (std::size_t i = 0; i < scratch.param_count; ++i)
    owned->params.emplace_back(scratch.params[i].name, scratch.params[i].value);
  owned->route_index = match.target.route;
  caller.log->debug("call target={} method={} path={} req={}", target->name, owned->method, owned->path, owned->request_id);
  const auto id = target->responders.acquire_async(reply);
  static_cast<void>(admission.transfer());  // released by the job
  (void)dispatch_owned(*target, std::move(owned), reply, id);
  return KEEL_OK;
}

std::vector<PluginHost::StoragePlugin> PluginHost::storage_plugins() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<StoragePlugin> out;
  std::set<std::string_view> seen;
  for (const auto& p : impl_->plugins) {
    // A file whose manifest could not be read has an empty manifest and no permissions.
    if (!has_permission(p->manifest, "ext:" KEEL_STORAGE_EXTENSION_ID) || !seen.insert(p->name).second) continue;
    out.push_back({p->name, p->state, storage::database_file(impl_->cfg.server.data_dir, p->name), p->manifest.migrations});
  }
  return out;
}

config::SecretKeys PluginHost::secret_config_keys() const {
  config::SecretKeys out;
  for (const auto& p : impl_->current_generations()) {
    for (const auto& k : p->manifest.config)
      if (k.secret) out[p->name].push_back(k.name);
  }
  return out;
}

config::Config PluginHost::config() const {
  std::lock_guard lock(impl_->status_mutex);
  return impl_->cfg;
}

namespace {
bool same_section(const config::PluginSection& a, const config::PluginSection& b) {
  return a.enabled == b.enabled && a.mount == b.mount && a.sha256 == b.sha256 && a.log_level == b.log_level &&
         a.request_timeout == b.request_timeout && a.route_timeouts == b.route_timeouts &&
         a.max_db_bytes == b.max_db_bytes && a.settings_json == b.settings_json && a.isolation == b.isolation &&
         a.runner == b.runner && a.budget == b.budget;
}
}  // namespace

void PluginHost::apply_config(const config::Config& next) {
  auto& s = *impl_;
  std::lock_guard admin(s.admin_mutex);
  if (s.stopped) return;
  std::set<std::string> changed;
  for (const auto& [name, section] : next.plugin_sections) {
    const auto it = s.cfg.plugin_sections.find(name);
    if (it == s.cfg.plugin_sections.end() || !same_section(it->second, section)) changed.insert(name);
  }
  for (const auto& [name, section] : s.cfg.plugin_sections)
    if (next.plugin_sections.count(name) == 0) changed.insert(name);
  {
    std::lock_guard lock(s.status_mutex);
    s.cfg.plugin_sections = next.plugin_sections;
    s.cfg.log.level = next.log.level;
  }
  // observability::init() just set every logger to [log] level: the per-plugin levels again.
  for (const auto& [name, section] : s.cfg.plugin_sections)
    if (!section.log_level.empty()) static_cast<void>(s.plugin_logger(name));
  for (const auto& name : changed) {
    s.log->info("config: [plugin.{}] changed", name);
    const auto sec = s.cfg.plugin_sections.find(name);
    const bool enabled = sec == s.cfg.plugin_sections.end() || sec->second.enabled;
    auto logger = s.plugin_logger(name);
    if (sec == s.cfg.plugin_sections.end() || sec->second.log_level.empty())
      logger->set_level(spdlog::level::from_str(s.cfg.log.level));
    const auto gens = s.current_generations();
    const auto it = find_named(gens, name);
    if (it == gens.end()) continue;  // no such plugin (yet): the directory pass starts it when it comes
    const auto& g = *it;
    if (g->state == PluginState::kStarted && !enabled) {
      const auto dependents = s.started_dependents(*g);
      if (!dependents.empty()) {
        s.log->error("config: [plugin.{}] enabled = false ignored: started plugins depend on it ({})", name, dependents);
        continue;
      }
      s.remove(g, PluginState::kDisabled, "disabled in config");
    } else if (g->state == PluginState::kStarted) {
      static_cast<void>(s.install(g, g->file));  // its new settings take effect in a new generation
    } else if (enabled && (g->state == PluginState::kDisabled || g->state == PluginState::kFailed ||
                           g->state == PluginState::kStopped) &&
               g->reason != "disabled through the admin API") {
      static_cast<void>(s.install(g, g->file));
    }
  }
  // Runners answer log_level() from what they were told last.
  for (const auto& g : s.current_generations())
    if (g->runner) g->runner->set_log_level(static_cast<std::int32_t>(g->log->level()));
}

}  // namespace keel::host::plugins
