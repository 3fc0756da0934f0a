#pragma once
// Background HTTP writers for crash tests: several client threads POST to one path in a loop
// until they are stopped or the host stops answering (e.g. after kill -9). Bounded: each thread
// sends at most max_per_thread requests.

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "raw_client.hpp"

namespace keel::test {

class WriteLoop {
 public:
  /// Starts `threads` writers. Request i of thread t has the body make_body(t, i); every answer
  /// is passed to on_answer(body, response) (called concurrently from the writer threads).
  WriteLoop(std::uint16_t port, std::string path, int threads, std::function<std::string(int, int)> make_body,
            std::function<void(const std::string&, const RawResponse&)> on_answer, int max_per_thread = 100000);
  ~WriteLoop();  ///< stop()
  WriteLoop(const WriteLoop&) = delete;
  WriteLoop& operator=(const WriteLoop&) = delete;
  /// Asks the writers to stop and joins them. Idempotent.
  void stop();

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

}  // namespace keel::test
