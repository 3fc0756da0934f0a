#include "common/worker_pool.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <vector>

using keel::host::SerialQueue;
using keel::host::WorkerPool;

TEST_CASE("serial queue: with the pool full a post queues nothing, and later posts run only their own jobs",
          "[worker_pool]") {
  WorkerPool pool(1, 1);
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::promise<void> busy;
  REQUIRE(pool.post([&busy, released] {
    busy.set_value();
    released.wait();
  }));
  busy.get_future().wait();              // the only worker is held
  REQUIRE(pool.post([] {}));              // and the pool's queue is full
  auto queue = std::make_shared<SerialQueue>(pool, 16);
  std::atomic<int> refused_ran{0}, ran{0};
  CHECK_FALSE(queue->post([&] { ++refused_ran; }));  // refused: not queued, not stranded
  release.set_value();
  for (int i = 0; i < 10000 && pool.queued() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::promise<void> done;
  REQUIRE(queue->post([&] { ++ran; }));
  REQUIRE(queue->post([&] {
    ++ran;
    done.set_value();
  }));
  CHECK(done.get_future().wait_for(std::chrono::seconds(10)) == std::future_status::ready);
  pool.stop();
  CHECK(ran == 2);
  CHECK(refused_ran == 0);
}

TEST_CASE("serial queue: jobs posted from many threads all run, one at a time, none lost", "[worker_pool]") {
  WorkerPool pool(3, 100000);
  auto queue = std::make_shared<SerialQueue>(pool, 100000);
  std::atomic<int> ran{0}, inside{0}, overlaps{0};
  std::vector<std::thread> posters;
  std::atomic<int> accepted{0};
  for (int t = 0; t < 4; ++t) {
    posters.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) {
        if (queue->post([&] {
              if (inside.fetch_add(1) != 0) ++overlaps;
              ++ran;
              inside.fetch_sub(1);
            }))
          ++accepted;
      }
    });
  }
  for (auto& p : posters) p.join();
  pool.stop();  // runs every queued job
  CHECK(overlaps == 0);
  CHECK(ran == accepted);
  CHECK(accepted == 8000);
}
