#pragma once
// isolation::Cgroup is the control group one plugin's runner processes run in, so the kernel
// enforces a CPU share and a memory ceiling on them (docs/isolation.md#limits). It is made
// under the host's own cgroup, in the unified (v2) hierarchy where the controller is enabled
// there, otherwise in the legacy (v1) hierarchy that carries the controller. Linux only.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace keel::host::isolation {

struct CgroupLimits {
  std::uint32_t cpu_percent = 0;    ///< share of one CPU (100 = one whole CPU); 0 = none
  std::uint64_t memory_bytes = 0;   ///< memory ceiling (the kernel's OOM killer enforces it); 0 = none
  [[nodiscard]] bool any() const noexcept { return cpu_percent != 0 || memory_bytes != 0; }
};

class Cgroup {
 public:
  /// Makes the group named `name` (a path component) with `limits` under the host's cgroup, in
  /// as many hierarchies as the limits need (one with v2, one per controller with v1). Removes
  /// groups an earlier host process left behind (named "keel-<pid>-..." for a pid no longer
  /// running). Throws std::runtime_error saying what is missing or refused.
  static std::unique_ptr<Cgroup> create(const std::string& name, const CgroupLimits& limits);
  ~Cgroup();  ///< removes the directories (the processes in them must have ended)
  Cgroup(const Cgroup&) = delete;
  Cgroup& operator=(const Cgroup&) = delete;

  /// Open `cgroup.procs` files (close-on-exec, >= 10): a child writes its pid to each to join.
  [[nodiscard]] const std::vector<int>& procs_fds() const noexcept { return procs_; }
  /// One line per limit, e.g. "cpu_percent=50 (cgroup v2 cpu.max \"50000 100000\", /sys/fs/cgroup/x)".
  [[nodiscard]] const std::vector<std::string>& applied() const noexcept { return applied_; }
  /// The directories, for tests and logs.
  [[nodiscard]] const std::vector<std::string>& directories() const noexcept { return dirs_; }

 private:
  Cgroup() = default;
  std::vector<std::string> dirs_;
  std::vector<int> procs_;
  std::vector<std::string> applied_;
};

/// The directory of the cgroup `path` (as /proc/self/cgroup names it) in a hierarchy whose part
/// `mount_root` is mounted at `mount_point` (as /proc/self/mountinfo says); empty when that
/// mount does not show the group.
std::string cgroup_directory(std::string_view mount_root, std::string_view mount_point, std::string_view path);

/// Writes the calling process's pid to each of `fds`; async-signal-safe (for a forked child).
/// False with errno set when one write fails.
bool join_cgroups(const std::vector<int>& fds) noexcept;

}  // namespace keel::host::isolation
