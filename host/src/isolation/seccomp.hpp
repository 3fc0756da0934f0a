#pragma once
// isolation::seccomp: the system call filter a runner process runs under (docs/isolation.md#what-
// a-runner-can-reach): a classic BPF program for seccomp(2), no libseccomp. It answers EPERM
// (never kills: the plugin sees an error it can handle) to the calls that reach other processes
// (ptrace, process_vm_readv/writev), change the mounts or namespaces (mount, umount2, pivot_root,
// chroot, unshare, setns, the new mount API, clone with a namespace flag), load code into or
// reconfigure the kernel (kexec, modules, bpf, perf_event_open, reboot, swapon/off, iopl, ioperm),
// reach the kernel's keyrings, or widen its attack surface (userfaultfd, io_uring,
// open_by_handle_at, kcmp, pidfd_getfd, process_madvise, modify_ldt, uselib); ioctl TIOCSTI and
// TIOCLINUX (typing into a terminal); a personality change other than the default; every call of another
// architecture's ABI (x32, i386 on x86-64). clone3 answers ENOSYS (its flags are in memory, which
// a filter cannot read), so the C library falls back to clone, whose flags it can check.

#include <cstddef>
#include <string>
#include <vector>

#include <linux/filter.h>

namespace keel::host::isolation {

struct SeccompFilter {
  std::vector<sock_filter> program;  ///< empty where the architecture is not known to this build
  std::size_t denied = 0;            ///< how many system calls it refuses
  [[nodiscard]] std::string describe() const;
};

/// The filter for this build's architecture (built once, before fork).
const SeccompFilter& runner_seccomp_filter();

/// In a child, async-signal-safe: sets no_new_privs and installs `f`. False with errno set.
bool install_seccomp(const SeccompFilter& f) noexcept;

}  // namespace keel::host::isolation
