// isolation::seccomp (host/src/isolation/seccomp.*): the runner's filter, installed in a forked
// child of this test, which tries each kind of call and reports through its exit status. The
// parent only reads that status: Catch2 never runs in the child.

#include "isolation/seccomp.hpp"

#include <cerrno>
#include <cstdint>

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/personality.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using keel::host::isolation::install_seccomp;
using keel::host::isolation::runner_seccomp_filter;

namespace {

/// Runs `probe` in a child under the filter: its exit status (0 = what was expected), or -1.
template <class Probe>
int under_filter(Probe probe) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (!install_seccomp(runner_seccomp_filter())) ::_exit(100);
    ::_exit(probe());
  }
  int status = 0;
  if (pid < 0 || ::waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

/// 0 when the call failed with `expected`, 1 when it succeeded, 2 when it failed otherwise.
int refused(long result, int expected) {
  if (result != -1) return 1;
  return errno == expected ? 0 : 2;
}

}  // namespace

TEST_CASE("seccomp: the runner's filter refuses what reaches beyond it, with EPERM, and allows the rest",
          "[isolation][seccomp]") {
  if (runner_seccomp_filter().program.empty()) {
    WARN("KEEL_SKIP: no seccomp filter for this architecture");
    return;
  }
  CHECK(under_filter([] { return refused(::syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0), EPERM); }) == 0);
  CHECK(under_filter([] { return refused(::syscall(SYS_kcmp, ::getpid(), ::getppid(), 0, 0, 0), EPERM); }) == 0);
  CHECK(under_filter([] { return refused(::unshare(CLONE_NEWNS), EPERM); }) == 0);
  CHECK(under_filter([] { return refused(::personality(ADDR_NO_RANDOMIZE), EPERM); }) == 0);
#ifdef SYS_clone3
  CHECK(under_filter([] { return refused(::syscall(SYS_clone3, nullptr, 0), ENOSYS); }) == 0);
#endif
  // Typing into a terminal is refused whatever the descriptor; other ioctls go through (the
  // kernel answers ENOTTY for a pipe).
  CHECK(under_filter([] {
          char c = 'x';
          return refused(::ioctl(STDIN_FILENO, TIOCSTI, &c), EPERM);
        }) == 0);
  CHECK(under_filter([] {
          int fds[2];
          if (::pipe(fds) != 0) return 3;
          winsize ws{};
          return refused(::ioctl(fds[0], TIOCGWINSZ, &ws), ENOTTY);
        }) == 0);
  // Ordinary calls work: a file, a query of the personality, a process of its own.
  CHECK(under_filter([] {
          const int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
          if (fd < 0) return 1;
          ::close(fd);
          if (::personality(0xffffffff) == -1) return 2;
          const pid_t child = ::fork();
          if (child == 0) ::_exit(0);
          int status = 0;
          return child > 0 && ::waitpid(child, &status, 0) == child && WIFEXITED(status) ? 0 : 3;
        }) == 0);
}
