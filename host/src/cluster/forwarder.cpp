#include "cluster/forwarder.hpp"

#include <charconv>
#include <optional>

#include "cluster/messages.hpp"
#include "observability/log.hpp"
#include "observability/trace.hpp"

namespace keel::host::cluster {
namespace {

std::int64_t micros(Clock::duration d) { return std::chrono::duration_cast<std::chrono::microseconds>(d).count(); }

std::string plugin_named(std::string_view plugin) { return "plugin '" + std::string(plugin) + "'"; }

}  // namespace

void set_unavailable(http::Response& res, std::string_view message, std::chrono::milliseconds retry_after) {
  res.set_error(503, "unavailable", message);
  const auto seconds = std::max<std::int64_t>(1, (retry_after.count() + 999) / 1000);
  res.headers.emplace_back("Retry-After", std::to_string(seconds));
}

PeerCounters& ForwardStats::get(Map& m, std::string_view plugin, std::string_view peer) {
  std::lock_guard lock(mutex_);
  auto& slot = m[std::pair(std::string(plugin), std::string(peer))];
  if (!slot) slot = std::make_unique<PeerCounters>();
  return *slot;
}

// One request waiting for another host's answer.
struct Forwarder::Pending {
  std::shared_ptr<http::AsyncReply> reply;
  std::string plugin, request_id;
  observability::Span span;  // the hop's span
  Clock::time_point start;
};

// What the replies' callbacks share with the Forwarder, so a callback that runs after it (the
// server letting go of a reply late) finds the map, not freed memory.
struct Forwarder::Shared {
  std::mutex mutex;
  std::map<std::uint64_t, Pending> pending;
  std::uint64_t next_id = 1;
  ForwardStats* stats = nullptr;  // null once the Forwarder is gone
  // The serving side's late answers (a plugin completing after the Forwarder is gone) find
  // `self` null under `serve_mutex` and are dropped.
  std::mutex serve_mutex;
  Forwarder* self = nullptr;
};

namespace {

// Runs fn(forwarder) when the Forwarder still exists, holding it alive meanwhile.
template <class F>
void with_forwarder(const std::weak_ptr<Forwarder::Shared>& weak, F&& fn) {
  const auto shared = weak.lock();
  if (!shared) return;
  std::lock_guard lock(shared->serve_mutex);
  if (shared->self != nullptr) fn(*shared->self);
}

}  // namespace

Forwarder::Forwarder(ForwarderOptions o, NatsLink& link, TimerQueue& timers, const Directory& directory)
    : opts_(std::move(o)), link_(link), timers_(timers), directory_(directory), shared_(std::make_shared<Shared>()) {
  shared_->stats = &stats_;
  shared_->self = this;
  inbox_ = link_.new_inbox();
  inbox_sub_ = link_.subscribe(inbox_ + ".*", {}, [this](const Message& m) { on_reply(m); });
}

Forwarder::~Forwarder() {
  inbox_sub_.reset();  // no answer is handled any more
  fail_pending("the host is stopping");
  {
    std::lock_guard lock(shared_->serve_mutex);  // waits for a late answer being sent
    shared_->self = nullptr;
  }
  std::lock_guard lock(shared_->mutex);
  shared_->stats = nullptr;
}

std::string Forwarder::subject_for(std::string_view plugin) const { return opts_.prefix + ".http." + std::string(plugin); }

std::size_t Forwarder::pending() const {
  std::lock_guard lock(shared_->mutex);
  return shared_->pending.size();
}

std::string Forwarder::peer_label(std::string_view node) const {
  return directory_.knows(node) ? std::string(node) : std::string("unknown");
}

unsigned Forwarder::send(std::string_view plugin, ForwardedRequest f, Clock::time_point deadline,
                         observability::Span span, std::shared_ptr<http::AsyncReply> reply) {
  const auto now = Clock::now();
  f.origin = opts_.node;
  f.context.traceparent = span.traceparent();
  f.context.remaining_ns = std::max<std::int64_t>(1, std::chrono::duration_cast<std::chrono::nanoseconds>(deadline - now).count());
  auto payload = encode_forwarded_request(f);
  if (const auto max = link_.max_payload(); max > 0 && payload.size() > static_cast<std::size_t>(max)) return 413;
  std::uint64_t id = 0;
  {
    std::lock_guard lock(shared_->mutex);
    id = shared_->next_id++;
    shared_->pending.emplace(id, Pending{reply, std::string(plugin), std::string(f.context.request_id), span, now});
  }
  // Whoever waits expires the reply at the deadline: forget the request then. An answer that
  // completes it first has taken it out of the map already.
  reply->on_finish([weak = std::weak_ptr<Shared>(shared_), id](unsigned, std::size_t) {
    const auto shared = weak.lock();
    if (!shared) return;
    std::lock_guard lock(shared->mutex);
    const auto it = shared->pending.find(id);
    if (it == shared->pending.end()) return;
    if (shared->stats != nullptr) {
      auto& c = shared->stats->forwarded(it->second.plugin, "none");
      c.requests.fetch_add(1, std::memory_order_relaxed);
      c.errors.fetch_add(1, std::memory_order_relaxed);
      c.duration.observe(Clock::now() - it->second.start);
    }
    observability::logger("cluster")->warn("forwarded request timed out req={} plugin={} waited_us={}",
                                           it->second.request_id, it->second.plugin,
                                           micros(Clock::now() - it->second.start));
    shared->pending.erase(it);
  });
  // Published by the link's sender thread: this thread (an I/O thread) never waits for NATS.
  auto failed = [weak = std::weak_ptr<Shared>(shared_), id, retry = opts_.retry_after] {
    const auto shared = weak.lock();
    if (!shared) return;
    std::optional<Pending> p;
    {
      std::lock_guard lock(shared->mutex);
      if (const auto it = shared->pending.find(id); it != shared->pending.end()) {
        p = std::move(it->second);
        shared->pending.erase(it);
      }
    }
    if (!p) return;
    http::Response res;
    set_unavailable(res, plugin_named(p->plugin) + " runs on another host and the cluster link (NATS) did not take the "
                                                    "request; retry later",
                    retry);
    p->reply->complete(std::move(res));
  };
  if (link_.publish_async(subject_for(plugin), std::move(payload), inbox_ + "." + std::to_string(id), std::move(failed)))
    return 0;
  std::lock_guard lock(shared_->mutex);
  shared_->pending.erase(id);
  return 503;
}

std::optional<http::Deferred> Forwarder::forward(const http::Request& req, std::string_view plugin,
                                                 http::Response& res) {
  auto deadline = Clock::now() + opts_.request_timeout;
  if (req.deadline != Clock::time_point{} && req.deadline < deadline) deadline = req.deadline;
  ForwardedRequest f;
  f.context.request_id = req.request_id;
  f.method = req.method;
  f.target = req.target;
  f.remote_address = req.remote_address;
  f.tracestate = req.tracestate;
  f.body = req.body;
  f.headers.assign(req.headers.begin(), req.headers.end());
  auto reply = std::make_shared<http::AsyncReply>();
  reply->timeout_message = plugin_named(plugin) + " (served by another host) did not answer in " +
                           std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count()) +
                           " ms";
  switch (send(plugin, std::move(f), deadline, observability::Span::start(req.traceparent), reply)) {
    case 0: return http::Deferred{std::move(reply), deadline};
    case 413:
      res.set_error(413, "payload_too_large",
                    plugin_named(plugin) + " runs on another host, and this request is larger than the NATS server's "
                                           "max_payload (" + std::to_string(link_.max_payload()) +
                        " bytes): send less, or raise max_payload on the NATS server");
      return std::nullopt;
    default:
      set_unavailable(res, plugin_named(plugin) + " runs on another host and the cluster link (NATS) cannot take the "
                                                  "request now; retry later",
                      opts_.retry_after);
      return std::nullopt;
  }
}

