#pragma once
// keel-plugin-runner's core (docs/isolation.md): one plugin, loaded from the code on fd 4,
// served over the host's socket on fd 3. Threads: the Connection's reader takes frames off the
// socket, answers ping itself and runs the requests of routes that do not block (as the host
// runs them on an I/O thread in process); the main thread (run()) loads the plugin on hello and
// runs the [init-only] hooks create/start/stop/destroy in order; a WorkerPool runs the other
// requests, events, health and call completions. The public members below are what the keel_host_api and
// keel_storage_api tables use, from any thread.

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include <keel/plugin.h>

#include "common/worker_pool.hpp"
#include "isolation/connection.hpp"
#include "isolation/wire.hpp"

namespace keel::host::runner {
class Runner;
}

/// The runner's only keel_host_ctx: what every host function receives back from the plugin.
struct keel_host_ctx {
  keel::host::runner::Runner* runner = nullptr;
};

namespace keel::host::runner {

class Runner {
 public:
  /// Takes ownership of the connected socket `socket_fd` and of `code_fd` (the plugin's code).
  Runner(std::string plugin_name, int socket_fd, int code_fd);
  Runner(const Runner&) = delete;
  Runner& operator=(const Runner&) = delete;

  /// Serves the connection until the host closes it; returns the exit status (0 after a
  /// successful hello, 1 when the plugin was never loaded). The caller then _exit()s: plugin
  /// threads may still run, so nothing is torn down.
  int run();

  /// The answer to a runner -> host request: the reply frame, or why there is none.
  struct Answer {
    std::optional<isolation::Frame> frame;
    keel_status failure = KEEL_OK;  ///< when !frame: UNAVAILABLE (closed), BUSY (send queue full), TOO_LARGE
  };

  /// The log level the host last announced (hello, log_level frames).
  [[nodiscard]] keel_log_level log_level() const noexcept { return log_level_.load(std::memory_order_relaxed); }
  /// Sends a frame that has no reply: KEEL_OK when queued, KEEL_ERR_TOO_LARGE over the host's
  /// limit for its kind, KEEL_ERR_UNAVAILABLE when the connection is closed, KEEL_ERR_BUSY when
  /// the send queue is full.
  keel_status tell(isolation::Kind kind, std::string_view payload) noexcept;
  /// tell() for frames whose failure nobody needs to know (log lines). False when not queued.
  bool notify(isolation::Kind kind, std::string_view payload) noexcept { return tell(kind, payload) == KEEL_OK; }
  /// What the host takes from this runner (from hello; hooks run only after it).
  [[nodiscard]] const isolation::FrameLimits& limits() const noexcept { return limits_; }
  /// Sends a request and waits for the reply; the host always answers or the connection closes.
  Answer ask(isolation::Kind kind, std::string_view payload) noexcept;
  /// ask() for the requests whose reply is a lone status:i32.
  keel_status ask_status(isolation::Kind kind, std::string_view payload) noexcept;
  /// keel_host_api.call after the argument checks: registers the completion, sends `call`.
  keel_status start_call(const keel_call_args& args, keel_call_callback on_complete, void* user_data) noexcept;
  /// Writes one line to the plugin's host logger on behalf of the runner itself.
  void log_line(keel_log_level level, std::string_view text) noexcept;

 private:
  enum class State { kWaitingHello, kFailed, kLoaded, kCreated, kDestroying, kDestroyed };

  /// A completion waiting for its call_done, with the context call() ran in.
  struct PendingCall {
    keel_call_callback callback = nullptr;
    void* user_data = nullptr;
    std::string request_id, traceparent;
    std::int64_t deadline_mono_ns = 0;
  };

  // Reader thread.
  void on_frame(isolation::Frame frame) noexcept;
  void on_closed(const std::string& why) noexcept;
  void enqueue_control(isolation::Frame frame);
  void dispatch_hook(isolation::Frame frame);
  [[nodiscard]] bool runs_here(const isolation::Frame& frame) const;
  void dispatch_call_done(isolation::Frame frame);

  // Main thread.
  void handle_control(const isolation::Frame& frame);
  void handle_hello(const isolation::Frame& frame);
  std::string load_plugin(std::string_view manifest, std::uint32_t& plugin_abi);
  void handle_lifecycle(const isolation::Frame& frame);
  void handle_destroy(const isolation::Frame& frame);
  void drain_for_destroy();
  void shut_down();

  // Worker threads.
  void run_request(const isolation::Frame& frame, std::int64_t received_ns);
  void run_event(const isolation::Frame& frame, std::int64_t received_ns);
  void run_health(const isolation::Frame& frame, std::int64_t received_ns);
  void run_completion(const PendingCall& call, const isolation::Frame* frame, keel_status local_result,
                      std::int64_t received_ns) noexcept;

  // Any thread.
  [[nodiscard]] bool hooks_open() const noexcept;
  void reply_status(std::uint64_t id, keel_status status) noexcept;
  void refuse(isolation::Kind kind, std::uint64_t id, keel_status status, std::string_view why) noexcept;
  template <class F>
  bool post_tracked(SerialQueue* queue, F&& job);
  void begin_job();
  void finish_job() noexcept;
  bool take_call(std::uint64_t id, PendingCall& out);
  void post_completion(PendingCall call, std::optional<isolation::Frame> frame, keel_status local_result,
                       std::int64_t received_ns);
  void fail_pending_calls(keel_status result);

  const std::string name_;
  int code_fd_;
  keel_host_ctx ctx_{this};

  std::atomic<State> state_{State::kWaitingHello};
  std::atomic<bool> closing_{false};  // the connection is gone: no hook is started any more
  std::atomic<bool> loaded_{false};   // a hello succeeded (the exit status is 0)
  std::atomic<keel_log_level> log_level_{KEEL_LOG_INFO};
  bool hello_seen_ = false;  // reader thread only: the first hello's level counts, not a refused second one
  // Written by the main thread before state_ leaves kWaitingHello / reaches kCreated (release),
  // read by workers after they saw that state (acquire).
  const keel_plugin* table_ = nullptr;
  void* self_ = nullptr;
  std::unique_ptr<WorkerPool> pool_;
  std::shared_ptr<SerialQueue> events_;  // events one at a time, in arrival order (plugin.h on_event)
  std::shared_ptr<SerialQueue> health_;  // never two health calls at once (plugin.h health)

  // The main thread's mailbox: hello and the lifecycle hooks, in arrival order.
  std::mutex control_mutex_;
  std::condition_variable control_cv_;
  std::deque<isolation::Frame> control_;
  bool closed_ = false;

  // Worker jobs posted and not finished (hooks, completions), so destroy can wait for them.
  std::mutex jobs_mutex_;
  std::condition_variable jobs_cv_;
  std::size_t jobs_ = 0;

  // Completions of the plugin's calls, by the call id sent to the host. Also guards the moves of
  // state_ to kDestroying and of closing_ to true, so no call registers after the final sweep.
  std::mutex calls_mutex_;
  std::unordered_map<std::uint64_t, PendingCall> calls_;
  std::uint64_t next_call_ = 0;

  // What the host takes from this runner per frame kind (from hello; read by any thread after it).
  isolation::FrameLimits limits_;
  isolation::Connection conn_;  // last: its threads call into everything above
};

}  // namespace keel::host::runner
