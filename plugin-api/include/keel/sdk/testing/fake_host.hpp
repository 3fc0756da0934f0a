#pragma once
// keel::sdk::testing::FakeHost: a real keel_host_api table backed by in-memory recording, for
// unit-testing plugins without the Keel host, sockets or dlopen. It drives a plugin only
// through its C table (keel_plugin), so every test exercises the SDK trampolines exactly as
// the host does, and it enforces the host-side rules of keel/plugin.h: exactly-once
// responders, call completions never delivered inside call(), UNAVAILABLE outside the
// running phase, struct_size-aware reads.
// Thread-safety: the host functions it hands the plugin may be called from any thread;
// the driving methods (load, request, deliver, unload, ...) are meant for the test thread,
// except PendingRequest::wait/deliver_calls, which may be used from any thread.

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/log.hpp>
#include <keel/sdk/plugin.hpp>
#include <keel/sdk/status.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::sdk::testing {

/// A name/value pair that owns its strings.
struct OwnedField {
  std::string name{};
  std::string value{};
};

/// One line the plugin logged through host->log.
struct LogRecord {
  LogLevel level = LogLevel::kInfo;
  std::string message{};
};

/// A response the plugin completed a request with.
struct Response {
  int status = 0;
  std::vector<OwnedField> headers{};
  std::string content_type{};
  std::string body{};

  /// First value of header `name`, compared case-insensitively.
  [[nodiscard]] std::optional<std::string_view> header(std::string_view name) const {
    for (const OwnedField& f : headers) {
      if (sdk::detail::iequals(f.name, name)) return std::string_view{f.value};
    }
    return std::nullopt;
  }
};

/// An event the plugin published.
struct PublishedEvent {
  std::string topic{};
  std::string payload{};
  std::string content_type{};
  std::string traceparent{};
  std::string tracestate{};
};

/// A plugin-to-plugin call the plugin made.
struct RecordedCall {
  std::string target{};
  std::string method{};
  std::string path{};
  std::vector<OwnedField> headers{};
  std::string body{};
  std::chrono::milliseconds timeout{0};
  std::string traceparent{};
  std::string tracestate{};
};

/// What the programmable call handler answers (see FakeHost::on_call).
struct CallReply {
  StatusCode refuse = StatusCode::kOk;  ///< not ok: call() itself returns this; no completion follows
  StatusCode result = StatusCode::kOk;  ///< not ok: the completion gets this code and no response
  int status = 200;                     ///< HTTP status of the response
  std::vector<OwnedField> headers{};
  std::string content_type = "application/json";
  std::string body{};
};

/// A request to feed to the plugin's on_request.
struct RequestSpec {
  std::uint32_t route_index = 0;  ///< index into the manifest's "routes"
  std::string method = "GET";
  std::string path = "/";
  std::vector<OwnedField> path_params{};
  std::vector<OwnedField> query{};
  std::vector<OwnedField> headers{};
  std::string body{};
  std::string remote_address = "127.0.0.1:50000";
  std::string request_id{};  ///< empty: "req-<responder id>"
  std::string caller_plugin{};
  std::optional<std::chrono::steady_clock::time_point> deadline{};
  std::string traceparent{};
  std::string tracestate{};
};

/// An event to feed to the plugin's on_event.
struct EventSpec {
  std::string topic{};
  std::string payload{};
  std::string content_type = "application/json";
  std::string event_id{};  ///< empty: "evt-<n>"
  std::string publisher = "test";
  std::optional<std::chrono::system_clock::time_point> timestamp{};  ///< empty: now
  std::uint32_t delivery_attempt = 1;
  std::string traceparent{};
  std::string tracestate{};
};

/// Result of FakeHost::health.
struct HealthReport {
  HealthState state = HealthState::kPass;
  std::string detail{};
};

/// Host table members, in table order, for FakeHost::hide_members_from.
enum class HostMember { kLog, kLogLevel, kRespond, kPublish, kCall, kGetExtension };

