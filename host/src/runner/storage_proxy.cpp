// The runner's keel.storage/1 functions (see storage_proxy.hpp). Per-thread state only: the last
// error message, the kv_get bytes, and whether the thread is inside a row or entry callback.
#include "runner/storage_proxy.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "abi/bytes.hpp"
#include "runner/context.hpp"
#include "runner/serve_plugin.hpp"

namespace keel::host::runner {
namespace {

using isolation::Frame;
using isolation::Kind;
using isolation::Reader;
using isolation::Writer;

thread_local std::string tl_error;         // what error_message() returns on this thread
thread_local bool tl_in_callback = false;  // inside on_row / on_entry on this thread

// The message the host's storage gives for the same mistake (storage/database.cpp), so a plugin
// reads the same text in both isolation modes.
constexpr std::string_view kInCallback = "storage called from inside a row or entry callback; collect the rows first";

keel_status fail(keel_status status, std::string message) {
  tl_error = std::move(message);
  return status;
}

/// keel/plugin.h: a NULL ptr is allowed only with len 0; the wire cannot carry one with a length.
bool malformed(keel_plugin_bytes b, std::string_view what) {
  if (b.ptr != nullptr || b.len == 0) return false;
  tl_error = std::string(what) + " has a NULL pointer and length " + std::to_string(b.len);
  return true;
}

using abi::view;

struct CallbackScope {
  CallbackScope() noexcept { tl_in_callback = true; }
  ~CallbackScope() { tl_in_callback = false; }
  CallbackScope(const CallbackScope&) = delete;
  CallbackScope& operator=(const CallbackScope&) = delete;
};

/// Runs one storage function: clears the thread's message, finds the runner, turns an exception
/// into KEEL_ERR_INTERNAL with a message.
template <class F>
keel_status with_runner(keel_host_ctx* ctx, F&& fn) noexcept {
  try {
    tl_error.clear();
    Runner* r = ctx != nullptr ? ctx->runner : nullptr;
    if (r == nullptr)
      return fail(KEEL_ERR_PERMISSION_DENIED,
                  "this plugin has no database (its manifest lacks the permission ext:keel.storage/1)");
    return fn(*r);
  } catch (const std::length_error&) {
    return fail(KEEL_ERR_TOO_LARGE, "the storage request is over the 64 MiB a process-isolated plugin may send at once");
  } catch (const std::exception& e) {
    return fail(KEEL_ERR_INTERNAL, std::string("storage failed inside the runner: ") + e.what());
  } catch (...) {
    return fail(KEEL_ERR_INTERNAL, "storage failed inside the runner");
  }
}

/// Sends `w` as `kind` and returns the reply; without one, sets the status and message.
std::optional<Frame> exchange(Runner& r, Kind kind, const Writer& w, keel_status& st) {
  auto a = r.ask(kind, w.data());
  if (a.frame) return std::move(a.frame);
  switch (a.failure) {
    case KEEL_ERR_UNAVAILABLE: st = fail(a.failure, "storage unavailable: the connection to the host is closed"); break;
    case KEEL_ERR_TOO_LARGE: st = fail(a.failure, "the storage request is over the 64 MiB a process-isolated plugin may send at once"); break;
    default: st = fail(a.failure, "the runner's queue of frames to the host is full"); break;
  }
  return std::nullopt;
}

keel_status malformed_reply(Kind kind) {
  return fail(KEEL_ERR_INTERNAL, "malformed " + std::string(isolation::kind_name(kind)) + " reply from the host");
}

/// The end of every reply: on failure the host's message becomes this thread's, on success the
/// message is cleared.
keel_status settle(keel_status st, std::string_view error) {
  if (st < 0) return fail(st, std::string(error));
  tl_error.clear();
  return st;
}

/// For the replies that are status:i32 error:bytes.
keel_status status_reply(Runner& r, Kind kind, const Writer& w) {
  keel_status st = KEEL_OK;
  const auto reply = exchange(r, kind, w, st);
  if (!reply) return st;
  Reader rd = reply->reader();
  st = rd.i32();
  const auto error = rd.bytes();
  if (!rd.done()) return malformed_reply(kind);
  return settle(st, error);
}

// --- exec: status changes last_id rows columns names... row_count values... error ------------

struct ExecHead {
  keel_status status = KEEL_OK;
  std::int64_t changes = 0, last_insert_id = 0, rows = 0;
  std::uint32_t columns = 0, row_count = 0;
};

// Reads everything before the values; `names` (may be null) receives the column names.
ExecHead read_exec_head(Reader& rd, std::vector<keel_host_bytes>* names) {
  ExecHead h;
  h.status = rd.i32();
  h.changes = rd.i64();
  h.last_insert_id = rd.i64();
  h.rows = rd.i64();
  h.columns = rd.count(4);  // every name is at least its u32 length
  for (std::uint32_t i = 0; i < h.columns && rd.ok(); ++i) {
    const auto n = rd.bytes();
    if (names != nullptr) names->push_back({n.empty() ? nullptr : n.data(), n.size()});
  }
  // Every value is at least its u8 type; a row without columns still needs a byte to count.
  h.row_count = rd.count(std::max<std::size_t>(h.columns, 1));
  return h;
}

keel_status api_exec(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes sql, const keel_sql_param* params,
                     size_t param_count, keel_sql_row_fn on_row, void* user_data, keel_sql_result* out) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (params == nullptr && param_count != 0)
      return fail(KEEL_ERR_INVALID_ARGUMENT, "exec: params is NULL but param_count is " + std::to_string(param_count));
    if (malformed(sql, "exec: sql")) return KEEL_ERR_INVALID_ARGUMENT;
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    for (std::size_t i = 0; i < param_count; ++i) {
      const auto& p = params[i];
      if ((p.type == KEEL_SQL_TEXT || p.type == KEEL_SQL_BLOB) && p.bytes.ptr == nullptr && p.bytes.len != 0)
        return fail(KEEL_ERR_INVALID_ARGUMENT, "parameter " + std::to_string(i + 1) + " has a NULL pointer and length " +
                                                   std::to_string(p.bytes.len));
    }
    if (param_count > isolation::kMaxSqlParams)
      return fail(KEEL_ERR_TOO_LARGE, "exec: " + std::to_string(param_count) + " parameters, more than SQLite's " +
                                          std::to_string(isolation::kMaxSqlParams));
    auto w = context_writer();
    w.u64(txn);
    w.bytes(view(sql));
    encode_sql_params(w, params, param_count);
    w.u8(on_row != nullptr ? 1 : 0);
    keel_status st = KEEL_OK;
    const auto reply = exchange(r, Kind::kSqlExec, w, st);
    if (!reply) return st;

