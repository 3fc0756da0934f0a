// keel-plugin-runner without the host: the test starts the real binary with a socketpair on fd 3
// and a fixture plugin (a memfd copy) on fd 4, plays the host's side of docs/isolation.md with
// its own isolation::Connection, and checks every frame the runner sends back. Loopback only
// (a Unix socketpair); every wait is bounded.
#include <catch2/catch.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <elf.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <keel/storage.h>

#include "isolation/connection.hpp"
#include "isolation/wire.hpp"
#include "keel_host.hpp"

using keel::test::fixture;
using namespace keel::host::isolation;
using namespace std::chrono_literals;
using namespace std::literals;

namespace {

constexpr auto kWait = 10s;
const std::string kTraceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  REQUIRE(in);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The ".keel_manifest" section of an ELF64 plugin, as the host reads it before dlopen.
std::string manifest_of(const std::filesystem::path& so) {
  const auto data = read_file(so);
  Elf64_Ehdr eh{};
  REQUIRE(data.size() >= sizeof eh);
  std::memcpy(&eh, data.data(), sizeof eh);
  REQUIRE(std::memcmp(eh.e_ident, ELFMAG, SELFMAG) == 0);
  REQUIRE(eh.e_ident[EI_CLASS] == ELFCLASS64);
  REQUIRE(eh.e_shentsize == sizeof(Elf64_Shdr));
  REQUIRE(eh.e_shoff + std::size_t{eh.e_shnum} * sizeof(Elf64_Shdr) <= data.size());
  auto section = [&](std::size_t i) {
    Elf64_Shdr sh{};
    std::memcpy(&sh, data.data() + eh.e_shoff + i * sizeof sh, sizeof sh);
    return sh;
  };
  const auto names = section(eh.e_shstrndx);
  for (std::size_t i = 0; i < eh.e_shnum; ++i) {
    const auto sh = section(i);
    REQUIRE(names.sh_offset + sh.sh_name < data.size());
    if (std::strcmp(data.c_str() + names.sh_offset + sh.sh_name, ".keel_manifest") != 0) continue;
    REQUIRE(sh.sh_offset + sh.sh_size <= data.size());
    auto text = data.substr(sh.sh_offset, sh.sh_size);
    while (!text.empty() && text.back() == '\0') text.pop_back();
    return text;
  }
  FAIL("no .keel_manifest section in " << so);
  return {};
}

std::optional<int> exit_code_of(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return std::nullopt;
}

/// The runner child: fd 3 is its end of a socketpair, fd 4 a memfd with the plugin's code, as
/// the host sets it up. Killed in the destructor if it is still running.
class RunnerProcess {
 public:
  RunnerProcess(const std::string& plugin_name, const std::filesystem::path& so) {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    const int code = ::memfd_create("keel-plugin-test", MFD_CLOEXEC);
    REQUIRE(code >= 0);
    const auto bytes = read_file(so);
    REQUIRE(::write(code, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
    const std::string binary = KEEL_RUNNER_BINARY;
    pid_ = ::fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      // Only async-signal-safe calls between fork and exec (this process has threads). Both
      // descriptors move above 4 first, so dup2 onto 3 and 4 cannot clobber either of them;
      // dup2 clears close-on-exec on the copies.
      const int s = ::fcntl(fds[1], F_DUPFD_CLOEXEC, 10);
      const int c = ::fcntl(code, F_DUPFD_CLOEXEC, 10);
      if (s < 0 || c < 0 || ::dup2(s, 3) < 0 || ::dup2(c, 4) < 0) ::_exit(127);
      ::execl(binary.c_str(), "keel-plugin-runner", plugin_name.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    ::close(fds[1]);
    ::close(code);
    host_fd_ = fds[0];
  }
  ~RunnerProcess() {
    if (pid_ > 0 && !status_) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
  }
  RunnerProcess(const RunnerProcess&) = delete;
  RunnerProcess& operator=(const RunnerProcess&) = delete;

  /// The host's end of the socket; the caller takes ownership (once).
  int take_host_fd() { return std::exchange(host_fd_, -1); }

  /// Waits up to `limit` for the runner to exit; its exit code (128 + signal when killed).
  std::optional<int> wait(std::chrono::milliseconds limit) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (!status_) {
      int st = 0;
      const auto r = ::waitpid(pid_, &st, WNOHANG);
      if (r == pid_) {
        status_ = exit_code_of(st);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
      std::this_thread::sleep_for(10ms);
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  int host_fd_ = -1;
  std::optional<int> status_;
};

/// The host's side: a Connection whose handler answers the runner's requests with `answer`
/// (on the reader thread, so it must not block) and records every frame that is not a reply.
class FakeHost {
 public:
  /// Returns the reply payload for a runner -> host request, or nullopt for no reply.
  using Answer = std::function<std::optional<std::string>(const Frame&)>;

  explicit FakeHost(RunnerProcess& runner, Answer answer = {}) : answer_(std::move(answer)) {
    conn_ = std::make_unique<Connection>(
        runner.take_host_fd(),
        [this](Frame f) {
          std::optional<std::string> reply;
          if (answer_) reply = answer_(f);
          if (reply && f.id != 0) static_cast<void>(conn_->reply(f.id, *reply));
          {
            std::lock_guard lock(mutex_);
            received_.push_back(std::move(f));
          }
          cv_.notify_all();
        },
        [this](const std::string& why, bool) {
          {
            std::lock_guard lock(mutex_);
            closed_ = why;
          }
          cv_.notify_all();
        });
    conn_->start();
  }

  Connection& conn() { return *conn_; }

  /// Sends a host -> runner request and waits for the reply (bounded).
  Frame ask(Kind kind, std::string_view payload) {
    auto reply = conn_->request(kind, payload, kWait);
    REQUIRE(reply);
    return std::move(*reply);
  }

  /// The next frame of `kind` the runner sent (taken out of the record), waiting up to `limit`.
  std::optional<Frame> next(Kind kind, std::chrono::milliseconds limit = kWait) {
    std::unique_lock lock(mutex_);
    std::optional<Frame> out;
    cv_.wait_for(lock, limit, [&] {
      for (auto it = received_.begin(); it != received_.end(); ++it) {
        if (it->kind != kind) continue;
        out = std::move(*it);
        received_.erase(it);
        return true;
      }
      return false;
    });
    return out;
  }

  std::size_t count(Kind kind) {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& f : received_) n += f.kind == kind ? 1 : 0;
    return n;
  }

  void close() { conn_->close(); }

 private:
  Answer answer_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Frame> received_;
  std::optional<std::string> closed_;
  std::unique_ptr<Connection> conn_;  // last: its reader thread uses the members above
};

std::string hello_payload(std::string_view name, std::string_view manifest, std::uint32_t threads = 2,
                          std::uint32_t queue_limit = 16, std::uint32_t version = kWireVersion) {
  Writer w;
  w.u32(version);
  w.bytes(name);
  w.bytes(manifest);
  w.i32(KEEL_LOG_DEBUG);
  w.u32(threads);
  w.u32(queue_limit);
  const auto limits = FrameLimits::from(1u << 20, 1u << 20);
  w.u32(limits.respond);
  w.u32(limits.publish);
  w.u64(limits.response_body);
  return w.take();
}

struct HelloReply {
  keel_status status = KEEL_ERR_INTERNAL;
  std::uint32_t abi = 0;
  std::uint32_t hooks = 0;  // bit 0 start, 1 stop, 2 on_request, 3 on_event, 4 health
  std::string error;
};

HelloReply parse_hello(const Frame& f) {
  Reader r = f.reader();
  HelloReply h;
  h.status = r.i32();
  h.abi = r.u32();
  h.hooks = r.u32();
  h.error = std::string(r.bytes());
  REQUIRE(r.done());
  return h;
}

Writer context_writer(const Context& c = {}) {
  Writer w;
  encode_context(w, c);
  return w;
}

keel_status status_of(const Frame& f) {
  Reader r = f.reader();
  const auto st = r.i32();
  REQUIRE(r.done());
  return st;
}

/// A lifecycle hook (create, start, stop) with an empty context; its status.
keel_status lifecycle(FakeHost& host, Kind kind, std::string_view config = "{}") {
  auto w = context_writer();
  if (kind == Kind::kCreate) w.bytes(config);
  return status_of(host.ask(kind, w.data()));
}

void load_and_start(FakeHost& host, const std::string& name, std::uint32_t threads = 2, std::uint32_t limit = 16) {
  const auto hello = parse_hello(host.ask(Kind::kHello, hello_payload(name, manifest_of(fixture(name)), threads, limit)));
  REQUIRE(hello.error.empty());
  REQUIRE(hello.status == KEEL_OK);
  CHECK(hello.abi == KEEL_ABI_VERSION);
  REQUIRE(lifecycle(host, Kind::kCreate) == KEEL_OK);
  REQUIRE(lifecycle(host, Kind::kStart) == KEEL_OK);
}

struct RequestSpec {
  Context context;
  keel_responder responder = 1;
  bool may_block = true;  // false: the runner runs it on its reader thread
  std::uint32_t route = 0;
  std::string method = "GET", path = "/";
  std::vector<std::pair<std::string, std::string>> params, query, headers;
  std::string body;
};

std::string request_payload(const RequestSpec& s) {
  auto w = context_writer(s.context);
  w.u64(s.responder);
  w.u8(s.may_block ? 1 : 0);
  std::vector<keel_host_kv> params, query, headers;
  auto fill = [](std::vector<keel_host_kv>& out, const std::vector<std::pair<std::string, std::string>>& in) {
    for (const auto& [n, v] : in) out.push_back({{n.data(), n.size()}, {v.data(), v.size()}});
  };
  fill(params, s.params);
  fill(query, s.query);
  fill(headers, s.headers);
  keel_request req{};
  req.struct_size = sizeof req;
  req.route_index = s.route;
  req.method = {s.method.data(), s.method.size()};
  req.path = {s.path.data(), s.path.size()};
  req.path_params = {params.data(), params.size()};
  req.query = {query.data(), query.size()};
  req.headers = {headers.data(), headers.size()};
  req.body = {s.body.data(), s.body.size()};
  encode_request(w, req);
  return w.take();
}

/// A `respond` frame, decoded.
struct Respond {
  Context context;
  std::string request_id, traceparent;
  std::int64_t remaining_ns = 0;
  keel_responder responder = 0;
  int status = 0;
  std::string content_type, body;
  std::vector<std::pair<std::string, std::string>> headers;
};

Respond parse_respond(const Frame& f) {
  Reader r = f.reader();
  const auto c = decode_context(r);
  Respond out;
  out.request_id = std::string(c.request_id);
  out.traceparent = std::string(c.traceparent);
  out.remaining_ns = c.remaining_ns;
  out.responder = r.u64();
  keel_response res{};
  std::vector<keel_plugin_kv> kv;
  decode_response(r, res, kv);
  REQUIRE(r.done());
  out.status = res.status;
  out.content_type = std::string(res.content_type.ptr != nullptr ? res.content_type.ptr : "", res.content_type.len);
  out.body = std::string(res.body.ptr != nullptr ? res.body.ptr : "", res.body.len);
  for (std::size_t i = 0; i < res.headers.count; ++i)
    out.headers.emplace_back(std::string(res.headers.items[i].name.ptr, res.headers.items[i].name.len),
                             std::string(res.headers.items[i].value.ptr, res.headers.items[i].value.len));
  return out;
}

std::string status_payload(keel_status st) {
  Writer w;
  w.i32(st);
  return w.take();
}

/// Answers get_extension with "available" and leaves the rest unanswered (respond has no reply).
std::optional<std::string> default_answer(const Frame& f) {
  if (f.kind == Kind::kGetExtension) return std::string(1, '\1');
  return std::nullopt;
}

}  // namespace

TEST_CASE("runner serves a plugin: hello, create, start, requests, health, stop, destroy", "[isolation][runner]") {
  RunnerProcess runner("no_op", fixture("no_op"));
  FakeHost host(runner, default_answer);

  const auto hello = parse_hello(host.ask(Kind::kHello, hello_payload("no_op", manifest_of(fixture("no_op")))));
  CHECK(hello.status == KEEL_OK);
  CHECK(hello.abi == KEEL_ABI_VERSION);
  CHECK(hello.hooks == 4u);  // no_op has on_request only
  CHECK(hello.error.empty());
  CHECK(host.ask(Kind::kPing, {}).payload.empty());
  CHECK(lifecycle(host, Kind::kCreate) == KEEL_OK);
  CHECK(lifecycle(host, Kind::kStart) == KEEL_OK);

  // GET /ping: the plugin responds inside on_request, so respond reaches the host (with the
  // request's id, trace and deadline) before the request's own reply.
  RequestSpec ping;
  ping.context = {"req-1", kTraceparent, 5'000'000'000};
  ping.responder = 77;
  ping.path = "/api/no_op/ping";
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(ping))) == KEEL_OK);
  auto respond = host.next(Kind::kRespond, 0ms);
  REQUIRE(respond);
  CHECK(respond->id == 0);  // one way: nobody waits for a reply
  const auto r1 = parse_respond(*respond);
  CHECK(r1.request_id == "req-1");
  CHECK(r1.traceparent == kTraceparent);
  CHECK(r1.remaining_ns > 0);
  CHECK(r1.remaining_ns <= 5'000'000'000);
  CHECK(r1.responder == 77);
  CHECK(r1.status == 200);
  CHECK(r1.content_type == "text/plain");
  CHECK(r1.body == "pong");

  // GET /query: the query list crosses the socket in order, decoded.
  RequestSpec query;
  query.responder = 78;
  query.route = 1;
  query.path = "/api/no_op/query";
  query.query = {{"a", "1"}, {"b", "two words"}, {"a", ""}};
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(query))) == KEEL_OK);
  respond = host.next(Kind::kRespond, 0ms);
  REQUIRE(respond);
  const auto r2 = parse_respond(*respond);
  CHECK(r2.responder == 78);
  CHECK(r2.body == "a=1\nb=two words\na=\n");
  CHECK(r2.request_id.empty());  // no context: none invented
  CHECK(r2.remaining_ns == 0);

