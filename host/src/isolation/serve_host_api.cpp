// Runner::Impl serving the runner's calls of the host API (runner_impl.hpp): each runner ->
// host frame is answered with the host's own function, inside the request context it carries —
// log, respond, publish, call (its completion goes back as call_done), get_extension, and the
// keel.storage/1 functions (kinds 40-49).
#include "abi/bytes.hpp"
#include "abi/host_ctx.hpp"
#include "http/message.hpp"
#include "isolation/runner_impl.hpp"
#include "observability/trace.hpp"

namespace keel::host::isolation {
namespace {

using abi::plugin_bytes;
using abi::view;

/// The reply to a runner's call the host did not serve (busy, not created yet), in the shape
/// of that kind's reply so the runner reads a status and a message, not a malformed frame.
std::string refusal(Kind kind, keel_status st, std::string_view text) {
  Writer w;
  w.i32(st);
  switch (kind) {
    case Kind::kSqlExec:  // changes, last id, rows, no column names, no rows
      w.i64(0);
      w.i64(0);
      w.i64(0);
      w.u32(0);
      w.u32(0);
      break;
    case Kind::kSqlPrepare:  // params, columns, read-only
      w.u32(0);
      w.u32(0);
      w.u32(0);
      break;
    case Kind::kTxnBegin: w.u64(KEEL_TXN_NONE); break;
    case Kind::kKvGet: {
      keel_kv_entry none{};
      none.struct_size = sizeof none;
      encode_kv_entry(w, none);
      break;
    }
    case Kind::kKvPut: w.i64(0); break;
    case Kind::kKvList:
      w.u32(0);
      w.u8(0);
      break;
    case Kind::kTxnCommit:
    case Kind::kTxnRollback:
    case Kind::kKvDelete:
    case Kind::kSqlPublish: break;
    default: return w.take();  // publish and the quick kinds: the status alone
  }
  w.bytes(text);
  return w.take();
}

/// One storage frame being served: the table, the context, the frame's fields and the reply.
/// Every reply starts with the status and ends with the storage's error text (empty unless
/// the status is a failure).
struct StorageCall {
  const keel_storage_api& s;
  keel_host_ctx* cx;
  Reader& r;
  Writer& out;

