#include "isolation/containment.hpp"

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>

#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <pwd.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace keel::host::isolation {
namespace {

constexpr uid_t kDynamicBase = 1879113728;  // 0x70010000
constexpr uid_t kDynamicSlots = 32768;

// struct mount_attr of <linux/mount.h>, which does not combine with <sys/mount.h> on every libc.
struct MountAttr {
  std::uint64_t attr_set, attr_clr, propagation, userns_fd;
};
constexpr std::uint64_t kMountAttrRdonly = 0x1;

bool write_file(const char* path, const char* text) noexcept {
  const int fd = ::open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const auto len = std::strlen(text);
  const bool ok = ::write(fd, text, len) == static_cast<ssize_t>(len);
  const int e = errno;
  ::close(fd);
  errno = e;
  return ok;
}

/// Every mount read-only, recursively (the new mount API where the kernel has it).
bool read_only_root() noexcept {
#ifdef SYS_mount_setattr
  MountAttr attr{kMountAttrRdonly, 0, 0, 0};
  if (::syscall(SYS_mount_setattr, AT_FDCWD, "/", AT_RECURSIVE, &attr, sizeof attr) == 0) return true;
  if (errno != ENOSYS) return false;
#endif
  return ::mount(nullptr, "/", nullptr, MS_REMOUNT | MS_BIND | MS_RDONLY, nullptr) == 0;
}

/// An empty file system over `path`; a path that does not exist (or is already covered) is fine.
bool cover(const std::string& path, unsigned long flags, const char* options) noexcept {
  if (::mount("tmpfs", path.c_str(), "tmpfs", flags, options) == 0) return true;
  return errno == ENOENT || errno == ENOTDIR;
}

bool loopback_up() noexcept {
  const int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (s < 0) return false;
  ifreq ifr{};
  std::memcpy(ifr.ifr_name, "lo", 3);
  bool ok = ::ioctl(s, SIOCGIFFLAGS, &ifr) == 0;
  if (ok) {
    ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP | IFF_RUNNING);
    ok = ::ioctl(s, SIOCSIFFLAGS, &ifr) == 0;
  }
  const int e = errno;
  ::close(s);
  errno = e;
  return ok;
}

/// "<inside> <outside> 1": the host's id seen from inside the runner's user namespace as itself,
/// root as 65534 (so the runner has no capabilities there after exec).
std::string id_map(unsigned id) { return std::to_string(id == 0 ? 65534U : id) + " " + std::to_string(id) + " 1\n"; }

bool mapped(const char* file, unsigned id) {
  const int fd = ::open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return true;  // no user namespaces at all: every id exists
  char buf[4096];
  const auto n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0) return false;
  buf[n] = '\0';
  const char* at = buf;
  for (;;) {
    char* end = nullptr;
    const unsigned long inside = std::strtoul(at, &end, 10);
    if (end == at) return false;
    const unsigned long outside = std::strtoul(end, &end, 10);
    const unsigned long count = std::strtoul(end, &end, 10);
    static_cast<void>(outside);
    if (id >= inside && id - inside < count) return true;
    at = end;
  }
}