namespace detail {

/// Shared between FakeHost (which completes it) and PendingRequest (which waits on it).
struct RequestState {
  enum class Phase { kPending, kCompleted, kRetired, kExpired, kAbandoned };

  std::mutex mutex;
  std::condition_variable changed;
  Phase phase = Phase::kPending;
  keel_status returned = KEEL_OK;
  std::optional<Response> response;
  int respond_calls = 0;
  std::uint64_t id = KEEL_RESPONDER_NONE;
};

}  // namespace detail

/// Handle on one request given to the plugin: what on_request returned, and the response,
/// now or after a bounded wait.
class PendingRequest {
 public:
  /// What on_request returned (or kUnavailable/kUnsupported when it could not be called).
  [[nodiscard]] Status returned() const {
    std::lock_guard lock{state_->mutex};
    return sdk::detail::make_status(state_->returned, {});
  }
  /// The responder id the plugin received.
  [[nodiscard]] std::uint64_t responder_id() const noexcept { return state_->id; }
  /// True once the plugin completed the request with a response.
  [[nodiscard]] bool completed() const {
    std::lock_guard lock{state_->mutex};
    return state_->phase == detail::RequestState::Phase::kCompleted;
  }
  /// How many times respond was called for this responder, refused calls included.
  [[nodiscard]] int respond_calls() const {
    std::lock_guard lock{state_->mutex};
    return state_->respond_calls;
  }
  /// The response if the request is completed now.
  [[nodiscard]] std::optional<Response> response() const {
    std::lock_guard lock{state_->mutex};
    return state_->response;
  }
  /// Waits until the request is completed, retired (on_request failed), expired or abandoned,
  /// or `timeout` passed; returns the response if there is one.
  [[nodiscard]] std::optional<Response> wait(std::chrono::milliseconds timeout = std::chrono::seconds{5}) const {
    std::unique_lock lock{state_->mutex};
    state_->changed.wait_for(lock, timeout, [this] { return state_->phase != detail::RequestState::Phase::kPending; });
    return state_->response;
  }
  /// Simulates the host's deadline passing: a later respond gets KEEL_ERR_TIMEOUT.
  /// @return false if the request was no longer pending.
  bool expire() {
    std::lock_guard lock{state_->mutex};
    if (state_->phase != detail::RequestState::Phase::kPending) return false;
    state_->phase = detail::RequestState::Phase::kExpired;
    state_->changed.notify_all();
    return true;
  }

 private:
  friend class FakeHost;
  explicit PendingRequest(std::shared_ptr<detail::RequestState> state) noexcept : state_{std::move(state)} {}
  std::shared_ptr<detail::RequestState> state_;
};

/// In-memory stand-in for the Keel host. Load a plugin (by class or by its keel_plugin table),
/// feed it requests and events, and inspect what it logged, published, called and answered.
class FakeHost {
 public:
  FakeHost() noexcept {
    api_.struct_size = static_cast<std::uint32_t>(sizeof(keel_host_api));
    api_.abi_version = KEEL_ABI_VERSION;
    api_.log = &log_fn;
    api_.log_level = &log_level_fn;
    api_.respond = &respond_fn;
    api_.publish = &publish_fn;
    api_.call = &call_fn;
    api_.get_extension = &get_extension_fn;
  }
  /// Unloads the plugin if it is still loaded.
  ~FakeHost() { static_cast<void>(unload()); }
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  // --- setup (before load) -----------------------------------------------------------------

