#pragma once
// Runner::Impl, private to isolation/: the state of one plugin's runner and the functions over
// it, defined by responsibility in
//   runner_process.cpp  spawning a process with its limits, hello, ending and killing it;
//   supervisor.cpp      pings, crashes, restarts with backoff, quarantine;
//   proxy_table.cpp     the keel_plugin table the plugin host calls (lifecycle, request, event
//                       and health frames);
//   serve_host_api.cpp  the runner's calls of the host API, storage included;
//   runner.cpp          the public Runner (runner.hpp).
// Threads: see runner.hpp and the comments on the members below.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <sys/types.h>
#include <unistd.h>

#include <keel/plugin.h>
#include <keel/storage.h>

#include "abi/current_request.hpp"
#include "isolation/cgroup.hpp"
#include "isolation/connection.hpp"
#include "isolation/elastic_pool.hpp"
#include "isolation/runner.hpp"
#include "isolation/wire.hpp"
#include "observability/log.hpp"

namespace keel::host::isolation {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

/// Bytes queued for a runner that does not read (then sends fail and its hooks see busy).
inline constexpr std::size_t kMaxQueuedToRunnerBytes = 64u << 20;
/// The runner's calls of the host API waiting or running at once, and their frames' bytes.
inline constexpr std::size_t kMaxQueuedCalls = 1024;
inline constexpr std::size_t kMaxQueuedCallBytes = 128u << 20;

inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

/// The context of the hook the calling host thread serves (empty outside hooks).
inline Context current_context() {
  const auto* cur = abi::current_request();
  if (cur == nullptr) return {};
  Context c{cur->request_id, cur->traceparent, 0};
  if (cur->deadline != Clock::time_point{}) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(cur->deadline - Clock::now()).count();
    c.remaining_ns = std::max<std::int64_t>(left, 1);
  }
  return c;
}

/// One runner process and its connection.
struct Instance {
  std::weak_ptr<Instance> self;  // for jobs its reader thread hands on (they may outlive a frame)
  std::uint64_t number = 0;  // 1 for the first process of the generation, +1 per restart
  pid_t pid = -1;
  pid_t init_pid = -1;  // its PID namespace's init (also the host's child), or -1 without one
  int pidfd = -1;
  Clock::time_point started{};
  std::shared_ptr<Connection> conn;
  std::atomic<std::int64_t> last_pong_ns{0};
  std::atomic<bool> ping_pending{false};
  std::atomic<bool> expected_exit{false};  // destroy(): its end is no crash
  std::atomic<bool> reaped{false};         // waited for: its pid may belong to another process now
  std::atomic<bool> gone{false};  // exited or being ended: statements it started stop (abi::CurrentRequest)
  std::mutex mutex;
  std::string kill_reason;         // why the host killed it (hung, a hook that never returned)
  std::set<keel_txn> open_txns;    // top-level transactions it began and did not end
  ~Instance() {
    if (pidfd >= 0) ::close(pidfd);
  }
};

enum class State { kStarting, kRunning, kRestarting, kQuarantined, kStopped };

struct Runner::Impl {
  Impl(RunnerOptions o, RunnerListener& l, std::shared_ptr<RunnerCounters> c)
      : opts(std::move(o)), listener(l), counters(std::move(c)), log(observability::logger("plugins")) {
    log_level.store(opts.log_level);
  }

  RunnerOptions opts;
  int code_fd = -1;  // our duplicate of the plugin's code (>= 10, close-on-exec)
  RunnerListener& listener;
  std::shared_ptr<RunnerCounters> counters;
  std::shared_ptr<spdlog::logger> log;
  keel_plugin table{};
  std::uint32_t abi = 0;
  std::uint32_t hooks = 0;  // which optional hooks the plugin has (hello: bit 0 start ... 4 health)
  std::atomic<std::int32_t> log_level{2};
  std::vector<std::string> limits;  // fixed once the first process started
  std::unique_ptr<Cgroup> cgroup;   // the processes' CPU share and memory ceiling, where the kernel has them
  std::string health_detail;        // what the last health() handed out (valid until the next)

