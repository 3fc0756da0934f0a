// The keel_host_api functions. Each is noexcept: a host failure becomes a status, never a throw.
#include <cstring>

#include "abi/current_request.hpp"
#include "abi/limits.hpp"
#include "abi/status.hpp"
#include "plugins/host_impl.hpp"
#include "storage/storage_api.hpp"

namespace keel::host::plugins {
namespace {

using abi::current_request_id;
using abi::status_name;
using abi::with_current_trace;

// Whether `r` (plugin-owned) is a response the host can send.
keel_status check_response(const keel_response* r, std::uint64_t max_body) {
  if (r == nullptr || r->struct_size < offsetof(keel_response, body) + sizeof(r->body)) return KEEL_ERR_INVALID_ARGUMENT;
  if (r->status < 100 || r->status > 599) return KEEL_ERR_INVALID_ARGUMENT;
  if (r->body.len > max_body) return KEEL_ERR_TOO_LARGE;
  if ((r->headers.count != 0 && r->headers.items == nullptr) || (r->body.len != 0 && r->body.ptr == nullptr))
    return KEEL_ERR_INVALID_ARGUMENT;
  if (!http::valid_field_value(view(r->content_type))) return KEEL_ERR_INVALID_ARGUMENT;
  for (std::size_t i = 0; i < r->headers.count; ++i) {
    if (!http::valid_token(view(r->headers.items[i].name)) || !http::valid_field_value(view(r->headers.items[i].value)))
      return KEEL_ERR_INVALID_ARGUMENT;
  }
  return KEEL_OK;
}

// A checked keel_response -> the host's copy, into a cleared `out` (whose buffers it reuses).
void copy_response(const keel_response& r, http::Response& out) {
  out.status = static_cast<unsigned>(r.status);
  out.content_type.assign(view(r.content_type));
  out.body.assign(view(r.body));
  for (std::size_t i = 0; i < r.headers.count; ++i) {
    const auto name = view(r.headers.items[i].name);
    // Framing fields belong to the server; a plugin cannot set them.
    if (http::iequals(name, "content-length") || http::iequals(name, "transfer-encoding") ||
        http::iequals(name, "connection") || http::iequals(name, "date") || http::iequals(name, "server"))
      continue;
    out.headers.emplace_back(std::string(name), std::string(view(r.headers.items[i].value)));
  }
}

Plugin& plugin_of(keel_host_ctx* ctx) { return *ctx->plugin; }

void api_log(keel_host_ctx* ctx, keel_log_level level, keel_plugin_bytes message) {
  if (ctx == nullptr) return;
  try {
    const auto lvl = static_cast<spdlog::level::level_enum>(std::clamp<keel_log_level>(level, KEEL_LOG_TRACE, KEEL_LOG_CRITICAL));
    // Text from a plugin (or from a runner, which may be compromised) stays on its own line,
    // and one message stays one bounded line.
    const auto whole = view(message);
    const auto text = abi::utf8_prefix(whole, abi::kMaxLogMessageBytes);
    const auto cut = whole.size() - text.size();
    auto& log = *plugin_of(ctx).log;
    const auto note = abi::log_cut_note(cut);
    if (observability::has_control(text)) log.log(lvl, "{}{}", observability::escape_control(text), note);
    else log.log(lvl, "{}{}", text, note);
  } catch (...) {  // logging never fails the caller
  }
}

keel_log_level api_log_level(keel_host_ctx* ctx) {
  if (ctx == nullptr) return KEEL_LOG_OFF;
  return static_cast<keel_log_level>(plugin_of(ctx).log->level());
}

keel_status api_respond(keel_host_ctx* ctx, keel_responder responder, const keel_response* response) {
  if (ctx == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  auto& p = plugin_of(ctx);
  try {
    const auto st = check_response(response, p.host->cfg.http.max_body_bytes);
    if (st != KEEL_OK) {
      p.log->warn("respond refused status={} responder={} reason={}", st, responder,
                  st == KEEL_ERR_TOO_LARGE ? "body over max_body_bytes" : "malformed response");
      return st;
    }
    const auto result = p.responders.complete_with(responder, [response](http::Response& out) { copy_response(*response, out); });
    if (result == KEEL_ERR_ALREADY_COMPLETED)
      p.log->warn("respond called again for a completed request responder={}", responder);
    else if (result == KEEL_ERR_TIMEOUT)
      p.log->warn("late response dropped: the request already timed out responder={}", responder);
    else if (result == KEEL_ERR_NOT_FOUND)
      p.log->warn("respond with an unknown responder={}", responder);
    return result;
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}

keel_status api_publish(keel_host_ctx* ctx, const keel_publish_args* args) {
  if (ctx == nullptr || args == nullptr || args->struct_size < sizeof(keel_publish_args)) return KEEL_ERR_INVALID_ARGUMENT;
  auto& p = plugin_of(ctx);
  if (!p.may_call.load(std::memory_order_acquire)) return KEEL_ERR_UNAVAILABLE;
  try {
    std::string error;
    const auto st = p.host->bus.publish(p.name, with_current_trace(*args), KEEL_TXN_NONE, current_request_id(), error);
    if (st < 0) {
      // A full queue is back-pressure the publisher handles; everything else is a mistake to see.
      if (st == KEEL_ERR_BUSY) p.log->debug("publish refused topic={} error=\"{}\"", view(args->topic), error);
      else p.log->warn("publish refused topic={} status={} error=\"{}\"", view(args->topic), status_name(st), error);
    }
    return st;
  } catch (const std::exception& e) {
    p.log->error("publish failed inside the host error=\"{}\"", e.what());
    return KEEL_ERR_INTERNAL;
  }
}

keel_status api_call(keel_host_ctx* ctx, const keel_call_args* args, keel_call_callback cb, void* user) {
  if (ctx == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  auto& p = plugin_of(ctx);
  try {
    return p.host->call(p, args, cb, user);
  } catch (const std::exception& e) {
    p.log->error("call failed inside the host error=\"{}\"", e.what());
    return KEEL_ERR_INTERNAL;
  }
}

const void* api_get_extension(keel_host_ctx* ctx, const char* id) {
  if (ctx == nullptr || id == nullptr) return nullptr;
  auto& p = plugin_of(ctx);
  const std::string_view wanted{id};
  if (wanted == KEEL_STORAGE_EXTENSION_ID) {
    if (ctx->storage != nullptr) return &storage::storage_api_table();
    p.log->warn("extension refused id={}: the manifest lacks the permission \"ext:{}\"", wanted, wanted);
    return nullptr;
  }
  p.log->debug("extension not provided id={}", wanted);
  return nullptr;
}

}  // namespace

keel_host_api make_host_api() noexcept {
  keel_host_api api{};
  api.struct_size = sizeof(keel_host_api);
  api.abi_version = KEEL_ABI_VERSION;
  api.log = api_log;
  api.log_level = api_log_level;
  api.respond = api_respond;
  api.publish = api_publish;
  api.call = api_call;
  api.get_extension = api_get_extension;
  return api;
}

}  // namespace keel::host::plugins