  /// Shortens the host table so that `first_missing` and every later member are absent, as in
  /// an older host; the SDK must then report kUnsupported for them.
  void hide_members_from(HostMember first_missing) noexcept {
    api_.struct_size = static_cast<std::uint32_t>(member_offset(first_missing));
  }
  /// Sets keel_host_api.struct_size directly.
  void set_api_struct_size(std::uint32_t size) noexcept { api_.struct_size = size; }
  /// Lowest level recorded (and reported by log_level); default kTrace.
  void set_log_level(LogLevel level) noexcept { log_level_.store(static_cast<keel_log_level>(level)); }
  /// Offers `table` under `id` through get_extension.
  void add_extension(std::string id, const void* table) {
    std::lock_guard lock{mutex_};
    extensions_[std::move(id)] = table;
  }
  /// Answers the plugin's call()s. Without a handler, call() returns KEEL_ERR_NOT_FOUND.
  /// Completions are queued and run by deliver_calls(), never inside call().
  void on_call(std::function<CallReply(const RecordedCall&)> handler) {
    std::lock_guard lock{mutex_};
    call_handler_ = std::move(handler);
  }
  /// Makes every later publish() return `code` (after validation); kOk records them again.
  void set_publish_result(StatusCode code) noexcept { publish_result_.store(static_cast<keel_status>(code)); }
  /// Holds publish to the manifest's "events.publishes", as the host does: from now on a topic
  /// not in `topics` is refused with kPermissionDenied (and a diagnostic). Call before load().
  void declare_publishes(std::vector<std::string> topics) { declared_topics_ = std::move(topics); }

  // --- lifecycle -----------------------------------------------------------------------------

  /// Loads a plugin from its table (e.g. keel_plugin_entry_v1()): checks the ABI major, copies
  /// min(struct_size, sizeof) bytes like the real loader, calls create() with `config_json`
  /// and then start(). If start() fails the plugin is destroyed again.
  Status load(const keel_plugin* table, std::string config_json = "{}") {
    if (phase_ != Phase::kEmpty) return Status::invalid_argument("fake host: a plugin is already loaded");
    if (table == nullptr) return Status::invalid_argument("fake host: null plugin table");
    if (KEEL_ABI_MAJOR(table->abi_version) != KEEL_ABI_VERSION_MAJOR) {
      return Status::unsupported("fake host: plugin abi major differs");
    }
    table_ = keel_plugin{};
    std::memcpy(&table_, table, std::min<std::size_t>(table->struct_size, sizeof(keel_plugin)));
    if (!KEEL_HAS_FN(&table_, keel_plugin, create) || !KEEL_HAS_FN(&table_, keel_plugin, destroy)) {
      return Status::invalid_argument("fake host: plugin lacks create or destroy");
    }
    config_ = std::move(config_json);
    phase_ = Phase::kCreating;
    void* self = nullptr;
    const keel_status created = table_.create(&api_, ctx(), keel_host_bytes{config_.data(), config_.size()}, &self);
    if (created < 0) {
      phase_ = Phase::kEmpty;
      return sdk::detail::make_status(created, "fake host: create failed");
    }
    self_ = self;
    phase_ = Phase::kStarting;
    if (KEEL_HAS_FN(&table_, keel_plugin, start)) {
      const keel_status started = table_.start(self_);
      if (started < 0) {
        phase_ = Phase::kStopped;
        flush_calls(KEEL_ERR_UNAVAILABLE);
        table_.destroy(self_);
        self_ = nullptr;
        phase_ = Phase::kEmpty;
        return sdk::detail::make_status(started, "fake host: start failed");
      }
    }
    phase_ = Phase::kRunning;
    return {};
  }

  /// Loads plugin class `C` through the same trampolines KEEL_PLUGIN uses, without needing the
  /// exported entry symbol (so several plugins can be tested in one binary).
  template <class C>
  Status load(std::string config_json = "{}", std::string manifest_json = "{}") {
    manifest_ = std::move(manifest_json);
    const keel_plugin table = sdk::detail::plugin_table<C>(manifest_.c_str());
    return load(&table, std::move(config_json));
  }

  /// Calls stop(), delivers pending call completions as KEEL_ERR_UNAVAILABLE, calls destroy()
  /// and abandons requests still pending (a later respond gets KEEL_ERR_UNAVAILABLE).
  /// @return what stop() returned.
  Status unload() {
    if (phase_ == Phase::kEmpty) return {};
    phase_ = Phase::kStopping;
    keel_status stopped = KEEL_OK;
    if (KEEL_HAS_FN(&table_, keel_plugin, stop)) stopped = table_.stop(self_);
    phase_ = Phase::kStopped;
    flush_calls(KEEL_ERR_UNAVAILABLE);
    table_.destroy(self_);
    self_ = nullptr;
    phase_ = Phase::kEmpty;
    abandon_pending_requests();
    return sdk::detail::make_status(stopped, stopped < 0 ? "fake host: stop failed" : "");
  }

