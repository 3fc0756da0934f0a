// The runner's keel_host_api functions (see host_api_proxy.hpp). Stateless apart from the Runner the
// ctx points at; safe from any thread.
#include "runner/host_api_proxy.hpp"

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string_view>

#include <keel/storage.h>

#include "abi/bytes.hpp"
#include "abi/field_syntax.hpp"
#include "abi/limits.hpp"
#include "runner/context.hpp"
#include "runner/serve_plugin.hpp"
#include "runner/storage_proxy.hpp"

namespace keel::host::runner {
namespace {

using isolation::Kind;
using isolation::Reader;

Runner* runner_of(keel_host_ctx* ctx) noexcept { return ctx != nullptr ? ctx->runner : nullptr; }

// keel/plugin.h: a NULL pointer is allowed only with length 0. The wire codec would read
// through such a pointer, so these are refused before anything is encoded.
bool malformed(keel_plugin_bytes b) noexcept { return b.ptr == nullptr && b.len != 0; }

bool malformed(const keel_plugin_kv_list& list) noexcept {
  if (list.count == 0) return false;
  if (list.items == nullptr) return true;
  for (std::size_t i = 0; i < list.count; ++i)
    if (malformed(list.items[i].name) || malformed(list.items[i].value)) return true;
  return false;
}

void api_log(keel_host_ctx* ctx, keel_log_level level, keel_plugin_bytes message) {
  Runner* r = runner_of(ctx);
  if (r == nullptr || malformed(message)) return;
  level = std::clamp<keel_log_level>(level, KEEL_LOG_TRACE, KEEL_LOG_CRITICAL);
  // The host's logger would drop the line anyway; not sending it saves a frame per line.
  if (level < r->log_level()) return;
  try {
    // Cut here, with the note inside the limit, so the frame stays small and the host has
    // nothing left to cut.
    const auto whole = abi::view(message);
    auto w = context_writer();
    w.i32(level);
    if (whole.size() <= abi::kMaxLogMessageBytes) {
      w.bytes(whole);
    } else {
      const auto text = abi::utf8_prefix(whole, abi::kMaxLogMessageBytes - abi::kLogCutNoteRoom);
      w.bytes(std::string(text) + abi::log_cut_note(whole.size() - text.size()));
    }
    static_cast<void>(r->notify(Kind::kLog, w.data()));
  } catch (...) {  // logging never fails the caller
  }
}

keel_log_level api_log_level(keel_host_ctx* ctx) {
  Runner* r = runner_of(ctx);
  return r != nullptr ? r->log_level() : KEEL_LOG_OFF;
}

/// What the host's respond refuses with the responder still pending (plugin.h): a status outside
/// 100..599, a header it would not write, a body over [server] max_body_bytes. Checked here
/// because the respond frame has no reply; KEEL_OK when the host would take the response.
keel_status check_response(const keel_response& res, const isolation::FrameLimits& limits) noexcept {
  if (res.status < 100 || res.status > 599) return KEEL_ERR_INVALID_ARGUMENT;
  if (res.body.len > limits.response_body) return KEEL_ERR_TOO_LARGE;
  if (!abi::valid_field_value(abi::view(res.content_type))) return KEEL_ERR_INVALID_ARGUMENT;
  for (std::size_t i = 0; i < res.headers.count; ++i) {
    const auto& h = res.headers.items[i];
    if (!abi::valid_token(abi::view(h.name)) || !abi::valid_field_value(abi::view(h.value)))
      return KEEL_ERR_INVALID_ARGUMENT;
  }
  return KEEL_OK;
}

keel_status api_respond(keel_host_ctx* ctx, keel_responder responder, const keel_response* response) {
  Runner* r = runner_of(ctx);
  if (r == nullptr || response == nullptr ||
      response->struct_size < offsetof(keel_response, body) + sizeof(response->body))
    return KEEL_ERR_INVALID_ARGUMENT;
  if (malformed(response->headers) || malformed(response->content_type) || malformed(response->body))
    return KEEL_ERR_INVALID_ARGUMENT;
  if (const auto st = check_response(*response, r->limits()); st != KEEL_OK) return st;
  try {
    auto w = context_writer();
    w.u64(responder);
    encode_response(w, *response);
    // One way: what only the host knows (the responder completed or timed out already, an
    // unknown id) it logs, as it does for an in-process plugin; the plugin sees KEEL_OK.
    return r->tell(Kind::kRespond, w.data());
  } catch (const std::length_error&) {
    return KEEL_ERR_TOO_LARGE;  // larger than a frame, so larger than any host body limit
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}

keel_status api_publish(keel_host_ctx* ctx, const keel_publish_args* args) {
  Runner* r = runner_of(ctx);
  if (r == nullptr || args == nullptr || args->struct_size < sizeof(keel_publish_args)) return KEEL_ERR_INVALID_ARGUMENT;
  if (malformed(args->topic) || malformed(args->payload) || malformed(args->content_type) ||
      malformed(args->traceparent) || malformed(args->tracestate))
    return KEEL_ERR_INVALID_ARGUMENT;
  try {
    auto w = context_writer();
    encode_publish(w, *args);
    return r->ask_status(Kind::kPublish, w.data());
  } catch (const std::length_error&) {
    return KEEL_ERR_TOO_LARGE;
  } catch (...) {
    return KEEL_ERR_INTERNAL;
  }
}

keel_status api_call(keel_host_ctx* ctx, const keel_call_args* args, keel_call_callback on_complete, void* user_data) {
  Runner* r = runner_of(ctx);
  if (r == nullptr || args == nullptr || on_complete == nullptr ||
      args->struct_size < offsetof(keel_call_args, tracestate) + sizeof(args->tracestate))
    return KEEL_ERR_INVALID_ARGUMENT;
  if (malformed(args->target_plugin) || malformed(args->method) || malformed(args->path) ||
      malformed(args->headers) || malformed(args->body) || malformed(args->traceparent) ||
      malformed(args->tracestate))
    return KEEL_ERR_INVALID_ARGUMENT;
  return r->start_call(*args, on_complete, user_data);
}

const void* api_get_extension(keel_host_ctx* ctx, const char* id) {
  Runner* r = runner_of(ctx);
  if (r == nullptr || id == nullptr) return nullptr;
  // The only extension a runner can serve; anything else the host could not proxy either.
  if (std::strcmp(id, KEEL_STORAGE_EXTENSION_ID) != 0) return nullptr;
  try {
    auto w = context_writer();
    w.bytes(std::string_view(id));
    const auto a = r->ask(Kind::kGetExtension, w.data());
    if (!a.frame) return nullptr;
    Reader rd = a.frame->reader();
    const auto available = rd.u8();
    if (!rd.done()) return nullptr;
    return available != 0 ? &storage_api_table() : nullptr;
  } catch (...) {
    return nullptr;
  }
}

constexpr keel_host_api kTable = [] {
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
}();

}  // namespace

const keel_host_api& host_api_table() noexcept { return kTable; }

}  // namespace keel::host::runner
