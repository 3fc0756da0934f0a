#include "isolation/connection.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <new>
#include <tuple>
#include <vector>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/thread_poster.hpp"

namespace keel::host::isolation {

struct Connection::Waiter {
  std::mutex mutex;
  std::condition_variable ready;
  bool done = false;
  std::optional<Frame> reply;
  Done callback;  // set for request_async: runs instead of waking a thread
};

/// Frames cut out of a buffer that one read() refills with whatever the socket holds, so a frame
/// costs one system call (or a share of one) instead of two: its header, then its payload.
/// Before it waits for the socket it writes what the reader thread gathered.
class Connection::FrameReader {
  static constexpr std::size_t kGrowStep = 1 << 20;

 public:
  FrameReader(Connection& owner, int fd, const std::optional<FrameLimits>& limits)
      : owner_(owner), fd_(fd), limits_(limits), buf_(64 * 1024) {}

  /// Whether a frame can be started before `deadline`: bytes are buffered, or the socket became
  /// readable (or ended). Called between frames only, so giving up never cuts one.
  bool ready_by(std::chrono::steady_clock::time_point deadline) {
    if (begin_ != end_) return true;
    owner_.flush_gathered();
    for (;;) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      const auto n = ::poll(&p, 1, static_cast<int>(std::min<std::int64_t>(left.count(), INT_MAX)));
      if (n > 0) return true;
      if (n < 0 && errno != EINTR) return true;  // let read() report it
    }
  }

  /// The next frame; false at the end of the stream, on an error or a corrupt header, with
  /// `why` saying which.
  bool next(Frame& frame, std::string& why) {
    started_ = false;
    char header[kHeaderBytes];
    if (!take(header, sizeof header, why)) return false;
    std::uint32_t len = 0;
    if (!parse_header(header, len, frame.kind, frame.id)) {
      why = "corrupt frame header (length out of range)";
      corrupt = true;
      return false;
    }
    if (limits_ && len > limits_->max_payload(frame.kind)) {
      why = "a " + std::string(kind_name(frame.kind)) + " frame of " + std::to_string(len) +
            " payload bytes is over its limit of " + std::to_string(limits_->max_payload(frame.kind));
      corrupt = true;
      return false;
    }
    // The payload grows as its bytes arrive, never more than a step ahead of them: a peer that
    // declares a huge frame and sends nothing costs nothing.
    frame.payload.clear();
    while (frame.payload.size() < len) {
      const auto at = frame.payload.size();
      const auto step = std::min<std::size_t>(len - at, kGrowStep);
      frame.payload.resize(at + step);
      if (!take(frame.payload.data() + at, step, why)) return false;
    }
    return true;
  }

 private:
  bool take(char* out, std::size_t len, std::string& why) {
    while (len > 0) {
      if (begin_ == end_ && !fill(why)) return false;
      const auto n = std::min(len, end_ - begin_);
      std::memcpy(out, buf_.data() + begin_, n);
      begin_ += n;
      out += n;
      len -= n;
      started_ = true;
    }
    return true;
  }

  bool fill(std::string& why) {
    begin_ = end_ = 0;
    owner_.flush_gathered();  // everything the handler sent goes out before the reader waits
    for (;;) {
      const auto n = ::read(fd_, buf_.data(), buf_.size());
      if (n > 0) {
        end_ = static_cast<std::size_t>(n);
        return true;
      }
      if (n == 0) {
        why = started_ ? "end of stream inside a frame" : "end of stream";
        return false;
      }
      if (errno != EINTR) {
        why = std::string("read failed: ") + std::strerror(errno);
        return false;
      }
    }
  }

  Connection& owner_;
  int fd_;
  const std::optional<FrameLimits>& limits_;
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;  // the unread bytes of buf_
  bool started_ = false;             // part of the current frame was taken

 public:
  bool corrupt = false;  // next() failed on a frame the protocol does not allow
};

Connection::Connection(int fd, Handler handler, Closed closed, std::size_t max_queued_bytes,
                       std::optional<FrameLimits> limits)
    : fd_(fd),
      handler_(std::move(handler)),
      closed_cb_(std::move(closed)),
      max_queued_(max_queued_bytes),
      limits_(limits) {}

Connection::~Connection() {
  join();
  ::close(fd_);
}

void Connection::join() {
  close();
  if (reader_.joinable()) reader_.join();
  if (writer_.joinable()) writer_.join();
}

void Connection::start() {
  reader_ = std::thread([this] { read_loop(); });
  writer_ = std::thread([this] { write_loop(); });
}

void Connection::close() noexcept {
  {
    std::lock_guard lock(send_mutex_);
    if (closed_) return;
    closed_ = true;
    queue_.clear();
    queued_ = 0;
    deferred_.clear();
  }
  send_ready_.notify_all();
  ::shutdown(fd_, SHUT_RDWR);  // wakes the reader (end of stream) and a writer blocked in send
}