  /// True between a successful load() and unload().
  [[nodiscard]] bool loaded() const noexcept { return phase_ == Phase::kRunning; }

  // --- driving the plugin ---------------------------------------------------------------------

  /// Calls on_request with `spec` through the plugin's C table and returns a handle for the
  /// response (complete already, or later from another thread).
  PendingRequest request(const RequestSpec& spec) {
    auto state = std::make_shared<detail::RequestState>();
    {
      std::lock_guard lock{mutex_};
      state->id = next_responder_++;
      requests_[state->id] = state;
    }
    PendingRequest handle{state};
    if (phase_ != Phase::kRunning || !KEEL_HAS_FN(&table_, keel_plugin, on_request)) {
      retire(*state, phase_ != Phase::kRunning ? KEEL_ERR_UNAVAILABLE : KEEL_ERR_UNSUPPORTED);
      return handle;
    }
    std::string request_id = spec.request_id;
    if (request_id.empty()) {
      request_id = "req-";
      sdk::detail::append_decimal(request_id, state->id);
    }
    const std::vector<keel_host_kv> params = host_kvs(spec.path_params);
    const std::vector<keel_host_kv> query = host_kvs(spec.query);
    const std::vector<keel_host_kv> headers = host_kvs(spec.headers);
    keel_request req{};
    req.struct_size = static_cast<std::uint32_t>(sizeof(keel_request));
    req.route_index = spec.route_index;
    req.method = host_bytes(spec.method);
    req.path = host_bytes(spec.path);
    req.path_params = host_list(params);
    req.query = host_list(query);
    req.headers = host_list(headers);
    req.body = host_bytes(spec.body);
    req.remote_address = host_bytes(spec.remote_address);
    req.request_id = host_bytes(request_id);
    req.caller_plugin = host_bytes(spec.caller_plugin);
    req.deadline_mono_ns =
        spec.deadline ? std::chrono::duration_cast<std::chrono::nanoseconds>(spec.deadline->time_since_epoch()).count() : 0;
    req.traceparent = host_bytes(spec.traceparent);
    req.tracestate = host_bytes(spec.tracestate);
    retire(*state, table_.on_request(self_, &req, state->id));
    return handle;
  }

  /// Calls on_event with `spec` through the plugin's C table; returns what it returned.
  Status deliver(const EventSpec& spec) {
    if (phase_ != Phase::kRunning) return Status::unavailable("fake host: no running plugin");
    if (!KEEL_HAS_FN(&table_, keel_plugin, on_event)) return Status::unsupported("fake host: plugin has no on_event");
    std::string event_id = spec.event_id;
    if (event_id.empty()) {
      event_id = "evt-";
      sdk::detail::append_decimal(event_id, ++event_counter_);
    }
    const auto timestamp = spec.timestamp.value_or(std::chrono::system_clock::now());
    keel_event ev{};
    ev.struct_size = static_cast<std::uint32_t>(sizeof(keel_event));
    ev.delivery_attempt = spec.delivery_attempt;
    ev.topic = host_bytes(spec.topic);
    ev.payload = host_bytes(spec.payload);
    ev.content_type = host_bytes(spec.content_type);
    ev.event_id = host_bytes(event_id);
    ev.publisher = host_bytes(spec.publisher);
    ev.timestamp_unix_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(timestamp.time_since_epoch()).count();
    ev.traceparent = host_bytes(spec.traceparent);
    ev.tracestate = host_bytes(spec.tracestate);
    return sdk::detail::make_status(table_.on_event(self_, &ev), {});
  }

