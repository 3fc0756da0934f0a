#include "isolation/runner.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <pwd.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <keel/storage.h>

#include "http/message.hpp"
#include "isolation/cgroup.hpp"
#include "isolation/connection.hpp"
#include "isolation/wire.hpp"
#include "observability/log.hpp"
#include "abi/bytes.hpp"
#include "abi/current_request.hpp"
#include "abi/host_ctx.hpp"
#include "abi/status.hpp"

extern char** environ;

namespace keel::host::isolation {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

using abi::plugin_bytes;
using abi::view;

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

/// The context of the hook the calling host thread serves (empty outside hooks).
Context current_context() {
  const auto* cur = abi::current_request();
  if (cur == nullptr) return {};
  Context c{cur->request_id, cur->traceparent, 0};
  if (cur->deadline != Clock::time_point{}) {
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(cur->deadline - Clock::now()).count();
    c.remaining_ns = std::max<std::int64_t>(left, 1);
  }
  return c;
}

/// "killed by signal 11 (SIGSEGV)", "exited with status 3".
std::string describe_exit(int status) {
  if (WIFSIGNALED(status)) {
    const int sig = WTERMSIG(status);
    const char* abbrev = sigabbrev_np(sig);
    return "killed by signal " + std::to_string(sig) + (abbrev != nullptr ? std::string(" (SIG") + abbrev + ")" : "") +
           (WCOREDUMP(status) ? ", core dumped" : "");
  }
  if (WIFEXITED(status)) return "exited with status " + std::to_string(WEXITSTATUS(status));
  return "ended (wait status " + std::to_string(status) + ")";
}

/// Runs jobs on threads made when every existing one is busy, up to `max`. The runner's calls
/// of the host API that may block (storage, durable publishes) run here: each gets a thread as
/// it would have had in process, so one waiting for the database writer never holds back the
/// commit of the transaction that owns it.
class ElasticPool {
 public:
  explicit ElasticPool(std::size_t max) : max_(max) {}
  ~ElasticPool() { stop(); }
  ElasticPool(const ElasticPool&) = delete;
  ElasticPool& operator=(const ElasticPool&) = delete;

  bool post(std::function<void()> job) {
    std::lock_guard lock(mutex_);
    if (stopping_) return false;
    jobs_.push_back(std::move(job));
    // More jobs waiting than threads idle: a new thread, even if one is about to wake (a job
    // that waits for the database writer must never hold back the holder's commit).
    if (jobs_.size() > idle_ && threads_.size() < max_) threads_.emplace_back([this] { run(); });
    else ready_.notify_one();
    return true;
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      jobs_.clear();
    }
    ready_.notify_all();
    for (auto& t : threads_)
      if (t.joinable()) t.join();
  }

