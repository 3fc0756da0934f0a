#include "storage/storage_api.hpp"

#include <exception>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "abi/bytes.hpp"
#include "abi/current_request.hpp"
#include "abi/event_sink.hpp"
#include "abi/host_ctx.hpp"
#include "storage/database.hpp"

namespace keel::host::storage {
namespace {

using abi::view;

thread_local std::string tl_api_error;  // messages of failures found before reaching a Database

/// keel/plugin.h: a NULL ptr is allowed only with len 0. Sets the message when `b` breaks that.
bool malformed(keel_plugin_bytes b, const char* what) {
  if (b.ptr != nullptr || b.len == 0) return false;
  tl_api_error = std::string(what) + " has a NULL pointer and length " + std::to_string(b.len);
  return true;
}

// How a table finds the Database of a ctx: the host's ctx carries it; plugin unit tests with a
// fake host register their (foreign) ctx in a map instead.
Database* from_ctx(keel_host_ctx* ctx) noexcept { return ctx != nullptr ? ctx->storage : nullptr; }

// A bound ctx: its database and, for transactional publishes, what receives them once their
// transaction committed. Events wait per transaction; a savepoint's move to its parent when it
// is released and are dropped when it rolls back.
struct PendingEvent {
  std::string topic, payload, content_type, traceparent, tracestate;
};
struct Binding {
  Database* db = nullptr;
  CommittedPublish on_publish;
  PublishAdmission admit;
  std::mutex mutex;
  std::unordered_map<keel_txn, keel_txn> parent;  // savepoint -> the transaction it is inside
  std::unordered_map<keel_txn, std::vector<PendingEvent>> events;
};

std::mutex bound_mutex;
std::unordered_map<keel_host_ctx*, std::shared_ptr<Binding>> bound;

std::shared_ptr<Binding> binding_of(keel_host_ctx* ctx) {
  std::lock_guard lock(bound_mutex);
  const auto it = bound.find(ctx);
  return it == bound.end() ? nullptr : it->second;
}

Database* from_binding(keel_host_ctx* ctx) noexcept {
  std::lock_guard lock(bound_mutex);
  const auto it = bound.find(ctx);
  return it == bound.end() ? nullptr : it->second->db;
}

keel_status forward(const Binding& b, const PendingEvent& e) {
  auto bytes = [](const std::string& s) { return keel_plugin_bytes{s.data(), s.size()}; };
  keel_publish_args args{};
  args.struct_size = sizeof(keel_publish_args);
  args.topic = bytes(e.topic);
  args.payload = bytes(e.payload);
  args.content_type = bytes(e.content_type);
  args.traceparent = bytes(e.traceparent);
  args.tracestate = bytes(e.tracestate);
  return b.on_publish(args);
}

// Forgets `txn`'s events and those of the savepoints inside it. Under Binding::mutex.
void drop_events(Binding& b, keel_txn txn) {
  b.events.erase(txn);
  for (auto it = b.parent.begin(); it != b.parent.end();) {
    if (it->second == txn) {
      const auto child = it->first;
      it = b.parent.erase(it);
      drop_events(b, child);
    } else {
      ++it;
    }
  }
}

using Resolver = Database* (*)(keel_host_ctx*) noexcept;

/// The extension's functions over one way of finding the database.
template <Resolver Find>
struct Api {
  /// Runs `fn(db)` for the ctx's database; a missing database or an exception becomes a status.
  template <class F>
  static keel_status with_db(keel_host_ctx* ctx, F&& fn) noexcept {
    tl_api_error.clear();
    Database* db = Find(ctx);
    if (db == nullptr) {
      tl_api_error = "this plugin has no database (its manifest lacks the permission ext:keel.storage/1)";
      return KEEL_ERR_PERMISSION_DENIED;
    }
    try {
      return fn(*db);
    } catch (const std::exception& e) {
      tl_api_error = std::string("storage failed inside the host: ") + e.what();
    } catch (...) {
      tl_api_error = "storage failed inside the host";
    }
    return KEEL_ERR_INTERNAL;
  }

  static keel_status exec(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes sql, const keel_sql_param* params,
                          size_t count, keel_sql_row_fn on_row, void* user, keel_sql_result* out) {
    return with_db(ctx, [&](Database& db) {
      if (params == nullptr && count != 0) {
        tl_api_error = "exec: params is NULL but param_count is " + std::to_string(count);
        return KEEL_ERR_INVALID_ARGUMENT;
      }
      if (malformed(sql, "exec: sql")) return KEEL_ERR_INVALID_ARGUMENT;
      return db.exec(txn, view(sql), std::span<const keel_sql_param>(params, count), {on_row, user}, out);
    });
  }

  static keel_status prepare(keel_host_ctx* ctx, keel_plugin_bytes sql, keel_sql_info* out) {
    return with_db(ctx, [&](Database& db) {
      return malformed(sql, "prepare: sql") ? KEEL_ERR_INVALID_ARGUMENT : db.prepare(view(sql), out);
    });
  }

  static keel_status begin(keel_host_ctx* ctx, keel_txn parent, keel_txn* out) {
    return with_db(ctx, [&](Database& db) {
      const auto st = db.begin(parent, out);
      if constexpr (Find == &from_binding) {
        if (st >= 0 && parent != KEEL_TXN_NONE && out != nullptr) {
          const auto b = binding_of(ctx);
          std::lock_guard lock(b->mutex);
          b->parent[*out] = parent;
        }
      }
      return st;
    });
  }

