// Runner::Impl's keel_plugin table (runner_impl.hpp): the hooks the plugin host calls, each a
// frame to the runner process — lifecycle, request, event and health — and the answers the
// host gives for the plugin while its process is gone.
#include "abi/bytes.hpp"
#include "abi/host_ctx.hpp"
#include "abi/status.hpp"
#include "http/message.hpp"
#include "isolation/runner_impl.hpp"

namespace keel::host::isolation {

using abi::plugin_bytes;
using abi::view;

std::shared_ptr<Instance> Runner::Impl::live() const {
  std::lock_guard lock(mutex);
  return current;
}

keel_status Runner::Impl::lifecycle(Instance& inst, Kind kind, std::string_view body, std::string_view what) {
  Writer w;
  encode_context(w, current_context());
  if (kind == Kind::kCreate) w.bytes(body);
  bool timed_out = false;
  const auto reply = ask(inst, kind, w.data(), opts.settings.hook_timeout, what, &timed_out);
  if (!reply) return timed_out ? KEEL_ERR_TIMEOUT : KEEL_ERR_UNAVAILABLE;
  auto r = reply->reader();
  const auto st = r.i32();
  return r.ok() ? st : KEEL_ERR_INTERNAL;
}

keel_status Runner::Impl::create(const keel_host_api* api, keel_host_ctx* c, keel_host_bytes cfg) {
  host.store(api);
  ctx.store(c);
  auto inst = live();
  if (!inst) {
    // After a quarantine or a destroy (enable, or a create that follows a failed start):
    // a fresh process, and a fresh crash record.
    try {
      inst = on_supervisor<std::shared_ptr<Instance>>([this] { return launch(); });
    } catch (const std::exception& e) {
      log->error("plugin runner could not start plugin={}: {}", opts.plugin, e.what());
      return KEEL_ERR_UNAVAILABLE;
    }
    {
      std::lock_guard lock(mutex);
      current = inst;
      crashes.clear();
      consecutive = 0;
      quarantine_reason.clear();
    }
    wake();  // the supervisor watches the new process's exit from now on
  }
  const auto st = lifecycle(*inst, Kind::kCreate, view(cfg), "create()");
  std::lock_guard lock(mutex);
  if (st >= 0) {
    config.assign(view(cfg));
    created = true;
    state = State::kRunning;
  }
  return st;
}

keel_status Runner::Impl::start() {
  auto inst = live();
  if (!inst) return KEEL_ERR_UNAVAILABLE;
  const auto st = lifecycle(*inst, Kind::kStart, {}, "start()");
  if (st >= 0) {
    std::lock_guard lock(mutex);
    started = true;
  }
  return st;
}

keel_status Runner::Impl::stop() {
  {
    std::lock_guard lock(mutex);
    started = false;
  }
  auto inst = live();
  return inst ? lifecycle(*inst, Kind::kStop, {}, "stop()") : KEEL_OK;
}

void Runner::Impl::destroy() {
  std::shared_ptr<Instance> inst;
  {
    std::lock_guard lock(mutex);
    created = false;
    started = false;
    restart_at.reset();
    inst = std::move(current);
    if (state != State::kQuarantined) state = State::kStopped;
    changed.notify_all();
  }
  if (!inst) return;
  inst->expected_exit.store(true);
  static_cast<void>(lifecycle(*inst, Kind::kDestroy, {}, "destroy()"));
  // The runner exits when the socket closes; the supervisor (or ~Runner) reaps it.
  try {
    on_supervisor<bool>([this, inst] {
      end(*inst, "destroyed");
      return true;
    });
  } catch (const std::exception&) {
    end(*inst, "destroyed while the runner shuts down");
  }
}

keel_status Runner::Impl::answer(keel_responder responder, unsigned status, std::string_view message) {
  http::Response res;
  res.set_error(status, http::error_code_for(status), message);
  keel_response out{};
  out.struct_size = sizeof out;
  out.status = static_cast<std::int32_t>(res.status);
  out.content_type = plugin_bytes(res.content_type);
  out.body = plugin_bytes(res.body);
  const auto* api = host.load();
  return api != nullptr ? api->respond(ctx.load(), responder, &out) : KEEL_ERR_UNAVAILABLE;
}

void Runner::Impl::request_returned(keel_responder responder, keel_status st) {
  if (st >= 0) return;
  const auto code = abi::http_status_for(st);
  if (answer(responder, code, "plugin '" + opts.plugin + "' failed: " + std::string(abi::status_name(st))) ==
      KEEL_ERR_ALREADY_COMPLETED)
    log->warn("plugin handler returned status={} after responding; the response stands plugin={}",
              abi::status_name(st), opts.plugin);
}

keel_status Runner::Impl::on_request(const keel_request* req, keel_responder responder) {
  auto inst = live();
  if (!inst) {
    answer(responder, 503, unavailable_message());
    return KEEL_OK;
  }
  Writer w;
  encode_context(w, current_context());
  w.u64(responder);
  // As in process: a handler that may block runs off the thread that reads the socket.
  const auto route = req->route_index;
  const bool may_block = opts.serialized || route >= opts.blocking_routes.size() || opts.blocking_routes[route];
  w.u8(may_block ? 1 : 0);
  encode_request(w, *req);
  if (opts.serialized) {
    // One hook at a time: wait for this one to return, as the host's serial queue expects.
    auto reply = inst->conn->request(Kind::kRequest, w.data(), std::chrono::hours(24));
    if (!reply) {
      answer(responder, 502, crash_message());
      return KEEL_OK;
    }
    auto r = reply->reader();
    const auto st = r.i32();
    return r.ok() ? st : KEEL_ERR_INTERNAL;
  }
  // Parallel: on_request returns at once; the answer comes as a respond frame, a failure as
  // the reply, a crash as the connection closing.
  std::weak_ptr<Connection> conn = inst->conn;
  inst->conn->request_async(Kind::kRequest, w.data(), [this, responder, conn](std::optional<Frame> reply) {
    if (!reply) {
      const auto c = conn.lock();
      if (c && !c->closed())  // not sent: the runner stopped reading and its queue is full
        answer(responder, 503, "plugin '" + opts.plugin + "' is overloaded: its runner process is not reading");
      else
        answer(responder, 502, crash_message());
      return;
    }
    auto r = reply->reader();
    const auto st = r.i32();
    request_returned(responder, r.ok() ? st : KEEL_ERR_INTERNAL);
  });
  return KEEL_OK;
}

keel_status Runner::Impl::on_event(const keel_event* ev) {
  auto inst = live();
  if (!inst) return KEEL_ERR_UNAVAILABLE;  // restarting: durable deliveries pause until it is back
  Writer w;
  encode_context(w, current_context());
  encode_event(w, *ev);
  const auto reply = ask(*inst, Kind::kEvent, w.data(), opts.settings.hook_timeout, "on_event()", nullptr);
  // No answer: the process died with this event (or was killed for it). A failed attempt,
  // so an event that crashes its subscriber every time ends as a dead letter.
  if (!reply) return KEEL_ERR_INTERNAL;
  auto r = reply->reader();
  const auto st = r.i32();
  return r.ok() ? st : KEEL_ERR_INTERNAL;
}

keel_health Runner::Impl::health(keel_plugin_bytes* out_detail) {
  auto inst = live();
  if (!inst) {
    health_detail = unavailable_message();
    *out_detail = plugin_bytes(health_detail);
    return KEEL_HEALTH_FAIL;
  }
  Writer w;
  encode_context(w, {});
  const auto reply = inst->conn->request(Kind::kHealth, w.data(), opts.settings.ping_timeout);
  if (!reply) {
    health_detail = "its runner did not answer the health check within " +
                    std::to_string(opts.settings.ping_timeout.count()) + " ms";
    *out_detail = plugin_bytes(health_detail);
    return KEEL_HEALTH_FAIL;
  }
  auto r = reply->reader();
  const auto h = r.i32();
  health_detail.assign(r.bytes());
  *out_detail = plugin_bytes(health_detail);
  return r.ok() ? h : KEEL_HEALTH_FAIL;
}

std::string Runner::Impl::unavailable_message() const {
  std::lock_guard lock(mutex);
  if (state == State::kQuarantined) return "plugin '" + opts.plugin + "' is quarantined: " + quarantine_reason;
  return "plugin '" + opts.plugin + "' is restarting after a crash of its runner process (" + last_crash + "); retry";
}

std::string Runner::Impl::crash_message() const {
  return "plugin '" + opts.plugin + "' crashed while handling the request (its runner process ended)";
}

// ---------------------------------------------------------------------------------------------
// The table's hooks: the instance pointer is the Impl (create() hands it out as self).

namespace {

Runner::Impl& impl_of(void* self) { return *static_cast<Runner::Impl*>(self); }

keel_status px_create(const keel_host_api* host, keel_host_ctx* ctx, keel_host_bytes config, void** out_self) {
  if (ctx == nullptr || ctx->runner == nullptr || out_self == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  auto& impl = ctx->runner->impl();
  const auto st = impl.create(host, ctx, config);
  if (st >= 0) *out_self = &impl;
  return st;
}
void px_destroy(void* self) { impl_of(self).destroy(); }
keel_status px_start(void* self) { return impl_of(self).start(); }
keel_status px_stop(void* self) { return impl_of(self).stop(); }
keel_status px_on_request(void* self, const keel_request* request, keel_responder responder) {
  try {
    return impl_of(self).on_request(request, responder);
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}
keel_status px_on_event(void* self, const keel_event* event) {
  try {
    return impl_of(self).on_event(event);
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}
keel_health px_health(void* self, keel_plugin_bytes* out_detail) {
  try {
    return impl_of(self).health(out_detail);
  } catch (...) {
    return KEEL_HEALTH_FAIL;
  }
}

}  // namespace

void Runner::Impl::fill_table() {
  auto& t = table;
  t.struct_size = sizeof t;
  t.abi_version = abi;
  t.manifest = opts.manifest_json.c_str();
  // on_request and on_event exactly when the plugin has them, so the host checks the manifest
  // against the same table; the others always (they also track the runner's own state).
  t.create = px_create;
  t.destroy = px_destroy;
  t.start = px_start;
  t.stop = px_stop;
  t.on_request = (hooks & 4u) != 0 ? px_on_request : nullptr;
  t.on_event = (hooks & 8u) != 0 ? px_on_event : nullptr;
  t.health = px_health;
}

}  // namespace keel::host::isolation
