#include "cluster/durable_events.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <span>

#include <nats/nats.h>
#include <nlohmann/json.hpp>

#include "cluster/messages.hpp"
#include "observability/log.hpp"

namespace keel::host::cluster {
namespace {

using namespace std::chrono_literals;

constexpr std::int64_t kPublishWaitMs = 5000;          // JetStream's acknowledgement of a relayed event
// A consumer's event unacknowledged this long comes again: short, so an acknowledgement lost with
// the link costs seconds; a handler still running keeps its event with "in progress" every second.
constexpr std::int64_t kAckWaitNs = 5'000'000'000;
constexpr auto kHandlerWait = 10min;  // then it counts as a failure (and is delivered again)
constexpr std::int64_t kFetchWaitMs = 1000;
constexpr int kErrorsBeforeResubscribe = 5;

// "keel" -> "KEEL_EVENTS", "shop.prod" -> "SHOP_PROD_EVENTS": stream names allow no dots.
std::string stream_name(const std::string& prefix) {
  std::string out;
  for (const char c : prefix) out += c == '.' ? '_' : static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
  return out + "_EVENTS";
}

std::int64_t ns_of(std::chrono::milliseconds ms) { return std::chrono::duration_cast<std::chrono::nanoseconds>(ms).count(); }

}  // namespace

// What the bus's relay endpoint holds: it may run after the DurableEvents is gone (a stream's
// drain in progress), so it finds `alive` false and pauses instead of touching freed memory.
struct DurableEvents::Relay {
  std::mutex mutex;  // held while relaying one event; stop() takes it to end relaying
  bool alive = true;
  NatsLink* link = nullptr;
  events::Bus* bus = nullptr;
  jsCtx* js = nullptr;
  std::string subject_prefix, node;
  DurableEvents::Started started;
  std::atomic<std::uint64_t> relayed{0};
  std::atomic<int> failures{0};  // of the batch being relayed
  // The relay's executor: one thread, so the bus's relay streams never wait on a worker.
  std::mutex queue_mutex;
  std::condition_variable queue_ready;
  std::deque<std::function<void()>> queue;
  bool stopping = false;
  std::thread thread;

  // The relay's batch: each event published without waiting (the event id as JetStream's
  // deduplication id), then one wait for all their acknowledgements. Only a batch JetStream
  // acknowledged in full counts as taken: after any failure the bus hands the whole batch over
  // again later, and JetStream drops the copies it already has.
  std::pair<std::size_t, keel_status> deliver_batch(std::span<const events::EventRecord> events) {
    std::lock_guard lock(mutex);
    if (!alive || js == nullptr || !link->up()) return {0, KEEL_ERR_UNAVAILABLE};  // paused; tick() resumes
    failures.store(0);
    std::size_t published = 0;
    keel_status stopped = KEEL_OK;
    for (const auto& e : events) {
      auto here = bus->subscribers_of(e.topic());
      std::erase_if(here, [&](const std::string& name) { return !started(name); });
      ForwardedEvent f{node,          e.published_unix_ns, e.event_id(),  e.topic(),      e.payload(), e.content_type(),
                       e.publisher(), e.traceparent(),     e.tracestate(), e.request_id(), {}};
      f.here.assign(here.begin(), here.end());
      const auto data = encode_forwarded_event(f);
      if (const auto max = link->max_payload(); max > 0 && data.size() > static_cast<std::size_t>(max)) {
        // It will never fit: a failure, so the bus retries it and then keeps it as the relay's
        // dead letter (resubmit it after raising max_payload on the NATS server); the rest flows on.
        observability::logger("cluster")->error("durable event id={} topic={} is larger ({} bytes) than the NATS "
                                                "server's max_payload ({}): other hosts cannot get it",
                                                e.event_id(), e.topic(), data.size(), max);
        stopped = KEEL_ERR_TOO_LARGE;
        break;
      }
      // Only into a connected socket, never into the client's reconnect buffer: an event lost with
      // a broken connection must not be overtaken by later ones of its batch sent after the
      // reconnect (the whole batch fails instead, and goes again in order).
      if (natsConnection_Status(link->native()) != NATS_CONN_STATUS_CONNECTED) {
        failures.fetch_add(1);
        break;
      }
      const std::string subject = subject_prefix + std::string(e.topic());
      const std::string id(e.event_id());
      jsPubOptions opts;
      jsPubOptions_Init(&opts);
      opts.MsgId = id.c_str();
      if (const auto s = js_PublishAsync(js, subject.c_str(), data.data(), static_cast<int>(data.size()), &opts);
          s != NATS_OK) {
        observability::logger("cluster")->warn("durable event not relayed yet id={} topic={} error=\"{}\"; retrying",
                                               id, e.topic(), natsStatus_GetText(s));
        failures.fetch_add(1);
        break;
      }
      ++published;
    }
    jsPubOptions wait;
    jsPubOptions_Init(&wait);
    wait.MaxWait = kPublishWaitMs;
    const auto s = published > 0 ? js_PublishAsyncComplete(js, &wait) : NATS_OK;
    if (s != NATS_OK) {
      natsMsgList unanswered{};  // taken back from the library: no acknowledgement will count now
      if (js_PublishAsyncGetPendingList(&unanswered, js) == NATS_OK) natsMsgList_Destroy(&unanswered);
      observability::logger("cluster")->warn("durable events not relayed yet count={} error=\"{}\"; retrying",
                                             published, natsStatus_GetText(s));
      return {0, KEEL_ERR_UNAVAILABLE};  // never a dead letter: the outbox keeps them until JetStream has them
    }
    if (failures.load() > 0) return {0, KEEL_ERR_UNAVAILABLE};
    relayed.fetch_add(published, std::memory_order_relaxed);
    return {published, stopped};
  }