  /// Calls the health hook; a plugin without one reports kPass, an unloaded one kFail.
  HealthReport health() {
    if (phase_ != Phase::kRunning) return HealthReport{HealthState::kFail, "not running"};
    if (!KEEL_HAS_FN(&table_, keel_plugin, health)) return HealthReport{HealthState::kPass, {}};
    keel_plugin_bytes detail{};
    const keel_health state = table_.health(self_, &detail);
    HealthReport report;
    report.state = state == KEEL_HEALTH_PASS || state == KEEL_HEALTH_WARN ? static_cast<HealthState>(state) : HealthState::kFail;
    if (detail.ptr != nullptr) report.detail.assign(detail.ptr, detail.len);
    return report;
  }

  /// Runs the completions of queued calls on this thread, as a host thread would.
  /// @return how many completions ran.
  std::size_t deliver_calls() { return flush_calls(KEEL_OK); }

  // --- inspection -----------------------------------------------------------------------------

  /// Every line the plugin logged at or above the log level.
  [[nodiscard]] std::vector<LogRecord> logs() const {
    std::lock_guard lock{mutex_};
    return logs_;
  }
  /// Number of logged lines at `level` whose message contains `needle`.
  [[nodiscard]] std::size_t count_logs(LogLevel level, std::string_view needle) const {
    std::lock_guard lock{mutex_};
    return static_cast<std::size_t>(std::count_if(logs_.begin(), logs_.end(), [&](const LogRecord& r) {
      return r.level == level && r.message.find(needle) != std::string::npos;
    }));
  }
  /// What the real host would log (at warn) about the plugin misusing the ABI, e.g.
  /// "responder completed twice responder=3".
  [[nodiscard]] std::vector<std::string> diagnostics() const {
    std::lock_guard lock{mutex_};
    return diagnostics_;
  }
  /// Events published so far.
  [[nodiscard]] std::vector<PublishedEvent> published() const {
    std::lock_guard lock{mutex_};
    return published_;
  }
  /// Calls made so far (including refused ones).
  [[nodiscard]] std::vector<RecordedCall> calls() const {
    std::lock_guard lock{mutex_};
    return calls_;
  }
  /// Calls accepted whose completion has not run yet.
  [[nodiscard]] std::size_t pending_calls() const {
    std::lock_guard lock{mutex_};
    return queued_calls_.size();
  }

  // --- raw ABI access -------------------------------------------------------------------------

  /// The host table handed to create().
  [[nodiscard]] const keel_host_api& api() const noexcept { return api_; }
  /// The context handed to create().
  [[nodiscard]] keel_host_ctx* ctx() noexcept { return reinterpret_cast<keel_host_ctx*>(this); }
  /// The plugin's self pointer, or nullptr.
  [[nodiscard]] void* self() const noexcept { return self_; }

 private:
  enum class Phase { kEmpty, kCreating, kStarting, kRunning, kStopping, kStopped };

  struct QueuedCall {
    keel_call_callback on_complete = nullptr;
    void* user_data = nullptr;
    CallReply reply;
  };

  static FakeHost& from(keel_host_ctx* ctx) noexcept { return *reinterpret_cast<FakeHost*>(ctx); }
  static keel_host_bytes host_bytes(const std::string& s) noexcept { return keel_host_bytes{s.data(), s.size()}; }
  static std::string copy(keel_plugin_bytes b) { return b.ptr == nullptr ? std::string{} : std::string{b.ptr, b.len}; }
  static std::vector<keel_host_kv> host_kvs(const std::vector<OwnedField>& fields) {
    std::vector<keel_host_kv> out;
    out.reserve(fields.size());
    for (const OwnedField& f : fields) out.push_back(keel_host_kv{host_bytes(f.name), host_bytes(f.value)});
    return out;
  }
  static keel_host_kv_list host_list(const std::vector<keel_host_kv>& kvs) noexcept {
    return keel_host_kv_list{kvs.empty() ? nullptr : kvs.data(), kvs.size()};
  }
  static std::vector<OwnedField> copy_kvs(keel_plugin_kv_list list) {
    std::vector<OwnedField> out;
    if (list.items == nullptr) return out;
    out.reserve(list.count);
    for (std::size_t i = 0; i < list.count; ++i) out.push_back(OwnedField{copy(list.items[i].name), copy(list.items[i].value)});
    return out;
  }
  static bool valid_header(const OwnedField& f) noexcept {
    if (f.name.empty()) return false;
    const auto bad_name = [](char c) { return c <= ' ' || c == ':' || c == 127; };
    const auto bad_value = [](char c) { return c == '\r' || c == '\n' || c == '\0'; };
    return std::none_of(f.name.begin(), f.name.end(), bad_name) && std::none_of(f.value.begin(), f.value.end(), bad_value);
  }
  static std::size_t member_offset(HostMember m) noexcept {
    switch (m) {
      case HostMember::kLog: return offsetof(keel_host_api, log);
      case HostMember::kLogLevel: return offsetof(keel_host_api, log_level);
      case HostMember::kRespond: return offsetof(keel_host_api, respond);
      case HostMember::kPublish: return offsetof(keel_host_api, publish);
      case HostMember::kCall: return offsetof(keel_host_api, call);
      case HostMember::kGetExtension: return offsetof(keel_host_api, get_extension);
    }
    return sizeof(keel_host_api);
  }