  // A route that does not block runs on the reader thread: its respond leaves before its reply,
  // in one write with it.
  query.responder = 79;
  query.may_block = false;
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(query))) == KEEL_OK);
  respond = host.next(Kind::kRespond, 0ms);
  REQUIRE(respond);
  CHECK(parse_respond(*respond).responder == 79);

  // A truncated request frame is refused without reaching the plugin.
  auto broken = request_payload(ping);
  broken.resize(broken.size() - 3);
  CHECK(status_of(host.ask(Kind::kRequest, broken)) == KEEL_ERR_INVALID_ARGUMENT);
  // Unknown kinds are ignored; the runner keeps answering.
  REQUIRE(host.conn().send(static_cast<Kind>(30), 0, "whatever"));
  REQUIRE(host.conn().send(static_cast<Kind>(200), 9, "whatever"));
  CHECK(host.ask(Kind::kPing, {}).payload.empty());

  // No health hook: PASS with no detail.
  {
    const auto health = host.ask(Kind::kHealth, context_writer().data());
    Reader r = health.reader();
    CHECK(r.i32() == KEEL_HEALTH_PASS);
    CHECK(r.bytes().empty());
    CHECK(r.done());
  }
  CHECK(lifecycle(host, Kind::kStop) == KEEL_OK);
  CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
  CHECK(host.count(Kind::kRespond) == 0);

  // Destroyed: hooks are refused, ping still works, and closing the socket ends the runner.
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(ping))) == KEEL_ERR_UNAVAILABLE);
  CHECK(host.ask(Kind::kPing, {}).payload.empty());
  host.close();
  CHECK(runner.wait(kWait) == 0);
}

