// Runner::Impl's processes (runner_impl.hpp): spawning keel-plugin-runner with its limits
// (rlimits, cgroup) and containment (identity, namespaces, seccomp: containment.hpp), hello, and
// ending or killing a process.
#include <algorithm>
#include <array>
#include <cerrno>
#include <csignal>
#include <cstring>

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "isolation/containment.hpp"
#include "isolation/runner_impl.hpp"
#include "isolation/seccomp.hpp"

extern char** environ;

namespace keel::host::isolation {
namespace {

// The descriptors the child finds: the socket, the code, and (closed on exec) the error pipe.
constexpr int kChildSocketFd = 3;
constexpr int kChildCodeFd = 4;
constexpr int kChildErrorFd = 5;

struct Rlimit {
  int resource;
  rlim_t value;
};

/// The descriptors of one spawn: the host's socket end and the error pipe's read end, and the
/// child's ends of both (moved to >= 10, close-on-exec).
struct SpawnFds {
  int sock = -1, err_read = -1, child_sock = -1, child_err = -1;

  void close_all() {
    for (int* fd : {&sock, &err_read, &child_sock, &child_err}) {
      if (*fd >= 0) ::close(*fd);
      *fd = -1;
    }
  }
};

SpawnFds open_spawn_fds() {
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
  SpawnFds fds{sv[0], err[0], ::fcntl(sv[1], F_DUPFD_CLOEXEC, 10), ::fcntl(err[1], F_DUPFD_CLOEXEC, 10)};
  ::close(sv[1]);
  ::close(err[1]);
  if (fds.child_sock < 0 || fds.child_err < 0) {
    const int e = errno;
    fds.close_all();
    throw std::runtime_error(std::string("fcntl: ") + std::strerror(e));
  }
  return fds;
}

std::vector<Rlimit> rlimits_of(const config::RunnerSettings& s) {
  std::vector<Rlimit> rlimits;
  if (s.memory_bytes != 0) rlimits.push_back({RLIMIT_AS, static_cast<rlim_t>(s.memory_bytes)});
  if (s.cpu_seconds != 0) rlimits.push_back({RLIMIT_CPU, static_cast<rlim_t>(s.cpu_seconds)});
  if (s.open_files != 0) rlimits.push_back({RLIMIT_NOFILE, static_cast<rlim_t>(s.open_files)});
  return rlimits;
}

/// "RLIMIT_AS=268435456".
std::string describe(const Rlimit& l) {
  return std::string(l.resource == RLIMIT_AS ? "RLIMIT_AS" : l.resource == RLIMIT_CPU ? "RLIMIT_CPU" : "RLIMIT_NOFILE") +
         "=" + std::to_string(l.value);
}

constexpr int kChildExeFd = 6;  // the runner binary, opened by the host (close-on-exec)

/// Everything the children need, prepared before fork(): after it only async-signal-safe calls.
struct ChildSetup {
  char* const* argv;
  char* const* envp;
  int child_sock, child_err, code, exe;
  pid_t parent;
  const std::vector<Rlimit>& rlimits;
  const ContainPlan& plan;
  const SeccompFilter& seccomp;
  const std::vector<int>& group_fds;
};

/// What a child writes on the error pipe: {kReportFailed, step, errno, 0} or, from the first
/// child once it started the namespaces' processes, {kReportPids, init pid, runner pid, 0}.
constexpr int kReportFailed = 1;
constexpr int kReportPids = 2;

/// In a child: reports the failing step on the error pipe, exits 127.
[[noreturn]] void fail(Step step) {
  const int e[4] = {kReportFailed, static_cast<int>(step), errno, 0};
  static_cast<void>(::write(kChildErrorFd, e, sizeof e));
  ::_exit(127);
}

/// Whether the host that started this child still runs: it is the parent, or, from inside a
/// PID namespace, a parent outside it (0); a dead host's children are adopted by someone else.
bool host_alive(const ChildSetup& c) { return ::getppid() == (c.plan.namespaces ? 0 : c.parent); }

/// A process whose parent is this one's (the host): the host waits for it and gets its signals.
pid_t clone_sibling() {
  return static_cast<pid_t>(::syscall(SYS_clone, CLONE_PARENT | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

/// The runner process: its own /proc, descriptors, limits, identity, seccomp filter, exec.
[[noreturn]] void run_runner(const ChildSetup& c) {
  if (c.plan.namespaces) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (!host_alive(c)) ::_exit(127);
    if (!child_mount_proc()) fail(Step::kProc);
  }
  // The working directory would still be the host's real one under any directory the mount
  // namespace covers: relative paths would read past the covers.
  if (::chdir("/") != 0) fail(Step::kProc);
  if (::dup2(c.child_sock, kChildSocketFd) < 0 || ::dup2(c.code, kChildCodeFd) < 0 ||
      ::dup2(c.exe, kChildExeFd) < 0 || ::fcntl(kChildExeFd, F_SETFD, FD_CLOEXEC) < 0)
    fail(Step::kDescriptors);
  if (::syscall(SYS_close_range, kChildExeFd + 1, ~0U, 0) != 0) {
    for (int fd = kChildExeFd + 1; fd < 65536; ++fd) ::close(fd);
  }
  for (const auto& l : c.rlimits) {
    const struct rlimit r{l.value, l.value};
    if (::setrlimit(l.resource, &r) != 0) fail(Step::kLimits);
  }
  if (c.plan.drop) {
    if (!child_drop_privileges(c.plan)) fail(Step::kDropPrivileges);
    // ...but a change of credentials clears the parent-death signal: set it again, and leave if
    // the host died in between.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(Step::kDropPrivileges);
    if (!host_alive(c)) ::_exit(127);
  }
  if (!install_seccomp(c.seccomp)) fail(Step::kSeccomp);
  // By descriptor: the path may lie in a directory the runner's identity cannot enter, or one
  // its mount namespace covers.
  ::syscall(SYS_execveat, kChildExeFd, "", c.argv, c.envp, AT_EMPTY_PATH);
  fail(Step::kExecute);
}

/// The first child after fork(): joins the cgroup, then either becomes the runner or enters the
/// namespaces and starts their init and the runner as the host's children (CLONE_PARENT), so the
/// runner is not its namespace's pid 1 (which ignores the signals it has no handler for, its own
/// abort() included) and the host waits for it, signals it and gets its exit status as before.
[[noreturn]] void exec_child(const ChildSetup& c) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the host (the forking thread)...
  if (::getppid() != c.parent) ::_exit(127);
  // A session of its own: no controlling terminal, so a plugin cannot push keystrokes into the
  // shell that started the host (TIOCSTI), and a terminal's Ctrl-C reaches the host, which stops
  // the runner itself. Standard input is /dev/null: nothing of the host's to read.
  ::setsid();
  if (const int nul = ::open("/dev/null", O_RDWR | O_CLOEXEC); nul >= 0) {
    ::dup2(nul, STDIN_FILENO);
    if (nul != STDIN_FILENO) ::close(nul);
  }
  sigset_t none;
  sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);
  if (::dup2(c.child_err, kChildErrorFd) < 0 || ::fcntl(kChildErrorFd, F_SETFD, FD_CLOEXEC) < 0) ::_exit(127);
  if (!join_cgroups(c.group_fds)) fail(Step::kCgroup);  // before anything else runs in it
  if (!c.plan.namespaces) run_runner(c);
  if (const int step = child_enter_namespaces(c.plan); step != 0) fail(static_cast<Step>(step));
  const pid_t init = clone_sibling();
  if (init == 0) child_run_init(c.plan, kChildErrorFd);
  if (init < 0) fail(Step::kInit);
  const pid_t runner = clone_sibling();
  if (runner == 0) run_runner(c);
  const int pids[4] = {kReportPids, init, runner < 0 ? 0 : runner, 0};
  static_cast<void>(::write(kChildErrorFd, pids, sizeof pids));
  if (runner < 0) fail(Step::kClone);
  ::_exit(0);
}

struct Started {
  pid_t runner = -1, init = -1;
};

/// Waits until every child executed or ended: the error pipe closes (close-on-exec) after
/// carrying the pids and any step that failed. On a failure kills and reaps the children,
/// closes `sock` and throws why.
Started await_exec(pid_t first, bool namespaces, int err_read, int sock, const std::string& binary) {
  Started started{namespaces ? -1 : first, -1};
  int failed[2] = {0, 0};
  for (;;) {
    int e[4] = {0, 0, 0, 0};
    ssize_t n;
    do {
      n = ::read(err_read, e, sizeof e);
    } while (n < 0 && errno == EINTR);
    if (n != static_cast<ssize_t>(sizeof e)) break;
    if (e[0] == kReportPids) started = {e[2] > 0 ? e[2] : -1, e[1] > 0 ? e[1] : -1};
    if (e[0] == kReportFailed && failed[0] == 0) failed[0] = e[1], failed[1] = e[2];
  }
  ::close(err_read);
  if (namespaces) ::waitpid(first, nullptr, 0);
  if (failed[0] == 0 && started.runner > 0) return started;
  for (const pid_t pid : {started.runner, started.init}) {
    if (pid <= 0 || (pid == first && namespaces)) continue;
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
  ::close(sock);
  if (failed[0] == 0) throw std::runtime_error("the runner process could not start " + binary);
  throw std::runtime_error("the runner process could not " + std::string(describe(static_cast<Step>(failed[0]))) +
                           " " + binary + ": " + std::strerror(failed[1]));
}

// What a runner process sees of the environment: a fixed PATH and the few variables that only
// shape how a program runs (locale, time zone, sanitizer settings), never the host's own
// (KEEL_ADMIN_TOKEN, KEEL_* overrides) or anything else it was started with.
std::vector<std::string> runner_environment() {
  static constexpr std::array<std::string_view, 7> kPassed{"LANG",          "LC_ALL",       "TZ",          "ASAN_OPTIONS",
                                                           "UBSAN_OPTIONS", "LSAN_OPTIONS", "TSAN_OPTIONS"};
  std::vector<std::string> env{"PATH=/usr/local/bin:/usr/bin:/bin"};
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    if (std::find(kPassed.begin(), kPassed.end(), name) != kPassed.end()) env.emplace_back(entry);
  }
  return env;
}

/// The runner binary, opened by the host (which may read it wherever it lies) for the child to
/// execute by descriptor; >= 10, close-on-exec.
int open_binary(const std::string& binary) {
  const int fd = ::open(binary.c_str(), O_RDONLY | O_CLOEXEC);
  const int high = fd < 0 ? -1 : ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
  const int e = errno;
  if (fd >= 0) ::close(fd);
  if (high < 0) throw std::runtime_error("cannot open the runner " + binary + ": " + std::strerror(e));
  return high;
}

}  // namespace

std::shared_ptr<Instance> Runner::Impl::spawn() {
  std::string binary = opts.binary.string();
  std::string name = opts.plugin;
  char* argv[] = {binary.data(), name.data(), nullptr};
  auto env = runner_environment();
  std::vector<char*> envp;
  for (auto& e : env) envp.push_back(e.data());
  envp.push_back(nullptr);
  const auto rlimits = rlimits_of(opts.settings);
  std::vector<std::string> applied;
  for (const auto& l : rlimits) applied.push_back(describe(l));
  bool own_user_ns = ::geteuid() != 0;  // a host that cannot change uid
  auto drop = runner_user(applied, own_user_ns);
  const auto& support = namespace_support(own_user_ns);
  auto plan = ContainPlan::make(support, opts.settings.network, opts.hidden, applied);
  plan.drop = drop;
  if (!plan.namespaces && limits.empty())
    log->warn("plugin runner not in namespaces plugin={}: {} (docs/isolation.md#what-a-runner-can-reach)", opts.plugin,
              support.why);
  const auto& seccomp = runner_seccomp_filter();
  applied.push_back(seccomp.describe());
  const int exe = open_binary(binary);
  SpawnFds fds;
  try {
    fds = open_spawn_fds();
  } catch (...) {
    ::close(exe);
    throw;
  }
  make_cgroup(applied);
  static const std::vector<int> kNoGroups;
  const ChildSetup setup{argv, envp.data(), fds.child_sock, fds.child_err, code_fd, exe, ::getpid(),
                         rlimits, plan, seccomp, cgroup ? cgroup->procs_fds() : kNoGroups};

  const pid_t pid = ::fork();
  if (pid < 0) {
    const int e = errno;
    fds.close_all();
    ::close(exe);
    throw std::runtime_error(std::string("fork: ") + std::strerror(e));
  }
  if (pid == 0) exec_child(setup);
  ::close(fds.child_sock);
  ::close(fds.child_err);
  ::close(exe);
  const auto ran = await_exec(pid, plan.namespaces, fds.err_read, fds.sock, binary);
  try {
    return adopt(ran.runner, ran.init, fds.sock, std::move(applied));
  } catch (...) {
    // Nothing would watch or serve these processes: end them rather than leave them running.
    for (const pid_t p : {ran.runner, ran.init}) {
      if (p <= 0) continue;
      ::kill(p, SIGKILL);
      ::waitpid(p, nullptr, 0);
    }
    throw;
  }
}

std::optional<std::pair<uid_t, gid_t>> Runner::Impl::runner_user(std::vector<std::string>& applied,
                                                                 bool& own_user_ns) const {
  const auto& s = opts.settings;
  const std::string key = "[plugin." + opts.plugin + "] ";
  if (::geteuid() != 0) {
    applied.push_back("user unchanged (uid " + std::to_string(::geteuid()) + "): the host does not run as root");
    return std::nullopt;
  }
  if (s.user.empty()) {
    if (s.allow_root) {
      applied.push_back("user=root (runner_allow_root = true)");
      if (limits.empty())
        log->warn("plugin runner runs as root plugin={}: {}runner_allow_root = true; it can reach everything the host "
                  "can", opts.plugin, key);
      return std::nullopt;
    }
    const auto ids = dynamic_identity(opts.plugin);
    if (!identity_mapped(ids.first, ids.second)) {
      // Root inside a user namespace that maps no other uid (e.g. unshare --map-root-user): no
      // uid to change to; the runner is 65534 in a user namespace of its own, without capabilities.
      own_user_ns = true;
      applied.push_back("user unchanged (uid 0): the host's user namespace maps no other uid; uid 65534 without "
                        "capabilities in a user namespace of its own");
      return std::nullopt;
    }
    applied.push_back("user=dynamic (uid " + std::to_string(ids.first) + ", gid " + std::to_string(ids.second) +
                      ", no account)");
    return ids;
  }
  struct passwd pw{};
  struct passwd* found = nullptr;
  std::vector<char> buf(16384);
  if (::getpwnam_r(s.user.c_str(), &pw, buf.data(), buf.size(), &found) != 0 || found == nullptr)
    throw std::runtime_error(key + "runner_user: no user named '" + s.user + "'");
  if (pw.pw_uid == 0 && !s.allow_root)
    throw std::runtime_error(key + "runner_user = \"" + s.user + "\" runs the plugin as root: set runner_allow_root = "
                             "true to mean it, or name an unprivileged user (or none: a dynamic uid)");
  applied.push_back("user=" + s.user + " (uid " + std::to_string(pw.pw_uid) + ")");
  if (pw.pw_uid == 0 && limits.empty())
    log->warn("plugin runner runs as root plugin={}: {}runner_user = \"{}\" with runner_allow_root = true", opts.plugin,
              key, s.user);
  return std::make_pair(pw.pw_uid, pw.pw_gid);
}

void Runner::Impl::make_cgroup(std::vector<std::string>& applied) {
  const auto& s = opts.settings;
  const CgroupLimits group_limits{s.cpu_percent, s.cgroup_memory_bytes};
  if (!group_limits.any() || !limits.empty()) return;  // made with the first process, shared by its restarts
  try {
    cgroup = Cgroup::create(opts.plugin, group_limits);
    applied.insert(applied.end(), cgroup->applied().begin(), cgroup->applied().end());
  } catch (const std::exception& e) {
    log->warn("plugin runner limits not applied plugin={}: {} (docs/isolation.md#limits)", opts.plugin, e.what());
    if (s.cpu_percent != 0) applied.push_back(std::string("cpu_percent not applied: ") + e.what());
    if (s.cgroup_memory_bytes != 0) applied.push_back(std::string("cgroup_memory_bytes not applied: ") + e.what());
  }
}

std::shared_ptr<Instance> Runner::Impl::adopt(pid_t pid, pid_t init, int sock, std::vector<std::string> applied) {
  std::shared_ptr<Instance> inst;
  try {
    inst = std::make_shared<Instance>();
  } catch (...) {
    ::close(sock);  // the connection below would have owned it
    throw;
  }
  inst->self = inst;
  inst->number = ++instances;
  inst->pid = pid;
  inst->init_pid = init;
  inst->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  inst->started = Clock::now();
  inst->last_pong_ns.store(now_ns());
  Instance* raw = inst.get();
  // A runner that breaks the frame protocol (a frame over its kind's limit) is not served any
  // further: its stream is out of step, so it is killed and restarted like a crashed one.
  try {
    inst->conn = std::make_shared<Connection>(
        sock, [this, raw](Frame f) { handle(*raw, std::move(f)); },
        [this, raw](const std::string& why, bool corrupt) {
          if (corrupt && !raw->expected_exit.load() && !raw->reaped.load())
            kill(*raw, "it broke the frame protocol: " + why);
        },
        kMaxQueuedToRunnerBytes, opts.frame_limits);
  } catch (...) {
    ::close(sock);
    throw;
  }
  inst->conn->start();
  std::lock_guard lock(mutex);
  if (limits.empty()) limits = std::move(applied);
  return inst;
}

void Runner::Impl::hello(Instance& inst) {
  Writer w;
  w.u32(kWireVersion);
  w.bytes(opts.plugin);
  w.bytes(opts.manifest_json);
  w.i32(log_level.load());
  w.u32(opts.settings.threads);
  w.u32(opts.queue_limit);
  w.u32(opts.frame_limits.respond);
  w.u32(opts.frame_limits.publish);
  w.u64(opts.frame_limits.response_body);
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

std::shared_ptr<Instance> Runner::Impl::launch() {
  auto inst = spawn();
  try {
    hello(*inst);
  } catch (...) {
    end(*inst, "refused at hello");
    throw;
  }
  return inst;
}

void Runner::Impl::end(Instance& inst, std::string_view why) {
  inst.expected_exit.store(true);
  inst.gone.store(true);
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
  end_init(inst);
  inst.conn->join();
}

void Runner::Impl::end_init(Instance& inst) {
  if (inst.init_pid <= 0) return;
  ::kill(inst.init_pid, SIGKILL);  // the host's child, not yet waited for: its pid is still its own
  ::waitpid(inst.init_pid, nullptr, 0);
  inst.init_pid = -1;
}

std::string Runner::Impl::why_gone(Instance& inst) {
  std::lock_guard lock(inst.mutex);
  return inst.kill_reason.empty() ? std::string("its connection closed") : inst.kill_reason;
}

void Runner::Impl::signal(Instance& inst, int sig) {
  if (inst.reaped.load()) return;
  // With a pidfd, a failure means the process is gone: a kill() by pid could hit a reused one.
  if (inst.pidfd >= 0) {
    ::syscall(SYS_pidfd_send_signal, inst.pidfd, sig, nullptr, 0);
    return;
  }
  ::kill(inst.pid, sig);
}

void Runner::Impl::kill(Instance& inst, const std::string& reason) {
  {
    std::lock_guard lock(inst.mutex);
    if (inst.kill_reason.empty()) inst.kill_reason = reason;
  }
  log->error("killing plugin runner plugin={} pid={}: {}", opts.plugin, inst.pid, reason);
  signal(inst, SIGKILL);
}

std::optional<Frame> Runner::Impl::ask(Instance& inst, Kind kind, std::string_view payload, milliseconds timeout,
                                       std::string_view what, bool* timed_out) {
  auto reply = inst.conn->request(kind, payload, timeout);
  if (!reply && !inst.conn->closed()) {
    kill(inst, std::string(what) + " did not return within " + std::to_string(timeout.count()) + " ms");
    if (timed_out != nullptr) *timed_out = true;
  }
  return reply;
}

}  // namespace keel::host::isolation