    // First pass: check the whole reply before the plugin sees any of it. The values are
    // decoded again row by row below, so memory stays one row, not a copy of the result set.
    std::vector<keel_host_bytes> names;
    Reader check = reply->reader();
    const auto head = read_exec_head(check, &names);
    for (std::uint32_t row = 0; row < head.row_count && check.ok(); ++row)
      for (std::uint32_t c = 0; c < head.columns && check.ok(); ++c) static_cast<void>(decode_sql_value(check));
    const auto error = check.bytes();
    if (!check.done()) return malformed_reply(Kind::kSqlExec);

    std::int64_t delivered = 0;
    if (on_row != nullptr && head.row_count != 0) {
      Reader rd = reply->reader();
      static_cast<void>(read_exec_head(rd, nullptr));
      std::vector<keel_sql_value> values(head.columns);
      for (std::uint32_t row = 0; row < head.row_count; ++row) {
        for (auto& v : values) v = decode_sql_value(rd);
        ++delivered;  // as in process: the row that asks to stop counts as delivered
        std::int32_t stop = 0;
        {
          const CallbackScope scope;
          stop = on_row(user_data, values.data(), names.data(), head.columns);
        }
        if (stop != 0) break;
      }
    }
    if (head.status < 0) return settle(head.status, error);
    if (out != nullptr) {
      if (KEEL_HAS_FIELD(out, keel_sql_result, reserved)) out->reserved = 0;
      if (KEEL_HAS_FIELD(out, keel_sql_result, changes)) out->changes = head.changes;
      if (KEEL_HAS_FIELD(out, keel_sql_result, last_insert_id)) out->last_insert_id = head.last_insert_id;
      if (KEEL_HAS_FIELD(out, keel_sql_result, rows)) out->rows = on_row != nullptr ? delivered : head.rows;
    }
    // Also drops a message a refused call from inside on_row left (the host does the same).
    return settle(head.status, {});
  });
}

