// isolation::Connection (host/src/isolation/connection.*) over a socketpair inside this process:
// concurrent requests both ways with out-of-order replies, timeouts, async requests, close,
// a peer that stops reading, a corrupt stream. Catch2 assertions stay on the test thread; the
// connections' threads only record what happened.

#include "isolation/connection.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "common/thread_poster.hpp"

using namespace keel::host::isolation;
using namespace std::chrono_literals;

namespace {

std::pair<int, int> socket_pair() {
  int fds[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
  return {fds[0], fds[1]};
}

/// Waits (bounded) until `done()` holds, re-checking whenever `cv` is notified.
template <class Pred>
bool wait_for(std::mutex& m, std::condition_variable& cv, Pred done, std::chrono::milliseconds limit = 10s) {
  std::unique_lock lock(m);
  return cv.wait_for(lock, limit, done);
}

/// A connection end whose handler keeps every request frame for the test to answer (the
/// handler itself must not block), and which records why it closed.
struct Peer {
  std::mutex mutex;
  std::condition_variable cv;
  std::deque<Frame> requests;
  std::optional<std::string> closed_why;
  bool closed_corrupt = false;
  int closed_calls = 0;
  std::unique_ptr<Connection> conn;

  explicit Peer(int fd, std::size_t max_queued = 64u << 20, std::optional<FrameLimits> limits = std::nullopt) {
    conn = std::make_unique<Connection>(
        fd,
        [this](Frame f) {
          {
            std::lock_guard lock(mutex);
            requests.push_back(std::move(f));
          }
          cv.notify_all();
        },
        [this](const std::string& why, bool corrupt) {
          {
            std::lock_guard lock(mutex);
            closed_why = why;
            closed_corrupt = corrupt;
            ++closed_calls;
          }
          cv.notify_all();
        },
        max_queued, limits);
    conn->start();
  }

  /// The next request frame, waiting up to `limit`.
  std::optional<Frame> next(std::chrono::milliseconds limit = 10s) {
    std::unique_lock lock(mutex);
    if (!cv.wait_for(lock, limit, [&] { return !requests.empty(); })) return std::nullopt;
    auto f = std::move(requests.front());
    requests.pop_front();
    return f;
  }

  bool wait_closed(std::chrono::milliseconds limit = 10s) {
    return wait_for(mutex, cv, [&] { return closed_why.has_value(); }, limit);
  }
};

/// Answers every request on `peer` with its own payload, in batches in reverse arrival order,
/// so replies reach the requesters out of order. Stops when told to or when `peer` closes.
class ReverseEchoer {
 public:
  explicit ReverseEchoer(Peer& peer) : peer_(peer), thread_([this] { run(); }) {}
  ~ReverseEchoer() {
    stop_ = true;
    peer_.cv.notify_all();
    thread_.join();
  }
  ReverseEchoer(const ReverseEchoer&) = delete;
  ReverseEchoer& operator=(const ReverseEchoer&) = delete;

 private:
  void run() {
    for (;;) {
      std::vector<Frame> batch;
      {
        std::unique_lock lock(peer_.mutex);
        peer_.cv.wait_for(lock, 2ms, [&] { return stop_.load() || peer_.requests.size() >= 8; });
        if (stop_) return;
        while (!peer_.requests.empty()) {
          batch.push_back(std::move(peer_.requests.front()));
          peer_.requests.pop_front();
        }
      }
      for (auto it = batch.rbegin(); it != batch.rend(); ++it) static_cast<void>(peer_.conn->reply(it->id, it->payload));
    }
  }

  Peer& peer_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace

TEST_CASE("isolation connection: requests both ways from several threads get their own replies, out of order", "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  Peer a(a_fd);
  Peer b(b_fd);
  const ReverseEchoer echo_a(a);
  const ReverseEchoer echo_b(b);

  constexpr int kThreads = 4;
  constexpr int kPerThread = 200;
  std::atomic<int> ok{0}, wrong{0}, missing{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    for (Peer* side : {&a, &b}) {
      threads.emplace_back([&, side, t] {
        for (int i = 0; i < kPerThread; ++i) {
          const std::string payload = (side == &a ? "a" : "b") + std::to_string(t) + ":" + std::to_string(i) +
                                      std::string(static_cast<std::size_t>(i % 7) * 100, 'x');
          const auto reply = side->conn->request(Kind::kCall, payload, 10s);
          if (!reply) ++missing;
          else if (reply->kind != Kind::kReply || reply->payload != payload) ++wrong;
          else ++ok;
        }
      });
    }
  }
  for (auto& th : threads) th.join();
  CHECK(missing == 0);
  CHECK(wrong == 0);
  CHECK(ok == 2 * kThreads * kPerThread);
}

TEST_CASE("isolation connection: a request times out, and its late reply is dropped", "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  Peer a(a_fd);
  Peer b(b_fd);

  const auto start = std::chrono::steady_clock::now();
  const auto reply = a.conn->request(Kind::kPublish, "first", 50ms);
  CHECK_FALSE(reply.has_value());
  CHECK(std::chrono::steady_clock::now() - start >= 50ms);
  const auto first = b.next();
  REQUIRE(first);
  CHECK(first->payload == "first");

  // A second request; its peer sends the late reply to the first one before the right one.
  std::optional<Frame> second_reply;
  std::thread requester([&] { second_reply = a.conn->request(Kind::kPublish, "second", 10s); });
  const auto second = b.next();
  REQUIRE(second);
  CHECK(second->id != first->id);
  REQUIRE(b.conn->reply(first->id, "late answer to first"));
  REQUIRE(b.conn->reply(second->id, "answer to second"));
  requester.join();
  REQUIRE(second_reply);
  CHECK(second_reply->payload == "answer to second");
  // The late reply went nowhere: it did not reach the handler either.
  std::lock_guard lock(a.mutex);
  CHECK(a.requests.empty());
  CHECK_FALSE(a.conn->closed());
}

TEST_CASE("isolation connection: request_async delivers its reply once, on the reader thread", "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  Peer a(a_fd);
  Peer b(b_fd);
  std::mutex m;
  std::condition_variable cv;
  int calls = 0;
  std::string got;
  std::thread::id ran_on;
  a.conn->request_async(Kind::kTxnBegin, "begin?", [&](std::optional<Frame> f) {
    std::lock_guard lock(m);
    ++calls;
    got = f ? f->payload : "<none>";
    ran_on = std::this_thread::get_id();
    cv.notify_all();
  });
  const auto req = b.next();
  REQUIRE(req);
  CHECK(req->kind == Kind::kTxnBegin);
  CHECK(req->id != 0);
  REQUIRE(b.conn->reply(req->id, "begun"));
  REQUIRE(wait_for(m, cv, [&] { return calls > 0; }));
  std::this_thread::sleep_for(20ms);  // room for a wrong second call
  std::lock_guard lock(m);
  CHECK(calls == 1);
  CHECK(got == "begun");
  CHECK(ran_on != std::this_thread::get_id());
}

TEST_CASE("isolation connection: close fails pending requests, sync and async, exactly once", "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  Peer a(a_fd);
  Peer b(b_fd);  // never answers

  std::atomic<int> async_calls{0};
  std::atomic<bool> async_had_frame{false};
  a.conn->request_async(Kind::kCall, "async", [&](std::optional<Frame> f) {
    ++async_calls;
    if (f) async_had_frame = true;
  });
  std::optional<Frame> sync_reply{Frame{}};
  std::atomic<bool> sync_done{false};
  std::chrono::steady_clock::duration sync_waited{};
  std::thread sync([&] {
    const auto start = std::chrono::steady_clock::now();
    sync_reply = a.conn->request(Kind::kCall, "sync", 30s);
    sync_waited = std::chrono::steady_clock::now() - start;
    sync_done = true;
  });
  // Both requests are on the wire before the close.
  REQUIRE(b.next());
  REQUIRE(b.next());

  SECTION("closed by this end") { a.conn->close(); }
  SECTION("closed by the peer") { b.conn->close(); }

  sync.join();
  CHECK(sync_done);
  CHECK_FALSE(sync_reply.has_value());
  CHECK(sync_waited < 10s);
  REQUIRE(a.wait_closed());
  CHECK(async_calls == 1);
  CHECK_FALSE(async_had_frame);
  CHECK(a.closed_calls == 1);
  CHECK(a.conn->closed());

  // After the close nothing can be sent, and new requests fail at once (async: exactly once).
  CHECK_FALSE(a.conn->send(Kind::kLog, 0, "x"));
  CHECK_FALSE(a.conn->request(Kind::kCall, "late", 10s).has_value());
  int late_calls = 0;
  a.conn->request_async(Kind::kCall, "late", [&](std::optional<Frame> f) {
    ++late_calls;
    CHECK_FALSE(f.has_value());
  });
  CHECK(late_calls == 1);
  a.conn->close();  // idempotent
  CHECK(a.closed_calls == 1);
}

TEST_CASE("isolation connection: a peer that stops reading fills the queue, then sends fail without blocking", "[isolation][connection]") {
  const auto [a_fd, raw] = socket_pair();
  constexpr std::size_t kLimit = 1u << 20;
  Peer a(a_fd, kLimit);
  const std::string payload(64 * 1024, 'p');

  std::size_t accepted = 0;
  bool refused = false;
  auto slowest = std::chrono::steady_clock::duration::zero();
  for (int i = 0; i < 10000 && !refused; ++i) {
    const auto start = std::chrono::steady_clock::now();
    const bool sent = a.conn->send(Kind::kLog, 0, payload);
    slowest = std::max(slowest, std::chrono::steady_clock::now() - start);
    if (sent) ++accepted;
    else refused = true;
    CHECK(a.conn->queued_bytes() <= kLimit + payload.size() + kHeaderBytes);
  }
  CHECK(refused);
  CHECK(accepted > kLimit / payload.size());  // the socket buffer plus the queue took frames
  CHECK(slowest < 1s);                        // never blocked on the peer
  CHECK(a.conn->queued_bytes() > kLimit / 2);
  CHECK_FALSE(a.conn->closed());

  // Once the peer reads again, every accepted frame arrives whole and in order.
  std::size_t frames = 0;
  std::string buffer;
  char chunk[65536];
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (frames < accepted && std::chrono::steady_clock::now() < deadline) {
    pollfd p{raw, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const auto n = ::read(raw, chunk, sizeof chunk);
    REQUIRE(n > 0);
    buffer.append(chunk, static_cast<std::size_t>(n));
    while (buffer.size() >= kHeaderBytes) {
      char header[kHeaderBytes];
      std::memcpy(header, buffer.data(), kHeaderBytes);
      std::uint32_t len = 0;
      Kind kind = Kind::kReply;
      std::uint64_t id = 1;
      REQUIRE(parse_header(header, len, kind, id));
      if (buffer.size() < kHeaderBytes + len) break;
      CHECK(kind == Kind::kLog);
      CHECK(id == 0);
      CHECK(buffer.compare(kHeaderBytes, len, payload) == 0);
      buffer.erase(0, kHeaderBytes + len);
      ++frames;
    }
  }
  CHECK(frames == accepted);
  CHECK(buffer.empty());
  // Drained: sending works again.
  CHECK(a.conn->send(Kind::kLog, 0, "again"));
  ::close(raw);
}

TEST_CASE("isolation connection: a corrupt frame length closes the connection with a reason", "[isolation][connection]") {
  const auto [a_fd, raw] = socket_pair();
  Peer a(a_fd);
  std::optional<Frame> pending{Frame{}};
  std::thread requester([&] { pending = a.conn->request(Kind::kCall, "never answered", 30s); });

  Writer w;
  SECTION("longer than the limit") { w.u32(kMaxFrameBytes + 1); }
  SECTION("shorter than kind and id") { w.u32(3); }
  w.u8(static_cast<std::uint8_t>(Kind::kReply));
  w.u64(1);
  REQUIRE(::write(raw, w.data().data(), w.data().size()) == static_cast<ssize_t>(w.data().size()));

  REQUIRE(a.wait_closed());
  requester.join();
  CHECK_FALSE(pending.has_value());
  {
    std::lock_guard lock(a.mutex);
    REQUIRE(a.closed_why);
    CHECK(a.closed_why->find("corrupt frame header") != std::string::npos);
    CHECK(a.requests.empty());
  }
  CHECK(a.conn->closed());
  ::close(raw);
}

TEST_CASE("isolation connection: a frame over its kind's limit closes the connection as corrupt, unread",
          "[isolation][connection]") {
  const auto [a_fd, raw] = socket_pair();
  Peer a(a_fd, 64u << 20, FrameLimits::from(1000, 500));
  // Within limits: a log message of 100 bytes, a response of 1,000 bytes and its envelope.
  const auto log = frame_bytes(Kind::kLog, 0, std::string(100, 'l'));
  REQUIRE(::write(raw, log.data(), log.size()) == static_cast<ssize_t>(log.size()));
  const auto respond = frame_bytes(Kind::kRespond, 7, std::string(1000 + kEnvelopeBytes, 'r'));
  REQUIRE(::write(raw, respond.data(), respond.size()) == static_cast<ssize_t>(respond.size()));
  // Over: an event of 500 bytes plus the envelope, plus one. Only its header is sent.
  Writer w;
  w.u32(500 + kEnvelopeBytes + 1 + 9);
  w.u8(static_cast<std::uint8_t>(Kind::kPublish));
  w.u64(8);
  REQUIRE(::write(raw, w.data().data(), w.data().size()) == static_cast<ssize_t>(w.data().size()));
  REQUIRE(a.wait_closed());
  std::lock_guard lock(a.mutex);
  CHECK(a.closed_corrupt);
  CHECK(*a.closed_why == "a publish frame of " + std::to_string(500 + kEnvelopeBytes + 1) +
                             " payload bytes is over its limit of " + std::to_string(500 + kEnvelopeBytes));
  REQUIRE(a.requests.size() == 2);
  CHECK(a.requests[0].kind == Kind::kLog);
  CHECK(a.requests[1].payload.size() == 1000 + kEnvelopeBytes);
  ::close(raw);
}

TEST_CASE("isolation connection: a stream that ends inside a frame closes with a reason", "[isolation][connection]") {
  const auto [a_fd, raw] = socket_pair();
  Peer a(a_fd);
  const auto f = frame_bytes(Kind::kLog, 0, "twelve bytes");
  REQUIRE(::write(raw, f.data(), f.size() - 4) == static_cast<ssize_t>(f.size() - 4));
  ::close(raw);
  REQUIRE(a.wait_closed());
  std::lock_guard lock(a.mutex);
  CHECK(*a.closed_why == "end of stream inside a frame");
  CHECK_FALSE(a.closed_corrupt);
  CHECK(a.requests.empty());
}

TEST_CASE("isolation connection: a frame declared huge costs memory only as its bytes arrive", "[isolation][connection]") {
  const auto [a_fd, raw] = socket_pair();
  rusage before{};
  REQUIRE(::getrusage(RUSAGE_SELF, &before) == 0);
  {
    Peer a(a_fd);
    Writer w;
    w.u32(kMaxFrameBytes);  // the largest frame allowed, announced...
    w.u8(static_cast<std::uint8_t>(Kind::kLog));
    w.u64(0);
    const std::string some(1000, 'x');  // ...and then only a little of it
    REQUIRE(::write(raw, w.data().data(), w.data().size()) == static_cast<ssize_t>(w.data().size()));
    REQUIRE(::write(raw, some.data(), some.size()) == static_cast<ssize_t>(some.size()));
    ::close(raw);
    REQUIRE(a.wait_closed());
    std::lock_guard lock(a.mutex);
    CHECK(*a.closed_why == "end of stream inside a frame");
  }
  rusage after{};
  REQUIRE(::getrusage(RUSAGE_SELF, &after) == 0);
  CHECK(after.ru_maxrss - before.ru_maxrss < 64 * 1024);  // KiB: far below the 256 MiB announced
}

TEST_CASE("isolation connection: a failed send closes the connection, so pending requests end at once",
          "[isolation][connection]") {
  const auto [a_fd, raw] = socket_pair();
  Peer a(a_fd);
  // The peer stops reading for good but keeps its end open: the reader never sees an end of
  // stream, so only the failing send can tell that the connection is dead.
  REQUIRE(::shutdown(raw, SHUT_RD) == 0);
  std::optional<Frame> pending{Frame{}};
  std::chrono::steady_clock::duration waited{};
  std::thread requester([&] {
    const auto start = std::chrono::steady_clock::now();
    pending = a.conn->request(Kind::kCall, "unheard", 30s);
    waited = std::chrono::steady_clock::now() - start;
  });
  requester.join();
  CHECK_FALSE(pending.has_value());
  CHECK(waited < 10s);
  REQUIRE(a.wait_closed());
  CHECK(a.conn->closed());
  CHECK_FALSE(a.conn->send(Kind::kLog, 0, "after"));
  ::close(raw);
}

namespace {

/// A connection end whose handler, on a `request` frame, first sends a log frame, then asks the
/// peer (a `call`) from the reader thread itself, and replies to the request with what it got:
/// the asking handler of keel-plugin-runner's reader thread. Every other frame is recorded with
/// whether it arrived inside that wait.
struct AskingPeer {
  std::mutex mutex;
  std::condition_variable cv;
  std::vector<std::pair<std::string, bool>> others;  // payload, nested_read() when handed on
  std::optional<std::optional<Frame>> answer;        // what the handler's request() returned
  int closed_calls = 0;
  bool handler_done_before_close = false;
  bool in_handler = false;
  std::unique_ptr<Connection> conn;

  explicit AskingPeer(int fd) {
    conn = std::make_unique<Connection>(
        fd,
        [this](Frame f) {
          if (f.kind != Kind::kRequest) {
            std::lock_guard lock(mutex);
            others.emplace_back(f.payload, conn->nested_read());
            cv.notify_all();
            return;
          }
          {
            std::lock_guard lock(mutex);
            in_handler = true;
          }
          static_cast<void>(conn->send(Kind::kLog, 0, "before the call"));
          auto got = conn->request(Kind::kCall, "inner", 10s);
          if (got) static_cast<void>(conn->reply(f.id, "outer got " + got->payload));
          std::lock_guard lock(mutex);
          answer = std::move(got);
          in_handler = false;
          cv.notify_all();
        },
        [this](const std::string&, bool) {
          std::lock_guard lock(mutex);
          ++closed_calls;
          handler_done_before_close = !in_handler;
          cv.notify_all();
        });
    conn->start();
  }
};

}  // namespace

TEST_CASE("isolation connection: a handler that asks reads its reply on the reader thread, handing other frames on",
          "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  AskingPeer a(a_fd);
  Peer b(b_fd);
  std::optional<Frame> outer;
  std::thread asker([&] { outer = b.conn->request(Kind::kRequest, "outer", 10s); });
  // The handler's frames arrive in the order it sent them: the log, then its call.
  const auto log = b.next();
  REQUIRE(log);
  CHECK(log->kind == Kind::kLog);
  CHECK(log->payload == "before the call");
  const auto call = b.next();
  REQUIRE(call);
  CHECK(call->kind == Kind::kCall);
  CHECK(call->payload == "inner");
  // While the handler waits, its reader thread still takes frames and hands them on.
  REQUIRE(b.conn->send(Kind::kLog, 0, "meanwhile"));
  REQUIRE(wait_for(a.mutex, a.cv, [&] { return !a.others.empty(); }));
  REQUIRE(b.conn->reply(call->id, "the answer"));
  asker.join();
  REQUIRE(outer);
  CHECK(outer->payload == "outer got the answer");
  std::lock_guard lock(a.mutex);
  CHECK(a.others == std::vector<std::pair<std::string, bool>>{{"meanwhile", true}});
  REQUIRE(a.answer);
  REQUIRE(a.answer->has_value());
  CHECK((*a.answer)->payload == "the answer");
}

TEST_CASE("isolation connection: the end of the stream while a handler waits fails that wait, then closes once",
          "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  AskingPeer a(a_fd);
  Peer b(b_fd);
  REQUIRE(b.conn->send(Kind::kRequest, 7, "outer"));
  REQUIRE(b.next());  // the log
  REQUIRE(b.next());  // the call the handler waits for
  b.conn->close();
  REQUIRE(wait_for(a.mutex, a.cv, [&] { return a.closed_calls > 0; }));
  std::lock_guard lock(a.mutex);
  REQUIRE(a.answer);
  CHECK_FALSE(a.answer->has_value());
  CHECK(a.handler_done_before_close);  // the closed callback runs after the handler returned
  CHECK(a.closed_calls == 1);
  CHECK(a.conn->closed());
}

TEST_CASE("isolation connection: frames sent by a thread with a poster leave together once its job runs",
          "[isolation][connection]") {
  const auto [a_fd, b_fd] = socket_pair();
  Peer b(b_fd);
  auto a = std::make_shared<Connection>(a_fd, [](Frame) {}, [](const std::string&, bool) {});
  a->start();
  std::vector<std::function<void()>> jobs;
  const keel::host::ThreadPoster poster = [&](std::function<void()> job) { jobs.push_back(std::move(job)); };
  keel::host::thread_poster() = &poster;
  CHECK(a->send(Kind::kLog, 0, "one"));
  CHECK(a->send(Kind::kLog, 0, "two"));
  CHECK(jobs.size() == 1);  // one job writes them all
  CHECK_FALSE(b.next(100ms));
  jobs.front()();
  jobs.clear();
  for (const auto* want : {"one", "two"}) {
    const auto f = b.next();
    REQUIRE(f);
    CHECK(f->payload == want);
  }
  // A request this thread waits for is never put off, and what was put off goes ahead of it.
  CHECK(a->send(Kind::kLog, 0, "three"));
  std::optional<Frame> reply;
  std::thread answer([&] {
    const auto three = b.next();
    const auto call = b.next();
    if (three && call && three->payload == "three" && call->payload == "call") static_cast<void>(b.conn->reply(call->id, "ok"));
  });
  reply = a->request(Kind::kCall, "call", 10s);
  answer.join();
  keel::host::thread_poster() = nullptr;
  REQUIRE(reply);
  CHECK(reply->payload == "ok");
  CHECK(jobs.size() == 1);  // its job finds nothing left to write
  jobs.front()();
  a->join();
}
