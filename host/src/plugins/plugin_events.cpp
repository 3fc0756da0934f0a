// The plugins on the event bus: what each publishes and subscribes to, and event delivery.
#include <cstring>

#include "abi/current_request.hpp"
#include "abi/status.hpp"
#include "abi/topic.hpp"
#include "observability/trace.hpp"
#include "plugins/host_impl.hpp"

namespace keel::host::plugins {

using abi::CurrentRequestScope;
using abi::status_name;

// What `p` publishes, as the event bus takes it.
events::Publisher publisher_of(const Plugin& p) {
  return {p.name, p.manifest.publishes, p.manifest.durable, p.database};
}

// What the previous generation `old` and the next one `next` publish together: while both run
// (the reload overlap), either may publish what it declared. A topic both declare takes the
// next generation's durability.
events::Publisher merged_publisher(const Plugin& old, const Plugin& next) {
  auto out = publisher_of(next);
  auto has = [](const std::vector<std::string>& v, const std::string& x) { return std::find(v.begin(), v.end(), x) != v.end(); };
  for (const auto& t : old.manifest.publishes) {
    if (has(out.topics, t)) continue;
    out.topics.push_back(t);
    if (has(old.manifest.durable, t)) out.durable.push_back(t);
  }
  return out;
}

// How the bus reaches `p`. Every delivery job of this subscriber (in-memory inbox and durable
// streams alike) runs on one serial queue: the plugin receives one event at a time, as
// plugin.h promises. The queue stays with the plugin across reloads (deliveries stay one at a
// time); each delivery goes to the generation current when it runs.
events::Endpoint PluginHost::Impl::endpoint_of(Plugin& p) {
  if (!p.events) p.events = p.serial ? p.serial : std::make_shared<SerialQueue>(pool, cfg.server.worker_queue);
  return {p.name, p.manifest.subscribes,
          [this, index = p.index](const events::EventRecord& e, std::uint32_t attempt) {
            return deliver_event(index, e, attempt);
          },
          [queue = p.events](std::function<void()> job) { return queue->post(std::move(job)); }};
}

// Every created plugin joins the event bus with what it publishes and subscribes to; the bus
// then accepts publishes (from start() on) and delivers once every plugin has started.
void PluginHost::Impl::connect_events() {
  for (auto i : order) {
    auto& p = *plugins[i];
    if (p.state != PluginState::kCreated) continue;
    try {
      bus.set_publisher(publisher_of(p));
    } catch (const std::exception& e) {
      fail(p, e.what());
      continue;
    }
    if (!p.manifest.subscribes.empty()) bus.set_subscriber(endpoint_of(p));
    p.on_bus = true;
  }
  bus.start();
}

namespace {

// Whether generation `p` subscribes to `topic`: the answer kept from a recent check of the same
// topic, else its patterns' (then kept in place of the oldest answer).
bool subscribes_to(Plugin& p, std::string_view topic) {
  for (const auto& check : p.topic_checks) {
    if (check.size != 0 && std::string_view(check.topic.data(), check.size) == topic) return check.subscribed;
  }
  const bool subscribed = abi::matches_any(p.manifest.subscribes, topic);
  if (!topic.empty() && topic.size() <= Plugin::TopicCheck::kMaxTopic) {
    auto& slot = p.topic_checks[p.next_topic_check++ % p.topic_checks.size()];
    std::memcpy(slot.topic.data(), topic.data(), topic.size());
    slot.size = static_cast<std::uint8_t>(topic.size());
    slot.subscribed = subscribed;
  }
  return subscribed;
}

}  // namespace

keel_status PluginHost::Impl::deliver_event(std::size_t index, const events::EventRecord& e, std::uint32_t attempt) {
  Plugin* pp = routes.current().gens.at(index).get();
  for (int tries = 1; !admit(*pp); ++tries) {
    if (!pp->retired.load() || tries > 3) return KEEL_ERR_UNAVAILABLE;  // stopping or disabled: the bus pauses
    pp = routes.current(/*fresh=*/true).gens.at(index).get();
  }
  const Admission admission(pp);
  auto& p = *pp;
  if (p.budget && p.budget->over()) return KEEL_ERR_UNAVAILABLE;  // quarantined: durable deliveries pause
  // The generation current now receives what it subscribes to: an event matched by the patterns
  // of the generation it replaced, and no longer by its own, is acknowledged, not handed over.
  if (!subscribes_to(p, e.topic())) {
    p.log->debug("event skipped: not subscribed any more topic={} id={}", e.topic(), e.event_id());
    return KEEL_OK;
  }
  keel_event ev{};
  ev.struct_size = sizeof(keel_event);
  ev.delivery_attempt = attempt;
  ev.topic = host_bytes(e.topic());
  ev.payload = host_bytes(e.payload());
  ev.content_type = host_bytes(e.content_type());
  ev.event_id = host_bytes(e.event_id());
  ev.publisher = host_bytes(e.publisher());
  ev.timestamp_unix_ns = e.published_unix_ns;
  // The delivery is a span, a child of the publisher's span and the parent of the handler's
  // calls, when its line is written or the event starts a trace. Otherwise nothing would record
  // its id, and the handler continues the publisher's span (the record's traceparent is valid).
  const bool span_line = span_log && span_log->should_log(spdlog::level::info);
  observability::Span span;
  std::string_view traceparent = e.traceparent();
  if (span_line || traceparent.empty()) {
    span = observability::Span::start(traceparent);
    traceparent = span.traceparent();
  }
  ev.traceparent = host_bytes(traceparent);
  ev.tracestate = host_bytes(e.tracestate());
  const auto start = Clock::now();
  keel_status st = KEEL_ERR_INTERNAL;
  {
    // Calls and publishes made by the handler carry the publishing request's id and this span.
    const CurrentRequestScope scope({&p.ctx, start + p.timeout, e.request_id(), traceparent});
    try {
      st = p.table->on_event(p.self, &ev);
    } catch (...) {
      p.log->error("on_event let an exception escape topic={} id={}", e.topic(), e.event_id());
    }
  }
  if (st >= 0 && !span_line) return st;  // nothing to log: no second clock read
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count();
  const observability::LogScope log_scope({e.request_id(), observability::trace_id_of(traceparent),
                                           observability::span_id_of(traceparent)});
  if (st < 0)
    p.log->warn("event handler failed topic={} id={} publisher={} attempt={} status={} duration_us={}", e.topic(),
                e.event_id(), e.publisher(), attempt, status_name(st), us);
  if (span_line)
    span_log->info("span kind=event topic={} publisher={} subscriber={} event_id={} attempt={} status={} duration_us={}"
                   "{}{}",
                   e.topic(), e.publisher(), p.name, e.event_id(), attempt, status_name(st), us,
                   span.parent_id().empty() ? "" : " parent_id=", span.parent_id());
  return st;
}

}  // namespace keel::host::plugins