TEST_CASE("runner refuses a hello it cannot serve and says why", "[isolation][runner]") {
  std::string plugin = "no_op";
  std::string manifest = manifest_of(fixture("no_op"));
  std::string name = plugin;
  std::uint32_t version = kWireVersion;
  std::string expected;
  std::uint32_t expected_abi = 0;
  SECTION("a manifest that differs from the plugin's") {
    manifest.insert(manifest.size() - 1, " ");
    expected = "keel_plugin.manifest differs from the manifest the host read";
    expected_abi = KEEL_ABI_VERSION;
  }
  SECTION("another wire version") {
    version = kWireVersion + 1;
    expected = "wire version mismatch: the host speaks " + std::to_string(kWireVersion + 1);
  }
  SECTION("another plugin name") {
    name = "other";
    expected = "plugin name 'other' differs from the runner's argument 'no_op'";
  }
  SECTION("no entry symbol") {
    plugin = name = "missing_entry";
    manifest = manifest_of(fixture(plugin));
    expected = "entry symbol keel_plugin_entry_v1 not found";
  }
  SECTION("another ABI major") {
    plugin = name = "abi_major_mismatch";
    manifest = manifest_of(fixture(plugin));
    expected = "ABI major mismatch: plugin built for ABI 2.0, runner implements ABI 1.0";
    expected_abi = 2u << 16;
  }
  RunnerProcess runner(plugin, fixture(plugin));
  FakeHost host(runner, default_answer);
  const auto hello = parse_hello(host.ask(Kind::kHello, hello_payload(name, manifest, 2, 16, version)));
  CHECK(hello.status < 0);
  INFO(hello.error);
  CHECK(hello.error.find(expected) != std::string::npos);
  CHECK(hello.abi == expected_abi);
  CHECK(hello.hooks == 0u);
  // Nothing is loaded: lifecycle hooks are refused, ping still answered.
  CHECK(lifecycle(host, Kind::kCreate) == KEEL_ERR_UNAVAILABLE);
  CHECK(host.ask(Kind::kPing, {}).payload.empty());
  host.close();
  CHECK(runner.wait(kWait) == 1);
}

