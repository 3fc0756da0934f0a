#include "common/block_pool.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define KEEL_POOL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEEL_POOL_ASAN 1
#endif
#endif
#ifdef KEEL_POOL_ASAN
#include <sanitizer/asan_interface.h>
#endif

namespace keel::host {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "the free stack needs a lock-free 64-bit word");

// A slab: the links of its blocks, then the blocks. One allocation, never moved; aligned to a
// cache line, so a block of 256 bytes spans four lines, not five.
struct alignas(64) BlockPool::Slab {
  std::array<std::atomic<std::uint32_t>, kSlabBlocks> next;
};

namespace {
constexpr std::size_t round_up(std::size_t n, std::size_t to) { return (n + to - 1) / to * to; }
// The top word: the index in the low 24 bits, a count of changes in the other 40, so a thread
// would have to stall across 2^40 changes (days at millions per second) to see the same word.
constexpr std::uint64_t kIndexMask = (std::uint64_t{1} << 24) - 1;
constexpr std::uint32_t index_of(std::uint64_t top) { return static_cast<std::uint32_t>(top & kIndexMask); }
constexpr std::uint64_t top_word(std::uint64_t previous, std::uint32_t index) {
  return ((previous >> 24) + 1) << 24 | index;  // a new change count with every swap
}

// Under AddressSanitizer a free block is poisoned, so a record used after its last release, or
// released twice, is reported as it would be with the allocator.
void mark_free([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) noexcept {
#ifdef KEEL_POOL_ASAN
  if (__asan_address_is_poisoned(block)) {
    std::fprintf(stderr, "BlockPool: block %p given back twice\n", block);
    std::abort();
  }
  ASAN_POISON_MEMORY_REGION(block, size);
#endif
}
void mark_taken([[maybe_unused]] void* block, [[maybe_unused]] std::size_t size) noexcept {
#ifdef KEEL_POOL_ASAN
  ASAN_UNPOISON_MEMORY_REGION(block, size);
#endif
}
}  // namespace

BlockPool::BlockPool(std::size_t block_size, std::uint32_t max_blocks)
    : block_size_{round_up(block_size == 0 ? 1 : block_size, alignof(std::max_align_t))},
      max_slabs_{static_cast<std::uint32_t>(round_up(std::min(max_blocks, kMaxBlocks), kSlabBlocks) / kSlabBlocks)},
      slabs_{new std::atomic<Slab*>[max_slabs_ == 0 ? 1 : max_slabs_]},
      top_{kEmpty} {
  for (std::uint32_t i = 0; i < max_slabs_; ++i) slabs_[i].store(nullptr, std::memory_order_relaxed);
}

BlockPool::~BlockPool() {
  for (std::uint32_t i = 0; i < slab_count_.load(std::memory_order_acquire); ++i) {
    Slab* slab = slabs_[i].load(std::memory_order_relaxed);
    slab->~Slab();
    ::operator delete(slab, std::align_val_t{alignof(Slab)});
  }
}

std::byte* BlockPool::address(std::uint32_t index) const noexcept {
  Slab* slab = slabs_[index / kSlabBlocks].load(std::memory_order_acquire);
  return reinterpret_cast<std::byte*>(slab + 1) + std::size_t{index % kSlabBlocks} * block_size_;
}

std::atomic<std::uint32_t>& BlockPool::link(std::uint32_t index) const noexcept {
  return slabs_[index / kSlabBlocks].load(std::memory_order_acquire)->next[index % kSlabBlocks];
}

std::uint32_t BlockPool::pop() noexcept {
  std::uint64_t top = top_.load(std::memory_order_acquire);
  for (;;) {
    const std::uint32_t index = index_of(top);
    if (index == kEmpty) return kEmpty;
    // `index` may be taken by another thread after this read, and its link changed: then the
    // change count in top_ differs and the swap fails, so a stale link is never installed.
    const std::uint32_t next = link(index).load(std::memory_order_relaxed);
    if (top_.compare_exchange_weak(top, top_word(top, next), std::memory_order_acquire, std::memory_order_acquire))
      return index;
  }
}

BlockPool::Block BlockPool::take() noexcept {
  const std::uint32_t index = pop();
  const Block block = index != kEmpty ? Block{address(index), index} : grow();
  if (block.data != nullptr) mark_taken(block.data, block_size_);
  return block;
}

void BlockPool::give(std::uint32_t index) noexcept {
  mark_free(address(index), block_size_);
  push(index, index);
}

void BlockPool::push(std::uint32_t first, std::uint32_t last) noexcept {
  std::uint64_t top = top_.load(std::memory_order_relaxed);
  do {
    link(last).store(index_of(top), std::memory_order_relaxed);
  } while (!top_.compare_exchange_weak(top, top_word(top, first), std::memory_order_release, std::memory_order_relaxed));
}

BlockPool::Block BlockPool::grow() noexcept {
  if (slab_count_.load(std::memory_order_acquire) == max_slabs_) return {};  // at the bound: no lock
  const std::lock_guard lock(grow_mutex_);
  // Another thread may have grown the pool, or given blocks back, while this one waited.
  if (const std::uint32_t index = pop(); index != kEmpty) return {address(index), index};
  const std::uint32_t k = slab_count_.load(std::memory_order_relaxed);
  if (k == max_slabs_) return {};
  void* memory = ::operator new(sizeof(Slab) + std::size_t{kSlabBlocks} * block_size_, std::align_val_t{alignof(Slab)},
                                std::nothrow);
  if (memory == nullptr) return {};
  Slab* slab = new (memory) Slab;
  const std::uint32_t base = k * kSlabBlocks;
  for (std::uint32_t i = 1; i + 1 < kSlabBlocks; ++i) slab->next[i].store(base + i + 1, std::memory_order_relaxed);
  mark_taken(slab + 1, std::size_t{kSlabBlocks} * block_size_);  // fresh memory may hold a freed one's poison
  for (std::uint32_t i = 1; i < kSlabBlocks; ++i)
    mark_free(reinterpret_cast<std::byte*>(slab + 1) + std::size_t{i} * block_size_, block_size_);
  slabs_[k].store(slab, std::memory_order_release);
  slab_count_.store(k + 1, std::memory_order_release);
  push(base + 1, base + kSlabBlocks - 1);  // the first block is the caller's
  return {address(base), base};
}

}  // namespace keel::host