bool Connection::closed() const noexcept {
  std::lock_guard lock(send_mutex_);
  return closed_;
}

std::size_t Connection::queued_bytes() const {
  std::lock_guard lock(send_mutex_);
  return queued_;
}

namespace {
// Frames the reader thread gathered are written once they reach this many bytes, even before it
// waits for the socket again.
constexpr std::size_t kGatherBytes = 64 * 1024;
}  // namespace

bool Connection::send_frame(Kind kind, std::uint64_t id, std::string_view payload, bool may_defer) {
  std::string frame;
  try {
    frame = frame_bytes(kind, id, payload);
  } catch (const std::length_error&) {
    return false;
  }
  if (!on_reader_thread()) {
    const auto* post = may_defer ? thread_poster() : nullptr;
    auto self = post != nullptr ? weak_from_this() : std::weak_ptr<Connection>{};
    if (self.expired()) return write_or_queue(std::move(frame), false);
    // Put off until the poster's job: the first frame posts it, the others join.
    bool first = false;
    {
      std::lock_guard lock(send_mutex_);
      if (closed_ || queued_ + deferred_.size() + frame.size() > max_queued_) return false;
      deferred_.append(frame);
      first = !flush_posted_;
      flush_posted_ = true;
    }
    if (first) {
      try {
        (*post)([self = std::move(self)] {
          if (const auto c = self.lock()) c->flush_deferred();
        });
      } catch (...) {  // no job to run it: write now
        flush_deferred();
      }
    }
    return true;
  }
  // Sent from the handler: gathered, and written with the others before the reader next waits.
  {
    std::lock_guard lock(send_mutex_);
    if (closed_ || queued_ + gathered_.size() + frame.size() > max_queued_) return false;
  }
  gathered_.append(frame);
  if (gathered_.size() >= kGatherBytes) flush_gathered();
  return true;
}

void Connection::flush_deferred() {
  std::string frames;
  {
    std::lock_guard lock(send_mutex_);
    frames.swap(deferred_);
    flush_posted_ = false;
  }
  if (!frames.empty()) static_cast<void>(write_or_queue(std::move(frames), true));  // false only once closed
}

void Connection::flush_gathered() {
  if (gathered_.empty()) return;
  std::string frames;
  frames.swap(gathered_);
  static_cast<void>(write_or_queue(std::move(frames), true));  // false only once closed
}

bool Connection::write_or_queue(std::string frame, bool promised) {
  std::unique_lock lock(send_mutex_);
  if (closed_) return false;
  if (!deferred_.empty() && !promised) {
    // Frames this thread (or another) put off go first: a thread's frames keep their order.
    if (queued_ + frame.size() > max_queued_) return false;
    frame.insert(0, deferred_);
    deferred_.clear();
    promised = true;
  }
  std::size_t sent = 0;
  if (queue_.empty() && !writing_) {
    // The fast path: nothing is ahead of this frame, so write it here if the socket takes it.
    while (sent < frame.size()) {
      const auto n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) {
        sent += static_cast<std::size_t>(n);
      } else if (n < 0 && errno == EINTR) {
        continue;
      } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        break;
      } else {
        // The stream is unusable (maybe cut inside this frame). Close it rather than leave it to
        // the reader: a peer that shut down only its reading side never shows the reader an end.
        lock.unlock();
        close();
        return false;
      }
    }
    if (sent == frame.size()) return true;
  }
  const auto rest = frame.size() - sent;
  // A frame already partly written must be finished whatever the limit, or the stream breaks;
  // gathered frames were checked against it when they were sent.
  if (!promised && sent == 0 && queued_ + rest > max_queued_) return false;
  queue_.push_back(sent == 0 ? std::move(frame) : frame.substr(sent));
  queued_ += rest;
  lock.unlock();
  send_ready_.notify_one();
  return true;
}

void Connection::write_loop() {
  std::unique_lock lock(send_mutex_);
  for (;;) {
    send_ready_.wait(lock, [this] { return closed_ || !queue_.empty(); });
    if (closed_) return;
    std::string frame = std::move(queue_.front());
    queue_.pop_front();
    writing_ = true;
    lock.unlock();
    bool broken = false;
    for (std::size_t sent = 0; sent < frame.size() && !broken;) {
      const auto n = ::send(fd_, frame.data() + sent, frame.size() - sent, MSG_NOSIGNAL);
      if (n > 0) sent += static_cast<std::size_t>(n);
      else if (n < 0 && errno == EINTR) continue;
      else broken = true;
    }
    if (broken) {
      // As in send(): close, so the reader ends, pending requests fail and later sends are
      // refused instead of queueing frames that no thread will ever write.
      close();
      return;
    }
    lock.lock();
    writing_ = false;
    queued_ -= std::min(queued_, frame.size());
  }
}