bool Forwarder::call(const plugins::RemoteCall& c, std::shared_ptr<http::AsyncReply> reply) {
  ForwardedRequest f;
  f.context.request_id = c.request_id;
  f.caller = c.caller;
  f.method = c.method;
  f.target = c.path;
  f.tracestate = c.tracestate;
  f.body = c.body;
  for (const auto& [name, value] : c.headers) f.headers.push_back({name, value});
  const auto deadline = std::min(c.deadline, Clock::now() + opts_.request_timeout);
  const auto span = observability::Span::start(c.traceparent);
  if (send(c.target, std::move(f), deadline, span, reply) == 0) return true;
  if (link_.up()) {  // too large: an answer of its own, not "the link is down"
    http::Response res;
    res.set_error(413, "payload_too_large", "the call is larger than the NATS server's max_payload");
    reply->complete(std::move(res));
    return true;
  }
  return false;
}

void Forwarder::on_reply(const Message& m) {
  const auto dot = m.subject.rfind('.');
  std::uint64_t id = 0;
  if (dot == std::string_view::npos ||
      std::from_chars(m.subject.data() + dot + 1, m.subject.data() + m.subject.size(), id).ec != std::errc{})
    return;
  Pending p;
  {
    std::lock_guard lock(shared_->mutex);
    const auto it = shared_->pending.find(id);
    if (it == shared_->pending.end()) return;  // answered late: the client got its 504
    p = std::move(it->second);
    shared_->pending.erase(it);
  }
  http::Response res;
  std::string peer = "none", error;
  if (m.no_responders) {
    set_unavailable(res, plugin_named(p.plugin) + ": no host serves it right now (its hosts stopped or left the cluster); retry later",
                    opts_.retry_after);
  } else if (!decode_forwarded_response(m.data, res, peer, error)) {
    res.set_error(502, "bad_gateway", "the host serving " + plugin_named(p.plugin) + " sent an answer this host cannot read: " + error);
    peer = "none";
  }
  const auto elapsed = Clock::now() - p.start;
  const auto status = res.status;
  if (peer != "none") peer = peer_label(peer);
  // The client may have had its 504 in the meantime: then this answer counts as none.
  if (!p.reply->complete(std::move(res))) peer = "none";
  auto& c = stats_.forwarded(p.plugin, peer);
  c.requests.fetch_add(1, std::memory_order_relaxed);
  if (status >= 500 || peer == "none") c.errors.fetch_add(1, std::memory_order_relaxed);
  c.duration.observe(elapsed);
  const observability::LogScope scope({p.request_id, p.span.trace_id(), p.span.span_id()});
  if (opts_.spans)
    observability::logger("trace")->info("span kind=forward plugin={} peer={} status={} duration_us={}{}{}", p.plugin,
                                         peer, status, micros(elapsed), p.span.parent_id().empty() ? "" : " parent_id=",
                                         p.span.parent_id());
  observability::logger("cluster")->debug("forwarded request answered plugin={} peer={} status={} duration_us={}",
                                          p.plugin, peer, status, micros(elapsed));
}

