// The public Runner (runner.hpp) over Runner::Impl (runner_impl.hpp): starting the supervisor
// and the first process, shutting down, status and log level.
#include "isolation/runner.hpp"

#include <cerrno>
#include <cstring>

#include <fcntl.h>
#include <sys/eventfd.h>

#include "isolation/runner_impl.hpp"

namespace keel::host::isolation {
namespace {

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
    {
      std::lock_guard lock(s.mutex);
      s.current = std::move(inst);
      s.state = State::kRunning;
    }
    // The supervisor may have gone back to its poll before `current` was set: wake it, so it
    // watches this process's exit now rather than after a ping interval.
    s.wake();
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
  s.fill_table();
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