  // Is publish/call allowed now? From start() until stop() has returned.
  [[nodiscard]] bool accepts_outbound() const noexcept {
    const Phase p = phase_;
    return p == Phase::kStarting || p == Phase::kRunning || p == Phase::kStopping;
  }

  void diagnose(std::string line) {
    std::lock_guard lock{mutex_};
    diagnostics_.push_back(std::move(line));
  }

  static std::string with_id(std::string_view text, std::uint64_t id) {
    std::string line{text};
    sdk::detail::append_decimal(line, id);
    return line;
  }

  // Records what on_request returned; like the host, answers for a failed handler that has
  // not responded by retiring the responder.
  static void retire(detail::RequestState& state, keel_status returned) {
    std::lock_guard lock{state.mutex};
    state.returned = returned;
    if (returned < 0 && state.phase == detail::RequestState::Phase::kPending) {
      state.phase = detail::RequestState::Phase::kRetired;
      state.changed.notify_all();
    }
  }

  void abandon_pending_requests() {
    std::vector<std::shared_ptr<detail::RequestState>> states;
    {
      std::lock_guard lock{mutex_};
      for (const auto& entry : requests_) states.push_back(entry.second);
    }
    for (const auto& state : states) {
      std::lock_guard lock{state->mutex};
      if (state->phase == detail::RequestState::Phase::kPending) {
        state->phase = detail::RequestState::Phase::kAbandoned;
        state->changed.notify_all();
      }
    }
  }

  // Runs queued completions with `forced` (KEEL_OK = each reply's own result).
  std::size_t flush_calls(keel_status forced) {
    std::vector<QueuedCall> batch;
    {
      std::lock_guard lock{mutex_};
      batch.swap(queued_calls_);
    }
    for (QueuedCall& q : batch) {
      const keel_status result = forced < 0 ? forced : static_cast<keel_status>(q.reply.result);
      std::vector<keel_host_kv> kvs = host_kvs(q.reply.headers);
      keel_call_response resp{};
      resp.struct_size = static_cast<std::uint32_t>(sizeof(keel_call_response));
      resp.status = static_cast<std::int32_t>(q.reply.status);
      resp.headers = host_list(kvs);
      resp.content_type = host_bytes(q.reply.content_type);
      resp.body = host_bytes(q.reply.body);
      q.on_complete(q.user_data, result, result >= 0 ? &resp : nullptr);
    }
    return batch.size();
  }

  // --- the keel_host_api functions (noexcept: nothing may unwind into the plugin) -----------

  static void log_fn(keel_host_ctx* ctx, keel_log_level level, keel_plugin_bytes message) noexcept {
    FakeHost& self = from(ctx);
    const keel_log_level clamped = std::clamp<keel_log_level>(level, KEEL_LOG_TRACE, KEEL_LOG_CRITICAL);
    if (clamped < self.log_level_.load()) return;
    try {
      std::lock_guard lock{self.mutex_};
      self.logs_.push_back(LogRecord{static_cast<LogLevel>(clamped), copy(message)});
    } catch (...) {
      // Out of memory while recording a log line: dropping the line is all a host can do.
    }
  }