void Forwarder::fail_pending(std::string_view why) {
  std::map<std::uint64_t, Pending> all;
  {
    std::lock_guard lock(shared_->mutex);
    all.swap(shared_->pending);
  }
  for (auto& [id, p] : all) {
    http::Response res;
    res.set_error(502, "bad_gateway", plugin_named(p.plugin) + " runs on another host and its answer cannot arrive: " + std::string(why));
    auto& c = stats_.forwarded(p.plugin, "none");
    c.requests.fetch_add(1, std::memory_order_relaxed);
    c.errors.fetch_add(1, std::memory_order_relaxed);
    c.duration.observe(Clock::now() - p.start);
    p.reply->complete(std::move(res));
  }
}

// --- serving side ----------------------------------------------------------------------------

void Forwarder::reply_to(const std::string& subject, const http::Response& res,
                         const std::vector<std::pair<std::string, std::string>>& extra, bool now) {
  auto data = encode_forwarded_response(res, extra, opts_.node);
  if (const auto max = link_.max_payload(); max > 0 && data.size() > static_cast<std::size_t>(max)) {
    observability::logger("cluster")->warn("the answer of a forwarded request is larger than the NATS server's "
                                           "max_payload ({} bytes); sending 502 instead",
                                           max);
    http::Response error;
    error.set_error(502, "bad_gateway", "the answer is larger than the NATS server's max_payload (" +
                                            std::to_string(max) + " bytes): raise max_payload on the NATS server");
    data = encode_forwarded_response(error, {}, opts_.node);
  }
  if (now) {
    if (!link_.publish(subject, data))
      observability::logger("cluster")->warn("cannot send the answer of a forwarded request: the cluster link is down");
    return;
  }
  if (!link_.publish_async(subject, std::move(data)))
    observability::logger("cluster")->warn("cannot send the answer of a forwarded request: the cluster link's queue is full");
}

