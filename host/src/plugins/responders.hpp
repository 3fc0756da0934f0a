#pragma once
// The responder table of one plugin generation: the integer ids (never pointers) a plugin
// answers requests with, so a stale, repeated or foreign id is detected. A request answered on
// the dispatching thread writes straight into the server's response (sync); one answered later
// goes through an AsyncReply the server waits on. Thread-safe.

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include <keel/plugin.h>

#include "http/message.hpp"

namespace keel::host::plugins {

class ResponderTable {
 public:
  // id = (sequence << 24) | slot; sequences start at 1 and never repeat within a table.
  keel_responder acquire_sync(http::Response* target) {
    std::lock_guard lock(mutex_);
    auto& s = slot_for_new();
    s.state = State::kSync;
    s.sync_target = target;
    tl_dispatching = s.id;
    tl_dispatching_table = instance_;
    return s.id;
  }

  keel_responder acquire_async(std::shared_ptr<http::AsyncReply> reply) {
    std::lock_guard lock(mutex_);
    auto& s = slot_for_new();
    s.state = State::kAsync;
    s.reply = std::move(reply);
    return s.id;
  }

  // After on_request returned on the dispatching thread. Returns the reply to wait for, or
  // nullptr when the response is final (completed synchronously, or the handler failed).
  std::shared_ptr<http::AsyncReply> finish_sync(keel_responder id, bool failed) {
    tl_dispatching = 0;
    // Answered on this thread already (the common case): its slot is free, nothing to look up.
    if (tl_completed_sync == id && tl_completed_table == instance_) return nullptr;
    std::lock_guard lock(mutex_);
    auto* s = find(id);
    if (s == nullptr || s->state != State::kSync) return nullptr;  // completed: slot already freed
    if (failed) {
      release(*s);
      return nullptr;
    }
    s->state = State::kAsync;
    s->sync_target = nullptr;
    s->reply = std::make_shared<http::AsyncReply>();
    return s->reply;
  }

  // Answers request `id` with what `fill(http::Response&)` writes into a cleared response: for
  // a synchronous request the server's own, so its buffers are reused and nothing is allocated,
  // otherwise a fresh one that goes to the AsyncReply. When `fill` throws (out of memory), the
  // request is answered 500 without a body and the exception goes on.
  template <class Fill>
  keel_status complete_with(keel_responder id, Fill&& fill) {
    http::Response* own = nullptr;
    std::shared_ptr<http::AsyncReply> reply;
    {
      std::lock_guard lock(mutex_);
      auto* s = find(id);
      if (s == nullptr) return (id >> 24) != 0 && (id >> 24) < next_seq_ ? KEEL_ERR_ALREADY_COMPLETED : KEEL_ERR_NOT_FOUND;
      if (s->state == State::kSync) {
        own = s->sync_target;
        release(*s);
        tl_completed_sync = id;  // ids never repeat within a table
        tl_completed_table = instance_;
        // From another thread: finish_sync may read the response as soon as the lock is free.
        if (tl_dispatching != id || tl_dispatching_table != instance_) {
          fill_or_fail(*own, fill);
          return KEEL_OK;
        }
      } else {
        reply = std::move(s->reply);
        release(*s);
      }
    }
    if (own != nullptr) {
      // Answered inside on_request on the thread that dispatched it: nothing reads the response
      // before finish_sync on this same thread, so the copy runs without the lock.
      fill_or_fail(*own, fill);
      return KEEL_OK;
    }
    http::Response response;
    try {
      fill(response);
    } catch (...) {
      http::Response failed;
      failed.status = 500;
      reply->complete(std::move(failed));
      throw;
    }
    return reply->complete(std::move(response)) ? KEEL_OK : KEEL_ERR_TIMEOUT;
  }

  keel_status complete(keel_responder id, http::Response&& response) {
    return complete_with(id, [&response](http::Response& out) { out = std::move(response); });
  }

  // The host answers for the plugin (handler failed after deferring, or it is being stopped).
  void fail(keel_responder id, http::Response&& response) { (void)complete(id, std::move(response)); }

  // Requests acquired, not yet answered and still awaited (a drain need not wait for an answer
  // whose client already got a 504).
  std::size_t pending() {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& s : slots_)
      if (s.state == State::kSync || (s.state == State::kAsync && s.reply && s.reply->awaited())) ++n;
    return n;
  }

  // Plugin stopped: every pending request is answered 503.
  void abandon_all() {
    std::vector<std::shared_ptr<http::AsyncReply>> replies;
    {
      std::lock_guard lock(mutex_);
      for (auto& s : slots_) {
        if (s.state == State::kAsync && s.reply) replies.push_back(std::move(s.reply));
        if (s.state != State::kFree) release(s);
      }
    }
    for (auto& r : replies) {
      http::Response res;
      res.set_error(503, "unavailable", "plugin stopped before answering");
      r->complete(std::move(res));
    }
  }

 private:
  enum class State { kFree, kSync, kAsync };
  struct Slot {
    keel_responder id = 0;
    State state = State::kFree;
    http::Response* sync_target = nullptr;
    std::shared_ptr<http::AsyncReply> reply;
  };

  template <class Fill>
  static void fill_or_fail(http::Response& target, Fill& fill) {
    target.clear();
    try {
      fill(target);
    } catch (...) {
      target.clear();
      target.status = 500;
      throw;
    }
  }

  Slot& slot_for_new() {
    std::uint32_t index;
    if (!free_.empty()) {
      index = free_.back();
      free_.pop_back();
    } else {
      index = static_cast<std::uint32_t>(slots_.size());
      slots_.emplace_back();
    }
    auto& s = slots_[index];
    s.id = (next_seq_++ << 24) | index;
    return s;
  }
  Slot* find(keel_responder id) {
    const auto index = id & 0xFFFFFFu;
    if (index >= slots_.size()) return nullptr;
    auto& s = slots_[index];
    return s.id == id && s.state != State::kFree ? &s : nullptr;
  }
  void release(Slot& s) {
    s.state = State::kFree;
    s.sync_target = nullptr;
    s.reply.reset();
    free_.push_back(static_cast<std::uint32_t>(s.id & 0xFFFFFFu));
  }

  // The last synchronous request answered on this thread, for finish_sync.
  // A table is known by a number of its own, never by its address (a new table may reuse it).
  static inline std::atomic<std::uint64_t> instances_{0};
  static inline thread_local keel_responder tl_completed_sync = 0;
  static inline thread_local std::uint64_t tl_completed_table = 0;
  // The synchronous request this thread is running on_request for (acquire_sync to finish_sync).
  static inline thread_local keel_responder tl_dispatching = 0;
  static inline thread_local std::uint64_t tl_dispatching_table = 0;
  const std::uint64_t instance_ = instances_.fetch_add(1, std::memory_order_relaxed) + 1;

  std::mutex mutex_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_;
  std::uint64_t next_seq_ = 1;
};

}  // namespace keel::host::plugins