  // What the plugin host gave create(): the host functions the runner's calls are served with.
  std::atomic<const keel_host_api*> host{nullptr};
  std::atomic<keel_host_ctx*> ctx{nullptr};
  std::atomic<const keel_storage_api*> storage{nullptr};

  mutable std::mutex mutex;
  std::condition_variable changed;  // `current` or `state` changed
  std::shared_ptr<Instance> current;
  State state = State::kStarting;
  std::string config;                   // create()'s config, for restarts
  bool created = false, started = false;
  std::string last_crash, quarantine_reason;
  std::deque<Clock::time_point> crashes;  // within crash_window
  std::uint32_t consecutive = 0;          // crashes since a process last ran a whole window
  std::optional<Clock::time_point> restart_at;
  std::uint64_t instances = 0;

  // The supervisor thread forks every process (PR_SET_PDEATHSIG ties a child to the thread that
  // forked it), reaps them, pings them and restarts them. Others hand it work through `tasks`.
  std::thread supervisor;
  int wake_fd = -1;
  bool stopping = false;
  std::deque<std::function<void()>> tasks;

  ElasticPool calls{64};
  /// The runner's calls waiting for or running on `calls`, and their frames' bytes: beyond
  /// either bound a call is answered KEEL_ERR_BUSY at once (serve_host_api.cpp), so a runner
  /// that floods the host costs it a bounded queue, not its memory.
  std::atomic<std::size_t> queued_calls{0}, queued_call_bytes{0};

  // --- process (runner_process.cpp) -----------------------------------------------------------

  void wake() const {
    const std::uint64_t one = 1;
    static_cast<void>(::write(wake_fd, &one, sizeof one));
  }

  /// Runs `task` on the supervisor thread and waits for it.
  template <class T>
  T on_supervisor(std::function<T()> task) {
    auto promise = std::make_shared<std::promise<T>>();
    auto result = promise->get_future();
    {
      std::lock_guard lock(mutex);
      if (stopping) throw std::runtime_error("the runner is shutting down");
      tasks.push_back([promise, task = std::move(task)] {
        try {
          promise->set_value(task());
        } catch (...) {
          promise->set_exception(std::current_exception());
        }
      });
    }
    wake();
    return result.get();
  }

  /// Forks and executes the runner with its limits; returns the started instance (not yet
  /// greeted). Supervisor thread only. Throws std::runtime_error with the reason.
  std::shared_ptr<Instance> spawn();
  /// The uid and gid to drop to (root only): runner_user, or a dynamic uid unless
  /// runner_allow_root; noted in `applied`. Throws for an unknown user, or root without
  /// runner_allow_root.
  /// `own_user_ns` becomes true when the runner needs a user namespace instead (no uid to change to).
  std::optional<std::pair<uid_t, gid_t>> runner_user(std::vector<std::string>& applied, bool& own_user_ns) const;
  /// Creates the cgroup with the first process (its restarts share it), noted in `applied`.
  void make_cgroup(std::vector<std::string>& applied);
  /// The instance of the process `pid` just executed (its namespace's init `init`, or -1),
  /// connected on `sock`.
  std::shared_ptr<Instance> adopt(pid_t pid, pid_t init, int sock, std::vector<std::string> applied);
  /// Kills and reaps the init of the PID namespace of `inst` (after the runner was reaped).
  static void end_init(Instance& inst);
  /// Greets a new process: it loads the plugin and checks its table. Throws with its reason.
  void hello(Instance& inst);
  /// A started and greeted process, or throws. Supervisor thread only.
  std::shared_ptr<Instance> launch();
  /// Stops the process `inst` for good: closes the socket, waits briefly, kills it, reaps it
  /// and joins its connection. Supervisor thread or shutdown only.
  void end(Instance& inst, std::string_view why);
  std::string why_gone(Instance& inst);
  /// Sends `sig` to the process unless it was reaped (its pid may be another process's now);
  /// through the pidfd, which names this process only, where the kernel has them.
  static void signal(Instance& inst, int sig);
  /// Kills a process the host gave up on; the supervisor reaps it and treats it as a crash.
  void kill(Instance& inst, const std::string& reason);
  /// A request to the runner that must be answered within `timeout`; when it is not (the
  /// connection still open), the process is killed as hung and `*timed_out` set. nullopt when
  /// there is no answer.
  std::optional<Frame> ask(Instance& inst, Kind kind, std::string_view payload, milliseconds timeout,
                           std::string_view what, bool* timed_out);