NamespaceSupport probe(bool user) {
  NamespaceSupport s;
  s.user = user;
  ContainPlan plan;
  plan.namespaces = true;
  plan.user_ns = s.user;
  if (s.user) {
    plan.uid_map = id_map(::geteuid());
    plan.gid_map = id_map(::getegid());
  }
  plan.scratch = {"/tmp"};
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
    s.why = std::string("pipe: ") + std::strerror(errno);
    return s;
  }
  const pid_t pid = ::fork();
  if (pid == 0) {
    int report[2] = {child_enter_namespaces(plan), errno};
    if (report[0] == 0) {
      const pid_t first = ::fork();  // pid 1 of the new namespace
      if (first == 0) ::_exit(child_mount_proc() ? 0 : errno);
      int status = 0;
      ::waitpid(first, &status, 0);
      if (first < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        report[0] = static_cast<int>(Step::kProc), report[1] = first < 0 ? errno : WEXITSTATUS(status);
    }
    static_cast<void>(::write(pipe_fds[1], report, sizeof report));
    ::_exit(0);
  }
  ::close(pipe_fds[1]);
  int report[2] = {static_cast<int>(Step::kClone), errno};
  if (pid > 0) {
    // No report: the child died before it could say (a failure, not a success).
    if (::read(pipe_fds[0], report, sizeof report) != static_cast<ssize_t>(sizeof report))
      report[0] = static_cast<int>(Step::kClone), report[1] = 0;
    ::waitpid(pid, nullptr, 0);
  }
  ::close(pipe_fds[0]);
  s.available = report[0] == 0;
  if (!s.available)
    s.why = std::string("this system refuses them (") + describe(static_cast<Step>(report[0])) + ": " +
            std::strerror(report[1]) + (s.user ? "; unprivileged user namespaces may be off" : "") + ")";
  return s;
}

std::string join(const std::vector<std::string>& list) {
  std::string out;
  for (const auto& x : list) out += (out.empty() ? "" : ", ") + x;
  return out;
}

}  // namespace

const char* describe(Step step) noexcept {
  switch (step) {
    case Step::kDescriptors: return "set up its descriptors";
    case Step::kLimits: return "apply its limits";
    case Step::kDropPrivileges: return "drop privileges";
    case Step::kExecute: return "execute";
    case Step::kCgroup: return "join its cgroup";
    case Step::kUserNamespace: return "map its user namespace";
    case Step::kNamespaces: return "enter its namespaces";
    case Step::kMounts: return "make its mounts private and read-only";
    case Step::kHide: return "cover the host's data with empty file systems";
    case Step::kProc: return "mount its own /proc";
    case Step::kLoopback: return "bring up loopback in its network namespace";
    case Step::kSeccomp: return "install its seccomp filter";
    case Step::kInit: return "start its PID namespace's init";
    case Step::kClone: return "start a process in its namespaces";
  }
  return "start";
}

const NamespaceSupport& namespace_support(bool user) {
  if (user) {
    static const NamespaceSupport with_user = probe(true);  // each probed when first asked
    return with_user;
  }
  static const NamespaceSupport without = probe(false);
  return without;
}

bool identity_mapped(uid_t uid, gid_t gid) {
  return mapped("/proc/self/uid_map", uid) && mapped("/proc/self/gid_map", gid);
}

ContainPlan ContainPlan::make(const NamespaceSupport& support, bool network,
                              const std::vector<std::filesystem::path>& hide, std::vector<std::string>& applied) {
  ContainPlan p;
  p.network = network;
  if (!support.available) {
    if (!network)
      throw std::runtime_error("runner_network = false needs a network namespace, and " + support.why);
    applied.push_back("namespaces not applied: " + support.why);
    return p;
  }
  p.namespaces = true;
  p.user_ns = support.user;
  if (p.user_ns) {
    p.uid_map = id_map(::geteuid());
    p.gid_map = id_map(::getegid());
  }
  p.scratch = {"/tmp", "/var/tmp", "/dev/shm"};
  p.hidden = {"/root", "/home", "/run/user"};
  for (const auto& path : hide) {
    if (path.empty()) continue;
    std::error_code ec;
    const auto absolute = std::filesystem::weakly_canonical(std::filesystem::absolute(path, ec), ec);
    if (!absolute.empty() && absolute != "/") p.hidden.push_back(absolute.string());
  }
  applied.push_back(std::string("namespaces=") + (p.user_ns ? "user," : "") + "mount,pid,ipc,uts" +
                    (network ? "" : ",net (loopback only)") + "; own /proc, read-only root; empty: " + join(p.hidden) +
                    "; fresh: " + join(p.scratch));
  return p;
}