  static keel_log_level log_level_fn(keel_host_ctx* ctx) noexcept { return from(ctx).log_level_.load(); }

  static keel_status respond_fn(keel_host_ctx* ctx, keel_responder responder, const keel_response* response) noexcept {
    FakeHost& self = from(ctx);
    try {
      std::shared_ptr<detail::RequestState> state;
      {
        std::lock_guard lock{self.mutex_};
        const auto it = self.requests_.find(responder);
        if (it != self.requests_.end()) state = it->second;
      }
      if (!state) {
        self.diagnose(with_id("respond for unknown responder=", responder));
        return KEEL_ERR_NOT_FOUND;
      }
      std::lock_guard lock{state->mutex};
      ++state->respond_calls;
      switch (state->phase) {
        case detail::RequestState::Phase::kCompleted:
        case detail::RequestState::Phase::kRetired:
          self.diagnose(with_id("responder completed twice responder=", responder));
          return KEEL_ERR_ALREADY_COMPLETED;
        case detail::RequestState::Phase::kExpired:
          self.diagnose(with_id("response after timeout responder=", responder));
          return KEEL_ERR_TIMEOUT;
        case detail::RequestState::Phase::kAbandoned:
          return KEEL_ERR_UNAVAILABLE;
        case detail::RequestState::Phase::kPending:
          break;
      }
      if (response == nullptr || !KEEL_HAS_FIELD(response, keel_response, status) || response->status < 100 ||
          response->status > 599) {
        self.diagnose(with_id("invalid response status responder=", responder));
        return KEEL_ERR_INVALID_ARGUMENT;
      }
      Response out;
      out.status = response->status;
      out.headers = copy_kvs(KEEL_SDK_FIELD_OR(response, keel_response, headers, keel_plugin_kv_list{}));
      out.content_type = copy(KEEL_SDK_FIELD_OR(response, keel_response, content_type, keel_plugin_bytes{}));
      out.body = copy(KEEL_SDK_FIELD_OR(response, keel_response, body, keel_plugin_bytes{}));
      if (!std::all_of(out.headers.begin(), out.headers.end(), valid_header)) {
        self.diagnose(with_id("invalid response header responder=", responder));
        return KEEL_ERR_INVALID_ARGUMENT;
      }
      state->response = std::move(out);
      state->phase = detail::RequestState::Phase::kCompleted;
      state->changed.notify_all();
      return KEEL_OK;
    } catch (...) {
      return KEEL_ERR_INTERNAL;
    }
  }

  static keel_status publish_fn(keel_host_ctx* ctx, const keel_publish_args* args) noexcept {
    FakeHost& self = from(ctx);
    if (!self.accepts_outbound()) return KEEL_ERR_UNAVAILABLE;
    if (args == nullptr || !KEEL_HAS_FIELD(args, keel_publish_args, topic)) return KEEL_ERR_INVALID_ARGUMENT;
    if (args->flags != 0 || args->topic.len == 0) return KEEL_ERR_INVALID_ARGUMENT;
    const keel_status result = self.publish_result_.load();
    if (result < 0) return result;
    try {
      PublishedEvent ev;
      ev.topic = copy(args->topic);
      if (self.declared_topics_ &&
          std::find(self.declared_topics_->begin(), self.declared_topics_->end(), ev.topic) == self.declared_topics_->end()) {
        self.diagnose("publish refused: topic " + ev.topic + " is not in the manifest's events.publishes");
        return KEEL_ERR_PERMISSION_DENIED;
      }
      ev.payload = copy(KEEL_SDK_FIELD_OR(args, keel_publish_args, payload, keel_plugin_bytes{}));
      ev.content_type = copy(KEEL_SDK_FIELD_OR(args, keel_publish_args, content_type, keel_plugin_bytes{}));
      ev.traceparent = copy(KEEL_SDK_FIELD_OR(args, keel_publish_args, traceparent, keel_plugin_bytes{}));
      ev.tracestate = copy(KEEL_SDK_FIELD_OR(args, keel_publish_args, tracestate, keel_plugin_bytes{}));
      std::lock_guard lock{self.mutex_};
      self.published_.push_back(std::move(ev));
      return KEEL_OK;
    } catch (...) {
      return KEEL_ERR_INTERNAL;
    }
  }

