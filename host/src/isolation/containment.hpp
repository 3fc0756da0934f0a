#pragma once
// isolation::containment: what keeps a runner process away from the rest of the machine beyond
// its limits (docs/isolation.md#what-a-runner-can-reach): its identity (a dynamic unprivileged
// uid when the host runs as root), Linux namespaces (user when the host is not root, mount, PID,
// IPC, UTS, optionally network) with a private /proc, a read-only root and empty file systems over
// the host's data, and the seccomp filter (seccomp.hpp). Prepared by the host before fork; the
// `child_*` functions run in the forked children and are async-signal-safe.

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace keel::host::isolation {

/// Which namespaces this host can give its runners, probed once per process.
struct NamespaceSupport {
  bool available = false;
  bool user = false;   ///< through a user namespace (the host is not root)
  std::string why;     ///< when not available: the step that failed and the kernel's reason
};
/// Probes by doing what a spawn does, in a throw-away child (cached; thread-safe); `user`: with
/// a user namespace of the runner's own (a host that cannot change uid).
const NamespaceSupport& namespace_support(bool user);

/// Whether `uid` and `gid` exist in the host's user namespace (a host that is root inside a user
/// namespace may have no other uid to change to).
bool identity_mapped(uid_t uid, gid_t gid);

/// Everything the children need, prepared before fork().
struct ContainPlan {
  bool namespaces = false;
  bool user_ns = false;
  bool network = true;  ///< false: a network namespace with only loopback
  std::string uid_map, gid_map;  // user namespace: the host's ids mapped onto themselves (root onto 65534)
  std::vector<std::string> hidden;   // empty read-only file systems over these (host data)
  std::vector<std::string> scratch;  // fresh writable ones (/tmp, /var/tmp, /dev/shm)
  std::optional<std::pair<uid_t, gid_t>> drop;  // setgroups/setgid/setuid to these (host is root)

  /// The plan for a host running with this uid: namespaces where `support` has them; the paths
  /// to hide. "namespaces=..." or "namespaces not applied: ..." goes to `applied`.
  static ContainPlan make(const NamespaceSupport& support, bool network, const std::vector<std::filesystem::path>& hide,
                          std::vector<std::string>& applied);
};

/// A uid (and gid of the same number) no account uses, for the plugin `plugin`, from the range
/// 1879113728..1879146495 (above systemd's container range): the same for the plugin's restarts and
/// reloads, another for each plugin of this host, none with a passwd or group entry.
std::pair<uid_t, gid_t> dynamic_identity(const std::string& plugin);

// --- in the children (async-signal-safe) ---------------------------------------------------------

/// The steps a child reports on its error pipe: what failed.
enum class Step : int {
  kDescriptors = 1, kLimits, kDropPrivileges, kExecute, kCgroup, kUserNamespace, kNamespaces, kMounts,
  kHide, kProc, kLoopback, kSeccomp, kInit, kClone,
};
const char* describe(Step step) noexcept;

/// In the first child: user namespace and maps, the other namespaces, private mounts, read-only
/// root, the file systems over host data, loopback. 0 or the step that failed (errno set).
int child_enter_namespaces(const ContainPlan& p) noexcept;
/// In the runner, in its PID namespace: a fresh /proc showing only that namespace.
bool child_mount_proc() noexcept;
/// setgroups, setgid, setuid to `p.drop` (when set). False with errno.
bool child_drop_privileges(const ContainPlan& p) noexcept;
/// The PID namespace's init: reaps orphans until the host kills it. Holds nothing of the host's:
/// no descriptor, not dumpable, dropped to the runner's identity.
[[noreturn]] void child_run_init(const ContainPlan& p, int err_fd) noexcept;

}  // namespace keel::host::isolation