keel_status api_prepare(keel_host_ctx* ctx, keel_plugin_bytes sql, keel_sql_info* out) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (malformed(sql, "prepare: sql")) return KEEL_ERR_INVALID_ARGUMENT;
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "prepare needs an output struct");
    auto w = context_writer();
    w.bytes(view(sql));
    keel_status st = KEEL_OK;
    const auto reply = exchange(r, Kind::kSqlPrepare, w, st);
    if (!reply) return st;
    Reader rd = reply->reader();
    st = rd.i32();
    const auto params = rd.u32();
    const auto columns = rd.u32();
    const auto read_only = rd.u32();
    const auto error = rd.bytes();
    if (!rd.done()) return malformed_reply(Kind::kSqlPrepare);
    if (st >= 0) {
      if (KEEL_HAS_FIELD(out, keel_sql_info, param_count)) out->param_count = params;
      if (KEEL_HAS_FIELD(out, keel_sql_info, column_count)) out->column_count = columns;
      if (KEEL_HAS_FIELD(out, keel_sql_info, read_only)) out->read_only = read_only;
    }
    return settle(st, error);
  });
}

keel_status api_begin(keel_host_ctx* ctx, keel_txn parent, keel_txn* out) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "begin needs an output id");
    *out = KEEL_TXN_NONE;
    auto w = context_writer();
    w.u64(parent);
    keel_status st = KEEL_OK;
    const auto reply = exchange(r, Kind::kTxnBegin, w, st);
    if (!reply) return st;
    Reader rd = reply->reader();
    st = rd.i32();
    const auto txn = rd.u64();
    const auto error = rd.bytes();
    if (!rd.done()) return malformed_reply(Kind::kTxnBegin);
    if (st >= 0) *out = txn;
    return settle(st, error);
  });
}

keel_status txn_end(keel_host_ctx* ctx, Kind kind, keel_txn txn) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    auto w = context_writer();
    w.u64(txn);
    return status_reply(r, kind, w);
  });
}

keel_status api_commit(keel_host_ctx* ctx, keel_txn txn) { return txn_end(ctx, Kind::kTxnCommit, txn); }
keel_status api_rollback(keel_host_ctx* ctx, keel_txn txn) { return txn_end(ctx, Kind::kTxnRollback, txn); }

keel_status api_kv_get(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes key, keel_kv_entry* out) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (malformed(key, "kv_get: key")) return KEEL_ERR_INVALID_ARGUMENT;
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_get needs an output entry");
    auto w = context_writer();
    w.u64(txn);
    w.bytes(view(key));
    keel_status st = KEEL_OK;
    const auto reply = exchange(r, Kind::kKvGet, w, st);
    if (!reply) return st;
    Reader rd = reply->reader();
    st = rd.i32();
    keel_kv_entry e{};
    decode_kv_entry(rd, e);
    const auto error = rd.bytes();
    if (!rd.done()) return malformed_reply(Kind::kKvGet);
    if (st >= 0) {
      // keel/storage.h: the bytes stay valid until this thread's next call into the extension,
      // which outlives the reply frame: keep copies per thread.
      thread_local std::string key_copy, value_copy;
      key_copy.assign(e.key.ptr != nullptr ? e.key.ptr : "", e.key.len);
      value_copy.assign(e.value.ptr != nullptr ? e.value.ptr : "", e.value.len);
      if (KEEL_HAS_FIELD(out, keel_kv_entry, reserved)) out->reserved = 0;
      if (KEEL_HAS_FIELD(out, keel_kv_entry, key)) out->key = {key_copy.data(), key_copy.size()};
      if (KEEL_HAS_FIELD(out, keel_kv_entry, value)) out->value = {value_copy.data(), value_copy.size()};
      if (KEEL_HAS_FIELD(out, keel_kv_entry, version)) out->version = e.version;
      if (KEEL_HAS_FIELD(out, keel_kv_entry, expires_unix_ms)) out->expires_unix_ms = e.expires_unix_ms;
    }
    return settle(st, error);
  });
}

keel_status api_kv_put(keel_host_ctx* ctx, keel_txn txn, const keel_kv_put_args* args, int64_t* out_version) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (args == nullptr || args->struct_size < sizeof(keel_kv_put_args))
      return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_put needs a keel_kv_put_args with struct_size set");
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    if ((args->key.ptr == nullptr && args->key.len != 0) || (args->value.ptr == nullptr && args->value.len != 0))
      return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_put: key or value has a NULL pointer and a non-zero length");
    // Key length, flags, ttl and expected_version travel as they are: the host checks them.
    auto w = context_writer();
    w.u64(txn);
    w.u32(args->flags);
    w.bytes(view(args->key));
    w.bytes(view(args->value));
    w.i64(args->expected_version);
    w.i64(args->ttl_ms);
    keel_status st = KEEL_OK;
    const auto reply = exchange(r, Kind::kKvPut, w, st);
    if (!reply) return st;
    Reader rd = reply->reader();
    st = rd.i32();
    const auto version = rd.i64();
    const auto error = rd.bytes();
    if (!rd.done()) return malformed_reply(Kind::kKvPut);
    if (st >= 0 && out_version != nullptr) *out_version = version;
    return settle(st, error);
  });
}

