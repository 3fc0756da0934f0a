#include "cluster/nats_link.hpp"

#include <array>
#include <condition_variable>
#include <deque>
#include <stdexcept>
#include <thread>

#include <nats/nats.h>

#include "observability/log.hpp"

namespace keel::host::cluster {
namespace {

std::string describe(natsStatus s) {
  std::string out = natsStatus_GetText(s);
  if (const char* last = nats_GetLastError(nullptr); last != nullptr && *last != '\0' && out != last)
    out += std::string(": ") + last;
  return out;
}

void check(natsStatus s, std::string_view what) {
  if (s != NATS_OK) throw std::runtime_error("NATS " + std::string(what) + ": " + describe(s));
}

}  // namespace

// What the client's threads may touch after the NatsLink is gone: they hold it through a heap
// reference that the last callback (closed, or a subscription's completion) releases.
struct Shared {
  std::mutex mutex;
  bool alive = true;  // false once ~NatsLink began: callbacks do nothing
  NatsLink::OnState on_state;
  std::atomic<bool>* up = nullptr;
  std::shared_ptr<spdlog::logger> log = observability::logger("cluster");
  std::vector<std::shared_ptr<void>> retained;  // closures of the client's callbacks (retain_until_closed)
};

struct NatsLink::Impl {
  natsConnection* conn = nullptr;
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  std::shared_ptr<Shared>* holder = nullptr;  // the client's reference, freed by the closed callback
  // publish_async(): what the sender thread still has to publish.
  struct Outgoing {
    std::string subject, data, reply;
    std::function<void()> failed;
  };
  std::mutex send_mutex;
  std::condition_variable send_ready;
  std::deque<Outgoing> queue;
  std::size_t queued_bytes = 0;
  bool stopping = false;
  std::thread sender;
};

namespace {

void report(std::shared_ptr<Shared>* holder, natsConnection* nc, bool up, const char* what) {
  auto& s = **holder;
  std::lock_guard lock(s.mutex);
  if (!s.alive) return;
  s.up->store(up, std::memory_order_release);
  std::array<char, 256> url{};
  if (up && natsConnection_GetConnectedUrl(nc, url.data(), url.size()) == NATS_OK)
    s.log->info("cluster link {} url={}", what, url.data());
  else if (up)
    s.log->info("cluster link {}", what);
  else
    s.log->warn("cluster link {}: forwarding to other hosts pauses; local routes keep serving", what);
  if (s.on_state) s.on_state(up);
}

void on_connected(natsConnection* nc, void* closure) {
  report(static_cast<std::shared_ptr<Shared>*>(closure), nc, true, "connected");
}
void on_reconnected(natsConnection* nc, void* closure) {
  report(static_cast<std::shared_ptr<Shared>*>(closure), nc, true, "reconnected");
}
void on_disconnected(natsConnection* nc, void* closure) {
  report(static_cast<std::shared_ptr<Shared>*>(closure), nc, false, "lost");
}
void on_closed(natsConnection* /*nc*/, void* closure) {
  delete static_cast<std::shared_ptr<Shared>*>(closure);  // the last callback of the connection
}
void on_error(natsConnection* /*nc*/, natsSubscription* sub, natsStatus err, void* closure) {
  auto& s = **static_cast<std::shared_ptr<Shared>*>(closure);
  const char* subject = sub != nullptr ? natsSubscription_GetSubject(sub) : nullptr;
  s.log->warn("cluster link error subject={} error=\"{}\"", subject != nullptr ? subject : "-", natsStatus_GetText(err));
}

}  // namespace

NatsLink::NatsLink(const LinkOptions& o, OnState on_state) : impl_(std::make_unique<Impl>()) {
  impl_->shared->on_state = std::move(on_state);
  impl_->shared->up = &up_;
  natsOptions* opts = nullptr;
  check(natsOptions_Create(&opts), "options");
  auto* holder = new std::shared_ptr<Shared>(impl_->shared);
  try {
    std::vector<const char*> servers;
    for (const auto& s : o.servers) servers.push_back(s.c_str());
    check(natsOptions_SetServers(opts, servers.data(), static_cast<int>(servers.size())), "servers");
    check(natsOptions_SetNoRandomize(opts, true), "server order");
    if (!o.name.empty()) check(natsOptions_SetName(opts, o.name.c_str()), "name");
    if (!o.token.empty()) check(natsOptions_SetToken(opts, o.token.c_str()), "token");
    if (!o.user.empty()) check(natsOptions_SetUserInfo(opts, o.user.c_str(), o.password.c_str()), "user");
    check(natsOptions_SetTimeout(opts, o.connect_timeout_ms), "timeout");
    check(natsOptions_SetMaxReconnect(opts, -1), "reconnect");  // forever
    check(natsOptions_SetReconnectWait(opts, o.reconnect_wait_ms), "reconnect wait");
    check(natsOptions_SetPingInterval(opts, 2000), "ping interval");
    // A stalled server must not hold a writer (the sender thread, the announcer) forever.
    check(natsOptions_SetWriteDeadline(opts, 2000), "write deadline");
    check(natsOptions_SetMaxPingsOut(opts, 2), "pings out");
    check(natsOptions_SetRetryOnFailedConnect(opts, true, on_connected, holder), "retry");
    check(natsOptions_SetDisconnectedCB(opts, on_disconnected, holder), "callback");
    check(natsOptions_SetReconnectedCB(opts, on_reconnected, holder), "callback");
    check(natsOptions_SetClosedCB(opts, on_closed, holder), "callback");
    check(natsOptions_SetErrorHandler(opts, on_error, holder), "callback");
    const auto s = natsConnection_Connect(&impl_->conn, opts);
    if (s == NATS_OK) {
      up_.store(true, std::memory_order_release);
      std::array<char, 256> url{};
      if (natsConnection_GetConnectedUrl(impl_->conn, url.data(), url.size()) == NATS_OK)
        impl_->shared->log->info("cluster link connected url={}", url.data());
    } else if (s == NATS_NOT_YET_CONNECTED) {
      impl_->shared->log->warn("cluster link: no NATS server answers yet; retrying in the background every {} ms",
                               o.reconnect_wait_ms);
    } else {
      check(s, "connect");
    }
  } catch (...) {
    natsOptions_Destroy(opts);
    if (impl_->conn == nullptr) delete holder;  // no connection: no closed callback will free it
    throw;
  }
  natsOptions_Destroy(opts);
  impl_->holder = holder;
  impl_->sender = std::thread([this] { send_loop(); });
}

void NatsLink::send_loop() {
  auto& i = *impl_;
  std::unique_lock lock(i.send_mutex);
  for (;;) {
    i.send_ready.wait(lock, [&] { return i.stopping || !i.queue.empty(); });
    if (i.queue.empty()) return;  // stopping, and everything queued was sent
    auto out = std::move(i.queue.front());
    i.queue.pop_front();
    i.queued_bytes -= out.data.size();
    lock.unlock();
    if (!publish(out.subject, out.data, out.reply) && out.failed) out.failed();
    lock.lock();
  }
}

bool NatsLink::publish_async(std::string subject, std::string data, std::string reply, std::function<void()> failed) {
  {
    std::lock_guard lock(impl_->send_mutex);
    if (impl_->stopping || impl_->queued_bytes + data.size() > kMaxQueuedBytes) return false;
    impl_->queued_bytes += data.size();
    impl_->queue.push_back({std::move(subject), std::move(data), std::move(reply), std::move(failed)});
  }
  impl_->send_ready.notify_one();
  return true;
}

std::int64_t NatsLink::max_payload() const {
  return impl_->conn != nullptr ? natsConnection_GetMaxPayload(impl_->conn) : 0;
}

NatsLink::~NatsLink() {
  {
    std::lock_guard lock(impl_->send_mutex);
    impl_->stopping = true;
  }
  impl_->send_ready.notify_one();
  if (impl_->sender.joinable()) impl_->sender.join();  // what was queued goes out first
  {
    std::lock_guard lock(impl_->shared->mutex);
    impl_->shared->alive = false;
  }
  if (impl_->conn != nullptr) {
    natsConnection_Close(impl_->conn);  // the closed callback frees the client's reference
    natsConnection_Destroy(impl_->conn);
  }
  up_.store(false);
}

void NatsLink::retain_until_closed(std::shared_ptr<void> object) {
  std::lock_guard lock(impl_->shared->mutex);
  impl_->shared->retained.push_back(std::move(object));
}

std::string NatsLink::connected_url() const {
  std::array<char, 256> url{};
  if (!up() || natsConnection_GetConnectedUrl(impl_->conn, url.data(), url.size()) != NATS_OK) return {};
  return url.data();
}

bool NatsLink::publish(std::string_view subject, std::string_view data, std::string_view reply) {
  const std::string subj(subject);
  const auto len = static_cast<int>(data.size());
  natsStatus s;
  if (reply.empty()) {
    s = natsConnection_Publish(impl_->conn, subj.c_str(), data.data(), len);
  } else {
    const std::string rep(reply);
    s = natsConnection_PublishRequest(impl_->conn, subj.c_str(), rep.c_str(), data.data(), len);
  }
  return s == NATS_OK;
}

std::string NatsLink::new_inbox() const {
  natsInbox* inbox = nullptr;
  check(natsInbox_Create(&inbox), "inbox");
  std::string out(inbox);
  natsInbox_Destroy(inbox);
  return out;
}

natsConnection* NatsLink::native() const noexcept { return impl_->conn; }

void NatsLink::release_library(std::int64_t timeout_ms) {
  if (const auto s = nats_CloseAndWait(timeout_ms); s != NATS_OK)
    observability::logger("cluster")->warn("the NATS client library did not finish in {} ms: {}", timeout_ms,
                                           natsStatus_GetText(s));
}

bool NatsLink::flush(std::int64_t timeout_ms) {
  return up() && natsConnection_FlushTimeout(impl_->conn, timeout_ms) == NATS_OK;
}

// --- subscriptions ---------------------------------------------------------------------------

struct NatsLink::Subscription::State {
  natsSubscription* sub = nullptr;
  const std::atomic<bool>* link_up = nullptr;  // the link outlives its subscriptions
  std::mutex mutex;   // held while the handler runs; the destructor takes it to stop it
  bool closed = false;
  OnMessage fn;
};

NatsLink::Subscription::Subscription(std::shared_ptr<State> s) : state_(std::move(s)) {}

NatsLink::Subscription::~Subscription() {
  // What the server already delivered to this subscription is handled, not dropped (up to 2 s):
  // a request queued here gets its answer instead of waiting for its deadline elsewhere.
  // While the link is down nothing more can arrive, and a drain would only wait out its timeout.
  if (state_->link_up->load() && natsSubscription_Drain(state_->sub) == NATS_OK)
    natsSubscription_WaitForDrainCompletion(state_->sub, 2000);
  {
    std::lock_guard lock(state_->mutex);  // waits for a handler that is running
    state_->closed = true;
  }
  natsSubscription_Unsubscribe(state_->sub);
  natsSubscription_Destroy(state_->sub);
}

std::unique_ptr<NatsLink::Subscription> NatsLink::subscribe(const std::string& subject, const std::string& queue,
                                                            OnMessage fn) {
  // The client keeps a reference of its own, freed by the completion callback (after the last
  // message handler returned); the Subscription holds the other.
  using State = Subscription::State;
  struct Closure {
    std::shared_ptr<State> state;
  };
  auto state = std::make_shared<State>();
  state->fn = std::move(fn);
  state->link_up = &up_;
  auto* closure = new Closure{state};
  const natsMsgHandler on_msg = [](natsConnection*, natsSubscription*, natsMsg* msg, void* c) {
    auto& st = *static_cast<Closure*>(c)->state;
    {
      std::lock_guard lock(st.mutex);
      if (!st.closed) {
        const char* reply = natsMsg_GetReply(msg);
        const Message m{natsMsg_GetSubject(msg), reply != nullptr ? std::string_view(reply) : std::string_view{},
                        std::string_view(natsMsg_GetData(msg), static_cast<std::size_t>(natsMsg_GetDataLength(msg))),
                        natsMsg_IsNoResponders(msg)};
        try {
          st.fn(m);
        } catch (const std::exception& e) {
          observability::logger("cluster")->error("cluster message handler failed subject={} error=\"{}\"", m.subject,
                                                  e.what());
        }
      }
    }
    natsMsg_Destroy(msg);
  };
  natsSubscription* sub = nullptr;
  const auto s = queue.empty()
                     ? natsConnection_Subscribe(&sub, impl_->conn, subject.c_str(), on_msg, closure)
                     : natsConnection_QueueSubscribe(&sub, impl_->conn, subject.c_str(), queue.c_str(), on_msg, closure);
  if (s != NATS_OK) {
    delete closure;
    check(s, "subscribe " + subject);
  }
  if (natsSubscription_SetOnCompleteCB(sub, [](void* c) { delete static_cast<Closure*>(c); }, closure) != NATS_OK) {
    // Without the completion callback the closure cannot be freed safely: keep it (a few bytes).
    observability::logger("cluster")->debug("cluster subscription without completion callback subject={}", subject);
  }
  state->sub = sub;
  return std::unique_ptr<Subscription>(new Subscription(std::move(state)));
}

}  // namespace keel::host::cluster
