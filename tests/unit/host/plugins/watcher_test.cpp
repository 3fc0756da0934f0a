#include <atomic>
#include <chrono>
#include <fstream>
#include <thread>

#include <catch2/catch.hpp>

#include "plugins/watcher.hpp"
#include "temp_dir.hpp"

using keel::host::plugins::DirectoryWatcher;
using keel::host::plugins::WatchOptions;
using namespace std::chrono_literals;

namespace {

bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds limit = 5s) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

}  // namespace

TEST_CASE("the directory watcher reports .so changes once they are quiet", "[watcher]") {
  for (const bool polling : {false, true}) {
    INFO((polling ? "polling" : "inotify"));
    const keel::test::TempDir dir;
    std::atomic<int> calls{0};
    std::atomic<std::chrono::steady_clock::rep> last_call{0};
    // The debounce is ten times the gap between the writes below, so a loaded machine does not
    // turn the gap into a quiet period.
    DirectoryWatcher w(WatchOptions{dir.path(), 600ms, polling ? 100ms : 2000ms, polling}, [&] {
      ++calls;
      last_call = std::chrono::steady_clock::now().time_since_epoch().count();
    });
    const auto how = w.start();
    CHECK(how.find(polling ? "polling" : "inotify") != std::string::npos);

    // A file written in pieces: reported after the last piece, not per piece.
    {
      std::ofstream out(dir.path() / "a.so", std::ios::binary);
      for (int i = 0; i < 3; ++i) {
        out << "chunk" << i << std::flush;
        std::this_thread::sleep_for(60ms);
      }
    }
    const auto last_write = std::chrono::steady_clock::now().time_since_epoch().count();
    REQUIRE(wait_until([&] { return calls.load() >= 1; }));
    CHECK(last_call.load() >= last_write);
    std::this_thread::sleep_for(900ms);
    CHECK(calls.load() == 1);

    // Other files do not count; removing a .so does.
    dir.write("notes.txt", "x");
    std::this_thread::sleep_for(900ms);
    CHECK(calls.load() == 1);
    std::filesystem::remove(dir.path() / "a.so");
    CHECK(wait_until([&] { return calls.load() == 2; }));
    w.stop();
  }
}