TEST_CASE("runner leaves on its own shortly after a refused hello", "[isolation][runner]") {
  RunnerProcess runner("no_op", fixture("no_op"));
  FakeHost host(runner, default_answer);
  const auto hello = parse_hello(host.ask(Kind::kHello, hello_payload("no_op", "{}")));
  CHECK(hello.status < 0);
  const auto start = std::chrono::steady_clock::now();
  CHECK(runner.wait(kWait) == 1);
  CHECK(std::chrono::steady_clock::now() - start < 5s);
}

TEST_CASE("runner exits 0 when the host closes without destroy", "[isolation][runner]") {
  RunnerProcess runner("no_op", fixture("no_op"));
  FakeHost host(runner, default_answer);
  load_and_start(host, "no_op");
  host.close();
  CHECK(runner.wait(kWait) == 0);
}

TEST_CASE("runner proxies call: reply, call_done once, completion in the frame's context, destroy drains",
          "[isolation][runner]") {
  std::mutex m;
  std::deque<keel_status> call_answers;  // what the host answers to the next `call` frames
  RunnerProcess runner("caller", fixture("caller"));
  FakeHost host(runner, [&](const Frame& f) -> std::optional<std::string> {
    if (f.kind == Kind::kCall) {
      std::lock_guard lock(m);
      const auto st = call_answers.empty() ? KEEL_ERR_INTERNAL : call_answers.front();
      if (!call_answers.empty()) call_answers.pop_front();
      return status_payload(st);
    }
    return default_answer(f);
  });
  load_and_start(host, "caller");
  auto answer_calls_with = [&](keel_status st) {
    std::lock_guard lock(m);
    call_answers.push_back(st);
  };

  RequestSpec req;
  req.context = {"req-c", kTraceparent, 3'000'000'000};
  req.responder = 5;
  req.route = 0;
  req.path = "/api/caller/call/ping";
  req.params = {{"what", "ping"}};

  SECTION("a call the host completes") {
    answer_calls_with(KEEL_OK);
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(req))) == KEEL_OK);
    const auto call = host.next(Kind::kCall);
    REQUIRE(call);
    Reader r = call->reader();
    const auto c = decode_context(r);
    CHECK(c.request_id == "req-c");
    CHECK(c.traceparent == kTraceparent);
    CHECK(c.remaining_ns > 0);
    const auto call_id = r.u64();
    CHECK(call_id != 0);
    keel_call_args args{};
    std::vector<keel_plugin_kv> kv;
    decode_call_args(r, args, kv);
    REQUIRE(r.done());
    CHECK(std::string_view(args.target_plugin.ptr, args.target_plugin.len) == "no_op");
    CHECK(std::string_view(args.method.ptr, args.method.len) == "GET");
    CHECK(std::string_view(args.path.ptr, args.path.len) == "/ping");
    CHECK(host.count(Kind::kRespond) == 0);  // the answer waits for the completion

    // call_done, in a context of its own: the completion (which responds) runs inside it.
    const std::string done_trace = "00-11111111111111111111111111111111-2222222222222222-01";
    auto w = context_writer({"req-c", done_trace, 2'000'000'000});
    w.u64(call_id);
    w.i32(KEEL_OK);
    w.u8(1);
    const keel_host_kv headers[] = {{{"X-From", 6}, {"no_op", 5}}};
    keel_call_response res{};
    res.struct_size = sizeof res;
    res.status = 200;
    res.headers = {headers, 1};
    res.content_type = {"text/plain", 10};
    res.body = {"pong", 4};
    encode_call_response(w, res);
    REQUIRE(host.conn().send(Kind::kCallDone, 0, w.data()));
    const auto respond = host.next(Kind::kRespond);
    REQUIRE(respond);
    const auto out = parse_respond(*respond);
    CHECK(out.responder == 5);
    CHECK(out.status == 200);
    CHECK(out.body == "pong");
    CHECK(out.content_type == "text/plain");
    CHECK(out.request_id == "req-c");
    CHECK(out.traceparent == done_trace);
    CHECK(out.remaining_ns > 0);
    CHECK(out.remaining_ns <= 2'000'000'000);

    // A second call_done for the same id completes nothing.
    REQUIRE(host.conn().send(Kind::kCallDone, 0, w.data()));
    CHECK_FALSE(host.next(Kind::kRespond, 300ms));
    CHECK(lifecycle(host, Kind::kStop) == KEEL_OK);
    CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
  }

  SECTION("a call the host refuses") {
    answer_calls_with(KEEL_ERR_NOT_FOUND);
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(req))) == KEEL_OK);
    const auto respond = host.next(Kind::kRespond);
    REQUIRE(respond);
    const auto out = parse_respond(*respond);
    CHECK(out.status == 502);
    CHECK(out.body == "call failed rc=-2");
    CHECK(lifecycle(host, Kind::kStop) == KEEL_OK);
    CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
  }

  SECTION("a call still pending at destroy completes with UNAVAILABLE before destroy") {
    answer_calls_with(KEEL_OK);
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(req))) == KEEL_OK);
    REQUIRE(host.next(Kind::kCall));
    CHECK(lifecycle(host, Kind::kStop) == KEEL_OK);
    CHECK(host.count(Kind::kRespond) == 0);
    // The destroy reply comes only after the completion ran (and responded).
    CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
    const auto respond = host.next(Kind::kRespond, 0ms);
    REQUIRE(respond);
    const auto out = parse_respond(*respond);
    CHECK(out.status == 502);
    CHECK(out.body == "call failed rc=" + std::to_string(KEEL_ERR_UNAVAILABLE));
    CHECK(out.request_id == "req-c");  // the context call() ran in
  }

  host.close();
  CHECK(runner.wait(kWait) == 0);
}

