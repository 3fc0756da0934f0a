#include "common/block_pool.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

using keel::host::BlockPool;

TEST_CASE("block pool: blocks are distinct, aligned, and come back after give", "[block_pool]") {
  BlockPool pool(40, 1000);
  CHECK(pool.block_size() == 48);  // rounded up to max_align_t
  CHECK(pool.capacity() == 0);     // nothing allocated before the first take
  std::set<void*> seen;
  std::vector<BlockPool::Block> held;
  for (int i = 0; i < 300; ++i) {
    const auto b = pool.take();
    REQUIRE(b.data != nullptr);
    CHECK(reinterpret_cast<std::uintptr_t>(b.data) % alignof(std::max_align_t) == 0);
    CHECK(seen.insert(b.data).second);
    std::memset(b.data, 0xab, pool.block_size());  // the whole block is the caller's
    held.push_back(b);
  }
  CHECK(pool.capacity() == 2 * BlockPool::kSlabBlocks);
  for (const auto& b : held) pool.give(b.index);
  // Given back, blocks are taken again rather than new slabs made.
  for (int i = 0; i < 300; ++i) CHECK(seen.count(pool.take().data) == 1);
  CHECK(pool.capacity() == 2 * BlockPool::kSlabBlocks);
}

TEST_CASE("block pool: at its bound take() returns nothing until a block is given back", "[block_pool]") {
  BlockPool pool(64, 1);  // rounded up to one slab
  std::vector<BlockPool::Block> held;
  for (std::uint32_t i = 0; i < BlockPool::kSlabBlocks; ++i) {
    held.push_back(pool.take());
    REQUIRE(held.back().data != nullptr);
  }
  CHECK(pool.take().data == nullptr);
  pool.give(held[7].index);
  const auto again = pool.take();
  CHECK(again.data == held[7].data);
  CHECK(again.index == held[7].index);
  CHECK(pool.take().data == nullptr);
}

TEST_CASE("block pool: threads taking and giving never share a block", "[block_pool]") {
  constexpr int kThreads = 4;
  constexpr int kRounds = 20000;
  BlockPool pool(64, 2 * BlockPool::kSlabBlocks);
  std::vector<std::thread> threads;
  std::vector<int> errors(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&pool, &errors, t] {
      std::vector<BlockPool::Block> mine;
      for (int r = 0; r < kRounds; ++r) {
        // Hold a few blocks at a time, stamped with this thread's mark, and check the stamp is
        // intact when giving them back: a block handed to two threads at once would be overwritten.
        const auto b = pool.take();
        if (b.data != nullptr) {
          std::memset(b.data, t + 1, pool.block_size());
          mine.push_back(b);
        }
        if (mine.size() > static_cast<std::size_t>(r % 7) || b.data == nullptr) {
          for (const auto& m : mine) {
            const auto* bytes = static_cast<const unsigned char*>(m.data);
            for (std::size_t i = 0; i < pool.block_size(); ++i)
              if (bytes[i] != t + 1) ++errors[static_cast<std::size_t>(t)];
            pool.give(m.index);
          }
          mine.clear();
        }
      }
      for (const auto& m : mine) pool.give(m.index);
    });
  }
  for (auto& th : threads) th.join();
  for (const int e : errors) CHECK(e == 0);
  CHECK(pool.capacity() <= 2 * BlockPool::kSlabBlocks);
}

TEST_CASE("block pool: blocks taken on one thread and given back on another stay whole", "[block_pool]") {
  // The event pattern: the publisher takes, the last subscriber gives back.
  constexpr std::uint32_t kBound = 2 * BlockPool::kSlabBlocks;
  BlockPool pool(64, kBound);
  std::mutex mutex;
  std::deque<BlockPool::Block> passing;
  std::atomic<bool> done{false};
  int wrong = 0;
  std::thread consumer([&] {
    for (;;) {
      BlockPool::Block b;
      {
        std::lock_guard lock(mutex);
        if (!passing.empty()) {
          b = passing.front();
          passing.pop_front();
        } else if (done.load()) {
          return;
        }
      }
      if (b.data == nullptr) {
        std::this_thread::yield();
        continue;
      }
      const auto* bytes = static_cast<const unsigned char*>(b.data);
      for (std::size_t i = 0; i < pool.block_size(); ++i)
        if (bytes[i] != static_cast<unsigned char>(b.index)) ++wrong;
      pool.give(b.index);
    }
  });
  for (int i = 0; i < 50000;) {
    const auto b = pool.take();
    if (b.data == nullptr) {
      std::this_thread::yield();  // every block is in flight: wait for the consumer
      continue;
    }
    std::memset(b.data, static_cast<unsigned char>(b.index), pool.block_size());
    std::lock_guard lock(mutex);
    passing.push_back(b);
    ++i;
  }
  done = true;
  consumer.join();
  CHECK(wrong == 0);
  // Every block is free again, once: the bound's worth can be taken, each block once.
  std::set<void*> all;
  for (auto b = pool.take(); b.data != nullptr; b = pool.take()) CHECK(all.insert(b.data).second);
  CHECK(all.size() == kBound);
}