std::pair<uid_t, gid_t> dynamic_identity(const std::string& plugin) {
  static std::mutex mutex;
  static std::map<std::string, uid_t> given;
  std::lock_guard lock(mutex);
  if (const auto it = given.find(plugin); it != given.end()) return {it->second, it->second};
  std::set<uid_t> taken;
  for (const auto& [name, uid] : given) taken.insert(uid);
  std::uint32_t hash = 2166136261U;  // FNV-1a: a plugin keeps its uid across host restarts
  for (const char c : plugin) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619U;
  for (uid_t i = 0; i < kDynamicSlots; ++i) {
    const uid_t uid = kDynamicBase + (hash + i) % kDynamicSlots;
    if (taken.contains(uid)) continue;
    std::vector<char> buf(16384);
    passwd pw{};
    passwd* pw_found = nullptr;
    group gr{};
    group* gr_found = nullptr;
    ::getpwuid_r(uid, &pw, buf.data(), buf.size(), &pw_found);
    if (pw_found != nullptr) continue;
    ::getgrgid_r(uid, &gr, buf.data(), buf.size(), &gr_found);
    if (gr_found != nullptr) continue;
    given.emplace(plugin, uid);
    return {uid, uid};
  }
  throw std::runtime_error("no free uid left in the dynamic range for runners");
}

int child_enter_namespaces(const ContainPlan& p) noexcept {
  if (!p.namespaces) return 0;
  int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS;
  if (!p.network) flags |= CLONE_NEWNET;
  if (p.user_ns) {
    if (::unshare(CLONE_NEWUSER | flags) != 0) return static_cast<int>(Step::kNamespaces);
    if (!write_file("/proc/self/setgroups", "deny") || !write_file("/proc/self/gid_map", p.gid_map.c_str()) ||
        !write_file("/proc/self/uid_map", p.uid_map.c_str()))
      return static_cast<int>(Step::kUserNamespace);
  } else if (::unshare(flags) != 0) {
    return static_cast<int>(Step::kNamespaces);
  }
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0 || !read_only_root())
    return static_cast<int>(Step::kMounts);
  for (const auto& dir : p.scratch)
    if (!cover(dir, MS_NOSUID | MS_NODEV, "size=64m,mode=1777")) return static_cast<int>(Step::kHide);
  for (const auto& dir : p.hidden)
    if (!cover(dir, MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY, "size=4k,mode=0555"))
      return static_cast<int>(Step::kHide);
  if (!p.network && !loopback_up()) return static_cast<int>(Step::kLoopback);
  return 0;
}

bool child_mount_proc() noexcept {
  return ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) == 0;
}

bool child_drop_privileges(const ContainPlan& p) noexcept {
  if (!p.drop) return true;
  return ::setgroups(0, nullptr) == 0 && ::setgid(p.drop->second) == 0 && ::setuid(p.drop->first) == 0;
}

void child_run_init(const ContainPlan& p, int err_fd) noexcept {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::getppid() != 0) ::_exit(0);  // the host (outside the namespace) is gone already
  // Its memory is a copy of the host's: nobody may read it. Set after the change of uid, which
  // resets dumpability to fs.suid_dumpable.
  if (!child_drop_privileges(p) || ::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::prctl(PR_SET_DUMPABLE, 0) != 0 ||
      ::chdir("/") != 0) {
    const int e[4] = {1, static_cast<int>(Step::kInit), errno, 0};
    static_cast<void>(::write(err_fd, e, sizeof e));
    ::_exit(127);
  }
  if (::getppid() != 0) ::_exit(0);
  if (::syscall(SYS_close_range, 0U, ~0U, 0) != 0)
    for (int fd = 0; fd < 65536; ++fd) ::close(fd);
  sigset_t all;
  sigfillset(&all);
  ::sigprocmask(SIG_SETMASK, &all, nullptr);  // SIGKILL from the host still ends it
  sigset_t child;
  sigemptyset(&child);
  sigaddset(&child, SIGCHLD);
  for (;;) {
    int sig = 0;
    ::sigwait(&child, &sig);
    while (::waitpid(-1, nullptr, WNOHANG) > 0) {
    }
  }
}

}  // namespace keel::host::isolation