TEST_CASE("runner answers ping while its workers are busy and refuses hooks beyond the queue", "[isolation][runner]") {
  RunnerProcess runner("slow_handler", fixture("slow_handler"));
  FakeHost host(runner, default_answer);
  load_and_start(host, "slow_handler", 1, 1);

  std::mutex m;
  std::condition_variable cv;
  std::vector<keel_status> done;
  auto async_request = [&](RequestSpec spec) {
    // The callback runs on the connection's reader thread: no Catch2 assertions there.
    host.conn().request_async(Kind::kRequest, request_payload(spec), [&](std::optional<Frame> f) {
      keel_status st = KEEL_ERR_INTERNAL;
      if (f) {
        Reader r = f->reader();
        st = r.i32();
        if (!r.done()) st = KEEL_ERR_INTERNAL;
      }
      std::lock_guard lock(m);
      done.push_back(st);
      cv.notify_all();
    });
  };
  RequestSpec slow;
  slow.responder = 1;
  slow.route = 0;  // sleeps 2 s on the only worker
  RequestSpec fast;
  fast.responder = 2;
  fast.route = 1;
  async_request(slow);
  std::this_thread::sleep_for(300ms);  // the worker has taken it: the queue is empty again
  async_request(fast);                 // queued behind it (the queue holds one)
  fast.responder = 3;
  std::this_thread::sleep_for(100ms);
  const auto busy_start = std::chrono::steady_clock::now();
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(fast))) == KEEL_ERR_BUSY);
  CHECK(std::chrono::steady_clock::now() - busy_start < 1s);
  // The reader answers ping itself, with every worker busy.
  const auto ping_start = std::chrono::steady_clock::now();
  CHECK(host.ask(Kind::kPing, {}).payload.empty());
  CHECK(std::chrono::steady_clock::now() - ping_start < 1s);
  {
    std::lock_guard lock(m);
    CHECK(done.empty());
  }
  {
    std::unique_lock lock(m);
    REQUIRE(cv.wait_for(lock, kWait, [&] { return done.size() == 2; }));
    CHECK(done == std::vector<keel_status>{KEEL_OK, KEEL_OK});
  }
  const auto first = host.next(Kind::kRespond);
  const auto second = host.next(Kind::kRespond);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(parse_respond(*first).body == "slow");
  CHECK(parse_respond(*second).body == "fast");
  // The slow handler logged what respond returned: the log frame carries level and text.
  const auto log = host.next(Kind::kLog);
  REQUIRE(log);
  Reader r = log->reader();
  static_cast<void>(decode_context(r));
  CHECK(r.i32() == KEEL_LOG_INFO);
  CHECK(r.bytes() == "slow responded rc=0");
  CHECK(r.done());
  host.close();
  CHECK(runner.wait(kWait) == 0);
}

