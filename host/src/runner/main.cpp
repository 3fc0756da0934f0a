// keel-plugin-runner <plugin-name>: runs one plugin with isolation = "process" in a process of
// its own (docs/isolation.md). The host starts it with the connected socket on fd 3 and the
// plugin's code (a memfd copy) on fd 4; everything else arrives as frames.
#include <csignal>
#include <cstdio>
#include <exception>

#include <fcntl.h>
#include <unistd.h>

#include "runner/serve_plugin.hpp"

namespace {

constexpr int kSocketFd = 3;
constexpr int kCodeFd = 4;

// Signal state is inherited across exec, and the host blocks its shutdown signals in every
// thread: start from a clean mask. SIGINT and SIGHUP from a terminal reach the whole process
// group, but the host decides when a plugin stops (it closes the socket), so they are ignored;
// SIGTERM keeps its default so the host or an operator can still end the runner.
void set_up_signals() {
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  std::signal(SIGINT, SIG_IGN);
  std::signal(SIGHUP, SIG_IGN);
  std::signal(SIGPIPE, SIG_IGN);  // a plugin writing to a closed pipe gets EPIPE, as in the host
}

bool usable(int fd) {
  // Close-on-exec: a program the plugin starts must not hold the host's socket open.
  const int flags = ::fcntl(fd, F_GETFD);
  return flags >= 0 && ::fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2 || argv[1][0] == '\0') {
    std::fprintf(stderr, "usage: keel-plugin-runner <plugin-name>  (socket on fd 3, plugin code on fd 4)\n");
    return 2;
  }
  if (!usable(kSocketFd) || !usable(kCodeFd)) {
    std::fprintf(stderr, "keel-plugin-runner %s: fd 3 (socket) and fd 4 (plugin code) must be open\n", argv[1]);
    return 2;
  }
  set_up_signals();
  int code = 1;
  try {
    // Never destroyed: plugin threads may still run when the process leaves, so it leaves with
    // _exit and no destructor (or the plugin's static destructors) races them.
    auto* runner = new keel::host::runner::Runner(argv[1], kSocketFd, kCodeFd);
    code = runner->run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel-plugin-runner %s: %s\n", argv[1], e.what());
  }
  std::fflush(nullptr);
  ::_exit(code);
}
