// Plugin-to-plugin calls: routed like HTTP, without a socket, always completed on a worker.
#include "abi/current_request.hpp"
#include "abi/status.hpp"
#include "common/timer_queue.hpp"
#include "observability/trace.hpp"
#include "plugins/host_impl.hpp"

namespace keel::host::plugins {
namespace {

using abi::CurrentRequestScope;
using abi::http_status_for;
using abi::status_name;

// What a call hands the target's handler: the call's arguments, copied, with `path` under the
// target's mount and the query decoded.
std::shared_ptr<OwnedRequest> call_request(const keel_call_args& args, const std::string& mount, const std::string& caller,
                                           const std::string& request_id, std::string_view traceparent,
                                           Clock::time_point deadline) {
  auto owned = std::make_shared<OwnedRequest>();
  const auto full = view(args.path);
  const auto q = full.find('?');
  owned->method.assign(view(args.method));
  owned->path = mount + std::string(full.substr(0, q));
  owned->body.assign(view(args.body));
  owned->request_id = request_id;
  owned->caller = caller;
  owned->traceparent.assign(traceparent);
  owned->tracestate.assign(view(args.tracestate));
  owned->deadline = deadline;
  for (std::size_t i = 0; i < args.headers.count; ++i)
    owned->headers.emplace_back(view(args.headers.items[i].name), view(args.headers.items[i].value));
  std::string query_storage;
  std::vector<std::pair<std::size_t, std::size_t>> spans;
  parse_query(q == std::string_view::npos ? std::string_view{} : full.substr(q + 1), query_storage, spans);
  for (std::size_t i = 0; i + 1 < spans.size(); i += 2)
    owned->query.emplace_back(span_of(query_storage, spans[i]), span_of(query_storage, spans[i + 1]));
  return owned;
}

}  // namespace

// One call in flight: what its completion needs.
struct CallState {
  std::atomic<bool> done{false};
  keel_call_callback cb = nullptr;
  void* user = nullptr;
  Plugin* caller = nullptr;
  CallCounters* counters = nullptr;
  Clock::time_point start{};
  std::uint64_t timer = 0;
  observability::Span span;  // the call: child of the caller's span, parent of the target's handler
  // The completion continues the caller's work: it runs with the caller's request id, deadline
  // and span, so what it calls or publishes stays in the same trace.
  std::string request_id, caller_traceparent;
  Clock::time_point deadline{};
  std::string target, method, path;  // for the span's log line
  std::uint64_t id = 0;              // in caller->live_calls
  std::shared_ptr<ErrorBudget> target_budget;  // the answer counts against the target's budget
  std::string target_name;
};

// A call's outcome, delivered once: counted, spent against the target's error budget, logged as
// a span, and handed to the caller's callback on a worker thread (never inside call()), in the
// caller's request context.
void PluginHost::Impl::complete_call(const std::shared_ptr<CallState>& state, keel_status result,
                                     std::shared_ptr<http::Response> response) {
  if (state->done.exchange(true)) return;
  {
    std::lock_guard lock(state->caller->calls_mutex);
    state->caller->live_calls.erase(state->id);
  }
  if (state->timer != 0) timers.cancel(state->timer);
  const auto elapsed = Clock::now() - state->start;
  if (state->counters != nullptr) {  // a call to another host's plugin counts in keel_cluster_forwarded_*
    state->counters->calls.fetch_add(1, std::memory_order_relaxed);
    if (result < 0 || (response && response->status >= 500)) state->counters->errors.fetch_add(1, std::memory_order_relaxed);
    state->counters->duration.observe(elapsed);
  }
  spend(state->target_budget, state->target_name, response ? response->status : http_status_for(result), state->start);
  if (span_log) {
    const auto& sp = state->span;
    const observability::LogScope scope({state->request_id, sp.trace_id(), sp.span_id()});
    span_log->info("span kind=call caller={} target={} method={} path={} status={} duration_us={}{}{}",
                   state->caller->name, state->target, state->method, state->path,
                   response ? std::to_string(response->status) : std::string(status_name(result)),
                   std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count(),
                   sp.parent_id().empty() ? "" : " parent_id=", sp.parent_id());
  }
  auto job = [state, result, response] {
    std::vector<keel_host_kv> headers;
    keel_call_response r{};
    if (response) {
      for (const auto& [n, v] : response->headers) headers.push_back({host_bytes(n), host_bytes(v)});
      r.struct_size = sizeof(keel_call_response);
      r.status = static_cast<std::int32_t>(response->status);
      r.headers = {headers.data(), headers.size()};
      r.content_type = host_bytes(response->content_type);
      r.body = host_bytes(response->body);
    }
    {
      const CurrentRequestScope scope({&state->caller->ctx, state->deadline, state->request_id, state->caller_traceparent});
      state->cb(state->user, result, response ? &r : nullptr);
    }
    state->caller->callbacks_pending.fetch_sub(1);
  };
  if (!pool.post(job)) std::thread(job).detach();  // pool stopping: still deliver exactly once
}

std::pair<std::shared_ptr<CallState>, std::shared_ptr<http::AsyncReply>> PluginHost::Impl::begin_call(
    Plugin& caller, const keel_call_args& args, keel_call_callback cb, void* user, CallTarget target) {
  // Deadline: the call's own timeout, capped by what is left of the caller's current request.
  const auto now = Clock::now();
  auto deadline = now + (args.timeout_ms != 0 ? std::chrono::milliseconds(args.timeout_ms) : cfg.http.request_timeout);
  auto state = std::make_shared<CallState>();
  std::string_view parent_span = view(args.traceparent);
  if (const auto* cur = abi::current_request(); cur != nullptr && cur->ctx == &caller.ctx) {
    deadline = std::min(deadline, cur->deadline);
    state->request_id.assign(cur->request_id);
    if (parent_span.empty()) parent_span = cur->traceparent;
  }
  state->span = observability::Span::start(parent_span);
  // A call made outside any request (a plugin's own thread, start()) gets its span id as its
  // request id, so the callee's log lines, here or on another host, still share one `req=`.
  if (state->request_id.empty()) state->request_id.assign(state->span.span_id());
  state->caller_traceparent.assign(parent_span);
  state->cb = cb;
  state->user = user;
  state->caller = &caller;
  state->counters = target.counters;
  state->start = Clock::now();
  state->deadline = deadline;
  state->target_budget = std::move(target.budget);
  if (state->target_budget) state->target_name = target.name;
  if (span_log) {
    state->target = std::move(target.name);
    state->method.assign(view(args.method));
    state->path = std::move(target.span_path);
  }
  caller.callbacks_pending.fetch_add(1);
  // Exactly one delivery, always on a worker thread (never inside call()).
  auto deliver = [this, state](keel_status result, std::shared_ptr<http::Response> response) {
    complete_call(state, result, std::move(response));
  };
  {
    std::lock_guard lock(caller.calls_mutex);
    state->id = ++caller.next_call;
    caller.live_calls.emplace(state->id, [deliver] { deliver(KEEL_ERR_UNAVAILABLE, nullptr); });
  }
  auto reply = std::make_shared<http::AsyncReply>();
  reply->set_waker([reply_weak = std::weak_ptr<http::AsyncReply>(reply), deliver] {
    if (auto r = reply_weak.lock()) deliver(KEEL_OK, std::make_shared<http::Response>(r->take()));
  });
  state->timer = timers.schedule(deadline, [reply, deliver] {
    if (reply->expire()) deliver(KEEL_ERR_TIMEOUT, nullptr);
  });
  return {std::move(state), std::move(reply)};
}

keel_status PluginHost::Impl::call(Plugin& caller, const keel_call_args* args, keel_call_callback cb, void* user) {
  if (args == nullptr || cb == nullptr || args->struct_size < offsetof(keel_call_args, tracestate) + sizeof(args->tracestate))
    return KEEL_ERR_INVALID_ARGUMENT;
  if (!caller.may_call.load()) return KEEL_ERR_UNAVAILABLE;
  const auto target_name = view(args->target_plugin);
  const auto method = view(args->method);
  const auto full = view(args->path);
  if (!http::valid_token(method) || full.empty() || full.front() != '/') return KEEL_ERR_INVALID_ARGUMENT;
  const bool declared = std::any_of(caller.manifest.dependencies.begin(), caller.manifest.dependencies.end(),
                                    [&](const Dependency& d) { return d.name == target_name; });
  if (!declared && !has_permission(caller.manifest, "call:" + std::string(target_name))) {
    caller.log->warn("call refused: '{}' is not a declared dependency of '{}' (add it to the manifest's dependencies)",
                     target_name, caller.name);
    // A target only other hosts load hears of it too (docs/cluster.md "Calls").
    const auto snap = routes.load();
    if (auto* remote = remote_calls.load(std::memory_order_acquire);
        remote != nullptr && find_named(snap->gens, target_name) == snap->gens.end()) {
      RemoteCall c;
      c.caller = caller.name;
      c.target = target_name;
      c.method = method;
      c.path = full.substr(0, full.find('?'));
      if (const auto* cur = abi::current_request(); cur != nullptr && cur->ctx == &caller.ctx) c.request_id = cur->request_id;
      remote->report_refused(c);
    }
    return KEEL_ERR_PERMISSION_DENIED;
  }
  // The target's current generation, admitted; one a reload retired meanwhile is looked up again.
  // A snapshot of its own: the thread's cached one may be what the calling handler's request
  // parameters point into (the fast path on an I/O thread).
  Plugin* target = nullptr;
  auto snap = routes.load();
  for (int attempt = 1;; ++attempt) {
    const auto it = find_named(snap->gens, target_name);
    if (it == snap->gens.end()) return call_remote(caller, *args, cb, user);
    target = it->get();
    if (admit(*target)) break;
    if (!target->retired.load() || attempt > 3) return KEEL_ERR_UNAVAILABLE;
    snap = routes.load();
  }
  Admission admission(target);
  if (target->budget && target->budget->over()) return KEEL_ERR_UNAVAILABLE;  // quarantined

  // The counters array outlives the caller's generation.
  auto [state, reply] = begin_call(caller, *args, cb, user,
                                   {target->name, &caller.call_counters[target->index], target->budget,
                                    target->mount + std::string(full.substr(0, full.find('?')))});
  auto owned = call_request(*args, target->mount, caller.name, state->request_id, state->span.traceparent(), state->deadline);

  // Route through the same table as HTTP; the route must belong to the target plugin.
  http::MatchScratch scratch;
  const auto match = snap->table->match(owned->method, owned->path, scratch);
  if (match.kind != http::MatchResult::Kind::kFound || match.target.owner != target->index) {
    http::Response res;
    const unsigned code = match.kind == http::MatchResult::Kind::kMethodNotAllowed ? 405
                          : match.kind == http::MatchResult::Kind::kBadPath        ? 400
                                                                                   : 404;
    res.set_error(code, http::error_code_for(code), "no route " + owned->method + " " + std::string(full) +
                                                        " in plugin '" + target->name + "'");
    reply->complete(std::move(res));
    return KEEL_OK;
  }
  for (std::size_t i = 0; i < scratch.param_count; ++i)
    owned->params.emplace_back(scratch.params[i].name, scratch.params[i].value);
  owned->route_index = match.target.route;
  caller.log->debug("call target={} method={} path={} req={}", target->name, owned->method, owned->path, owned->request_id);
  const auto id = target->responders.acquire_async(reply);
  static_cast<void>(admission.transfer());  // released by the job
  (void)dispatch_owned(*target, std::move(owned), reply, id);
  return KEEL_OK;
}

// A target this host does not load: another host of the cluster may (docs/cluster.md "Calls").
// The callee's host checks the permission again and routes the call under its own mount.
keel_status PluginHost::Impl::call_remote(Plugin& caller, const keel_call_args& args, keel_call_callback cb,
                                          void* user) {
  auto* remote = remote_calls.load(std::memory_order_acquire);
  const auto target_name = view(args.target_plugin);
  if (remote == nullptr) return KEEL_ERR_NOT_FOUND;
  const auto versions = remote->versions(target_name);
  if (versions.empty()) return KEEL_ERR_NOT_FOUND;
  // A declared dependency's version range holds across hosts as pre-flight holds it on one: a
  // target only announced in versions outside the range is not there for this caller.
  const auto dep = std::find_if(caller.manifest.dependencies.begin(), caller.manifest.dependencies.end(),
                                [&](const Dependency& d) { return d.name == target_name; });
  if (dep != caller.manifest.dependencies.end() && std::none_of(versions.begin(), versions.end(), [&](const std::string& v) {
        const auto parsed = package::parse_version(v);
        return parsed && dep->range.contains(*parsed);
      })) {
    std::string announced;
    for (const auto& v : versions) announced += (announced.empty() ? "" : ", ") + v;
    caller.log->warn("call refused: '{}' depends on '{}' {} but the hosts serving it announce version {} (deploy a "
                     "matching version)",
                     caller.name, target_name, dep->range.text(), announced);
    return KEEL_ERR_NOT_FOUND;
  }
  auto [state, reply] = begin_call(caller, args, cb, user, {std::string(target_name), nullptr, nullptr, std::string(view(args.path))});
  RemoteCall c;
  c.caller = caller.name;
  c.target = target_name;
  c.method.assign(view(args.method));
  c.path.assign(view(args.path));
  for (std::size_t i = 0; i < args.headers.count; ++i)
    c.headers.emplace_back(view(args.headers.items[i].name), view(args.headers.items[i].value));
  c.body.assign(view(args.body));
  c.request_id = state->request_id;
  c.traceparent.assign(state->span.traceparent());
  c.tracestate.assign(view(args.tracestate));
  c.deadline = state->deadline;
  caller.log->debug("call target={} (another host) method={} path={} req={}", c.target, c.method, c.path, c.request_id);
  if (!remote->send(c, reply)) {
    http::Response res;
    res.set_error(503, "unavailable", "plugin '" + c.target + "' runs on another host and the cluster link is down");
    reply->complete(std::move(res));
  }
  return KEEL_OK;
}

void PluginHost::set_remote_calls(RemoteCalls* remote) noexcept {
  impl_->remote_calls.store(remote, std::memory_order_release);
}

}  // namespace keel::host::plugins
