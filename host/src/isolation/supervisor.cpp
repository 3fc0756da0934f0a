// Runner::Impl's supervision (runner_impl.hpp): the supervisor thread pings the process, reaps
// it when it ends, counts crashes, restarts it with exponential backoff or quarantines the
// plugin, and rolls back what a crashed process left open.
#include <cerrno>
#include <csignal>
#include <cstring>

#include <poll.h>
#include <sys/wait.h>

#include "abi/status.hpp"
#include "isolation/runner_impl.hpp"

namespace keel::host::isolation {
namespace {

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

}  // namespace

void Runner::Impl::supervise() {
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

void Runner::Impl::ping(const std::shared_ptr<Instance>& inst) {
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

void Runner::Impl::reap(const std::shared_ptr<Instance>& inst, std::optional<int> known_status) {
  int status = known_status.value_or(0);
  if (!known_status) ::waitpid(inst->pid, &status, 0);
  inst->gone.store(true);
  inst->reaped.store(true);
  end_init(*inst);
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

void Runner::Impl::crashed_locked(std::unique_lock<std::mutex>& lock, const std::string& why) {
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

void Runner::Impl::restart() {
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

void Runner::Impl::rollback_open_transactions(Instance& inst) {
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

}  // namespace keel::host::isolation