TEST_CASE("runner proxies keel.storage/1: exec rows, parameters, errors, kv_get, logs, health detail",
          "[isolation][runner]") {
  std::mutex m;
  std::function<std::optional<std::string>(const Frame&)> storage_answer;
  RunnerProcess runner("store", fixture("store"));
  FakeHost host(runner, [&](const Frame& f) -> std::optional<std::string> {
    if (f.kind >= Kind::kSqlExec && f.kind <= Kind::kSqlPublish) {
      std::lock_guard lock(m);
      if (storage_answer) return storage_answer(f);
    }
    return default_answer(f);
  });
  // Each request runs on a worker, or on the reader thread, which then reads the socket itself
  // while the plugin waits for the host's answer (a route that does not block).
  const bool may_block = GENERATE(true, false);
  load_and_start(host, "store");
  // create asked for the extension, with the extension id.
  {
    const auto ext = host.next(Kind::kGetExtension, 0ms);
    REQUIRE(ext);
    Reader r = ext->reader();
    static_cast<void>(decode_context(r));
    CHECK(r.bytes() == KEEL_STORAGE_EXTENSION_ID);
    CHECK(r.done());
  }
  auto answer_storage = [&](std::function<std::optional<std::string>(const Frame&)> fn) {
    std::lock_guard lock(m);
    storage_answer = std::move(fn);
  };
  // One sql_exec reply: a single row of `values` under `names`.
  auto exec_reply = [](keel_status st, const std::vector<std::string>& names, const std::vector<keel_sql_value>& row,
                       std::string_view error) {
    Writer w;
    w.i32(st);
    w.i64(0);
    w.i64(0);
    w.i64(row.empty() ? 0 : 1);
    w.u32(static_cast<std::uint32_t>(names.size()));
    for (const auto& n : names) w.bytes(n);
    w.u32(row.empty() ? 0 : 1);
    for (const auto& v : row) encode_sql_value(w, v);
    w.bytes(error);
    return w.take();
  };

  SECTION("GET /count: a row of one integer") {
    std::string seen_sql;
    std::uint64_t seen_txn = 99;
    std::uint8_t want_rows = 0;
    answer_storage([&](const Frame& f) -> std::optional<std::string> {
      Reader r = f.reader();
      static_cast<void>(decode_context(r));
      seen_txn = r.u64();
      seen_sql = std::string(r.bytes());
      std::vector<keel_sql_param> params;
      decode_sql_params(r, params);
      want_rows = r.u8();
      keel_sql_value v{};
      v.type = KEEL_SQL_INTEGER;
      v.integer = 42;
      return exec_reply(KEEL_OK, {"count(*)"}, {v}, {});
    });
    RequestSpec count;
    count.may_block = may_block;
    count.responder = 11;
    count.route = 2;
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(count))) == KEEL_OK);
    const auto respond = host.next(Kind::kRespond, 0ms);
    REQUIRE(respond);
    CHECK(parse_respond(*respond).body == "42");
    std::lock_guard lock(m);
    CHECK(seen_sql == "SELECT count(*) FROM items");
    CHECK(seen_txn == KEEL_TXN_NONE);
    CHECK(want_rows == 1);
  }

  SECTION("GET /items/{id}: an integer parameter, a text value with a NUL") {
    std::vector<keel_sql_param> seen;
    std::string keep;  // the params view into the frame: copy what the test checks
    answer_storage([&](const Frame& f) -> std::optional<std::string> {
      Reader r = f.reader();
      static_cast<void>(decode_context(r));
      static_cast<void>(r.u64());
      keep = std::string(r.bytes());
      decode_sql_params(r, seen);
      keel_sql_value v{};
      v.type = KEEL_SQL_TEXT;
      v.bytes = {"hello\0world", 11};
      return exec_reply(KEEL_OK, {"body"}, {v}, {});
    });
    RequestSpec get;
    get.may_block = may_block;
    get.responder = 12;
    get.route = 1;
    get.params = {{"id", "7"}};
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(get))) == KEEL_OK);
    const auto respond = host.next(Kind::kRespond, 0ms);
    REQUIRE(respond);
    CHECK(parse_respond(*respond).body == "hello\0world"s);
    std::lock_guard lock(m);
    CHECK(keep == "SELECT body FROM items WHERE id = ?");
    REQUIRE(seen.size() == 1);
    CHECK(seen[0].type == KEEL_SQL_INTEGER);
    CHECK(seen[0].integer == 7);
  }

  SECTION("a storage failure reaches the plugin as its status") {
    answer_storage([&](const Frame&) -> std::optional<std::string> {
      return exec_reply(KEEL_ERR_BUSY, {}, {}, "database is locked");
    });
    RequestSpec count;
    count.may_block = may_block;
    count.responder = 13;
    count.route = 2;
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(count))) == KEEL_ERR_BUSY);
    CHECK(host.count(Kind::kRespond) == 0);
  }

  SECTION("a malformed storage reply is KEEL_ERR_INTERNAL, not a crash") {
    answer_storage([&](const Frame&) -> std::optional<std::string> { return status_payload(KEEL_OK); });
    RequestSpec count;
    count.may_block = may_block;
    count.responder = 14;
    count.route = 2;
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(count))) == KEEL_ERR_INTERNAL);
  }

  SECTION("GET /kv/{key}: the entry's value and version") {
    std::string seen_key;
    answer_storage([&](const Frame& f) -> std::optional<std::string> {
      if (f.kind != Kind::kKvGet) return std::nullopt;
      Reader r = f.reader();
      static_cast<void>(decode_context(r));
      static_cast<void>(r.u64());
      seen_key = std::string(r.bytes());
      Writer w;
      w.i32(KEEL_OK);
      keel_kv_entry e{};
      e.key = {"k1", 2};
      e.value = {"v1", 2};
      e.version = 3;
      encode_kv_entry(w, e);
      w.bytes({});
      return w.take();
    });
    RequestSpec kv;
    kv.may_block = may_block;
    kv.responder = 15;
    kv.route = 6;
    kv.params = {{"key", "k1"}};
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(kv))) == KEEL_OK);
    const auto respond = host.next(Kind::kRespond, 0ms);
    REQUIRE(respond);
    const auto out = parse_respond(*respond);
    CHECK(out.body == "v1");
    CHECK(out.headers == std::vector<std::pair<std::string, std::string>>{{"ETag", "3"}});
    std::lock_guard lock(m);
    CHECK(seen_key == "k1");
  }

  SECTION("health reports the plugin's state and detail") {
    RequestSpec warn;
    warn.may_block = may_block;
    warn.responder = 16;
    warn.route = 9;
    warn.method = "POST";
    warn.params = {{"state", "warn"}};
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(warn))) == KEEL_OK);
    const auto health = host.ask(Kind::kHealth, context_writer().data());
    Reader r = health.reader();
    CHECK(r.i32() == KEEL_HEALTH_WARN);
    CHECK(r.bytes() == "marked warn by POST /health/warn");
    CHECK(r.done());
  }

  SECTION("a failed statement's message reaches the plugin; log_level frames decide which lines cross") {
    answer_storage([&](const Frame&) -> std::optional<std::string> {
      return exec_reply(KEEL_ERR_PERMISSION_DENIED, {}, {}, "not authorized: ATTACH");
    });
    RequestSpec sql;
    sql.may_block = may_block;
    sql.responder = 17;
    sql.route = 7;
    sql.method = "POST";
    sql.body = "ATTACH 'x' AS y";
    auto level = [&](keel_log_level l) {
      Writer w;
      w.i32(l);
      REQUIRE(host.conn().send(Kind::kLogLevel, 0, w.data()));
    };
    level(KEEL_LOG_ERROR);  // the plugin's warning is below it: not sent
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(sql))) == KEEL_ERR_PERMISSION_DENIED);
    CHECK(host.count(Kind::kLog) == 0);
    level(KEEL_LOG_WARN);
    CHECK(status_of(host.ask(Kind::kRequest, request_payload(sql))) == KEEL_ERR_PERMISSION_DENIED);
    const auto log = host.next(Kind::kLog, 0ms);
    REQUIRE(log);
    Reader r = log->reader();
    static_cast<void>(decode_context(r));
    CHECK(r.i32() == KEEL_LOG_WARN);
    const auto text = r.bytes();
    CHECK(text.find("sql refused: not authorized: ATTACH") != std::string_view::npos);
  }

  CHECK(lifecycle(host, Kind::kStop) == KEEL_OK);
  CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
  host.close();
  CHECK(runner.wait(kWait) == 0);
}