  // --- supervision (supervisor.cpp) -----------------------------------------------------------

  void supervise();
  void ping(const std::shared_ptr<Instance>& inst);
  /// The process of `inst` ended: a crash unless the host ended it.
  void reap(const std::shared_ptr<Instance>& inst, std::optional<int> known_status = std::nullopt);
  /// After a crash (or a failed restart): quarantine, or schedule the next restart.
  void crashed_locked(std::unique_lock<std::mutex>& lock, const std::string& why);
  void restart();
  void rollback_open_transactions(Instance& inst);

  // --- hooks: the table the plugin host calls (proxy_table.cpp) -------------------------------

  /// Fills `table` for the plugin's hooks (after the first hello).
  void fill_table();
  std::shared_ptr<Instance> live() const;
  /// A lifecycle hook: one request, the hook timeout, the status (KEEL_ERR_UNAVAILABLE when the
  /// process is gone, KEEL_ERR_TIMEOUT when it did not answer and was killed).
  keel_status lifecycle(Instance& inst, Kind kind, std::string_view body, std::string_view what);
  keel_status create(const keel_host_api* api, keel_host_ctx* c, keel_host_bytes cfg);
  keel_status start();
  keel_status stop();
  void destroy();
  /// An answer the host gives for the plugin: `status` with the standard error body. Returns
  /// what respond() said (KEEL_ERR_ALREADY_COMPLETED when the plugin answered first).
  keel_status answer(keel_responder responder, unsigned status, std::string_view message);
  /// What on_request's status means once the runner returned it: like in process, a failure
  /// the plugin did not answer itself becomes the mapped error answer.
  void request_returned(keel_responder responder, keel_status st);
  keel_status on_request(const keel_request* req, keel_responder responder);
  keel_status on_event(const keel_event* ev);
  keel_health health(keel_plugin_bytes* out_detail);
  std::string unavailable_message() const;
  std::string crash_message() const;

  // --- the runner's calls of the host API (serve_host_api.cpp) --------------------------------

  /// Serves `fn` inside the context `c` carries (request id, trace, deadline), like the hook of
  /// an in-process plugin would run on this thread.
  template <class F>
  void in_context(const Instance& inst, const Context& c, F&& fn);
  /// A frame from the runner, on its connection's reader thread: served there when quick,
  /// handed to `calls` when it may block.
  void handle(Instance& inst, Frame f);
  void serve(Instance& inst, const Frame& f);
  /// A call queued for `calls` is done (or was refused): its share of the bounds is free again.
  void release_call(std::size_t bytes) noexcept;
  /// kCall: starts the host's call; its completion goes back as a call_done frame.
  void serve_call(Instance& inst, const keel_host_api& api, keel_host_ctx* cx, Reader& r, Writer& out);
  void serve_storage(Instance& inst, Kind kind, Reader& r, Writer& out);

  /// A call the runner made: its completion goes back as a call_done frame.
  struct PendingCall {
    Impl* impl;
    std::shared_ptr<Connection> conn;  // of the process that made the call; a restart's is another
    std::uint64_t call_id;
  };
  static void call_done(void* user, keel_status result, const keel_call_response* response);
};

}  // namespace keel::host::isolation