  // A relayed event JetStream refused (no stream, a storage error): on a NATS thread.
  static void on_publish_error(jsCtx*, jsPubAckErr* pae, void* self) {
    auto* r = static_cast<Relay*>(self);
    r->failures.fetch_add(1);
    observability::logger("cluster")->warn("durable event not relayed yet error=\"{}\"; retrying",
                                           pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err));
  }

  void run() {
    std::unique_lock lock(queue_mutex);
    for (;;) {
      queue_ready.wait(lock, [&] { return stopping || !queue.empty(); });
      if (queue.empty()) return;
      auto job = std::move(queue.front());
      queue.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  }
};

// One subscribing plugin's durable consumer on this host.
struct DurableEvents::Consumer {
  std::string plugin;
  std::atomic<bool> stop{false};
  natsSubscription* sub = nullptr;
  std::thread thread;
  // Read by the announcer for admin_json().
  std::atomic<std::uint64_t> pending{0}, ack_pending{0}, redelivered{0};
};

DurableEvents::DurableEvents(const config::Config& cfg, std::string node, NatsLink& link, events::Bus& bus,
                             Started started)
    : cfg_(cfg.cluster),
      events_cfg_(cfg.events),
      node_(std::move(node)),
      stream_(stream_name(cfg.cluster.subject_prefix)),
      subject_(cfg.cluster.subject_prefix + ".durable."),
      link_(link),
      bus_(bus),
      started_(std::move(started)),
      relay_(std::make_shared<Relay>()) {
  relay_->link = &link_;
  relay_->bus = &bus_;
  relay_->subject_prefix = subject_;
  relay_->node = node_;
  relay_->started = started_;
  jsOptions o;
  jsOptions_Init(&o);
  o.Wait = kPublishWaitMs;
  o.PublishAsync.ErrHandler = &Relay::on_publish_error;
  o.PublishAsync.ErrHandlerClosure = relay_.get();
  if (const auto s = natsConnection_JetStream(&relay_->js, link_.native(), &o); s != NATS_OK)
    throw std::runtime_error(std::string("NATS JetStream: ") + natsStatus_GetText(s));
  relay_->thread = std::thread([r = relay_.get()] { r->run(); });
  events::Endpoint relay;
  relay.name = kRelay;
  relay.patterns = {"#"};
  relay.relay = true;
  relay.deliver = [r = relay_](const events::EventRecord& e, std::uint32_t) {
    const auto [taken, st] = r->deliver_batch({&e, 1});
    return taken == 1 ? KEEL_OK : st;
  };
  relay.deliver_batch = [r = relay_](std::span<const events::EventRecord> batch, std::uint32_t) {
    return r->deliver_batch(batch);
  };
  relay.execute = [r = relay_](std::function<void()> job) {
    {
      std::lock_guard lock(r->queue_mutex);
      if (r->stopping) return false;
      r->queue.push_back(std::move(job));
    }
    r->queue_ready.notify_one();
    return true;
  };
  bus_.set_subscriber(std::move(relay));
  maintainer_ = std::thread([this] { maintain(); });
}

DurableEvents::~DurableEvents() {
  stop();
  {
    std::lock_guard lock(relay_->queue_mutex);
    relay_->stopping = true;
  }
  relay_->queue_ready.notify_one();
  if (relay_->thread.joinable()) relay_->thread.join();
  jsCtx_Destroy(relay_->js);
  relay_->js = nullptr;
  link_.retain_until_closed(relay_);  // its ErrHandler closure: the client may be in it still
}

void DurableEvents::stop() {
  {
    std::lock_guard lock(stop_mutex_);
    stopping_ = true;
  }
  stop_wake_.notify_one();
  if (maintainer_.joinable()) maintainer_.join();
  {
    std::lock_guard lock(relay_->mutex);  // waits for an event being relayed
    if (!relay_->alive) return;
    relay_->alive = false;
  }
  events::Endpoint none;
  none.name = kRelay;
  none.relay = true;
  bus_.set_subscriber(std::move(none));  // no patterns: the relay's streams stop
  std::map<std::string, std::unique_ptr<Consumer>> all;
  {
    std::lock_guard lock(mutex_);
    all.swap(consumers_);
  }
  for (auto& [name, c] : all) c->stop = true;
  for (auto& [name, c] : all)
    if (c->thread.joinable()) c->thread.join();
}

bool DurableEvents::ensure_stream() {
  jsStreamInfo* si = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  auto s = js_GetStreamInfo(&si, relay_->js, stream_.c_str(), nullptr, &err);
  jsStreamInfo_Destroy(si);
  si = nullptr;
  if (s != NATS_OK && err == JSStreamNotFoundErr) {  // the first host that needs it makes it
    jsStreamConfig sc;
    jsStreamConfig_Init(&sc);
    const std::string all = subject_ + ">";
    const char* subjects[] = {all.c_str()};
    sc.Name = stream_.c_str();
    sc.Subjects = subjects;
    sc.SubjectsLen = 1;
    sc.Storage = js_FileStorage;
    const auto keep = events_cfg_.retention >= std::chrono::minutes(2) ? events_cfg_.retention : std::chrono::hours(24);
    sc.MaxAge = ns_of(keep);
    // A relayed event sent again (its cursor not saved yet when the host or NATS went away) is
    // dropped within this window: NATS's own default, 2 minutes. A longer one costs the server
    // an id per event for longer (an hour of ids slowed a busy stream down to half its rate); a
    // copy sent after it is a redelivery that first_delivery absorbs.
    sc.Duplicates = ns_of(std::min<std::chrono::milliseconds>(keep, std::chrono::minutes(2)));
    s = js_AddStream(&si, relay_->js, &sc, nullptr, &err);
    jsStreamInfo_Destroy(si);
    if (s == NATS_OK) observability::logger("cluster")->info("cluster: created the JetStream stream {}", stream_);
  }
  if (s != NATS_OK)
    observability::logger("cluster")->warn("cluster: JetStream stream {} not ready: {} (is nats-server run with -js?)",
                                           stream_, natsStatus_GetText(s));
  return s == NATS_OK;
}

void DurableEvents::maintain() {
  constexpr int kRecheckRounds = 10;  // the stream is checked again now and then (deleted, a new NATS)
  int round = 0;
  for (;;) {
    {
      std::unique_lock lock(stop_mutex_);
      if (stop_wake_.wait_for(lock, round == 0 ? std::chrono::milliseconds(0) : cfg_.announce_interval,
                              [this] { return stopping_; }))
        return;
    }
    if (!link_.up()) {
      stream_ready_.store(false);  // checked again once the link is back
      continue;
    }
    if (!stream_ready_.load() || ++round % kRecheckRounds == 0) stream_ready_.store(ensure_stream());
    if (!stream_ready_.load()) continue;
    bus_.resume_subscriber(kRelay);  // what paused while the link was down goes out now
    auto wanted = bus_.subscribers();
    std::erase_if(wanted, [&](const std::string& name) { return !started_(name); });
    std::vector<std::unique_ptr<Consumer>> gone;
    std::vector<std::string> names;
    {
      std::lock_guard lock(mutex_);
      for (auto it = consumers_.begin(); it != consumers_.end();) {
        if (std::find(wanted.begin(), wanted.end(), it->first) != wanted.end()) {
          ++it;
          continue;
        }
        it->second->stop = true;
        gone.push_back(std::move(it->second));
        it = consumers_.erase(it);
      }
      for (const auto& name : wanted) {
        if (consumers_.contains(name)) continue;
        auto c = std::make_unique<Consumer>();
        c->plugin = name;
        auto* raw = c.get();
        c->thread = std::thread([this, raw] { consume(*raw); });
        consumers_.emplace(name, std::move(c));
      }
      for (const auto& [name, c] : consumers_) names.push_back(name);
    }
    for (auto& c : gone)
      if (c->thread.joinable()) c->thread.join();
    {  // the stream's state and each consumer's lag for the admin API, read here, off the I/O threads
      jsStreamInfo* si = nullptr;
      jsErrCode err = static_cast<jsErrCode>(0);
      if (js_GetStreamInfo(&si, relay_->js, stream_.c_str(), nullptr, &err) == NATS_OK) {
        stream_messages_.store(si->State.Msgs);
        stream_bytes_.store(si->State.Bytes);
        stream_last_seq_.store(si->State.LastSeq);
      }
      jsStreamInfo_Destroy(si);
    }
    for (const auto& name : names) {
      jsConsumerInfo* ci = nullptr;
      jsErrCode err = static_cast<jsErrCode>(0);
      if (js_GetConsumerInfo(&ci, relay_->js, stream_.c_str(), name.c_str(), nullptr, &err) == NATS_OK) {
        std::lock_guard lock(mutex_);
        if (const auto it = consumers_.find(name); it != consumers_.end()) {
          it->second->pending.store(ci->NumPending);
          it->second->ack_pending.store(static_cast<std::uint64_t>(ci->NumAckPending));
          it->second->redelivered.store(static_cast<std::uint64_t>(ci->NumRedelivered));
        }
      }
      jsConsumerInfo_Destroy(ci);
    }
  }
}

// The plugin's durable consumer, made or brought to this host's settings (a changed
// [cluster] durable_batch). Its replicas on other hosts share it. Each event is acknowledged on
// its own (explicitly): a cumulative acknowledgement would also cover events a replica holds or
// this host handed back.
bool DurableEvents::ensure_consumer(const Consumer& c) const {
  const std::string filter = subject_ + ">";
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = c.plugin.c_str();
  cc.AckPolicy = js_AckExplicit;
  cc.DeliverPolicy = js_DeliverAll;
  cc.AckWait = kAckWaitNs;
  cc.MaxAckPending = cfg_.durable_batch;  // events in flight; 1: one at a time across replicas
  cc.MaxDeliver = -1;                     // this host dead-letters after [events] max_attempts
  cc.FilterSubject = filter.c_str();
  jsConsumerInfo* ci = nullptr;
  jsErrCode err = static_cast<jsErrCode>(0);
  auto s = js_GetConsumerInfo(&ci, relay_->js, stream_.c_str(), c.plugin.c_str(), nullptr, &err);
  const bool exists = s == NATS_OK && ci->Config != nullptr;
  const bool same = exists && ci->Config->MaxAckPending == cc.MaxAckPending && ci->Config->AckWait == cc.AckWait;
  jsConsumerInfo_Destroy(ci);
  ci = nullptr;
  if (!same) {
    if (exists) s = js_UpdateConsumer(&ci, relay_->js, stream_.c_str(), &cc, nullptr, &err);
    else if (err == JSConsumerNotFoundErr) s = js_AddConsumer(&ci, relay_->js, stream_.c_str(), &cc, nullptr, &err);
    jsConsumerInfo_Destroy(ci);
  }
  if (s != NATS_OK) {
    observability::logger("cluster")->warn("cluster: cannot set up the durable consumer of plugin={}: {}", c.plugin,
                                           natsStatus_GetText(s));
    return false;
  }
  return true;
}

void DurableEvents::consume(Consumer& c) {
  auto log = observability::logger("cluster");
  const std::string filter = subject_ + ">";
  const int batch = static_cast<int>(cfg_.durable_batch);
  int errors = 0;
  while (!c.stop.load()) {
    if (!link_.up() || !stream_ready_.load()) {
      std::this_thread::sleep_for(200ms);
      continue;
    }
    if (c.sub == nullptr) {
      jsSubOptions so;
      jsSubOptions_Init(&so);
      so.Stream = stream_.c_str();
      so.Consumer = c.plugin.c_str();  // bound to the consumer ensure_consumer() set up
      jsErrCode err = static_cast<jsErrCode>(0);
      natsStatus s = ensure_consumer(c) ? NATS_OK : NATS_ERR;
      if (s == NATS_OK) s = js_PullSubscribe(&c.sub, relay_->js, filter.c_str(), c.plugin.c_str(), nullptr, &so, &err);
      if (s != NATS_OK) {
        log->warn("cluster: cannot consume durable events for plugin={}: {}", c.plugin, natsStatus_GetText(s));
        c.sub = nullptr;
        std::this_thread::sleep_for(1s);
        continue;
      }
    }
    natsMsgList list{};
    jsErrCode err = static_cast<jsErrCode>(0);
    const auto s = natsSubscription_Fetch(&list, c.sub, batch, kFetchWaitMs, &err);
    if (s == NATS_TIMEOUT) continue;
    if (s != NATS_OK) {
      if (++errors >= kErrorsBeforeResubscribe) {  // the server may have lost the consumer: make it again
        natsSubscription_Destroy(c.sub);
        c.sub = nullptr;
        errors = 0;
      }
      std::this_thread::sleep_for(200ms);
      continue;
    }
    errors = 0;
    handle_batch(c, std::span<natsMsg*>(list.Msgs, static_cast<std::size_t>(list.Count)));
    natsMsgList_Destroy(&list);
  }
  if (c.sub != nullptr) natsSubscription_Destroy(c.sub);  // the durable consumer stays on the server
}

// One fetched batch, in stream order, handed to the plugin in one job of the bus. Handled events
// are acknowledged, each on its own and without waiting, when the batch is done and about every
// second while it runs. A failed event is retried here, after the bus's backoff, before any later
// one of the batch, then dead-lettered; meanwhile, and while a batch takes long, the events not
// yet handled are kept "in progress". Events the plugin cannot take now (it is stopping, or a
// handler outlived kHandlerWait) go back with the rest of the batch, for a replica or a later
// fetch; so do events this host cannot read (another wire version), which later events may then
// overtake.
void DurableEvents::handle_batch(Consumer& c, std::span<natsMsg*> msgs) {
  using Clock = std::chrono::steady_clock;
  constexpr auto kProgressEvery = 1s;
  auto log = observability::logger("cluster");
  std::size_t acked = 0;                       // msgs before this index are acknowledged (or terminated)
  std::vector<bool> terminated(msgs.size());  // given up on with natsMsg_Term: no acknowledgement
  // The first `done` messages are handled: acknowledge them.
  const auto ack_through = [&](std::size_t done) {
    for (; acked < done; ++acked)
      if (!terminated[acked]) natsMsg_Ack(msgs[acked], nullptr);  // sent without waiting
  };
  const auto keep_from = [&](std::size_t first) {
    for (std::size_t k = first; k < msgs.size(); ++k) natsMsg_InProgress(msgs[k], nullptr);
  };
  const auto give_back_from = [&](std::size_t first, std::int64_t delay_ms) {
    ack_through(first);
    for (std::size_t k = first; k < msgs.size(); ++k) natsMsg_NakWithDelay(msgs[k], delay_ms, nullptr);
  };

  // Decode the batch: the events for the plugin (views into the messages' data), each with the
  // index of its message.
  std::vector<events::Bus::ExternalEvent> items;
  std::vector<std::size_t> msg_of;
  items.reserve(msgs.size());
  msg_of.reserve(msgs.size());
  std::size_t readable = msgs.size();  // messages from here on go back unread
  for (std::size_t k = 0; k < msgs.size(); ++k) {
    ForwardedEvent f;
    std::string error;
    const std::string_view data(natsMsg_GetData(msgs[k]), static_cast<std::size_t>(natsMsg_GetDataLength(msgs[k])));
    if (!decode_forwarded_event(data, f, error)) {
      if (error.starts_with("cluster wire version")) {
        // A host of another version may read it: it and the rest of the batch go back.
        log->warn("cluster: a durable event for plugin={} this host cannot read: {}; left to other hosts", c.plugin, error);
        readable = k;
        break;
      }
      log->warn("cluster: dropped a malformed durable event for plugin={}: {}", c.plugin, error);
      natsMsg_Term(msgs[k], nullptr);
      terminated[k] = true;
      continue;
    }
    if (std::find(f.here.begin(), f.here.end(), c.plugin) != f.here.end()) continue;  // got it on the publisher's host
    jsMsgMetaData* meta = nullptr;
    std::uint32_t attempt = 1;
    if (natsMsg_GetMetaData(&meta, msgs[k]) == NATS_OK) attempt = static_cast<std::uint32_t>(meta->NumDelivered);
    jsMsgMetaData_Destroy(meta);
    items.push_back({{f.event_id, f.topic, f.payload, f.content_type, f.publisher, f.traceparent, f.tracestate, f.request_id},
                     f.published_unix_ns,
                     attempt});
    msg_of.push_back(k);
  }

  std::size_t pos = 0;  // items before this one are handled
  const auto first_msg = [&](std::size_t item) { return item < items.size() ? msg_of[item] : readable; };
  while (pos < items.size() && !c.stop.load()) {
    const auto [delivered, st] = bus_.deliver_external(
        c.plugin, std::span<const events::Bus::ExternalEvent>(items).subspan(pos), kHandlerWait, [&](std::size_t so_far) {
          ack_through(first_msg(pos + so_far));
          keep_from(first_msg(pos + so_far));
          return !c.stop.load();  // stopping: the job ends after the event in hand
        });
    pos += delivered;
    if (pos == items.size()) break;
    if (st == KEEL_ERR_NOT_FOUND) {  // not (or no longer) a subscriber of this one: skipped
      ++pos;
      continue;
    }
    if (c.stop.load()) break;
    if (st == KEEL_ERR_UNAVAILABLE || st == KEEL_ERR_TIMEOUT) {  // not an attempt: the rest go back too
      give_back_from(first_msg(pos), events_cfg_.retry_base.count());
      return;
    }
    auto& failed = items[pos];
    if (failed.attempt >= events_cfg_.max_attempts) {
      bus_.bury(c.plugin, failed.parts, failed.published_unix_ns, failed.attempt, st);
      natsMsg_Term(msgs[msg_of[pos]], nullptr);
      terminated[msg_of[pos]] = true;
      ++pos;
      continue;
    }
    // Backoff here, in slices, so a stop is not held up and the batch stays ours meanwhile.
    ack_through(first_msg(pos));
    const auto until = Clock::now() + bus_.retry_delay(failed.attempt);
    while (!c.stop.load() && Clock::now() < until) {
      keep_from(first_msg(pos));
      std::this_thread::sleep_for(std::min<Clock::duration>(kProgressEvery, until - Clock::now()));
    }
    ++failed.attempt;
  }
  if (c.stop.load()) {  // unacknowledged: redelivered after the ack wait
    ack_through(first_msg(pos));
    return;
  }
  ack_through(readable);
  if (readable < msgs.size()) give_back_from(readable, 5000);
}

std::string DurableEvents::admin_json() const {
  nlohmann::json consumers = nlohmann::json::array();
  {
    std::lock_guard lock(mutex_);
    for (const auto& [name, c] : consumers_)
      consumers.push_back({{"plugin", name},
                           {"pending", c->pending.load()},
                           {"ack_pending", c->ack_pending.load()},
                           {"redelivered", c->redelivered.load()}});
  }
  return nlohmann::json{{"stream", stream_},
                        {"ready", stream_ready_.load()},
                        {"messages", stream_messages_.load()},
                        {"bytes", stream_bytes_.load()},
                        {"last_seq", stream_last_seq_.load()},
                        {"relayed", relay_->relayed.load()},
                        {"consumers", std::move(consumers)}}
      .dump();
}

}  // namespace keel::host::cluster
