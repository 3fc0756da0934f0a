#include "isolation/seccomp.hpp"

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>

#include <sys/ioctl.h>

#include <linux/audit.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>

namespace keel::host::isolation {
namespace {

#if defined(__x86_64__)
constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
constexpr unsigned kArch = 0;  // unknown: no filter (reported)
#endif

// Refused with EPERM. Calls an architecture lacks are left out by the #ifdefs.
constexpr std::array kDenied{
#ifdef __NR_ptrace
    __NR_ptrace,
#endif
    __NR_process_vm_readv, __NR_process_vm_writev,
#ifdef __NR_mount
    __NR_mount,
#endif
    __NR_umount2, __NR_pivot_root, __NR_chroot, __NR_unshare, __NR_setns,
#ifdef __NR_open_tree
    __NR_open_tree, __NR_move_mount, __NR_fsopen, __NR_fsconfig, __NR_fsmount, __NR_fspick,
#endif
#ifdef __NR_mount_setattr
    __NR_mount_setattr,
#endif
    __NR_kexec_load,
#ifdef __NR_kexec_file_load
    __NR_kexec_file_load,
#endif
    __NR_bpf, __NR_perf_event_open, __NR_keyctl, __NR_add_key, __NR_request_key, __NR_init_module,
    __NR_finit_module, __NR_delete_module, __NR_reboot, __NR_swapon, __NR_swapoff, __NR_userfaultfd,
    __NR_open_by_handle_at, __NR_name_to_handle_at, __NR_acct, __NR_quotactl,
#ifdef __NR_iopl
    __NR_iopl, __NR_ioperm,
#endif
#ifdef __NR_io_uring_setup
    __NR_io_uring_setup, __NR_io_uring_enter, __NR_io_uring_register,
#endif
#ifdef __NR_lookup_dcookie
    __NR_lookup_dcookie,
#endif
#ifdef __NR_vhangup
    __NR_vhangup,
#endif
#ifdef __NR_fanotify_init
    __NR_fanotify_init,
#endif
    // Another process's descriptors or memory layout, and leftovers of old kernels' surfaces.
    __NR_kcmp,
#ifdef __NR_pidfd_getfd
    __NR_pidfd_getfd,
#endif
#ifdef __NR_process_madvise
    __NR_process_madvise,
#endif
#ifdef __NR_modify_ldt
    __NR_modify_ldt,
#endif
#ifdef __NR_uselib
    __NR_uselib,
#endif
#ifdef __NR_quotactl_fd
    __NR_quotactl_fd,
#endif
};

// ioctl requests refused whatever the descriptor: typing into a terminal (TIOCSTI) and the
// console's own requests (TIOCLINUX), should a terminal ever be reachable.
constexpr std::array kDeniedIoctls{static_cast<unsigned>(TIOCSTI), static_cast<unsigned>(TIOCLINUX)};

constexpr unsigned kNamespaceFlags = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
                                     CLONE_NEWNET | CLONE_NEWCGROUP
#ifdef CLONE_NEWTIME
                                     | CLONE_NEWTIME
#endif
    ;

constexpr sock_filter stmt(unsigned short code, unsigned k) { return sock_filter{code, 0, 0, k}; }
constexpr sock_filter jump(unsigned short code, unsigned k, unsigned char jt, unsigned char jf) {
  return sock_filter{code, jt, jf, k};
}

constexpr unsigned kNr = offsetof(seccomp_data, nr);
constexpr unsigned kArchOffset = offsetof(seccomp_data, arch);
constexpr unsigned kArg0 = offsetof(seccomp_data, args);  // the low 32 bits on little-endian
constexpr unsigned kArg1 = kArg0 + sizeof(std::uint64_t);

SeccompFilter build() {
  SeccompFilter f;
  if (kArch == 0) return f;
  auto& p = f.program;
  const unsigned eperm = SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA);
  // Another architecture's calls (i386 through int 0x80 on x86-64): refused.
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArchOffset));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0));
  p.push_back(stmt(BPF_RET | BPF_K, eperm));
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kNr));
#if defined(__x86_64__)
  // x32 calls (the same architecture, numbers with bit 30 set): refused.
  p.push_back(jump(BPF_JMP | BPF_JGE | BPF_K, 0x40000000U, 0, 1));
  p.push_back(stmt(BPF_RET | BPF_K, eperm));
#endif
  for (const auto nr : kDenied) {
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, static_cast<unsigned>(nr), 0, 1));
    p.push_back(stmt(BPF_RET | BPF_K, eperm));
  }
  f.denied = kDenied.size() + 1;  // and clone3 below
#ifdef __NR_clone3
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone3, 0, 1));
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (ENOSYS & SECCOMP_RET_DATA)));
#endif
  // clone with a namespace flag (its first argument on x86-64 and arm64).
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_clone, 0, 4));
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
  p.push_back(jump(BPF_JMP | BPF_JSET | BPF_K, kNamespaceFlags, 0, 1));
  p.push_back(stmt(BPF_RET | BPF_K, eperm));
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  // personality(): only the query (0xffffffff) and the default (PER_LINUX, 0).
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_personality, 0, 5));
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArg0));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffU, 2, 0));
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, 0, 1, 0));
  p.push_back(stmt(BPF_RET | BPF_K, eperm));
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  // ioctl with a refused request (its second argument; the low 32 bits, as the kernel compares).
  p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, __NR_ioctl, 0, static_cast<unsigned char>(3 + kDeniedIoctls.size())));
  p.push_back(stmt(BPF_LD | BPF_W | BPF_ABS, kArg1));
  for (std::size_t i = 0; i < kDeniedIoctls.size(); ++i)
    p.push_back(jump(BPF_JMP | BPF_JEQ | BPF_K, kDeniedIoctls[i], static_cast<unsigned char>(kDeniedIoctls.size() - i), 0));
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  p.push_back(stmt(BPF_RET | BPF_K, eperm));
  p.push_back(stmt(BPF_RET | BPF_K, SECCOMP_RET_ALLOW));
  f.denied += 3;  // clone with namespace flags, personality changes, ioctl TIOCSTI/TIOCLINUX
  return f;
}

}  // namespace

std::string SeccompFilter::describe() const {
  if (program.empty()) return "seccomp not applied: no filter for this architecture";
  return "seccomp=" + std::to_string(denied) + " system calls refused (EPERM), other ABIs refused";
}

const SeccompFilter& runner_seccomp_filter() {
  static const SeccompFilter filter = build();
  return filter;
}

bool install_seccomp(const SeccompFilter& f) noexcept {
  // No set-user-id program gives a runner privileges back, with or without a filter.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  if (f.program.empty()) return true;
  sock_fprog prog{static_cast<unsigned short>(f.program.size()), const_cast<sock_filter*>(f.program.data())};
  return ::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

}  // namespace keel::host::isolation