void Forwarder::serve(std::string_view plugin, std::string_view mount, const Message& m, http::Handler& local) {
  // Answers go to an inbox, never to a subject hosts act on (a forged reply-to of
  // "<prefix>.discover" would make every host announce).
  if (!m.reply.starts_with("_INBOX.")) return;
  const auto start = Clock::now();
  const std::string reply_subject(m.reply);
  ForwardedRequest f;
  std::string error;
  http::Response res;
  if (!decode_forwarded_request(m.data, f, error) || !http::valid_request_id(f.context.request_id)) {
    observability::logger("cluster")->warn("refused a forwarded request plugin={} error=\"{}\"", plugin,
                                           error.empty() ? "invalid request id" : error);
    res.set_error(502, "bad_gateway", "this host cannot read the forwarded request: " + (error.empty() ? "invalid request id" : error));
    reply_to(reply_subject, res, {}, /*now=*/true);
    return;
  }
  const bool is_call = !f.caller.empty();
  // A call names a path under the callee's mount, which only this host knows.
  const std::string call_target = is_call ? std::string(mount) + std::string(f.target) : std::string();
  http::Request req;
  req.method = f.method;
  req.target = is_call ? std::string_view(call_target) : f.target;
  const auto q = req.target.find('?');
  req.path = req.target.substr(0, q);
  req.query = q == std::string_view::npos ? std::string_view{} : req.target.substr(q + 1);
  req.caller_plugin = f.caller;
  req.headers = f.headers;
  req.body = f.body;
  req.request_id = f.context.request_id;
  req.remote_address = f.remote_address;
  req.listener = http::Listener::kCluster;
  const bool traced = observability::valid_traceparent(f.context.traceparent);
  const auto span = observability::Span::start(traced ? f.context.traceparent : std::string_view{});
  req.traceparent = span.traceparent();
  req.tracestate = traced ? f.tracestate : std::string_view{};
  const auto longest = std::chrono::duration_cast<std::chrono::nanoseconds>(opts_.request_timeout);
  req.deadline = start + (f.context.remaining_ns > 0 && f.context.remaining_ns < longest.count()
                              ? std::chrono::nanoseconds(f.context.remaining_ns)
                              : longest);
  const std::string origin = peer_label(f.origin);  // a label and a log field: only known names
  const observability::LogScope scope({req.request_id, span.trace_id(), span.span_id()});
  // Only this plugin's routes answer on its subject: a host serves requests for what it loads.
  const bool own = under_mount(req.path, mount) && (!is_call || f.target.starts_with('/'));
  auto done = [this, plugin = std::string(plugin), origin, start, method = std::string(req.method),
               target = std::string(req.target), request_id = std::string(req.request_id),
               caller = is_call ? " caller=" + std::string(f.caller) : std::string()](unsigned status) {
    auto& c = stats_.served(plugin, origin);
    c.requests.fetch_add(1, std::memory_order_relaxed);
    if (status >= 500) c.errors.fetch_add(1, std::memory_order_relaxed);
    c.duration.observe(Clock::now() - start);
    if (opts_.access_log)
      observability::logger("cluster")->info("forwarded request served req={} origin={}{} plugin={} method={} target={} "
                                             "status={} duration_us={}",
                                             request_id, origin, caller, plugin, method, target, status,
                                             micros(Clock::now() - start));
  };
  std::optional<http::Deferred> deferred;
  if (!own) {
    res.set_error(404, "not_found", "this subject carries only " + plugin_named(plugin) + "'s routes");
  } else if (is_call && !directory_.may_call(f.origin, f.caller, plugin)) {
    // The caller's host checked it too; this host does not take its word for it.
    observability::logger("cluster")->warn("call refused: host {} did not announce '{}' as a plugin that may call '{}'",
                                           origin, f.caller, plugin);
    res.set_error(403, "forbidden", "plugin '" + std::string(f.caller) + "' on host '" + origin +
                                        "' has not declared " + plugin_named(plugin) + " as a dependency");
  } else {
    try {
      deferred = local.handle(req, res);
    } catch (const std::exception& e) {
      observability::logger("cluster")->error("forwarded request failed plugin={} error=\"{}\"", plugin, e.what());
      res.set_error(500, "internal_error", "the host serving " + plugin_named(plugin) + " failed this request");
    }
  }
  if (!deferred) {
    reply_to(reply_subject, res, {}, /*now=*/true);  // this is the subscription's delivery thread
    done(res.status);
    return;
  }
  // Answered later, on another thread; or, at the deadline, 504 from here.
  auto async = deferred->reply;
  auto timer = std::make_shared<std::atomic<std::uint64_t>>(0);
  const std::weak_ptr<Shared> weak = shared_;
  auto send = [weak, async, reply_subject, done, timer] {
    with_forwarder(weak, [&](Forwarder& self) {
      if (const auto id = timer->exchange(0); id != 0) self.timers_.cancel(id);
      const auto answer = async->take();
      self.reply_to(reply_subject, answer, async->extra_headers);
      done(answer.status);
    });
  };
  if (!async->set_waker(send)) {
    send();  // already answered
    return;
  }
  timer->store(timers_.schedule(deferred->deadline, [weak, async, reply_subject, done] {
    if (!async->expire()) return;  // answered meanwhile
    with_forwarder(weak, [&](Forwarder& self) {
      http::Response late;
      late.set_error(504, "gateway_timeout", async->timeout_message);
      self.reply_to(reply_subject, late, async->extra_headers);
      done(504);
    });
  }));
}

}  // namespace keel::host::cluster