  static keel_status call_fn(keel_host_ctx* ctx, const keel_call_args* args, keel_call_callback on_complete,
                             void* user_data) noexcept {
    FakeHost& self = from(ctx);
    if (!self.accepts_outbound()) return KEEL_ERR_UNAVAILABLE;
    if (args == nullptr || on_complete == nullptr || !KEEL_HAS_FIELD(args, keel_call_args, path)) {
      return KEEL_ERR_INVALID_ARGUMENT;
    }
    if (args->target_plugin.len == 0 || args->method.len == 0) return KEEL_ERR_INVALID_ARGUMENT;
    try {
      RecordedCall call;
      call.target = copy(args->target_plugin);
      call.method = copy(args->method);
      call.path = copy(args->path);
      call.timeout = std::chrono::milliseconds{args->timeout_ms};
      call.headers = copy_kvs(KEEL_SDK_FIELD_OR(args, keel_call_args, headers, keel_plugin_kv_list{}));
      call.body = copy(KEEL_SDK_FIELD_OR(args, keel_call_args, body, keel_plugin_bytes{}));
      call.traceparent = copy(KEEL_SDK_FIELD_OR(args, keel_call_args, traceparent, keel_plugin_bytes{}));
      call.tracestate = copy(KEEL_SDK_FIELD_OR(args, keel_call_args, tracestate, keel_plugin_bytes{}));
      std::function<CallReply(const RecordedCall&)> handler;
      {
        std::lock_guard lock{self.mutex_};
        self.calls_.push_back(call);
        handler = self.call_handler_;
      }
      if (!handler) return KEEL_ERR_NOT_FOUND;
      CallReply reply = handler(call);
      if (reply.refuse != StatusCode::kOk) return static_cast<keel_status>(reply.refuse);
      std::lock_guard lock{self.mutex_};
      self.queued_calls_.push_back(QueuedCall{on_complete, user_data, std::move(reply)});
      return KEEL_OK;
    } catch (...) {
      return KEEL_ERR_INTERNAL;
    }
  }

  static const void* get_extension_fn(keel_host_ctx* ctx, const char* id) noexcept {
    FakeHost& self = from(ctx);
    if (id == nullptr) return nullptr;
    try {
      std::lock_guard lock{self.mutex_};
      const auto it = self.extensions_.find(std::string{id});
      return it == self.extensions_.end() ? nullptr : it->second;
    } catch (...) {
      return nullptr;
    }
  }

  keel_host_api api_{};
  keel_plugin table_{};
  void* self_ = nullptr;
  std::atomic<Phase> phase_{Phase::kEmpty};
  std::string config_;
  std::string manifest_;
  std::atomic<keel_log_level> log_level_{KEEL_LOG_TRACE};
  std::atomic<keel_status> publish_result_{KEEL_OK};
  std::optional<std::vector<std::string>> declared_topics_;  // set before load, then only read
  std::uint64_t event_counter_ = 0;

  mutable std::mutex mutex_;  // guards everything below
  std::uint64_t next_responder_ = 1;
  std::map<std::uint64_t, std::shared_ptr<detail::RequestState>> requests_;
  std::vector<LogRecord> logs_;
  std::vector<std::string> diagnostics_;
  std::vector<PublishedEvent> published_;
  std::vector<RecordedCall> calls_;
  std::vector<QueuedCall> queued_calls_;
  std::function<CallReply(const RecordedCall&)> call_handler_;
  std::map<std::string, const void*, std::less<>> extensions_;
};

}  // namespace keel::sdk::testing
