// The runner's frames, threads and plugin lifecycle (docs/isolation.md; threads in serve_plugin.hpp).
#include "runner/serve_plugin.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <dlfcn.h>
#include <unistd.h>

#include "abi/bytes.hpp"
#include "abi/limits.hpp"
#include "abi/plugin_table.hpp"
#include "runner/context.hpp"
#include "runner/host_api_proxy.hpp"

namespace keel::host::runner {

using isolation::Context;
using isolation::Frame;
using isolation::Kind;
using isolation::Reader;
using isolation::Writer;

namespace {

// The host paces lifecycle frames one at a time; a few queued ones are plenty, more is a bug.
constexpr std::size_t kControlLimit = 16;
// After a refused hello: how long the reply gets to reach the host before the runner leaves.
constexpr auto kHelloGrace = std::chrono::seconds(2);
// After the socket closed: how long queued work may take before the process leaves anyway
// (a plugin handler that never returns must not keep an orphaned runner alive).
constexpr auto kExitGrace = std::chrono::seconds(2);
// "No practical timeout" for requests to the host: it always answers or the socket closes.
// A year still fits steady_clock's nanoseconds when added to now.
constexpr auto kNoTimeout = std::chrono::hours(24 * 365);
constexpr std::uint32_t kMaxThreads = 1024;

using abi::host_bytes;

std::string dl_error() {
  const char* e = ::dlerror();
  return e != nullptr ? e : "no dlerror() text";
}

template <class F>
keel_status guarded(Runner& runner, std::string_view hook, F&& fn) noexcept {
  try {
    return fn();
  } catch (...) {
    // Only a plugin that bypasses the SDK gets here; unwinding through its C frames is not
    // guaranteed, so this is a last resort that keeps the runner serving.
    try {
      runner.log_line(KEEL_LOG_ERROR, std::string(hook) + " let an exception escape");
    } catch (...) {
    }
  }
  return KEEL_ERR_INTERNAL;
}

keel_log_level valid_level(std::int32_t level) noexcept {
  return std::clamp<keel_log_level>(level, KEEL_LOG_TRACE, KEEL_LOG_OFF);
}

}  // namespace

Runner::Runner(std::string plugin_name, int socket_fd, int code_fd)
    : name_(std::move(plugin_name)),
      code_fd_(code_fd),
      conn_(
          socket_fd, [this](Frame f) { on_frame(std::move(f)); }, [this](const std::string& why, bool) { on_closed(why); }) {}

// --- any thread ------------------------------------------------------------------------------

keel_status Runner::tell(Kind kind, std::string_view payload) noexcept {
  if (payload.size() > limits_.max_payload(kind)) return KEEL_ERR_TOO_LARGE;
  try {
    if (conn_.send(kind, 0, payload)) return KEEL_OK;
  } catch (...) {
  }
  // send() refuses when the socket is closed or the send queue is full; tell them apart.
  return conn_.closed() ? KEEL_ERR_UNAVAILABLE : KEEL_ERR_BUSY;
}

Runner::Answer Runner::ask(Kind kind, std::string_view payload) noexcept {
  Answer a;
  // The host ends a runner that sends a frame over its kind's limit: refuse it here instead.
  if (payload.size() > limits_.max_payload(kind)) {
    a.failure = KEEL_ERR_TOO_LARGE;
    return a;
  }
  try {
    a.frame = conn_.request(kind, payload, kNoTimeout);
  } catch (...) {
    a.frame.reset();
  }
  // request() gives nullopt when the socket is closed or the send queue is full; tell them apart.
  if (!a.frame) a.failure = conn_.closed() ? KEEL_ERR_UNAVAILABLE : KEEL_ERR_BUSY;
  return a;
}

keel_status Runner::ask_status(Kind kind, std::string_view payload) noexcept {
  const auto a = ask(kind, payload);
  if (!a.frame) return a.failure;
  Reader r = a.frame->reader();
  const auto st = r.i32();
  return r.done() ? st : KEEL_ERR_INTERNAL;
}

void Runner::log_line(keel_log_level level, std::string_view text) noexcept {
  try {
    auto w = context_writer();
    w.i32(level);
    w.bytes(std::string("keel-plugin-runner: ").append(text));
    static_cast<void>(notify(Kind::kLog, w.data()));
  } catch (...) {  // a diagnostic never fails its caller
  }
}

bool Runner::hooks_open() const noexcept {
  return state_.load(std::memory_order_acquire) == State::kCreated && !closing_.load(std::memory_order_acquire);
}

void Runner::reply_status(std::uint64_t id, keel_status status) noexcept {
  if (id == 0) return;  // a request always has an id; without one nobody waits for the answer
  try {
    Writer w;
    w.i32(status);
    static_cast<void>(conn_.reply(id, w.data()));
  } catch (...) {
  }
}

void Runner::refuse(Kind kind, std::uint64_t id, keel_status status, std::string_view why) noexcept {
  if (id == 0) return;
  try {
    Writer w;
    switch (kind) {
      case Kind::kHello:
        w.i32(status);
        w.u32(0);
        w.u32(0);
        w.bytes(why);
        break;
      case Kind::kHealth:
        // The reply's first field is a keel_health: report FAIL and say why in the detail.
        w.i32(KEEL_HEALTH_FAIL);
        w.bytes(why);
        break;
      default: w.i32(status); break;
    }
    static_cast<void>(conn_.reply(id, w.data()));
  } catch (...) {
  }
}

void Runner::begin_job() {
  std::lock_guard lock(jobs_mutex_);
  ++jobs_;
}

void Runner::finish_job() noexcept {
  {
    std::lock_guard lock(jobs_mutex_);
    --jobs_;
  }
  jobs_cv_.notify_all();
}

template <class F>
bool Runner::post_tracked(SerialQueue* queue, F&& job) {
  begin_job();
  auto wrapped = [this, job = std::forward<F>(job)]() mutable {
    try {
      job();
    } catch (...) {  // out of memory while decoding: the host's wait ends in its own timeout
    }
    finish_job();
  };
  bool posted = false;
  try {
    if (queue != nullptr) posted = queue->post(std::move(wrapped));
    else if (pool_) posted = pool_->post(std::move(wrapped));
  } catch (...) {
    posted = false;
  }
  if (!posted) finish_job();
  return posted;
}

// --- reader thread ---------------------------------------------------------------------------

void Runner::on_frame(Frame frame) noexcept {
  const auto kind = frame.kind;
  const auto id = frame.id;
  try {
    switch (kind) {
      case Kind::kPing:
        // Answered here, not by a worker: the host's liveness check must not queue behind hooks.
        static_cast<void>(conn_.reply(id, {}));
        break;
      case Kind::kLogLevel: {
        Reader r = frame.reader();
        const auto level = r.i32();
        if (r.done()) log_level_.store(valid_level(level), std::memory_order_relaxed);
        break;
      }
      case Kind::kHello: {
        // The level takes effect in frame order: a log_level frame right behind the hello must
        // not be overwritten when the main thread gets to the hello later.
        Reader r = frame.reader();
        static_cast<void>(r.u32());
        static_cast<void>(r.bytes());
        static_cast<void>(r.bytes());
        const auto level = r.i32();
        if (r.ok() && !hello_seen_) log_level_.store(valid_level(level), std::memory_order_relaxed);
        hello_seen_ = true;
        enqueue_control(std::move(frame));
        break;
      }
      case Kind::kCreate:
      case Kind::kStart:
      case Kind::kStop:
      case Kind::kDestroy: enqueue_control(std::move(frame)); break;
      case Kind::kRequest:
      case Kind::kEvent:
      case Kind::kHealth: dispatch_hook(std::move(frame)); break;
      case Kind::kCallDone: dispatch_call_done(std::move(frame)); break;
      default: break;  // unknown, a runner -> host kind, or a reply nobody waits for: ignored
    }
  } catch (...) {
    if (kind != Kind::kCallDone && kind != Kind::kLogLevel && kind != Kind::kPing)
      refuse(kind, id, KEEL_ERR_INTERNAL, "the runner could not take the frame (out of memory)");
  }
}

void Runner::on_closed(const std::string&) noexcept {
  {
    std::lock_guard lock(calls_mutex_);
    closing_.store(true, std::memory_order_release);
  }
  {
    std::lock_guard lock(control_mutex_);
    closed_ = true;
  }
  control_cv_.notify_all();
  // The main thread normally leaves well within the grace. If a plugin hook holds it (or a
  // worker it joins), leave anyway: the host is gone and nobody can receive an answer.
  std::this_thread::sleep_for(kExitGrace * 2);
  std::fflush(nullptr);
  ::_exit(loaded_.load() ? 0 : 1);
}

void Runner::enqueue_control(Frame frame) {
  {
    std::lock_guard lock(control_mutex_);
    if (control_.size() < kControlLimit) {
      control_.push_back(std::move(frame));
      control_cv_.notify_one();
      return;
    }
  }
  refuse(frame.kind, frame.id, KEEL_ERR_BUSY, "too many lifecycle frames queued");
}

void Runner::dispatch_hook(Frame frame) {
  const auto kind = frame.kind;
  const auto id = frame.id;
  if (!hooks_open()) return refuse(kind, id, KEEL_ERR_UNAVAILABLE, "the plugin is not created");
  // The deadline counts from arrival, not from when a worker gets to the frame.
  const auto received = monotonic_ns();
  if (kind == Kind::kRequest && runs_here(frame)) {
    begin_job();  // destroy waits for it like for any other hook
    try {
      run_request(frame, received);
    } catch (...) {  // out of memory while decoding: the host's wait ends in its own timeout
    }
    finish_job();
    return;
  }
  bool posted = false;
  if (kind == Kind::kRequest) {
    posted = post_tracked(nullptr, [this, f = std::move(frame), received] { run_request(f, received); });
  } else if (kind == Kind::kEvent) {
    posted = post_tracked(events_.get(), [this, f = std::move(frame), received] { run_event(f, received); });
  } else {
    posted = post_tracked(health_.get(), [this, f = std::move(frame), received] { run_health(f, received); });
  }
  if (!posted) refuse(kind, id, KEEL_ERR_BUSY, "the runner's worker queue is full");
}

bool Runner::runs_here(const Frame& frame) const {
  // A handler the plugin says does not block runs right here, as in process it runs on an I/O
  // thread: no hand-off to a worker, and its frames leave with the others this thread sends.
  // Not while a hook on this thread waits for the host (the frame arrived inside that wait).
  if (conn_.nested_read()) return false;
  Reader r = frame.reader();
  static_cast<void>(decode_context(r));
  static_cast<void>(r.u64());
  const auto may_block = r.u8();
  return r.ok() && may_block == 0;
}

void Runner::dispatch_call_done(Frame frame) {
  Reader r = frame.reader();
  static_cast<void>(decode_context(r));
  const auto call_id = r.u64();
  if (!r.ok()) return;  // not even a call id: there is no completion to run
  PendingCall call;
  if (!take_call(call_id, call)) return;  // unknown, or completed already (destroy, close)
  post_completion(std::move(call), std::move(frame), KEEL_OK, monotonic_ns());
}

// --- calls -----------------------------------------------------------------------------------

keel_status Runner::start_call(const keel_call_args& args, keel_call_callback on_complete, void* user_data) noexcept {
  std::uint64_t id = 0;
  try {
    const auto cur = current_request();
    PendingCall pending{on_complete, user_data, std::string(cur.request_id), std::string(cur.traceparent),
                        cur.deadline_mono_ns};
    std::lock_guard lock(calls_mutex_);
    // plugin.h: calls are refused once the plugin is being destroyed; after close nobody answers.
    const auto state = state_.load(std::memory_order_acquire);
    if (state != State::kCreated || closing_.load(std::memory_order_acquire)) return KEEL_ERR_UNAVAILABLE;
    id = ++next_call_;
    calls_.emplace(id, std::move(pending));
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
  keel_status st = KEEL_ERR_INTERNAL;
  try {
    auto w = context_writer();
    w.u64(id);
    encode_call_args(w, args);
    st = ask_status(Kind::kCall, w.data());
  } catch (const std::length_error&) {
    st = KEEL_ERR_TOO_LARGE;
  } catch (...) {
    st = KEEL_ERR_INTERNAL;
  }
  if (st >= 0) return st;
  PendingCall gone;
  // Whoever removes the entry decides its fate: if a call_done, destroy or close took it first,
  // its completion runs, and call() must then report success (exactly once iff KEEL_OK).
  try {
    return take_call(id, gone) ? st : KEEL_OK;
  } catch (...) {
    return KEEL_OK;
  }
}

bool Runner::take_call(std::uint64_t id, PendingCall& out) {
  std::lock_guard lock(calls_mutex_);
  const auto it = calls_.find(id);
  if (it == calls_.end()) return false;
  out = std::move(it->second);
  calls_.erase(it);
  return true;
}

void Runner::post_completion(PendingCall call, std::optional<Frame> frame, keel_status local_result,
                             std::int64_t received_ns) {
  auto job = [this, call = std::move(call), frame = std::move(frame), local_result, received_ns] {
    run_completion(call, frame ? &*frame : nullptr, local_result, received_ns);
  };
  if (post_tracked(nullptr, job)) return;
  // The pool is full or stopping: deliver anyway, exactly once, as the in-process host does.
  begin_job();
  try {
    std::thread([this, job]() mutable {
      job();
      finish_job();
    }).detach();
  } catch (...) {
    finish_job();
    log_line(KEEL_LOG_ERROR, "call completion dropped: no thread to run it on");
  }
}

void Runner::run_completion(const PendingCall& call, const Frame* frame, keel_status local_result,
                            std::int64_t received_ns) noexcept {
  try {
    keel_status result = local_result;
    keel_call_response response{};
    std::vector<keel_host_kv> kv;
    bool has_response = false;
    Context c{call.request_id, call.traceparent, 0};
    std::int64_t deadline = call.deadline_mono_ns;
    if (frame != nullptr) {
      Reader r = frame->reader();
      c = decode_context(r);
      static_cast<void>(r.u64());
      result = r.i32();
      has_response = r.u8() != 0;
      if (has_response) decode_call_response(r, response, kv);
      if (!r.done()) {
        result = KEEL_ERR_INTERNAL;
        has_response = false;
        log_line(KEEL_LOG_ERROR, "malformed call_done frame: the call completes with KEEL_ERR_INTERNAL");
      }
      // plugin.h: a response exactly when the result is KEEL_OK.
      if (result >= 0 && !has_response) result = KEEL_ERR_INTERNAL;
      deadline = deadline_after(received_ns, c.remaining_ns);
    }
    const ContextScope scope(c.request_id, c.traceparent, deadline);
    static_cast<void>(guarded(*this, "call completion", [&] {
      call.callback(call.user_data, result, result >= 0 && has_response ? &response : nullptr);
      return KEEL_OK;
    }));
  } catch (...) {
    // Out of memory before the callback ran (guarded() catches what the callback throws): it
    // still runs exactly once.
    static_cast<void>(guarded(*this, "call completion", [&] {
      call.callback(call.user_data, KEEL_ERR_INTERNAL, nullptr);
      return KEEL_OK;
    }));
  }
}

void Runner::fail_pending_calls(keel_status result) {
  std::unordered_map<std::uint64_t, PendingCall> all;
  {
    std::lock_guard lock(calls_mutex_);
    all.swap(calls_);
  }
  for (auto& [id, call] : all) post_completion(std::move(call), std::nullopt, result, 0);
}

// --- main thread -----------------------------------------------------------------------------

int Runner::run() {
  conn_.start();
  std::optional<std::chrono::steady_clock::time_point> leave_at;  // set once hello failed
  for (;;) {
    Frame frame;
    {
      std::unique_lock lock(control_mutex_);
      auto ready = [&] { return closed_ || !control_.empty(); };
      if (leave_at) {
        if (!control_cv_.wait_until(lock, *leave_at, ready)) break;
      } else {
        control_cv_.wait(lock, ready);
      }
      if (closed_) break;
      frame = std::move(control_.front());
      control_.pop_front();
    }
    try {
      handle_control(frame);
    } catch (...) {
      refuse(frame.kind, frame.id, KEEL_ERR_INTERNAL, "the runner failed (out of memory)");
    }
    if (!leave_at && state_.load() == State::kFailed) leave_at = std::chrono::steady_clock::now() + kHelloGrace;
  }
  shut_down();
  return loaded_.load() ? 0 : 1;
}

void Runner::handle_control(const Frame& frame) {
  if (frame.kind == Kind::kHello) return handle_hello(frame);
  const auto state = state_.load(std::memory_order_acquire);
  if (state == State::kWaitingHello || state == State::kFailed)
    return refuse(frame.kind, frame.id, KEEL_ERR_UNAVAILABLE, "no plugin loaded");
  if (frame.kind == Kind::kDestroy) return handle_destroy(frame);
  handle_lifecycle(frame);
}

void Runner::handle_hello(const Frame& frame) {
  if (state_.load() != State::kWaitingHello)
    return refuse(Kind::kHello, frame.id, KEEL_ERR_INVALID_ARGUMENT, "hello: a second hello on one connection");
  Reader r = frame.reader();
  const auto version = r.u32();
  const auto name = r.bytes();
  const auto manifest = r.bytes();
  static_cast<void>(r.i32());  // the log level, taken on arrival (on_frame)
  const auto threads = r.u32();
  const auto queue_limit = r.u32();
  isolation::FrameLimits limits;
  limits.respond = r.u32();
  limits.publish = r.u32();
  limits.response_body = r.u64();
  std::string error;
  std::uint32_t plugin_abi = 0;  // what the plugin's table says, once there is one
  if (!r.done()) {
    error = "hello: malformed frame (" + std::to_string(frame.payload.size()) + " payload bytes)";
  } else if (version != isolation::kWireVersion) {
    error = "hello: wire version mismatch: the host speaks " + std::to_string(version) + ", this runner " +
            std::to_string(isolation::kWireVersion) + " (a keel-plugin-runner from another build?)";
  } else if (name != name_) {
    error = "hello: plugin name '" + std::string(name) + "' differs from the runner's argument '" + name_ + "'";
  } else if (threads == 0 || threads > kMaxThreads) {
    error = "hello: worker threads " + std::to_string(threads) + " outside 1.." + std::to_string(kMaxThreads);
  } else if (queue_limit == 0) {
    error = "hello: queue limit 0 would refuse every hook";
  } else if (limits.respond == 0 || limits.publish == 0) {
    error = "hello: a frame limit of 0";
  } else {
    limits_ = limits;  // before any hook runs: hooks start after this frame
    error = load_plugin(manifest, plugin_abi);
  }
  if (error.empty()) {
    try {
      pool_ = std::make_unique<WorkerPool>(threads, queue_limit);
      events_ = std::make_shared<SerialQueue>(*pool_, queue_limit);
      health_ = std::make_shared<SerialQueue>(*pool_, queue_limit);
    } catch (const std::exception& e) {
      error = std::string("hello: cannot start the worker pool: ") + e.what();
    }
  }
  Writer w;
  if (!error.empty()) {
    w.i32(KEEL_ERR_INVALID_ARGUMENT);
    w.u32(plugin_abi);
    w.u32(0);
    w.bytes(error);
    std::fprintf(stderr, "keel-plugin-runner %s: %s\n", name_.c_str(), error.c_str());
    state_.store(State::kFailed, std::memory_order_release);
  } else {
    loaded_.store(true);
    state_.store(State::kLoaded, std::memory_order_release);
    w.i32(KEEL_OK);
    w.u32(plugin_abi);
    // The optional hooks the table has, so the host checks the manifest against the same table.
    w.u32((table_->start != nullptr ? 1u : 0u) | (table_->stop != nullptr ? 2u : 0u) |
          (table_->on_request != nullptr ? 4u : 0u) | (table_->on_event != nullptr ? 8u : 0u) |
          (table_->health != nullptr ? 16u : 0u));
    w.bytes({});
  }
  static_cast<void>(conn_.reply(frame.id, w.data()));
}

std::string Runner::load_plugin(std::string_view manifest, std::uint32_t& plugin_abi) {
  // RTLD_NOW: unresolved symbols fail here, not at the first call into the plugin.
  // RTLD_LOCAL: nothing the plugin exports satisfies later lookups (dlopen(3)). The path names
  // the memfd the host wrote the code into, so a file replaced on disk meanwhile does not matter.
  const std::string path = "/proc/self/fd/" + std::to_string(code_fd_);
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  const std::string open_error = handle == nullptr ? dl_error() : std::string();
  // The mapping keeps the code alive; the descriptor would only be one more thing to leak.
  ::close(code_fd_);
  if (handle == nullptr) return "dlopen failed: " + open_error;
  // Never dlclose()d: plugin threads may outlive destroy() by a little, and the process ends soon.
  static_cast<void>(::dlerror());
  void* sym = ::dlsym(handle, KEEL_PLUGIN_ENTRY_SYMBOL);
  if (sym == nullptr)
    return "entry symbol " KEEL_PLUGIN_ENTRY_SYMBOL " not found (a plugin for another ABI major, or not built with "
           "KEEL_PLUGIN): " + dl_error();
  keel_plugin_entry_fn entry = nullptr;
  static_assert(sizeof entry == sizeof sym);
  std::memcpy(&entry, &sym, sizeof entry);  // POSIX: a data pointer from dlsym holds a function
  const keel_plugin* table = nullptr;
  try {
    table = entry();
  } catch (...) {
    return KEEL_PLUGIN_ENTRY_SYMBOL " let an exception escape";
  }
  if (table != nullptr) plugin_abi = table->abi_version;
  if (auto why = abi::plugin_table_problem(table, manifest,
                                           "the manifest the host read from the .keel_manifest section", "runner");
      !why.empty())
    return why;
  table_ = table;
  return {};
}

void Runner::handle_lifecycle(const Frame& frame) {
  Reader r = frame.reader();
  const auto received = monotonic_ns();
  const Context c = decode_context(r);
  const auto config = frame.kind == Kind::kCreate ? r.bytes() : std::string_view{};
  if (!r.done()) return refuse(frame.kind, frame.id, KEEL_ERR_INVALID_ARGUMENT, {});
  const auto state = state_.load(std::memory_order_acquire);
  const ContextScope scope(c.request_id, c.traceparent, deadline_after(received, c.remaining_ns));
  keel_status st = KEEL_ERR_UNAVAILABLE;
  if (frame.kind == Kind::kCreate) {
    if (state != State::kLoaded)
      return reply_status(frame.id, state == State::kCreated ? KEEL_ERR_ALREADY_COMPLETED : KEEL_ERR_UNAVAILABLE);
    // A NUL-terminated copy: plugin.h promises none, but a careless plugin reading the JSON as a
    // C string must not run off the end of the frame.
    const std::string config_copy(config);
    void* self = nullptr;
    st = guarded(*this, "create", [&] {
      return table_->create(&host_api_table(), &ctx_, host_bytes(config_copy), &self);
    });
    if (st >= 0) {
      self_ = self;
      state_.store(State::kCreated, std::memory_order_release);
    }
  } else if (state == State::kCreated) {
    const auto hook = frame.kind == Kind::kStart ? table_->start : table_->stop;
    st = hook == nullptr ? KEEL_OK
                         : guarded(*this, frame.kind == Kind::kStart ? "start" : "stop", [&] { return hook(self_); });
  }
  reply_status(frame.id, st);
}

void Runner::handle_destroy(const Frame& frame) {
  Reader r = frame.reader();
  const auto received = monotonic_ns();
  const Context c = decode_context(r);
  if (!r.done()) return refuse(Kind::kDestroy, frame.id, KEEL_ERR_INVALID_ARGUMENT, {});
  bool created = false;
  {
    std::lock_guard lock(calls_mutex_);
    created = state_.load() == State::kCreated;
    state_.store(created ? State::kDestroying : State::kDestroyed, std::memory_order_release);
  }
  if (created) {
    drain_for_destroy();
    const ContextScope scope(c.request_id, c.traceparent, deadline_after(received, c.remaining_ns));
    static_cast<void>(guarded(*this, "destroy", [&] {
      table_->destroy(self_);
      return KEEL_OK;
    }));
    state_.store(State::kDestroyed, std::memory_order_release);
  }
  static_cast<void>(conn_.reply(frame.id, {}));
}

void Runner::drain_for_destroy() {
  // plugin.h: every pending completion is delivered before destroy(), and no hook may still be
  // running when it is called. Calls the host never completed end with KEEL_ERR_UNAVAILABLE; no
  // new call registers now (start_call refuses in kDestroying), so the loop ends.
  for (;;) {
    fail_pending_calls(KEEL_ERR_UNAVAILABLE);
    {
      std::unique_lock lock(jobs_mutex_);
      jobs_cv_.wait(lock, [&] { return jobs_ == 0; });
    }
    std::lock_guard lock(calls_mutex_);
    if (calls_.empty()) return;
  }
}

void Runner::shut_down() {
  {
    std::lock_guard lock(calls_mutex_);
    closing_.store(true, std::memory_order_release);
  }
  conn_.close();  // also after a refused hello, when the host has not closed yet
  // Completions still owed run (a plugin thread may wait for one); hooks queued but not started
  // see closing_ and skip the plugin. The pool's stop() waits for running ones, bounded by the
  // watchdog in on_closed().
  try {
    fail_pending_calls(KEEL_ERR_UNAVAILABLE);
  } catch (...) {
  }
  if (pool_) pool_->stop();
  std::unique_lock lock(jobs_mutex_);
  jobs_cv_.wait_for(lock, kExitGrace, [&] { return jobs_ == 0; });
}

// --- worker threads --------------------------------------------------------------------------

void Runner::run_request(const Frame& frame, std::int64_t received_ns) {
  Reader r = frame.reader();
  const Context c = decode_context(r);
  const auto responder = r.u64();
  static_cast<void>(r.u8());  // may block: dispatch_hook() chose the thread
  keel_request req{};
  std::vector<keel_host_kv> kv;
  decode_request(r, req, kv);
  if (!r.done()) return refuse(Kind::kRequest, frame.id, KEEL_ERR_INVALID_ARGUMENT, {});
  if (!hooks_open()) return refuse(Kind::kRequest, frame.id, KEEL_ERR_UNAVAILABLE, {});
  if (table_->on_request == nullptr) return refuse(Kind::kRequest, frame.id, KEEL_ERR_UNSUPPORTED, {});
  req.request_id = host_bytes(c.request_id);
  req.traceparent = host_bytes(c.traceparent);
  req.deadline_mono_ns = deadline_after(received_ns, c.remaining_ns);
  const ContextScope scope(c.request_id, c.traceparent, req.deadline_mono_ns);
  reply_status(frame.id, guarded(*this, "on_request", [&] { return table_->on_request(self_, &req, responder); }));
}

void Runner::run_event(const Frame& frame, std::int64_t received_ns) {
  Reader r = frame.reader();
  const Context c = decode_context(r);
  keel_event ev{};
  decode_event(r, ev);
  if (!r.done()) return refuse(Kind::kEvent, frame.id, KEEL_ERR_INVALID_ARGUMENT, {});
  if (!hooks_open()) return refuse(Kind::kEvent, frame.id, KEEL_ERR_UNAVAILABLE, {});
  if (table_->on_event == nullptr) return refuse(Kind::kEvent, frame.id, KEEL_ERR_UNSUPPORTED, {});
  const ContextScope scope(c.request_id, c.traceparent, deadline_after(received_ns, c.remaining_ns));
  reply_status(frame.id, guarded(*this, "on_event", [&] { return table_->on_event(self_, &ev); }));
}

void Runner::run_health(const Frame& frame, std::int64_t received_ns) {
  Reader r = frame.reader();
  const Context c = decode_context(r);
  if (!r.done()) return refuse(Kind::kHealth, frame.id, KEEL_ERR_INVALID_ARGUMENT, "malformed health frame");
  if (!hooks_open()) return refuse(Kind::kHealth, frame.id, KEEL_ERR_UNAVAILABLE, "the plugin is not created");
  keel_health health = KEEL_HEALTH_PASS;
  keel_plugin_bytes detail{};
  if (table_->health != nullptr) {
    const ContextScope scope(c.request_id, c.traceparent, deadline_after(received_ns, c.remaining_ns));
    health = guarded(*this, "health", [&] { return table_->health(self_, &detail); });
  }
  // A NULL pointer with a length is a plugin bug; it reads as no detail rather than a crash.
  // The host takes a reply of two envelopes at most; a longer detail is cut, not refused (the
  // health itself still counts).
  const auto text = abi::utf8_prefix(abi::view(detail), isolation::kEnvelopeBytes);
  Writer w;
  w.i32(health);
  w.bytes(text);
  if (frame.id != 0) static_cast<void>(conn_.reply(frame.id, w.data()));
}

}  // namespace keel::host::runner