void Connection::read_loop() {
  reader_id_.store(std::this_thread::get_id());
  std::string why;
  bool corrupt = false;
  try {
    in_ = std::make_unique<FrameReader>(*this, fd_, limits_);
  } catch (const std::bad_alloc&) {
    why = "out of memory";
  }
  while (in_) {
    Frame frame;
    if (!in_->next(frame, why)) {
      corrupt = in_->corrupt;
      break;
    }
    dispatch(std::move(frame));
    if (ended_) {  // a request() in the handler read the end of the stream
      std::tie(why, corrupt) = *ended_;
      break;
    }
  }
  gathered_.clear();
  close();
  // Sends from here on fail (closed); a later thread that gets this id must not gather.
  reader_id_.store(std::thread::id{});
  fail_pending();
  if (closed_cb_) closed_cb_(why, corrupt);
}

void Connection::dispatch(Frame frame) {
  if (frame.kind != Kind::kReply) {
    handler_(std::move(frame));
    return;
  }
  std::shared_ptr<Waiter> waiter;
  {
    std::lock_guard lock(pending_mutex_);
    if (const auto it = pending_.find(frame.id); it != pending_.end()) {
      waiter = std::move(it->second);
      pending_.erase(it);
    }
  }
  if (!waiter) return;  // its requester gave up (timeout)
  if (waiter->callback) {
    waiter->callback(std::move(frame));
    return;
  }
  {
    std::lock_guard lock(waiter->mutex);
    waiter->reply = std::move(frame);
    waiter->done = true;
  }
  waiter->ready.notify_one();
}

std::optional<Frame> Connection::read_until_reply(const std::shared_ptr<Waiter>& w, std::uint64_t id,
                                                  std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto done = [&] {
    std::lock_guard lock(w->mutex);
    return w->done;
  };
  ++nested_;
  while (!ended_ && !done()) {
    if (!in_->ready_by(deadline)) break;
    Frame frame;
    std::string why;
    if (!in_->next(frame, why)) {
      // The end, seen here: the reader loop ends once the handler returns; the waits fail now.
      ended_.emplace(why, in_->corrupt);
      close();
      fail_pending();
      break;
    }
    dispatch(std::move(frame));
  }
  --nested_;
  std::lock_guard lock(w->mutex);
  if (!w->done) {
    std::lock_guard forget(pending_mutex_);
    pending_.erase(id);
    return std::nullopt;
  }
  return std::move(w->reply);
}

void Connection::fail_pending() {
  std::map<std::uint64_t, std::shared_ptr<Waiter>> all;
  {
    std::lock_guard lock(pending_mutex_);
    pending_closed_ = true;
    all.swap(pending_);
  }
  for (auto& [id, w] : all) {
    if (w->callback) {
      w->callback(std::nullopt);
      continue;
    }
    {
      std::lock_guard lock(w->mutex);
      w->done = true;
    }
    w->ready.notify_one();
  }
}

std::shared_ptr<Connection::Waiter> Connection::add_waiter(std::uint64_t& id, Done callback) {
  auto w = std::make_shared<Waiter>();
  w->callback = std::move(callback);  // before it is visible: fail_pending() may run at once
  std::lock_guard lock(pending_mutex_);
  if (pending_closed_) return nullptr;
  id = next_id_++;
  pending_.emplace(id, w);
  return w;
}

std::optional<Frame> Connection::request(Kind kind, std::string_view payload, std::chrono::milliseconds timeout) {
  std::uint64_t id = 0;
  auto w = add_waiter(id, nullptr);
  if (!w) return std::nullopt;
  auto forget = [&] {
    std::lock_guard lock(pending_mutex_);
    pending_.erase(id);
  };
  if (!send_frame(kind, id, payload, false)) {  // never put off: this thread waits for the reply
    forget();
    return std::nullopt;
  }
  // wait_for adds the timeout to now() in nanoseconds: a "forever" of a year would overflow
  // into the past and return at once. A day is forever enough for a reply.
  timeout = std::min<std::chrono::milliseconds>(timeout, std::chrono::hours(24));
  // The handler asks: nobody else reads the reply, so this thread does.
  if (on_reader_thread()) return read_until_reply(w, id, timeout);
  std::unique_lock lock(w->mutex);
  if (!w->ready.wait_for(lock, timeout, [&] { return w->done; })) {
    lock.unlock();
    forget();
    lock.lock();
    if (!w->done) return std::nullopt;  // (the reply may have raced the timeout: take it)
  }
  return std::move(w->reply);
}

void Connection::request_async(Kind kind, std::string_view payload, Done done) {
  std::uint64_t id = 0;
  auto w = add_waiter(id, done);
  if (!w) {
    done(std::nullopt);
    return;
  }
  if (!send(kind, id, payload)) {
    std::shared_ptr<Waiter> mine;
    {
      std::lock_guard lock(pending_mutex_);
      if (const auto it = pending_.find(id); it != pending_.end()) {
        mine = std::move(it->second);
        pending_.erase(it);
      }
    }
    if (mine) mine->callback(std::nullopt);  // else fail_pending() already called it
  }
}

}  // namespace keel::host::isolation
