// Dispatch: an HTTP request into the plugin that owns its route.
#include "abi/current_request.hpp"
#include "abi/status.hpp"
#include "http/query.hpp"
#include "plugins/host_impl.hpp"

namespace keel::host::plugins {
namespace {

using abi::CurrentRequestScope;
using abi::http_status_for;
using abi::status_name;

// Build a keel_request over an OwnedRequest; the vectors hold the kv arrays it points into.
struct RequestView {
  keel_request req{};
  std::vector<keel_host_kv> headers, params, query;
  explicit RequestView(const OwnedRequest& o) {
    auto fill = [](std::vector<keel_host_kv>& out, const std::vector<std::pair<std::string, std::string>>& in) {
      out.reserve(in.size());
      for (const auto& [n, v] : in) out.push_back({host_bytes(n), host_bytes(v)});
    };
    fill(headers, o.headers);
    fill(params, o.params);
    fill(query, o.query);
    req.struct_size = sizeof(keel_request);
    req.route_index = o.route_index;
    req.method = host_bytes(o.method);
    req.path = host_bytes(o.path);
    req.path_params = {params.data(), params.size()};
    req.query = {query.data(), query.size()};
    req.headers = {headers.data(), headers.size()};
    req.body = host_bytes(o.body);
    req.remote_address = host_bytes(o.remote_address);
    req.request_id = host_bytes(o.request_id);
    req.caller_plugin = host_bytes(o.caller);
    req.deadline_mono_ns = to_mono_ns(o.deadline);
    req.traceparent = host_bytes(o.traceparent);
    req.tracestate = host_bytes(o.tracestate);
  }
};

// Reused per I/O thread so the synchronous path builds keel_request without allocating.
struct DispatchScratch {
  std::vector<keel_host_kv> headers, params, query;
  std::string query_storage;
  std::vector<std::pair<std::size_t, std::size_t>> query_spans;
};
thread_local DispatchScratch tl_scratch;

// A request for a handler that runs after the I/O thread moved on: everything copied.
std::shared_ptr<OwnedRequest> copy_request(const http::Request& request, const http::MatchScratch& params,
                                           const DispatchScratch& sc, std::uint32_t route, Clock::time_point deadline) {
  auto owned = std::make_shared<OwnedRequest>();
  owned->method.assign(request.method);
  owned->path.assign(request.path);
  owned->body.assign(request.body);
  owned->remote_address.assign(request.remote_address);
  owned->request_id.assign(request.request_id);
  owned->caller.assign(request.caller_plugin);
  owned->traceparent.assign(request.traceparent);
  owned->tracestate.assign(request.tracestate);
  for (const auto& h : request.headers) owned->headers.emplace_back(h.name, h.value);
  for (std::size_t i = 0; i < params.param_count; ++i) owned->params.emplace_back(params.params[i].name, params.params[i].value);
  for (std::size_t i = 0; i + 1 < sc.query_spans.size(); i += 2)
    owned->query.emplace_back(span_of(sc.query_storage, sc.query_spans[i]), span_of(sc.query_storage, sc.query_spans[i + 1]));
  owned->route_index = route;
  owned->deadline = deadline;
  return owned;
}

// A keel_request whose views point into `request`, `params` and the thread's scratch `sc`
// (filled here): valid until the handler returns on this thread. No allocation once the
// scratch vectors have grown.
keel_request borrow_request(const http::Request& request, const http::MatchScratch& params, DispatchScratch& sc,
                            std::uint32_t route, Clock::time_point deadline) {
  sc.headers.clear();
  for (const auto& h : request.headers) sc.headers.push_back({host_bytes(h.name), host_bytes(h.value)});
  sc.params.clear();
  for (std::size_t i = 0; i < params.param_count; ++i)
    sc.params.push_back({host_bytes(params.params[i].name), host_bytes(params.params[i].value)});
  sc.query.clear();
  for (std::size_t i = 0; i + 1 < sc.query_spans.size(); i += 2)
    sc.query.push_back({host_bytes(span_of(sc.query_storage, sc.query_spans[i])),
                        host_bytes(span_of(sc.query_storage, sc.query_spans[i + 1]))});
  keel_request req{};
  req.struct_size = sizeof(keel_request);
  req.route_index = route;
  req.method = host_bytes(request.method);
  req.path = host_bytes(request.path);
  req.path_params = {sc.params.data(), sc.params.size()};
  req.query = {sc.query.data(), sc.query.size()};
  req.headers = {sc.headers.data(), sc.headers.size()};
  req.body = host_bytes(request.body);
  req.remote_address = host_bytes(request.remote_address);
  req.request_id = host_bytes(request.request_id);
  req.caller_plugin = host_bytes(request.caller_plugin);
  req.deadline_mono_ns = to_mono_ns(deadline);
  req.traceparent = host_bytes(request.traceparent);
  req.tracestate = host_bytes(request.tracestate);
  return req;
}

// A deferred answer of route `route` of `p` is counted (and spent against its error budget)
// when the server finishes sending it.
void count_when_done(const Plugin& p, std::uint32_t route, Clock::time_point start, http::AsyncReply& reply) {
  reply.on_finish([counters = p.route_counters[route], budget = p.budget, name = p.name, start](unsigned status,
                                                                                                std::size_t bytes) {
    counters->finish(start, status, bytes);
    spend(budget, name, status, start);
  });
}

}  // namespace

// Query string -> decoded name/value pairs ('+' is a space in form encoding). Invalid escapes
// are kept literally: the query is data for the plugin, not routing input.
void parse_query(std::string_view query, std::string& storage, std::vector<std::pair<std::size_t, std::size_t>>& spans) {
  storage.clear();
  spans.clear();
  storage.reserve(query.size() + 1);
  http::for_each_query_pair(query, [&](std::string_view name, std::string_view value) {
    const auto n0 = storage.size();
    http::append_form_decoded(storage, name);
    const auto n1 = storage.size();
    http::append_form_decoded(storage, value);
    spans.emplace_back(n0, n1);
    spans.emplace_back(n1, storage.size());
    return true;
  });
}

// Counts one answer of plugin `name` against its error budget; the answer that puts it over
// takes it out of routing (ErrorBudget::over), which is logged here once.
void spend(const std::shared_ptr<ErrorBudget>& budget, const std::string& name, unsigned status,
           Clock::time_point start) {
  if (budget && budget->record(status, Clock::now() - start))
    observability::logger("plugins")->error("plugin quarantined name={}: {}; POST /admin/plugins/{}/enable brings it back",
                                            name, budget->reason(), name);
}

// The answer for a plugin out of its error budget.
void set_quarantined(http::Response& response, const Plugin& p) {
  response.set_error(503, "quarantined", "plugin '" + p.name + "' is quarantined: " + p.budget->reason() +
                                             "; POST /admin/plugins/" + p.name + "/enable brings it back");
}

keel_status PluginHost::Impl::run_handler(Plugin& p, const keel_request& req, keel_responder id, bool deferred) {
  const std::string_view request_id(req.request_id.ptr, req.request_id.len);
  keel_status st;
  {
    const CurrentRequestScope scope({&p.ctx, Clock::time_point(std::chrono::nanoseconds(req.deadline_mono_ns)), request_id,
                                     std::string_view(req.traceparent.ptr, req.traceparent.len)});
    try {
      st = p.table->on_request(p.self, &req, id);
    } catch (...) {
      // Only a plugin that bypasses the SDK can get here; C++ unwinding through a C frame is
      // not guaranteed, so this is a last resort that keeps the host alive for this request.
      p.log->error("on_request let an exception escape req={}", request_id);
      st = KEEL_ERR_INTERNAL;
    }
  }
  if (st < 0) {
    p.log->warn("request handler failed status={} ({}) req={}", st, status_name(st), request_id);
    if (deferred) {
      http::Response res;
      const auto code = http_status_for(st);
      res.set_error(code, http::error_code_for(code), "plugin '" + p.name + "' failed: " + std::string(status_name(st)));
      p.responders.fail(id, std::move(res));
    }
  }
  return st;
}

// `p` must have admitted the request (admit()); the job releases that admission after the
// handler ran, so a draining generation waits for requests queued to it, not only running ones.
namespace {
// A "storage": "read" route of a plugin whose hooks run in this process, with a database: its
// handler runs as a read-only run of that database, wherever it runs.
bool read_only_route(const Plugin& p, std::uint32_t route) {
  return p.manifest.routes[route].storage_read && p.ctx.storage != nullptr && p.placement->runs_on_caller_thread();
}
}  // namespace

std::optional<http::Deferred> PluginHost::Impl::dispatch_owned(Plugin& p, std::shared_ptr<OwnedRequest> owned,
                                                               std::shared_ptr<http::AsyncReply> reply,
                                                               keel_responder id) {
  auto job = [this, &p, owned, id] {
    if (p.hooks_closed.load()) {  // stopped while this waited in the queue: it cannot run any more
      http::Response res;
      res.set_error(503, "unavailable", "plugin '" + p.name + "' stopped before handling the request");
      p.responders.fail(id, std::move(res));
    } else {
      const RequestView view(*owned);
      // A "storage": "read" route only reads here too (on the pool: no reader reserved).
      storage::ReadOnlyScope reads;
      if (read_only_route(p, owned->route_index)) reads.begin(*p.ctx.storage, /*reserve_reader=*/false);
      run_handler(p, view.req, id, true);
    }
    p.in_flight.fetch_sub(1);
  };
  const bool queued = p.serial ? p.serial->post(std::move(job)) : pool.post(std::move(job));
  if (!queued) {
    p.in_flight.fetch_sub(1);
    http::Response res;
    res.set_error(503, "unavailable", "plugin '" + p.name + "' is overloaded: worker queue full");
    p.responders.fail(id, std::move(res));
  }
  return http::Deferred{std::move(reply), owned->deadline};
}

std::optional<http::Deferred> PluginHost::dispatch(const http::MatchResult& first_match,
                                                   const http::MatchScratch& first_params, const http::Request& request,
                                                   http::Response& response) {
  auto& s = *impl_;
  const auto start = Clock::now();
  // The generation the thread's snapshot routes to; if a reload retired it since, match again on
  // the current snapshot (its routes may differ) instead of failing the request.
  const http::MatchResult* matched = &first_match;
  const http::MatchScratch* matched_params = &first_params;
  thread_local http::MatchScratch retry_scratch;
  http::MatchResult retry_match;
  // The snapshot `first_match` came from (route_table_for_this_thread() on this thread, with
  // nothing in between): its route indices and parameter views belong to it.
  std::shared_ptr<const Impl::RouteSnapshot> pinned;
  Plugin* pp = s.routes.pinned().gens.at(matched->target.owner).get();
  for (int attempt = 1; !Impl::admit(*pp); ++attempt) {
    if (!pp->retired.load() || attempt > 3) {
      auto& c = *pp->route_counters.at(matched->target.route);
      c.begin(request.body.size());
      response.set_error(503, "unavailable", "plugin '" + pp->name + "' is not accepting requests");
      c.finish(start, response.status, response.body.size());
      return std::nullopt;
    }
    // Retired by a reload: match again on the current snapshot, held here (not in the thread's
    // cache, which the matched table's views and the caller's table reference depend on).
    const std::string name = pp->name;
    pinned = s.routes.load();
    retry_match = pinned->table->match(request.method, request.path, retry_scratch);
    if (retry_match.kind == http::MatchResult::Kind::kMethodNotAllowed) {
      response.set_method_not_allowed(retry_match.allow);
      return std::nullopt;
    }
    if (retry_match.kind != http::MatchResult::Kind::kFound) {
      response.set_error(404, "not_found", "no route for this path (plugin '" + name + "' was reloaded)");
      return std::nullopt;
    }
    matched = &retry_match;
    matched_params = &retry_scratch;
    pp = pinned->gens.at(matched->target.owner).get();
  }
  // Admitted: p cannot be stopped until this request is answered or handed to a job.
  Impl::Admission admission(pp);
  auto& p = *pp;
  const auto& match = *matched;
  const auto& params = *matched_params;
  const auto route = match.target.route;
  auto& counters = *p.route_counters[route];
  counters.begin(request.body.size());
  if (p.budget && p.budget->over()) {
    set_quarantined(response, p);
    counters.finish(start, response.status, response.body.size());
    return std::nullopt;
  }
  auto timeout = p.route_timeouts[route].count() != 0 ? p.route_timeouts[route] : p.timeout;
  const auto deadline = std::min(request.deadline, start + timeout);
  auto& sc = tl_scratch;
  parse_query(request.query, sc.query_storage, sc.query_spans);

  // A "storage": "read" route runs here when its plugin runs in this process and a reader of
  // its database is free now (SQLite); otherwise it goes to the pool like a blocking route.
  const auto& decl = p.manifest.routes[route];
  storage::ReadOnlyScope reads;
  if (!p.serial && read_only_route(p, route)) reads.begin(*p.ctx.storage, /*reserve_reader=*/true);
  if (p.serial || decl.blocking || (decl.storage_read && !reads.active())) {
    // Off the I/O thread: copy what the handler needs, since it may outlive this call.
    auto owned = copy_request(request, params, sc, route, deadline);
    auto reply = std::make_shared<http::AsyncReply>();
    reply->timeout_message = "plugin '" + p.name + "' did not answer within " + std::to_string(timeout.count()) + " ms";
    count_when_done(p, route, start, *reply);
    const auto id = p.responders.acquire_async(reply);
    static_cast<void>(admission.transfer());  // released by the job
    return s.dispatch_owned(p, std::move(owned), std::move(reply), id);
  }

  // The fast path: call the handler right here on the I/O thread; no copies, no thread hop.
  const auto req = borrow_request(request, params, sc, route, deadline);
  const auto id = p.responders.acquire_sync(&response);
  const keel_status st = s.run_handler(p, req, id, false);
  reads.end();  // the reader goes back before anything else: a later respond() reads elsewhere
  auto reply = p.responders.finish_sync(id, st < 0);
  if (reply) {
    reply->timeout_message = "plugin '" + p.name + "' did not answer within " + std::to_string(timeout.count()) + " ms";
    count_when_done(p, route, start, *reply);
    return http::Deferred{std::move(reply), deadline};
  }
  if (st < 0 && response.status == 200 && response.body.empty() && response.content_type.empty()) {
    const auto code = http_status_for(st);
    response.set_error(code, http::error_code_for(code), "plugin '" + p.name + "' failed: " + std::string(status_name(st)));
  } else if (st < 0) {
    p.log->warn("handler returned status={} after responding; the response stands req={}", st, request.request_id);
  }
  counters.finish(start, response.status, response.body.size());
  spend(p.budget, p.name, response.status, start);
  return std::nullopt;
}

}  // namespace keel::host::plugins
