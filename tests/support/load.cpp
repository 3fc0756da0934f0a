#include "load.hpp"

#include <exception>
#include <optional>

namespace keel::test {

WriteLoop::WriteLoop(std::uint16_t port, std::string path, int threads, std::function<std::string(int, int)> make_body,
                     std::function<void(const std::string&, const RawResponse&)> on_answer, int max_per_thread) {
  for (int t = 0; t < threads; ++t) {
    threads_.emplace_back([this, port, path, t, make_body, on_answer, max_per_thread] {
      for (int i = 0; i < max_per_thread && !stop_; ++i) {
        const auto body = make_body(t, i);
        std::optional<RawResponse> r;
        try {
          r = simple_request(port, "POST", path, body);
        } catch (const std::exception&) {  // connection refused: the host is gone
          break;
        }
        if (!r) break;  // the host is gone
        on_answer(body, *r);
      }
    });
  }
}

WriteLoop::~WriteLoop() { stop(); }

void WriteLoop::stop() {
  stop_ = true;
  for (auto& t : threads_)
    if (t.joinable()) t.join();
}

}  // namespace keel::test
