#pragma once
// BlockPool: fixed-size memory blocks handed out and taken back from any thread without a lock
// and without the allocator, for objects made on one thread and freed on another at a high rate
// (an event is made by its publisher and freed by its last subscriber).
//
// The free blocks form a stack (Treiber's): take() and give() are one compare-and-swap each on a
// word that holds the top block's index and a change count, so a block taken and given back
// between another thread's read and its swap cannot be mistaken for the one it read (ABA); that
// word only ever changes by compare-and-swap. The links live beside the blocks, never inside
// them, so a block's user and the stack never touch the same bytes. Under AddressSanitizer free
// blocks are poisoned, so use after give() and a second give() are reported.
//
// Blocks come from slabs allocated as needed and kept for the pool's life: memory use is bounded
// by `max_blocks` blocks of `block_size` bytes, and take() returns nothing once they are all in
// use (the caller then allocates elsewhere). Blocks are aligned like operator new's.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>

namespace keel::host {

class BlockPool {
 public:
  /// A block and its index (what give() takes back).
  struct Block {
    void* data = nullptr;  ///< null: the pool is exhausted
    std::uint32_t index = 0;
  };

  /// `block_size` is rounded up to the alignment of std::max_align_t; `max_blocks` is capped at
  /// kMaxBlocks and rounded up to whole slabs of `kSlabBlocks`.
  BlockPool(std::size_t block_size, std::uint32_t max_blocks);
  ~BlockPool();
  BlockPool(const BlockPool&) = delete;
  BlockPool& operator=(const BlockPool&) = delete;

  /// A free block, or {nullptr, 0} when every block the bound allows is in use. Any thread.
  [[nodiscard]] Block take() noexcept;
  /// Returns block `index` (from take(), not given back since). Any thread.
  void give(std::uint32_t index) noexcept;

  [[nodiscard]] std::size_t block_size() const noexcept { return block_size_; }
  /// Blocks allocated so far (in use or free).
  [[nodiscard]] std::uint32_t capacity() const noexcept { return slab_count_.load(std::memory_order_acquire) * kSlabBlocks; }

  static constexpr std::uint32_t kSlabBlocks = 256;
  static constexpr std::uint32_t kMaxBlocks = (1U << 24) - kSlabBlocks;  // indices are 24 bits

 private:
  struct Slab;
  static constexpr std::uint32_t kEmpty = (1U << 24) - 1;  // the index of no block: the stack's end

  [[nodiscard]] std::byte* address(std::uint32_t index) const noexcept;
  std::atomic<std::uint32_t>& link(std::uint32_t index) const noexcept;
  std::uint32_t pop() noexcept;  // the top free block's index, or kEmpty
  // Pushes the chain first..last (already linked from first to last) in one swap.
  void push(std::uint32_t first, std::uint32_t last) noexcept;
  Block grow() noexcept;  // a new slab: one block for the caller, the rest on the stack

  std::size_t block_size_;
  std::uint32_t max_slabs_;
  std::unique_ptr<std::atomic<Slab*>[]> slabs_;
  std::atomic<std::uint32_t> slab_count_{0};
  std::atomic<std::uint64_t> top_;  // (change count << 32) | index of the top free block
  std::mutex grow_mutex_;
};

}  // namespace keel::host
