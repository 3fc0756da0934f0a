#pragma once
// Work a thread puts off until it has run what is ready now. An I/O thread's event loop sets a
// poster for itself (http/server.cpp), so that what it sends a plugin runner while it serves a
// burst of ready connections leaves in one write after the burst (isolation::Connection),
// instead of one system call and one wake-up of the runner per request. Header-only: the
// runner's socket code uses it too (and finds no poster there).

#include <functional>

namespace keel::host {

/// Runs a job on the thread that set it, after the work that thread has ready now.
using ThreadPoster = std::function<void(std::function<void()>)>;

/// The calling thread's poster, or nullptr. A thread sets it to one it owns for as long as it
/// runs its loop, and back to nullptr before that poster ends.
[[nodiscard]] inline const ThreadPoster*& thread_poster() noexcept {
  thread_local const ThreadPoster* poster = nullptr;
  return poster;
}

}  // namespace keel::host
