#pragma once
// Polling for something a running host does asynchronously (an event delivered, a log line
// written), bounded so every test stops by itself.

#include <chrono>
#include <functional>
#include <thread>

namespace keel::test {

/// Calls `done` every 20 ms until it returns true (then true) or `limit` passes (then false).
inline bool eventually(const std::function<bool()>& done, std::chrono::milliseconds limit = std::chrono::seconds(10)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return true;
}

}  // namespace keel::test
