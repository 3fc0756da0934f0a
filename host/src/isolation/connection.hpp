#pragma once
// One end of a host <-> runner socket (docs/isolation.md). A reader thread takes frames off the
// socket: replies go to whoever waits for them, everything else to the handler. Sending never
// blocks the caller on the peer: a frame is written at once when the socket takes it whole,
// otherwise it joins a bounded queue that a writer thread drains, so a peer that stops reading
// costs queue memory up to a limit, then failed sends, never a stuck caller. Fewer writes:
// - frames the reader thread itself sends (from the handler) are gathered and written together,
//   in order, before it next waits for the socket, so a burst read at once is answered with one
//   write;
// - frames sent by a thread with a poster (common/thread_poster.hpp: an I/O thread) are put off
//   until that thread has run what it had ready, then written together (for a Connection owned
//   by a shared_ptr; a request the sender waits for is never put off).
// The handler may also send a request and wait for its reply (request()): the reader thread then
// goes on reading, handing other frames to the handler with nested_read() true, until that reply
// comes. Thread-safe.

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "isolation/wire.hpp"

namespace keel::host::isolation {

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  /// Every frame that is not a reply, on the reader thread: it must not block (hand work on),
  /// except in request(), which reads on while it waits.
  using Handler = std::function<void(Frame)>;
  /// Once, on the reader thread, when the socket closed or broke (after pending requests failed);
  /// `corrupt` when the peer broke the frame protocol (a bad header, a frame over its limit).
  using Closed = std::function<void(const std::string& why, bool corrupt)>;
  using Done = std::function<void(std::optional<Frame>)>;

  /// Takes ownership of the connected socket `fd`. With `limits`, a frame over its kind's limit
  /// (FrameLimits::max_payload) ends the connection as a broken stream before its payload is read:
  /// the host reads a runner this way; the runner trusts the host's frames up to kMaxFrameBytes.
  Connection(int fd, Handler handler, Closed closed, std::size_t max_queued_bytes = 64u << 20,
             std::optional<FrameLimits> limits = std::nullopt);
  ~Connection();  ///< close(), then joins both threads
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Starts the reader and writer threads.
  void start();

  /// Sends one frame. False when the connection is closed or the queue is full.
  bool send(Kind kind, std::uint64_t id, std::string_view payload) { return send_frame(kind, id, payload, true); }
  bool reply(std::uint64_t id, std::string_view payload) { return send(Kind::kReply, id, payload); }

  /// Sends a request and waits for its reply: nullopt when it could not be sent, the
  /// connection closed, or `timeout` passed (a late reply is then dropped). On the reader thread
  /// (from the handler) it reads the socket itself while it waits (see nested_read()).
  std::optional<Frame> request(Kind kind, std::string_view payload, std::chrono::milliseconds timeout);
  /// Sends a request; `done` runs exactly once: on the reader thread with the reply, or with
  /// nullopt when the connection closes first (on the reader thread) or the send fails (here).
  void request_async(Kind kind, std::string_view payload, Done done);

  /// Shuts the socket down: the reader sees the end, pending requests fail. Idempotent.
  void close() noexcept;
  /// close(), then waits until the reader and writer threads have ended (so no callback runs
  /// any more). Idempotent; never call it from a handler or a callback of this connection.
  void join();
  [[nodiscard]] bool closed() const noexcept;
  /// Bytes queued for the writer thread now.
  [[nodiscard]] std::size_t queued_bytes() const;
  /// True on the reader thread while a request() made by the handler waits for its reply: the
  /// handler must then hand every frame on (it runs inside that wait).
  [[nodiscard]] bool nested_read() const noexcept { return on_reader_thread() && nested_ > 0; }

 private:
  struct Waiter;
  class FrameReader;
  void read_loop();
  void write_loop();
  void dispatch(Frame frame);
  /// `may_defer`: the frame may wait for the calling thread's poster (never when the caller
  /// then blocks for the reply).
  bool send_frame(Kind kind, std::uint64_t id, std::string_view payload, bool may_defer);
  /// Writes the frames put off for a poster.
  void flush_deferred();
  std::optional<Frame> read_until_reply(const std::shared_ptr<Waiter>& w, std::uint64_t id,
                                        std::chrono::milliseconds timeout);
  void fail_pending();
  std::shared_ptr<Waiter> add_waiter(std::uint64_t& id, Done callback);
  [[nodiscard]] bool on_reader_thread() const noexcept { return std::this_thread::get_id() == reader_id_.load(); }
  /// Writes `bytes` (whole frames) or queues what the socket does not take. `promised`: frames
  /// a sender was told were sent (gathered or put off), queued whatever the limit.
  bool write_or_queue(std::string bytes, bool promised);
  /// Writes the frames the reader thread gathered. Reader thread only.
  void flush_gathered();

  int fd_;
  Handler handler_;
  Closed closed_cb_;
  const std::size_t max_queued_;
  const std::optional<FrameLimits> limits_;

  mutable std::mutex send_mutex_;
  std::condition_variable send_ready_;
  std::deque<std::string> queue_;  // frames (or the unsent rest of one) for the writer thread
  std::size_t queued_ = 0;
  bool writing_ = false;  // the writer thread is sending a frame outside the lock
  bool closed_ = false;
  std::string deferred_;       // frames put off until a poster's job writes them
  bool flush_posted_ = false;  // that job is on its way

  std::mutex pending_mutex_;
  std::map<std::uint64_t, std::shared_ptr<Waiter>> pending_;
  std::uint64_t next_id_ = 1;
  bool pending_closed_ = false;

  // The reader thread's own: its frame buffer, the frames it sent and not yet written, how deep
  // request() waits nest on it, and why the stream ended when a nested read saw the end.
  std::unique_ptr<FrameReader> in_;
  std::string gathered_;
  int nested_ = 0;
  std::optional<std::pair<std::string, bool>> ended_;
  std::atomic<std::thread::id> reader_id_{};

  std::thread reader_, writer_;
};

}  // namespace keel::host::isolation