TEST_CASE("runner delivers events one by one with their fields, and on_event's status", "[isolation][runner]") {
  RunnerProcess runner("events_sub", fixture("events_sub"));
  FakeHost host(runner, default_answer);
  const auto hello =
      parse_hello(host.ask(Kind::kHello, hello_payload("events_sub", manifest_of(fixture("events_sub")))));
  REQUIRE(hello.status == KEEL_OK);
  CHECK(hello.hooks == 31u);  // the SDK's table has every optional hook
  REQUIRE(lifecycle(host, Kind::kCreate, R"({"record": false, "delay_ms": 0})") == KEEL_OK);
  REQUIRE(lifecycle(host, Kind::kStart) == KEEL_OK);

  auto event = [&](std::string_view topic, std::string_view payload, std::uint32_t attempt) {
    auto w = context_writer({"req-e", kTraceparent, 0});
    keel_event ev{};
    ev.struct_size = sizeof ev;
    ev.delivery_attempt = attempt;
    ev.topic = {topic.data(), topic.size()};
    ev.payload = {payload.data(), payload.size()};
    ev.content_type = {"text/plain", 10};
    ev.event_id = {"id-1", 4};
    ev.publisher = {"demo", 4};
    ev.timestamp_unix_ns = 1;
    ev.traceparent = {kTraceparent.data(), kTraceparent.size()};
    encode_event(w, ev);
    return status_of(host.ask(Kind::kEvent, w.data()));
  };
  // "fail:1-..." fails its first delivery and succeeds on the second.
  CHECK(event("demo.a", "fail:1-x", 1) == KEEL_ERR_INTERNAL);
  CHECK(event("demo.a", "fail:1-x", 2) == KEEL_OK);
  for (int i = 0; i < 3; ++i) CHECK(event("demo.b", "ok", 1) == KEEL_OK);

  RequestSpec count;
  count.responder = 21;
  count.route = 0;
  count.query = {{"topic", "demo.b"}};
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(count))) == KEEL_OK);
  auto respond = host.next(Kind::kRespond, 0ms);
  REQUIRE(respond);
  CHECK(parse_respond(*respond).body == "3");
  count.query.clear();
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(count))) == KEEL_OK);
  respond = host.next(Kind::kRespond, 0ms);
  REQUIRE(respond);
  CHECK(parse_respond(*respond).body == "4");

  CHECK(lifecycle(host, Kind::kStop) == KEEL_OK);
  CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
  host.close();
  CHECK(runner.wait(kWait) == 0);
}

TEST_CASE("runner gives no storage table when the host says the extension is unavailable", "[isolation][runner]") {
  RunnerProcess runner("store", fixture("store"));
  FakeHost host(runner, [](const Frame& f) -> std::optional<std::string> {
    if (f.kind == Kind::kGetExtension) return std::string(1, '\0');
    return default_answer(f);
  });
  const auto hello = parse_hello(host.ask(Kind::kHello, hello_payload("store", manifest_of(fixture("store")))));
  REQUIRE(hello.status == KEEL_OK);
  // store refuses to be created without its database.
  CHECK(lifecycle(host, Kind::kCreate) < 0);
  CHECK(host.next(Kind::kGetExtension, 0ms));
  // Not created: no destroy() to call, and hooks are refused.
  CHECK(status_of(host.ask(Kind::kRequest, request_payload(RequestSpec{}))) == KEEL_ERR_UNAVAILABLE);
  CHECK(host.ask(Kind::kDestroy, context_writer().data()).payload.empty());
  host.close();
  CHECK(runner.wait(kWait) == 0);
}