keel_status api_kv_delete(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes key, int64_t expected_version) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (malformed(key, "kv_delete: key")) return KEEL_ERR_INVALID_ARGUMENT;
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    auto w = context_writer();
    w.u64(txn);
    w.bytes(view(key));
    w.i64(expected_version);
    return status_reply(r, Kind::kKvDelete, w);
  });
}

// Every entry is at least two empty byte strings and two i64s.
constexpr std::size_t kMinEntryBytes = 4 + 4 + 8 + 8;

keel_status api_kv_list(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes prefix, keel_plugin_bytes start_after,
                        uint32_t limit, keel_kv_entry_fn on_entry, void* user_data, uint32_t* out_more) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (malformed(prefix, "kv_list: prefix") || malformed(start_after, "kv_list: start_after"))
      return KEEL_ERR_INVALID_ARGUMENT;
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    if (on_entry == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_list needs an entry callback");
    auto w = context_writer();
    w.u64(txn);
    w.bytes(view(prefix));
    w.bytes(view(start_after));
    w.u32(limit);
    keel_status st = KEEL_OK;
    const auto reply = exchange(r, Kind::kKvList, w, st);
    if (!reply) return st;

    Reader check = reply->reader();
    st = check.i32();
    const auto count = check.count(kMinEntryBytes);
    for (std::uint32_t i = 0; i < count && check.ok(); ++i) {
      keel_kv_entry skip{};
      decode_kv_entry(check, skip);
    }
    const bool more = check.u8() != 0;
    const auto error = check.bytes();
    if (!check.done()) return malformed_reply(Kind::kKvList);

    Reader rd = reply->reader();
    static_cast<void>(rd.i32());
    static_cast<void>(rd.count(kMinEntryBytes));
    std::uint32_t delivered = 0;
    while (delivered < count) {
      keel_kv_entry e{};
      e.struct_size = sizeof(keel_kv_entry);
      decode_kv_entry(rd, e);
      ++delivered;
      std::int32_t stop = 0;
      {
        const CallbackScope scope;
        stop = on_entry(user_data, &e);
      }
      if (stop != 0) break;
    }
    // As in process: "more" when any entry follows the last one the plugin saw.
    if (st >= 0 && out_more != nullptr) *out_more = delivered < count || more ? 1u : 0u;
    return settle(st, error);
  });
}

keel_host_bytes api_error_message(keel_host_ctx*) { return {tl_error.data(), tl_error.size()}; }

keel_status api_publish(keel_host_ctx* ctx, keel_txn txn, const keel_publish_args* args) {
  return with_runner(ctx, [&](Runner& r) -> keel_status {
    if (args == nullptr || args->struct_size < sizeof(keel_publish_args))
      return fail(KEEL_ERR_INVALID_ARGUMENT, "publish needs a keel_publish_args with struct_size set");
    if (malformed(args->topic, "publish: topic") || malformed(args->payload, "publish: payload") ||
        malformed(args->content_type, "publish: content_type") || malformed(args->traceparent, "publish: traceparent") ||
        malformed(args->tracestate, "publish: tracestate"))
      return KEEL_ERR_INVALID_ARGUMENT;
    if (tl_in_callback) return fail(KEEL_ERR_INVALID_ARGUMENT, std::string(kInCallback));
    auto w = context_writer();
    w.u64(txn);
    encode_publish(w, *args);
    return status_reply(r, Kind::kSqlPublish, w);
  });
}

constexpr keel_storage_api kTable = [] {
  keel_storage_api api{};
  api.struct_size = sizeof(keel_storage_api);
  api.reserved = 0;
  api.exec = api_exec;
  api.prepare = api_prepare;
  api.begin = api_begin;
  api.commit = api_commit;
  api.rollback = api_rollback;
  api.kv_get = api_kv_get;
  api.kv_put = api_kv_put;
  api.kv_delete = api_kv_delete;
  api.kv_list = api_kv_list;
  api.error_message = api_error_message;
  api.publish = api_publish;
  return api;
}();

}  // namespace

const keel_storage_api& storage_api_table() noexcept { return kTable; }

}  // namespace keel::host::runner
