#pragma once
// Published<T>: an immutable value replaced as a whole (the route snapshot, the event bus's
// fan-out) and read on hot paths without atomic reference counting. Each thread keeps its own
// reference to the value it last read and reloads it only when a newer one was published.
// publish() and load() are thread-safe; current() and pinned() hand out a reference into the
// calling thread's cache, valid until that thread's next current() on a Published<T> of the
// same T: never hold one across a call that may read the same kind of value again.

#include <atomic>
#include <cstdint>
#include <memory>

namespace keel::host {

template <class T>
class Published {
 public:
  explicit Published(std::shared_ptr<const T> initial) : value_(std::move(initial)) {}
  Published(const Published&) = delete;
  Published& operator=(const Published&) = delete;

  /// Replaces the value; threads see it at their next current().
  void publish(std::shared_ptr<const T> next) {
    value_.store(std::move(next));
    version_.fetch_add(1, std::memory_order_acq_rel);
  }

  /// The newest value, as an owning reference (costs a lock and two reference-count updates).
  [[nodiscard]] std::shared_ptr<const T> load() const { return value_.load(); }

  /// The newest value through this thread's cache; `fresh` reloads even if no newer version
  /// was announced yet.
  [[nodiscard]] const T& current(bool fresh = false) const {
    auto& c = cache();
    const auto version = version_.load(std::memory_order_acquire);
    // A value published between the two loads is newer than `version` says: the next call
    // sees the version move and loads again, which is harmless.
    if (fresh || c.owner != id_ || c.version != version || !c.value) {
      c.value = value_.load();
      c.version = version;
      c.owner = id_;
    }
    return *c.value;
  }

  /// The value this thread read last, without looking for a newer one (the first call loads).
  [[nodiscard]] const T& pinned() const {
    auto& c = cache();
    if (c.owner == id_ && c.value) return *c.value;
    return current();
  }

 private:
  struct Cache {
    std::uint64_t owner = 0;  // id_ of the Published the value came from (ids are never reused)
    std::uint64_t version = 0;
    std::shared_ptr<const T> value;
  };
  static Cache& cache() {
    thread_local Cache c;
    return c;
  }
  static std::uint64_t next_id() {
    static std::atomic<std::uint64_t> ids{0};
    return ids.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  std::atomic<std::shared_ptr<const T>> value_;
  std::atomic<std::uint64_t> version_{0};
  const std::uint64_t id_ = next_id();
};

}  // namespace keel::host