 private:
  void run() {
    std::unique_lock lock(mutex_);
    for (;;) {
      ++idle_;
      ready_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      --idle_;
      if (stopping_) return;
      auto job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }

  const std::size_t max_;
  std::mutex mutex_;
  std::condition_variable ready_;
  std::deque<std::function<void()>> jobs_;
  std::vector<std::thread> threads_;
  std::size_t idle_ = 0;
  bool stopping_ = false;
};

/// One runner process and its connection.
struct Instance {
  std::weak_ptr<Instance> self;  // for jobs its reader thread hands on (they may outlive a frame)
  std::uint64_t number = 0;  // 1 for the first process of the generation, +1 per restart
  pid_t pid = -1;
  int pidfd = -1;
  Clock::time_point started{};
  std::shared_ptr<Connection> conn;
  std::atomic<std::int64_t> last_pong_ns{0};
  std::atomic<bool> ping_pending{false};
  std::atomic<bool> expected_exit{false};  // destroy(): its end is no crash
  std::atomic<bool> reaped{false};         // waited for: its pid may belong to another process now
  std::mutex mutex;
  std::string kill_reason;         // why the host killed it (hung, a hook that never returned)
  std::set<keel_txn> open_txns;    // top-level transactions it began and did not end
  ~Instance() {
    if (pidfd >= 0) ::close(pidfd);
  }
};

enum class State { kStarting, kRunning, kRestarting, kQuarantined, kStopped };

std::string_view state_name(State s) {
  switch (s) {
    case State::kStarting: return "starting";
    case State::kRunning: return "running";
    case State::kRestarting: return "restarting";
    case State::kQuarantined: return "quarantined";
    case State::kStopped: return "stopped";
  }
  return "unknown";
}

// The descriptors the child finds: the socket, the code, and (closed on exec) the error pipe.
constexpr int kChildSocketFd = 3;
constexpr int kChildCodeFd = 4;
constexpr int kChildErrorFd = 5;

}  // namespace

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

  // --- process ------------------------------------------------------------------------------

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
  std::shared_ptr<Instance> spawn() {
    int sv[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
      throw std::runtime_error(std::string("socketpair: ") + std::strerror(errno));
    int err[2];
    if (::pipe2(err, O_CLOEXEC) != 0) {
      ::close(sv[0]);
      ::close(sv[1]);
      throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
    }
    // Move the child's ends above the descriptors it will find them at, so no dup2 in the child
    // overwrites one it still needs.
    const int child_sock = ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10);
    const int child_err = ::fcntl(err[1], F_DUPFD_CLOEXEC, 10);
    ::close(sv[1]);
    ::close(err[1]);
    if (child_sock < 0 || child_err < 0) {
      for (int fd : {sv[0], err[0], child_sock, child_err})
        if (fd >= 0) ::close(fd);
      throw std::runtime_error(std::string("fcntl: ") + std::strerror(errno));
    }

    const auto& s = opts.settings;
    // Everything the child needs is prepared here: after fork() only async-signal-safe calls.
    std::string binary = opts.binary.string();
    std::string name = opts.plugin;
    char* argv[] = {binary.data(), name.data(), nullptr};
    struct Limit {
      int resource;
      rlim_t value;
    };
    std::vector<Limit> rlimits;
    if (s.memory_bytes != 0) rlimits.push_back({RLIMIT_AS, static_cast<rlim_t>(s.memory_bytes)});
    if (s.cpu_seconds != 0) rlimits.push_back({RLIMIT_CPU, static_cast<rlim_t>(s.cpu_seconds)});
    if (s.open_files != 0) rlimits.push_back({RLIMIT_NOFILE, static_cast<rlim_t>(s.open_files)});
    std::optional<std::pair<uid_t, gid_t>> drop;
    std::vector<std::string> applied;
    for (const auto& l : rlimits)
      applied.push_back(std::string(l.resource == RLIMIT_AS ? "RLIMIT_AS" : l.resource == RLIMIT_CPU ? "RLIMIT_CPU" : "RLIMIT_NOFILE") +
                        "=" + std::to_string(l.value));
    if (!s.user.empty()) {
      if (::geteuid() == 0) {
        struct passwd pw{};
        struct passwd* found = nullptr;
        std::vector<char> buf(16384);
        if (::getpwnam_r(s.user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr) {
          for (int fd : {sv[0], err[0], child_sock, child_err}) ::close(fd);
          throw std::runtime_error("[plugin." + opts.plugin + "] runner_user: no user named '" + s.user + "'");
        }
        drop = std::make_pair(pw.pw_uid, pw.pw_gid);
        applied.push_back("user=" + s.user + " (uid " + std::to_string(pw.pw_uid) + ")");
      } else {
        applied.push_back("user unchanged: the host does not run as root");
      }
    }
    const CgroupLimits group_limits{s.cpu_percent, s.cgroup_memory_bytes};
    if (group_limits.any() && limits.empty()) {  // made with the first process, shared by its restarts
      try {
        cgroup = Cgroup::create(opts.plugin, group_limits);
        applied.insert(applied.end(), cgroup->applied().begin(), cgroup->applied().end());
      } catch (const std::exception& e) {
        log->warn("plugin runner limits not applied plugin={}: {} (docs/isolation.md#limits)", opts.plugin, e.what());
        if (s.cpu_percent != 0) applied.push_back(std::string("cpu_percent not applied: ") + e.what());
        if (s.cgroup_memory_bytes != 0) applied.push_back(std::string("cgroup_memory_bytes not applied: ") + e.what());
      }
    }
    static const std::vector<int> kNoGroups;
    const auto& group_fds = cgroup ? cgroup->procs_fds() : kNoGroups;
    const pid_t parent = ::getpid();
    const int code = code_fd;

    const pid_t pid = ::fork();
    if (pid < 0) {
      const int e = errno;
      for (int fd : {sv[0], err[0], child_sock, child_err}) ::close(fd);
      throw std::runtime_error(std::string("fork: ") + std::strerror(e));
    }
    if (pid == 0) {
      // The child. Report a failing step as (step, errno) on the error pipe, then exit 127.
      auto fail = [&](int step) {
        const int e[2] = {step, errno};
        static_cast<void>(::write(kChildErrorFd, e, sizeof e));
        ::_exit(127);
      };
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the host (the forking thread)
      if (::getppid() != parent) ::_exit(127);
      ::setpgid(0, 0);  // a terminal's Ctrl-C reaches the host, which stops the runner itself
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      if (::dup2(child_err, kChildErrorFd) < 0 || ::fcntl(kChildErrorFd, F_SETFD, FD_CLOEXEC) < 0) ::_exit(127);
      if (!join_cgroups(group_fds)) fail(5);  // before anything else runs in it, and before close_range
      if (::dup2(child_sock, kChildSocketFd) < 0) fail(1);
      if (::dup2(code, kChildCodeFd) < 0) fail(1);
      if (::syscall(SYS_close_range, kChildErrorFd + 1, ~0U, 0) != 0) {
        for (int fd = kChildErrorFd + 1; fd < 65536; ++fd) ::close(fd);
      }
      for (const auto& l : rlimits) {
        const struct rlimit r{l.value, l.value};
        if (::setrlimit(l.resource, &r) != 0) fail(2);
      }
      if (drop) {
        if (::setgroups(0, nullptr) != 0 || ::setgid(drop->second) != 0 || ::setuid(drop->first) != 0) fail(3);
      }
      ::execve(argv[0], argv, environ);
      fail(4);
    }
    ::close(child_sock);
    ::close(child_err);
    int e[2] = {0, 0};
    ssize_t n;
    do {
      n = ::read(err[0], e, sizeof e);
    } while (n < 0 && errno == EINTR);
    ::close(err[0]);
    if (n == static_cast<ssize_t>(sizeof e)) {
      int status = 0;
      ::waitpid(pid, &status, 0);
      ::close(sv[0]);
      static constexpr const char* kSteps[] = {"",        "set up its descriptors", "apply its limits", "drop privileges",
                                               "execute", "join its cgroup"};
      throw std::runtime_error("the runner process could not " + std::string(kSteps[std::clamp(e[0], 0, 5)]) + " " +
                               binary + ": " + std::strerror(e[1]));
    }
    auto inst = std::make_shared<Instance>();
    inst->self = inst;
    inst->number = ++instances;
    inst->pid = pid;
    inst->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    inst->started = Clock::now();
    inst->last_pong_ns.store(now_ns());
    Instance* raw = inst.get();
    inst->conn = std::make_shared<Connection>(
        sv[0], [this, raw](Frame f) { handle(*raw, std::move(f)); }, nullptr);
    inst->conn->start();
    std::lock_guard lock(mutex);
    if (limits.empty()) limits = std::move(applied);
    return inst;
  }

  /// Greets a new process: it loads the plugin and checks its table. Throws with its reason.
  void hello(Instance& inst) {
    Writer w;
    w.u32(kWireVersion);
    w.bytes(opts.plugin);
    w.bytes(opts.manifest_json);
    w.i32(log_level.load());
    w.u32(opts.settings.threads);
    w.u32(opts.queue_limit);
    const auto reply = ask(inst, Kind::kHello, w.data(), opts.settings.hook_timeout, "hello", nullptr);
    if (!reply) throw std::runtime_error("the runner process did not answer hello: " + why_gone(inst));
    auto r = reply->reader();
    const auto st = r.i32();
    const auto plugin_abi = r.u32();
    const auto present = r.u32();
    const auto error = r.bytes();
    if (!r.ok()) throw std::runtime_error("the runner process answered hello with a malformed frame");
    if (st < 0) throw std::runtime_error(std::string(error));
    abi = plugin_abi;
    hooks = present;
  }

  /// A started and greeted process, or throws. Supervisor thread only.
  std::shared_ptr<Instance> launch() {
    auto inst = spawn();
    try {
      hello(*inst);
    } catch (...) {
      end(*inst, "refused at hello");
      throw;
    }
    return inst;
  }

  /// Stops the process `inst` for good: closes the socket, waits briefly, kills it, reaps it
  /// and joins its connection. Supervisor thread or shutdown only.
  void end(Instance& inst, std::string_view why) {
    inst.expected_exit.store(true);
    inst.conn->close();
    int status = 0;
    bool reaped = false;
    for (int i = 0; i < 200 && !reaped && !inst.reaped.load(); ++i) {  // up to 2 s for a clean exit
      const auto r = ::waitpid(inst.pid, &status, WNOHANG);
      reaped = r == inst.pid || (r < 0 && errno == ECHILD);
      if (!reaped) std::this_thread::sleep_for(milliseconds(10));
    }
    if (!reaped && !inst.reaped.load()) {
      log->warn("plugin runner did not exit; killing it plugin={} pid={} ({})", opts.plugin, inst.pid, why);
      signal(inst, SIGKILL);
      ::waitpid(inst.pid, &status, 0);
    }
    inst.reaped.store(true);
    inst.conn->join();
  }

  std::string why_gone(Instance& inst) {
    std::lock_guard lock(inst.mutex);
    return inst.kill_reason.empty() ? std::string("its connection closed") : inst.kill_reason;
  }

  /// Sends `sig` to the process unless it was reaped (its pid may be another process's now);
  /// through the pidfd, which names this process only, where the kernel has them.
  static void signal(Instance& inst, int sig) {
    if (inst.reaped.load()) return;
    if (inst.pidfd >= 0 && ::syscall(SYS_pidfd_send_signal, inst.pidfd, sig, nullptr, 0) == 0) return;
    ::kill(inst.pid, sig);
  }

  /// Kills a process the host gave up on; the supervisor reaps it and treats it as a crash.
  void kill(Instance& inst, const std::string& reason) {
    {
      std::lock_guard lock(inst.mutex);
      if (inst.kill_reason.empty()) inst.kill_reason = reason;
    }
    log->error("killing plugin runner plugin={} pid={}: {}", opts.plugin, inst.pid, reason);
    signal(inst, SIGKILL);
  }

  /// A request to the runner that must be answered within `timeout`; when it is not (the
  /// connection still open), the process is killed as hung and `*timed_out` set. nullopt when
  /// there is no answer.
  std::optional<Frame> ask(Instance& inst, Kind kind, std::string_view payload, milliseconds timeout,
                           std::string_view what, bool* timed_out) {
    auto reply = inst.conn->request(kind, payload, timeout);
    if (!reply && !inst.conn->closed()) {
      kill(inst, std::string(what) + " did not return within " + std::to_string(timeout.count()) + " ms");
      if (timed_out != nullptr) *timed_out = true;
    }
    return reply;
  }

  // --- supervision ---------------------------------------------------------------------------

  void supervise() {
    std::unique_lock lock(mutex);
    for (;;) {
      while (!tasks.empty()) {
        auto task = std::move(tasks.front());
        tasks.pop_front();
        lock.unlock();
        task();
        lock.lock();
      }
      if (stopping) return;
      auto inst = current;
      auto timeout = opts.settings.ping_interval;
      if (restart_at) {
        const auto left = std::chrono::duration_cast<milliseconds>(*restart_at - Clock::now());
        timeout = std::clamp(left, milliseconds(0), timeout);
      }
      lock.unlock();
      pollfd fds[2] = {{wake_fd, POLLIN, 0}, {inst ? inst->pidfd : -1, POLLIN, 0}};
      const int n = ::poll(fds, inst && inst->pidfd >= 0 ? 2 : 1, static_cast<int>(timeout.count()));
      if (n > 0 && (fds[0].revents & POLLIN) != 0) {
        std::uint64_t count = 0;
        static_cast<void>(::read(wake_fd, &count, sizeof count));
      }
      if (inst && n > 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
        reap(inst);
      } else if (inst && inst->pidfd < 0) {
        int status = 0;  // no pidfd (old kernel): poll the process instead
        if (::waitpid(inst->pid, &status, WNOHANG) == inst->pid) reap(inst, status);
        else ping(inst);
      } else if (inst) {
        ping(inst);
      }
      lock.lock();
      if (restart_at && Clock::now() >= *restart_at && !stopping) {
        restart_at.reset();
        lock.unlock();
        restart();
        lock.lock();
      }
    }
  }

  void ping(const std::shared_ptr<Instance>& inst) {
    const auto silent = milliseconds((now_ns() - inst->last_pong_ns.load()) / 1000000);
    if (silent > opts.settings.ping_timeout) {
      kill(*inst, "did not answer pings for " + std::to_string(silent.count()) + " ms (runner_ping_timeout_ms=" +
                      std::to_string(opts.settings.ping_timeout.count()) + "): hung");
      return;
    }
    if (inst->ping_pending.exchange(true)) return;
    std::weak_ptr<Instance> weak = inst;
    inst->conn->request_async(Kind::kPing, {}, [weak](std::optional<Frame> reply) {
      if (auto i = weak.lock()) {
        if (reply) i->last_pong_ns.store(now_ns());
        i->ping_pending.store(false);
      }
    });
  }

  /// The process of `inst` ended: a crash unless the host ended it.
  void reap(const std::shared_ptr<Instance>& inst, std::optional<int> known_status = std::nullopt) {
    int status = known_status.value_or(0);
    if (!known_status) ::waitpid(inst->pid, &status, 0);
    inst->reaped.store(true);
    inst->conn->close();  // what waits for an answer fails now (in-flight requests get 502)
    inst->conn->join();
    rollback_open_transactions(*inst);
    std::string why = describe_exit(status);
    {
      std::lock_guard lock(inst->mutex);
      if (!inst->kill_reason.empty()) why = inst->kill_reason + "; " + why;
    }
    std::unique_lock lock(mutex);
    if (current == inst) current.reset();
    changed.notify_all();
    if (inst->expected_exit.load() || stopping) return;
    counters->crashes.fetch_add(1, std::memory_order_relaxed);
    last_crash = why;
    const auto now = Clock::now();
    if (now - inst->started >= opts.settings.crash_window) consecutive = 0;  // it had run fine for a while
    ++consecutive;
    crashes.push_back(now);
    while (!crashes.empty() && now - crashes.front() > opts.settings.crash_window) crashes.pop_front();
    log->error("plugin runner crashed plugin={} pid={} reason=\"{}\" crashes_in_window={}", opts.plugin, inst->pid, why,
               crashes.size());
    crashed_locked(lock, why);
  }

  /// After a crash (or a failed restart): quarantine, or schedule the next restart.
  void crashed_locked(std::unique_lock<std::mutex>& lock, const std::string& why) {
    if (crashes.size() >= opts.settings.max_crashes) {
      state = State::kQuarantined;
      quarantine_reason = "its runner crashed " + std::to_string(crashes.size()) + " times within " +
                          std::to_string(opts.settings.crash_window.count()) + " ms (last: " + why + ")";
      const auto reason = quarantine_reason;
      changed.notify_all();
      lock.unlock();
      log->error("plugin quarantined plugin={}: {}", opts.plugin, reason);
      listener.runner_quarantined(opts.plugin, reason);
      lock.lock();
      return;
    }
    state = State::kRestarting;
    auto delay = opts.settings.restart_backoff;
    for (std::uint32_t i = 1; i < consecutive && delay < opts.settings.restart_backoff_max; ++i) delay *= 2;
    delay = std::min(delay, std::max(opts.settings.restart_backoff_max, opts.settings.restart_backoff));
    restart_at = Clock::now() + delay;
    log->info("plugin runner restarting plugin={} in_ms={}", opts.plugin, delay.count());
    changed.notify_all();
  }

  void restart() {
    std::string why;
    std::shared_ptr<Instance> inst;
    try {
      inst = launch();
      bool was_created = false, was_started = false;
      std::string cfg;
      {
        std::lock_guard lock(mutex);
        was_created = created;
        was_started = started;
        cfg = config;
      }
      if (was_created) {
        if (const auto st = lifecycle(*inst, Kind::kCreate, cfg, "create()"); st < 0)
          throw std::runtime_error("create() failed after the restart with status " + std::string(abi::status_name(st)));
        if (was_started) {
          if (const auto st = lifecycle(*inst, Kind::kStart, {}, "start()"); st < 0)
            throw std::runtime_error("start() failed after the restart with status " + std::string(abi::status_name(st)));
        }
      }
      {
        std::lock_guard lock(mutex);
        if (stopping || !created) {
          // destroyed meanwhile: this process is not wanted any more
        } else {
          current = inst;
          state = State::kRunning;
          changed.notify_all();
          inst.reset();
        }
      }
      if (inst) {
        end(*inst, "not needed any more");
        return;
      }
      counters->restarts.fetch_add(1, std::memory_order_relaxed);
      log->info("plugin runner restarted plugin={}", opts.plugin);
      listener.runner_restarted(opts.plugin);
      return;
    } catch (const std::exception& e) {
      why = e.what();
    }
    if (inst) end(*inst, "its restart failed");  // launched, then create() or start() failed
    std::unique_lock lock(mutex);
    if (stopping) return;
    counters->crashes.fetch_add(1, std::memory_order_relaxed);
    last_crash = why;
    ++consecutive;
    crashes.push_back(Clock::now());
    log->error("plugin runner restart failed plugin={} reason=\"{}\"", opts.plugin, why);
    crashed_locked(lock, why);
  }

  void rollback_open_transactions(Instance& inst) {
    std::set<keel_txn> open;
    {
      std::lock_guard lock(inst.mutex);
      open.swap(inst.open_txns);
    }
    const auto* st = storage.load();
    for (const auto txn : open) {
      if (st != nullptr && st->rollback(ctx.load(), txn) >= 0)
        log->warn("rolled back the open transaction of a crashed plugin runner plugin={} txn={}", opts.plugin, txn);
    }
  }

  // --- hooks (the table the plugin host calls) -----------------------------------------------

  std::shared_ptr<Instance> live() const {
    std::lock_guard lock(mutex);
    return current;
  }

  /// A lifecycle hook: one request, the hook timeout, the status (KEEL_ERR_UNAVAILABLE when the
  /// process is gone, KEEL_ERR_TIMEOUT when it did not answer and was killed).
  keel_status lifecycle(Instance& inst, Kind kind, std::string_view body, std::string_view what) {
    Writer w;
    encode_context(w, current_context());
    if (kind == Kind::kCreate) w.bytes(body);
    bool timed_out = false;
    const auto reply = ask(inst, kind, w.data(), opts.settings.hook_timeout, what, &timed_out);
    if (!reply) return timed_out ? KEEL_ERR_TIMEOUT : KEEL_ERR_UNAVAILABLE;
    auto r = reply->reader();
    const auto st = r.i32();
    return r.ok() ? st : KEEL_ERR_INTERNAL;
  }

  keel_status create(const keel_host_api* api, keel_host_ctx* c, keel_host_bytes cfg) {
    host.store(api);
    ctx.store(c);
    auto inst = live();
    if (!inst) {
      // After a quarantine or a destroy (enable, or a create that follows a failed start):
      // a fresh process, and a fresh crash record.
      try {
        inst = on_supervisor<std::shared_ptr<Instance>>([this] { return launch(); });
      } catch (const std::exception& e) {
        log->error("plugin runner could not start plugin={}: {}", opts.plugin, e.what());
        return KEEL_ERR_UNAVAILABLE;
      }
      std::lock_guard lock(mutex);
      current = inst;
      crashes.clear();
      consecutive = 0;
      quarantine_reason.clear();
    }
    const auto st = lifecycle(*inst, Kind::kCreate, view(cfg), "create()");
    std::lock_guard lock(mutex);
    if (st >= 0) {
      config.assign(view(cfg));
      created = true;
      state = State::kRunning;
    }
    return st;
  }

  keel_status start() {
    auto inst = live();
    if (!inst) return KEEL_ERR_UNAVAILABLE;
    const auto st = lifecycle(*inst, Kind::kStart, {}, "start()");
    if (st >= 0) {
      std::lock_guard lock(mutex);
      started = true;
    }
    return st;
  }

  keel_status stop() {
    {
      std::lock_guard lock(mutex);
      started = false;
    }
    auto inst = live();
    return inst ? lifecycle(*inst, Kind::kStop, {}, "stop()") : KEEL_OK;
  }

  void destroy() {
    std::shared_ptr<Instance> inst;
    {
      std::lock_guard lock(mutex);
      created = false;
      started = false;
      restart_at.reset();
      inst = std::move(current);
      if (state != State::kQuarantined) state = State::kStopped;
      changed.notify_all();
    }
    if (!inst) return;
    inst->expected_exit.store(true);
    static_cast<void>(lifecycle(*inst, Kind::kDestroy, {}, "destroy()"));
    // The runner exits when the socket closes; the supervisor (or ~Runner) reaps it.
    try {
      on_supervisor<bool>([this, inst] {
        end(*inst, "destroyed");
        return true;
      });
    } catch (const std::exception&) {
      end(*inst, "destroyed while the runner shuts down");
    }
  }

  /// An answer the host gives for the plugin: `status` with the standard error body. Returns
  /// what respond() said (KEEL_ERR_ALREADY_COMPLETED when the plugin answered first).
  keel_status answer(keel_responder responder, unsigned status, std::string_view message) {
    http::Response res;
    res.set_error(status, http::error_code_for(status), message);
    keel_response out{};
    out.struct_size = sizeof out;
    out.status = static_cast<std::int32_t>(res.status);
    out.content_type = plugin_bytes(res.content_type);
    out.body = plugin_bytes(res.body);
    const auto* api = host.load();
    return api != nullptr ? api->respond(ctx.load(), responder, &out) : KEEL_ERR_UNAVAILABLE;
  }

  /// What on_request's status means once the runner returned it: like in process, a failure
  /// the plugin did not answer itself becomes the mapped error answer.
  void request_returned(keel_responder responder, keel_status st) {
    if (st >= 0) return;
    const auto code = abi::http_status_for(st);
    if (answer(responder, code, "plugin '" + opts.plugin + "' failed: " + std::string(abi::status_name(st))) ==
        KEEL_ERR_ALREADY_COMPLETED)
      log->warn("plugin handler returned status={} after responding; the response stands plugin={}",
                abi::status_name(st), opts.plugin);
  }

  keel_status on_request(const keel_request* req, keel_responder responder) {
    auto inst = live();
    if (!inst) {
      answer(responder, 503, unavailable_message());
      return KEEL_OK;
    }
    Writer w;
    encode_context(w, current_context());
    w.u64(responder);
    encode_request(w, *req);
    if (opts.serialized) {
      // One hook at a time: wait for this one to return, as the host's serial queue expects.
      auto reply = inst->conn->request(Kind::kRequest, w.data(), std::chrono::hours(24));
      if (!reply) {
        answer(responder, 502, crash_message());
        return KEEL_OK;
      }
      auto r = reply->reader();
      const auto st = r.i32();
      return r.ok() ? st : KEEL_ERR_INTERNAL;
    }
    // Parallel: on_request returns at once; the answer comes as a respond frame, a failure as
    // the reply, a crash as the connection closing.
    std::weak_ptr<Connection> conn = inst->conn;
    inst->conn->request_async(Kind::kRequest, w.data(), [this, responder, conn](std::optional<Frame> reply) {
      if (!reply) {
        const auto c = conn.lock();
        if (c && !c->closed())  // not sent: the runner stopped reading and its queue is full
          answer(responder, 503, "plugin '" + opts.plugin + "' is overloaded: its runner process is not reading");
        else
          answer(responder, 502, crash_message());
        return;
      }
      auto r = reply->reader();
      const auto st = r.i32();
      request_returned(responder, r.ok() ? st : KEEL_ERR_INTERNAL);
    });
    return KEEL_OK;
  }

  keel_status on_event(const keel_event* ev) {
    auto inst = live();
    if (!inst) return KEEL_ERR_UNAVAILABLE;  // restarting: durable deliveries pause until it is back
    Writer w;
    encode_context(w, current_context());
    encode_event(w, *ev);
    const auto reply = ask(*inst, Kind::kEvent, w.data(), opts.settings.hook_timeout, "on_event()", nullptr);
    // No answer: the process died with this event (or was killed for it). A failed attempt,
    // so an event that crashes its subscriber every time ends as a dead letter.
    if (!reply) return KEEL_ERR_INTERNAL;
    auto r = reply->reader();
    const auto st = r.i32();
    return r.ok() ? st : KEEL_ERR_INTERNAL;
  }

  keel_health health(keel_plugin_bytes* out_detail) {
    auto inst = live();
    if (!inst) {
      health_detail = unavailable_message();
      *out_detail = plugin_bytes(health_detail);
      return KEEL_HEALTH_FAIL;
    }
    Writer w;
    encode_context(w, {});
    const auto reply = inst->conn->request(Kind::kHealth, w.data(), opts.settings.ping_timeout);
    if (!reply) {
      health_detail = "its runner did not answer the health check within " +
                      std::to_string(opts.settings.ping_timeout.count()) + " ms";
      *out_detail = plugin_bytes(health_detail);
      return KEEL_HEALTH_FAIL;
    }
    auto r = reply->reader();
    const auto h = r.i32();
    health_detail.assign(r.bytes());
    *out_detail = plugin_bytes(health_detail);
    return r.ok() ? h : KEEL_HEALTH_FAIL;
  }

  std::string unavailable_message() const {
    std::lock_guard lock(mutex);
    if (state == State::kQuarantined) return "plugin '" + opts.plugin + "' is quarantined: " + quarantine_reason;
    return "plugin '" + opts.plugin + "' is restarting after a crash of its runner process (" + last_crash + "); retry";
  }
  std::string crash_message() const {
    return "plugin '" + opts.plugin + "' crashed while handling the request (its runner process ended)";
  }

  // --- the runner's calls of the host API ----------------------------------------------------

  /// Serves `f` inside the context it carries (request id, trace, deadline), like the hook of
  /// an in-process plugin would run on this thread.
  template <class F>
  void in_context(const Context& c, F&& fn) {
    auto* cx = ctx.load();
    if (cx == nullptr || (c.request_id.empty() && c.traceparent.empty() && c.remaining_ns == 0)) {
      fn();
      return;
    }
    const auto deadline = c.remaining_ns > 0 ? Clock::now() + std::chrono::nanoseconds(c.remaining_ns)
                                             : Clock::now() + std::chrono::hours(24);
    const abi::CurrentRequestScope scope({cx, deadline, c.request_id, c.traceparent});
    fn();
  }

  static std::string status_only(keel_status st) {
    Writer w;
    w.i32(st);
    return w.take();
  }

  /// The storage functions' error text after `st`, for the reply.
  std::string_view storage_error(keel_status st) const {
    const auto* s = storage.load();
    return st < 0 && s != nullptr ? view(s->error_message(ctx.load())) : std::string_view{};
  }

  void handle(Instance& inst, Frame f) {
    switch (f.kind) {
      case Kind::kLog:
      case Kind::kRespond:
      case Kind::kCall:
      case Kind::kGetExtension:
        serve(inst, f);  // quick and never blocking: right here on the reader thread
        return;
      case Kind::kPublish:
      case Kind::kSqlExec:
      case Kind::kSqlPrepare:
      case Kind::kTxnBegin:
      case Kind::kTxnCommit:
      case Kind::kTxnRollback:
      case Kind::kKvGet:
      case Kind::kKvPut:
      case Kind::kKvDelete:
      case Kind::kKvList:
      case Kind::kSqlPublish: {
        // The instance is alive while its reader runs (its owner joins the reader before
        // letting go); the job keeps it alive for its reply.
        auto keep = inst.self.lock();
        const auto id = f.id;
        if (!keep || !calls.post([this, keep, frame = std::move(f)] { serve(*keep, frame); }))
          inst.conn->reply(id, status_only(KEEL_ERR_UNAVAILABLE));
        return;
      }
      default:
        log->warn("plugin runner sent an unexpected frame plugin={} kind={}", opts.plugin, kind_name(f.kind));
        return;
    }
  }

  void serve(Instance& inst, const Frame& f) {
    auto r = f.reader();
    const auto c = decode_context(r);
    const auto* api = host.load();
    auto* cx = ctx.load();
    auto& conn = *inst.conn;
    if (api == nullptr || cx == nullptr) {  // before create(): nothing to serve it with
      if (f.id != 0) conn.reply(f.id, status_only(KEEL_ERR_UNAVAILABLE));
      return;
    }
    Writer out;
    in_context(c, [&] {
      switch (f.kind) {
        case Kind::kLog: {
          const auto level = r.i32();
          const auto message = r.bytes();
          if (r.ok()) api->log(cx, level, plugin_bytes(message));
          return;
        }
        case Kind::kRespond: {
          const auto responder = r.u64();
          keel_response res{};
          std::vector<keel_plugin_kv> kv;
          decode_response(r, res, kv);
          out.i32(r.done() ? api->respond(cx, responder, &res) : KEEL_ERR_INVALID_ARGUMENT);
          break;
        }
        case Kind::kPublish: {
          keel_publish_args args{};
          decode_publish(r, args);
          out.i32(r.done() ? api->publish(cx, &args) : KEEL_ERR_INVALID_ARGUMENT);
          break;
        }
        case Kind::kCall: {
          const auto call_id = r.u64();
          keel_call_args args{};
          std::vector<keel_plugin_kv> kv;
          decode_call_args(r, args, kv);
          if (!r.done()) {
            out.i32(KEEL_ERR_INVALID_ARGUMENT);
            break;
          }
          auto* pending = new PendingCall{this, inst.conn, call_id};
          const auto st = api->call(cx, &args, &Impl::call_done, pending);
          if (st < 0) delete pending;  // no completion follows a refused call
          out.i32(st);
          break;
        }
        case Kind::kGetExtension: {
          const auto id = std::string(r.bytes());
          const void* ext = r.ok() ? api->get_extension(cx, id.c_str()) : nullptr;
          if (id == KEEL_STORAGE_EXTENSION_ID && ext != nullptr) storage.store(static_cast<const keel_storage_api*>(ext));
          out.u8(ext != nullptr ? 1 : 0);
          break;
        }
        default:
          serve_storage(inst, f.kind, r, out);
          break;
      }
    });
    if (f.id != 0) conn.reply(f.id, out.data());
  }

  void serve_storage(Instance& inst, Kind kind, Reader& r, Writer& out) {
    const auto* s = storage.load();
    auto* cx = ctx.load();
    if (s == nullptr) {  // the runner never got the table: the permission is missing
      out.i32(KEEL_ERR_PERMISSION_DENIED);
      out.bytes("the manifest lacks the permission \"ext:" KEEL_STORAGE_EXTENSION_ID "\"");
      return;
    }
    auto bad = [&] {
      out.i32(KEEL_ERR_INVALID_ARGUMENT);
      out.bytes("malformed frame from the runner");
    };
    switch (kind) {
      case Kind::kSqlExec: {
        const auto txn = r.u64();
        const auto sql = r.bytes();
        std::vector<keel_sql_param> params;
        decode_sql_params(r, params);
        const bool want_rows = r.u8() != 0;
        if (!r.done()) return bad();
        struct Rows {
          Writer values;
          std::vector<std::string> names;
          std::uint32_t count = 0;
        } rows;
        auto sink = [](void* user, const keel_sql_value* cols, const keel_host_bytes* names, std::size_t n) -> int32_t {
          auto& rs = *static_cast<Rows*>(user);
          if (rs.names.empty())
            for (std::size_t i = 0; i < n; ++i) rs.names.emplace_back(view(names[i]));
          for (std::size_t i = 0; i < n; ++i) encode_sql_value(rs.values, cols[i]);
          ++rs.count;
          return 0;
        };
        keel_sql_result res{};
        res.struct_size = sizeof res;
        const auto st = s->exec(cx, txn, plugin_bytes(sql), params.data(), params.size(), want_rows ? +sink : nullptr,
                                &rows, &res);
        out.i32(st);
        out.i64(res.changes);
        out.i64(res.last_insert_id);
        out.i64(res.rows);
        out.u32(static_cast<std::uint32_t>(rows.names.size()));
        for (const auto& n : rows.names) out.bytes(n);
        out.u32(rows.count);
        out.raw(rows.values.data());  // without a length: columns x rows values follow
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kSqlPrepare: {
        const auto sql = r.bytes();
        if (!r.done()) return bad();
        keel_sql_info info{};
        info.struct_size = sizeof info;
        const auto st = s->prepare(cx, plugin_bytes(sql), &info);
        out.i32(st);
        out.u32(info.param_count);
        out.u32(info.column_count);
        out.u32(info.read_only);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kTxnBegin: {
        const auto parent = r.u64();
        if (!r.done()) return bad();
        keel_txn txn = KEEL_TXN_NONE;
        const auto st = s->begin(cx, parent, &txn);
        if (st >= 0 && parent == KEEL_TXN_NONE) {
          std::lock_guard lock(inst.mutex);
          inst.open_txns.insert(txn);
        }
        out.i32(st);
        out.u64(txn);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kTxnCommit:
      case Kind::kTxnRollback: {
        const auto txn = r.u64();
        if (!r.done()) return bad();
        const auto st = kind == Kind::kTxnCommit ? s->commit(cx, txn) : s->rollback(cx, txn);
        {
          // A top-level commit ends the transaction whatever it returns, except for an id that
          // was not open; a savepoint id is not in the set.
          std::lock_guard lock(inst.mutex);
          if (st != KEEL_ERR_NOT_FOUND) inst.open_txns.erase(txn);
        }
        out.i32(st);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kKvGet: {
        const auto txn = r.u64();
        const auto key = r.bytes();
        if (!r.done()) return bad();
        keel_kv_entry e{};
        e.struct_size = sizeof e;
        const auto st = s->kv_get(cx, txn, plugin_bytes(key), &e);
        out.i32(st);
        encode_kv_entry(out, e);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kKvPut: {
        keel_kv_put_args a{};
        a.struct_size = sizeof a;
        const auto txn = r.u64();
        a.flags = r.u32();
        a.key = plugin_bytes(r.bytes());
        a.value = plugin_bytes(r.bytes());
        a.expected_version = r.i64();
        a.ttl_ms = r.i64();
        if (!r.done()) return bad();
        std::int64_t version = 0;
        const auto st = s->kv_put(cx, txn, &a, &version);
        out.i32(st);
        out.i64(version);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kKvDelete: {
        const auto txn = r.u64();
        const auto key = r.bytes();
        const auto expected = r.i64();
        if (!r.done()) return bad();
        const auto st = s->kv_delete(cx, txn, plugin_bytes(key), expected);
        out.i32(st);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kKvList: {
        const auto txn = r.u64();
        const auto prefix = r.bytes();
        const auto after = r.bytes();
        const auto limit = r.u32();
        if (!r.done()) return bad();
        struct Entries {
          Writer w;
          std::uint32_t count = 0;
        } entries;
        auto sink = [](void* user, const keel_kv_entry* e) -> int32_t {
          auto& es = *static_cast<Entries*>(user);
          encode_kv_entry(es.w, *e);
          ++es.count;
          return 0;
        };
        std::uint32_t more = 0;
        const auto st = s->kv_list(cx, txn, plugin_bytes(prefix), plugin_bytes(after), limit, +sink, &entries, &more);
        out.i32(st);
        out.u32(entries.count);
        out.raw(entries.w.data());
        out.u8(more != 0 ? 1 : 0);
        out.bytes(storage_error(st));
        return;
      }
      case Kind::kSqlPublish: {
        const auto txn = r.u64();
        keel_publish_args args{};
        decode_publish(r, args);
        if (!r.done()) return bad();
        const auto st = s->publish(cx, txn, &args);
        out.i32(st);
        out.bytes(storage_error(st));
        return;
      }
      default:
        out.i32(KEEL_ERR_UNSUPPORTED);
        out.bytes("unknown frame kind");
        return;
    }
  }

  /// A call the runner made: its completion goes back as a call_done frame.
  struct PendingCall {
    Impl* impl;
    std::shared_ptr<Connection> conn;  // of the process that made the call; a restart's is another
    std::uint64_t call_id;
  };

  static void call_done(void* user, keel_status result, const keel_call_response* response) {
    std::unique_ptr<PendingCall> pending(static_cast<PendingCall*>(user));
    try {
      Writer w;
      encode_context(w, current_context());  // the caller's context: the host runs completions in it
      w.u64(pending->call_id);
      w.i32(result);
      w.u8(response != nullptr ? 1 : 0);
      if (response != nullptr) encode_call_response(w, *response);
      static_cast<void>(pending->conn->send(Kind::kCallDone, 0, w.data()));  // gone with its process otherwise
    } catch (...) {  // a completion never throws into the host
    }
  }
};

// ---------------------------------------------------------------------------------------------
// The table's hooks: the instance pointer is the Impl (create() hands it out as self).

namespace {

Runner::Impl& impl_of(void* self) { return *static_cast<Runner::Impl*>(self); }

keel_status px_create(const keel_host_api* host, keel_host_ctx* ctx, keel_host_bytes config, void** out_self) {
  if (ctx == nullptr || ctx->runner == nullptr || out_self == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  auto& impl = ctx->runner->impl();
  const auto st = impl.create(host, ctx, config);
  if (st >= 0) *out_self = &impl;
  return st;
}
void px_destroy(void* self) { impl_of(self).destroy(); }
keel_status px_start(void* self) { return impl_of(self).start(); }
keel_status px_stop(void* self) { return impl_of(self).stop(); }
keel_status px_on_request(void* self, const keel_request* request, keel_responder responder) {
  try {
    return impl_of(self).on_request(request, responder);
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}
keel_status px_on_event(void* self, const keel_event* event) {
  try {
    return impl_of(self).on_event(event);
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}
keel_health px_health(void* self, keel_plugin_bytes* out_detail) {
  try {
    return impl_of(self).health(out_detail);
  } catch (...) {
    return KEEL_HEALTH_FAIL;
  }
}

}  // namespace

Runner::Runner(RunnerOptions options, int code_fd, RunnerListener& listener, std::shared_ptr<RunnerCounters> counters)
    : impl_(std::make_unique<Impl>(std::move(options), listener, std::move(counters))) {
  auto& s = *impl_;
  s.code_fd = ::fcntl(code_fd, F_DUPFD_CLOEXEC, 10);
  if (s.code_fd < 0) throw std::runtime_error(std::string("cannot duplicate the plugin's code descriptor: ") + std::strerror(errno));
  s.wake_fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (s.wake_fd < 0) {
    ::close(s.code_fd);
    throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
  }
  s.supervisor = std::thread([&s] { s.supervise(); });
  try {
    auto inst = s.on_supervisor<std::shared_ptr<Instance>>([&s] { return s.launch(); });
    std::lock_guard lock(s.mutex);
    s.current = std::move(inst);
    s.state = State::kRunning;
  } catch (...) {
    {
      std::lock_guard lock(s.mutex);
      s.stopping = true;
    }
    s.wake();
    s.supervisor.join();
    ::close(s.wake_fd);
    ::close(s.code_fd);
    throw;
  }
  auto& t = s.table;
  t.struct_size = sizeof t;
  t.abi_version = s.abi;
  t.manifest = s.opts.manifest_json.c_str();
  // on_request and on_event exactly when the plugin has them, so the host checks the manifest
  // against the same table; the others always (they also track the runner's own state).
  t.create = px_create;
  t.destroy = px_destroy;
  t.start = px_start;
  t.stop = px_stop;
  t.on_request = (s.hooks & 4u) != 0 ? px_on_request : nullptr;
  t.on_event = (s.hooks & 8u) != 0 ? px_on_event : nullptr;
  t.health = px_health;
}

Runner::~Runner() {
  auto& s = *impl_;
  std::shared_ptr<Instance> inst;
  {
    std::lock_guard lock(s.mutex);
    s.stopping = true;
    inst = std::move(s.current);
  }
  s.wake();
  s.supervisor.join();
  if (inst) s.end(*inst, "the host is unloading the plugin");
  s.cgroup.reset();  // empty now: every process of it was reaped
  s.calls.stop();
  ::close(s.wake_fd);
  ::close(s.code_fd);
}

Runner::Impl& Runner::impl() noexcept { return *impl_; }
const keel_plugin& Runner::table() const noexcept { return impl_->table; }
std::uint32_t Runner::abi_version() const noexcept { return impl_->abi; }
void Runner::set_log_level(std::int32_t level) {
  auto& s = *impl_;
  if (s.log_level.exchange(level) == level) return;
  if (auto inst = s.live()) {
    Writer w;
    w.i32(level);
    static_cast<void>(inst->conn->send(Kind::kLogLevel, 0, w.data()));
  }
}

RunnerStatus Runner::status() const {
  auto& s = *impl_;
  std::lock_guard lock(s.mutex);
  RunnerStatus out;
  out.pid = s.current ? s.current->pid : 0;
  out.state = std::string(state_name(s.state));
  out.crashes = s.counters->crashes.load(std::memory_order_relaxed);
  out.restarts = s.counters->restarts.load(std::memory_order_relaxed);
  out.last_crash = s.last_crash;
  out.limits = s.limits;
  return out;
}

}  // namespace keel::host::isolation