  static keel_status commit(keel_host_ctx* ctx, keel_txn txn) {
    return with_db(ctx, [&](Database& db) {
      const auto st = db.commit(txn);
      if constexpr (Find == &from_binding) {
        if (st >= 0) {
          const auto b = binding_of(ctx);
          std::vector<PendingEvent> committed;
          {
            std::lock_guard lock(b->mutex);
            auto events = std::move(b->events[txn]);
            b->events.erase(txn);
            if (const auto p = b->parent.find(txn); p != b->parent.end()) {  // a savepoint: to its parent
              auto& into = b->events[p->second];
              into.insert(into.end(), std::make_move_iterator(events.begin()), std::make_move_iterator(events.end()));
              b->parent.erase(p);
            } else {
              committed = std::move(events);
            }
          }
          for (const auto& e : committed) static_cast<void>(forward(*b, e));
        }
      }
      return st;
    });
  }

  static keel_status rollback(keel_host_ctx* ctx, keel_txn txn) {
    return with_db(ctx, [&](Database& db) {
      const auto st = db.rollback(txn);
      if constexpr (Find == &from_binding) {
        const auto b = binding_of(ctx);
        std::lock_guard lock(b->mutex);
        drop_events(*b, txn);
        b->parent.erase(txn);
      }
      return st;
    });
  }

  static keel_status kv_get(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes key, keel_kv_entry* out) {
    return with_db(ctx, [&](Database& db) {
      return malformed(key, "kv_get: key") ? KEEL_ERR_INVALID_ARGUMENT : db.kv_get(txn, view(key), out);
    });
  }

  static keel_status kv_put(keel_host_ctx* ctx, keel_txn txn, const keel_kv_put_args* args, int64_t* out_version) {
    return with_db(ctx, [&](Database& db) {
      if (args == nullptr || args->struct_size < sizeof(keel_kv_put_args)) {
        tl_api_error = "kv_put needs a keel_kv_put_args with struct_size set";
        return KEEL_ERR_INVALID_ARGUMENT;
      }
      return db.kv_put(txn, *args, out_version);
    });
  }

  static keel_status kv_delete(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes key, int64_t expected_version) {
    return with_db(ctx, [&](Database& db) {
      return malformed(key, "kv_delete: key") ? KEEL_ERR_INVALID_ARGUMENT
                                              : db.kv_delete(txn, view(key), expected_version);
    });
  }

  static keel_status kv_list(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes prefix, keel_plugin_bytes start_after,
                             uint32_t limit, keel_kv_entry_fn on_entry, void* user, uint32_t* out_more) {
    return with_db(ctx, [&](Database& db) {
      if (malformed(prefix, "kv_list: prefix") || malformed(start_after, "kv_list: start_after"))
        return KEEL_ERR_INVALID_ARGUMENT;
      return db.kv_list(txn, view(prefix), view(start_after), limit, on_entry, user, out_more);
    });
  }

  static keel_host_bytes error_message(keel_host_ctx*) {
    const auto& message = tl_api_error.empty() ? last_error() : tl_api_error;
    return {message.data(), message.size()};
  }

  static keel_status publish(keel_host_ctx* ctx, keel_txn txn, const keel_publish_args* args) {
    return with_db(ctx, [&](Database&) {
      if (args == nullptr || args->struct_size < sizeof(keel_publish_args)) {
        tl_api_error = "publish needs a keel_publish_args with struct_size set";
        return KEEL_ERR_INVALID_ARGUMENT;
      }
      if constexpr (Find == &from_binding) {
        // A test double: the event waits for its transaction's commit, then goes to on_publish.
        const auto b = binding_of(ctx);
        if (!b->on_publish) {
          tl_api_error = "transactional publish: this test database was bound without a publish receiver";
          return KEEL_ERR_UNSUPPORTED;
        }
        PendingEvent e{std::string(view(args->topic)), std::string(view(args->payload)),
                       std::string(view(args->content_type)), std::string(view(args->traceparent)),
                       std::string(view(args->tracestate))};
        if (e.topic.empty() || args->flags != 0) {
          tl_api_error = e.topic.empty() ? "publish needs a topic" : "publish: flags must be 0";
          return KEEL_ERR_INVALID_ARGUMENT;
        }
        if (b->admit) {
          if (const keel_status st = b->admit(e.topic, txn != KEEL_TXN_NONE, tl_api_error); st < 0) return st;
        }
        if (txn == KEEL_TXN_NONE) return forward(*b, e);
        std::lock_guard lock(b->mutex);
        b->events[txn].push_back(std::move(e));
        return KEEL_OK;
      } else {
      if (ctx->bus == nullptr) {
        tl_api_error = "this host has no event bus for the plugin (a test double?)";
        return KEEL_ERR_UNSUPPORTED;
      }
      return ctx->bus->publish(ctx->name, abi::with_current_trace(*args), txn, abi::current_request_id(),
                               tl_api_error);
      }
    });
  }

  static constexpr keel_storage_api kTable{
      sizeof(keel_storage_api), 0,      exec,      prepare, begin,         commit, rollback,
      kv_get,                   kv_put, kv_delete, kv_list, error_message, publish,
  };
};

}  // namespace

const keel_storage_api& storage_api_table() noexcept { return Api<from_ctx>::kTable; }

const keel_storage_api& bound_storage_api_table() noexcept { return Api<from_binding>::kTable; }

void bind_storage(keel_host_ctx* ctx, Database* db, CommittedPublish on_publish, PublishAdmission admit) {
  std::lock_guard lock(bound_mutex);
  if (db == nullptr) {
    bound.erase(ctx);
    return;
  }
  auto b = std::make_shared<Binding>();
  b->db = db;
  b->on_publish = std::move(on_publish);
  b->admit = std::move(admit);
  bound[ctx] = std::move(b);
}

}  // namespace keel::host::storage