  [[nodiscard]] std::string_view error(keel_status st) const {
    return st < 0 ? view(s.error_message(cx)) : std::string_view{};
  }
  void bad() {
    out.i32(KEEL_ERR_INVALID_ARGUMENT);
    out.bytes("malformed frame from the runner");
  }
  /// A reply that is the status and the error text only.
  void status_reply(keel_status st) {
    out.i32(st);
    out.bytes(error(st));
  }
};

void serve_sql_exec(StorageCall& c) {
  auto& r = c.r;
  auto& out = c.out;
  const auto txn = r.u64();
  const auto sql = r.bytes();
  std::vector<keel_sql_param> params;
  decode_sql_params(r, params);
  const bool want_rows = r.flag();
  if (!r.done()) return c.bad();
  // The rows go back in one frame: a result set over kMaxStorageBytes stops the statement and
  // is answered KEEL_ERR_TOO_LARGE rather than buffered whole.
  struct Rows {
    Writer values;
    std::vector<std::string> names;
    std::uint32_t count = 0;
    bool too_large = false;
  } rows;
  auto sink = [](void* user, const keel_sql_value* cols, const keel_host_bytes* names, std::size_t n) -> int32_t {
    auto& rs = *static_cast<Rows*>(user);
    if (rs.names.empty())
      for (std::size_t i = 0; i < n; ++i) rs.names.emplace_back(view(names[i]));
    for (std::size_t i = 0; i < n; ++i) encode_sql_value(rs.values, cols[i]);
    ++rs.count;
    rs.too_large = rs.values.data().size() > kMaxStorageBytes;
    return rs.too_large ? 1 : 0;
  };
  keel_sql_result res{};
  res.struct_size = sizeof res;
  const auto st = c.s.exec(c.cx, txn, plugin_bytes(sql), params.data(), params.size(), want_rows ? +sink : nullptr,
                           &rows, &res);
  if (rows.too_large && st >= 0) {
    const auto text = "the result set is over " + std::to_string(kMaxStorageBytes >> 20) +
                      " MiB, the most a process-isolated plugin receives at once: read it in pages (LIMIT and a "
                      "keyset); a write statement has run";
    out.i32(KEEL_ERR_TOO_LARGE);
    out.i64(res.changes);
    out.i64(res.last_insert_id);
    out.i64(0);
    out.u32(0);
    out.u32(0);
    out.bytes(text);
    return;
  }
  out.i32(st);
  out.i64(res.changes);
  out.i64(res.last_insert_id);
  out.i64(res.rows);
  out.u32(static_cast<std::uint32_t>(rows.names.size()));
  for (const auto& n : rows.names) out.bytes(n);
  out.u32(rows.count);
  out.raw(rows.values.data());  // without a length: columns x rows values follow
  out.bytes(c.error(st));
}

void serve_sql_prepare(StorageCall& c) {
  const auto sql = c.r.bytes();
  if (!c.r.done()) return c.bad();
  keel_sql_info info{};
  info.struct_size = sizeof info;
  const auto st = c.s.prepare(c.cx, plugin_bytes(sql), &info);
  c.out.i32(st);
  c.out.u32(info.param_count);
  c.out.u32(info.column_count);
  c.out.u32(info.read_only);
  c.out.bytes(c.error(st));
}

/// A top-level transaction the process begins is tracked, to be rolled back if it crashes.
void serve_txn_begin(StorageCall& c, Instance& inst) {
  const auto parent = c.r.u64();
  if (!c.r.done()) return c.bad();
  keel_txn txn = KEEL_TXN_NONE;
  const auto st = c.s.begin(c.cx, parent, &txn);
  if (st >= 0 && parent == KEEL_TXN_NONE) {
    std::lock_guard lock(inst.mutex);
    inst.open_txns.insert(txn);
  }
  c.out.i32(st);
  c.out.u64(txn);
  c.out.bytes(c.error(st));
}

void serve_txn_end(StorageCall& c, Instance& inst, bool commit) {
  const auto txn = c.r.u64();
  if (!c.r.done()) return c.bad();
  const auto st = commit ? c.s.commit(c.cx, txn) : c.s.rollback(c.cx, txn);
  {
    // A top-level commit ends the transaction whatever it returns, except for an id that
    // was not open; a savepoint id is not in the set.
    std::lock_guard lock(inst.mutex);
    if (st != KEEL_ERR_NOT_FOUND) inst.open_txns.erase(txn);
  }
  c.status_reply(st);
}

void serve_kv_get(StorageCall& c) {
  const auto txn = c.r.u64();
  const auto key = c.r.bytes();
  if (!c.r.done()) return c.bad();
  keel_kv_entry e{};
  e.struct_size = sizeof e;
  const auto st = c.s.kv_get(c.cx, txn, plugin_bytes(key), &e);
  c.out.i32(st);
  encode_kv_entry(c.out, e);
  c.out.bytes(c.error(st));
}

void serve_kv_put(StorageCall& c) {
  auto& r = c.r;
  keel_kv_put_args a{};
  a.struct_size = sizeof a;
  const auto txn = r.u64();
  a.flags = r.u32();
  a.key = plugin_bytes(r.bytes());
  a.value = plugin_bytes(r.bytes());
  a.expected_version = r.i64();
  a.ttl_ms = r.i64();
  if (!r.done()) return c.bad();
  std::int64_t version = 0;
  const auto st = c.s.kv_put(c.cx, txn, &a, &version);
  c.out.i32(st);
  c.out.i64(version);
  c.out.bytes(c.error(st));
}

void serve_kv_delete(StorageCall& c) {
  const auto txn = c.r.u64();
  const auto key = c.r.bytes();
  const auto expected = c.r.i64();
  if (!c.r.done()) return c.bad();
  c.status_reply(c.s.kv_delete(c.cx, txn, plugin_bytes(key), expected));
}

void serve_kv_list(StorageCall& c) {
  auto& r = c.r;
  const auto txn = r.u64();
  const auto prefix = r.bytes();
  const auto after = r.bytes();
  const auto limit = r.u32();
  if (!r.done()) return c.bad();
  struct Entries {
    Writer w;
    std::uint32_t count = 0;
  } entries;
  // Entries past kMaxStorageBytes wait for the next page: stopping here sets `more`.
  auto sink = [](void* user, const keel_kv_entry* e) -> int32_t {
    auto& es = *static_cast<Entries*>(user);
    encode_kv_entry(es.w, *e);
    ++es.count;
    return es.w.data().size() > kMaxStorageBytes ? 1 : 0;
  };
  std::uint32_t more = 0;
  const auto st = c.s.kv_list(c.cx, txn, plugin_bytes(prefix), plugin_bytes(after), limit, +sink, &entries, &more);
  c.out.i32(st);
  c.out.u32(entries.count);
  c.out.raw(entries.w.data());
  c.out.u8(more != 0 ? 1 : 0);
  c.out.bytes(c.error(st));
}

void serve_sql_publish(StorageCall& c) {
  const auto txn = c.r.u64();
  keel_publish_args args{};
  decode_publish(c.r, args);
  if (!c.r.done()) return c.bad();
  c.status_reply(c.s.publish(c.cx, txn, &args));
}

}  // namespace

void Runner::Impl::release_call(std::size_t bytes) noexcept {
  queued_calls.fetch_sub(1);
  queued_call_bytes.fetch_sub(bytes);
}

template <class F>
void Runner::Impl::in_context(const Instance& inst, const Context& c, F&& fn) {
  auto* cx = ctx.load();
  if (cx == nullptr) {
    fn();
    return;
  }
  const auto deadline = c.remaining_ns > 0 ? Clock::now() + std::chrono::nanoseconds(c.remaining_ns)
                                           : Clock::now() + std::chrono::hours(24);
  // What a runner says it serves is checked as the HTTP layer checks a client: a forged id or
  // trace never reaches a log line or another plugin.
  const auto request_id = http::valid_request_id(c.request_id) ? c.request_id : std::string_view{};
  const auto traceparent = observability::valid_traceparent(c.traceparent) ? c.traceparent : std::string_view{};
  // A statement the call starts stops as soon as this runner is gone (reap() sets `gone`).
  const abi::CurrentRequestScope scope({cx, deadline, request_id, traceparent, &inst.gone});
  fn();
}

void Runner::Impl::handle(Instance& inst, Frame f) {
  switch (f.kind) {
    case Kind::kLog:
    case Kind::kRespond:
    case Kind::kCall:
    case Kind::kGetExtension:
      serve(inst, f);  // quick and never blocking: right here on the reader thread
      return;
    case Kind::kPublish:
    case Kind::kSqlExec:
    case Kind::kSqlPrepare:
    case Kind::kTxnBegin:
    case Kind::kTxnCommit:
    case Kind::kTxnRollback:
    case Kind::kKvGet:
    case Kind::kKvPut:
    case Kind::kKvDelete:
    case Kind::kKvList:
    case Kind::kSqlPublish: {
      // The instance is alive while its reader runs (its owner joins the reader before
      // letting go); the job keeps it alive for its reply.
      auto keep = inst.self.lock();
      const auto id = f.id;
      const auto kind = f.kind;
      const auto bytes = f.payload.size();
      if (queued_calls.fetch_add(1) >= kMaxQueuedCalls || queued_call_bytes.fetch_add(bytes) + bytes > kMaxQueuedCallBytes) {
        release_call(bytes);
        counters->busy.fetch_add(1, std::memory_order_relaxed);
        inst.conn->reply(id, refusal(kind, KEEL_ERR_BUSY,
                                     "the host has " + std::to_string(kMaxQueuedCalls) +
                                         " of this plugin's calls (or their bytes) queued already; retry later"));
        return;
      }
      if (!keep || !calls.post([this, keep, bytes, frame = std::move(f)] {
            serve(*keep, frame);
            release_call(bytes);
          })) {
        release_call(bytes);
        inst.conn->reply(id, refusal(kind, KEEL_ERR_UNAVAILABLE, "the plugin is stopping"));
      }
      return;
    }
    default:
      log->warn("plugin runner sent an unexpected frame plugin={} kind={}", opts.plugin, kind_name(f.kind));
      return;
  }
}

void Runner::Impl::serve(Instance& inst, const Frame& f) {
  auto r = f.reader();
  const auto c = decode_context(r);
  const auto* api = host.load();
  auto* cx = ctx.load();
  auto& conn = *inst.conn;
  if (api == nullptr || cx == nullptr) {  // before create(): nothing to serve it with
    if (f.id != 0) conn.reply(f.id, refusal(f.kind, KEEL_ERR_UNAVAILABLE, "the plugin is not created yet"));
    return;
  }
  Writer out;
  in_context(inst, c, [&] {
    switch (f.kind) {
      case Kind::kLog: {
        const auto level = r.i32();
        const auto message = r.bytes();
        if (r.done()) api->log(cx, level, plugin_bytes(message));
        return;
      }
      case Kind::kRespond: {
        // One way: the host's respond logs what it refuses (a responder completed or timed out
        // already), and the runner checked the rest before sending.
        const auto responder = r.u64();
        const bool have_responder = r.ok();
        keel_response res{};
        std::vector<keel_plugin_kv> kv;
        decode_response(r, res, kv);
        if (r.done()) {
          static_cast<void>(api->respond(cx, responder, &res));
          return;
        }
        // Only a broken runner sends this; its client gets an answer now rather than at the deadline.
        log->warn("plugin runner sent a malformed respond frame plugin={} responder={}", opts.plugin, responder);
        if (have_responder) static_cast<void>(answer(responder, 502, "plugin '" + opts.plugin + "' sent a malformed response"));
        return;
      }
      case Kind::kPublish: {
        keel_publish_args args{};
        decode_publish(r, args);
        out.i32(r.done() ? api->publish(cx, &args) : KEEL_ERR_INVALID_ARGUMENT);
        break;
      }
      case Kind::kCall:
        serve_call(inst, *api, cx, r, out);
        break;
      case Kind::kGetExtension: {
        const auto id = std::string(r.bytes());
        const void* ext = r.done() ? api->get_extension(cx, id.c_str()) : nullptr;
        if (id == KEEL_STORAGE_EXTENSION_ID && ext != nullptr) storage.store(static_cast<const keel_storage_api*>(ext));
        out.u8(ext != nullptr ? 1 : 0);
        break;
      }
      default:
        serve_storage(inst, f.kind, r, out);
        break;
    }
  });
  if (f.id != 0) conn.reply(f.id, out.data());
}

void Runner::Impl::serve_call(Instance& inst, const keel_host_api& api, keel_host_ctx* cx, Reader& r, Writer& out) {
  const auto call_id = r.u64();
  keel_call_args args{};
  std::vector<keel_plugin_kv> kv;
  decode_call_args(r, args, kv);
  if (!r.done()) {
    out.i32(KEEL_ERR_INVALID_ARGUMENT);
    return;
  }
  auto* pending = new PendingCall{this, inst.conn, call_id};
  const auto st = api.call(cx, &args, &Impl::call_done, pending);
  if (st < 0) delete pending;  // no completion follows a refused call
  out.i32(st);
}

void Runner::Impl::serve_storage(Instance& inst, Kind kind, Reader& r, Writer& out) {
  const auto* s = storage.load();
  if (s == nullptr) {  // the runner never got the table: the permission is missing
    out.i32(KEEL_ERR_PERMISSION_DENIED);
    out.bytes("the manifest lacks the permission \"ext:" KEEL_STORAGE_EXTENSION_ID "\"");
    return;
  }
  StorageCall call{*s, ctx.load(), r, out};
  switch (kind) {
    case Kind::kSqlExec: return serve_sql_exec(call);
    case Kind::kSqlPrepare: return serve_sql_prepare(call);
    case Kind::kTxnBegin: return serve_txn_begin(call, inst);
    case Kind::kTxnCommit: return serve_txn_end(call, inst, true);
    case Kind::kTxnRollback: return serve_txn_end(call, inst, false);
    case Kind::kKvGet: return serve_kv_get(call);
    case Kind::kKvPut: return serve_kv_put(call);
    case Kind::kKvDelete: return serve_kv_delete(call);
    case Kind::kKvList: return serve_kv_list(call);
    case Kind::kSqlPublish: return serve_sql_publish(call);
    default:
      out.i32(KEEL_ERR_UNSUPPORTED);
      out.bytes("unknown frame kind");
      return;
  }
}

void Runner::Impl::call_done(void* user, keel_status result, const keel_call_response* response) {
  std::unique_ptr<PendingCall> pending(static_cast<PendingCall*>(user));
  try {
    Writer w;
    encode_context(w, current_context());  // the caller's context: the host runs completions in it
    w.u64(pending->call_id);
    w.i32(result);
    w.u8(response != nullptr ? 1 : 0);
    if (response != nullptr) encode_call_response(w, *response);
    static_cast<void>(pending->conn->send(Kind::kCallDone, 0, w.data()));  // gone with its process otherwise
  } catch (...) {  // a completion never throws into the host
  }
}

}  // namespace keel::host::isolation
