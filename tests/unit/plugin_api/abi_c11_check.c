/*
 * Compile-only check that keel/plugin.h is pure C11 and warning-free under
 * -std=c11 -Wall -Wextra -pedantic -Werror, that its struct layout matches the committed
 * baseline (abi_layout_baseline.h, _Static_assert), and that a complete plugin can be written
 * in plain C against it: manifest section, entry point, every hook, every host function.
 * Built as the OBJECT library keel_abi_c11_check; never linked or run.
 */
#include <keel/plugin.h>
#include <keel/json.h>    /* the C plugins' JSON reader is pure C11 too */
#include <keel/storage.h> /* the storage extension header is pure C11 too */

#include <stdlib.h>
#include <string.h>

#include "abi_layout_baseline.h"

/* The header must expose the entry point with exactly the loader's function type. */
static keel_plugin_entry_fn const entry_type_check = keel_plugin_entry_v1;

KEEL_PLUGIN_MANIFEST("{\"name\":\"c_echo\",\"version\":\"1.0.0\",\"abi\":\"1.0\","
                     "\"description\":\"echoes requests; written in C\","
                     "\"routes\":[{\"method\":\"POST\",\"path\":\"/echo\",\"summary\":\"echo the body\"}],"
                     "\"events\":{\"publishes\":[\"c_echo.echoed\"],\"subscribes\":[\"orders.*\"]},"
                     "\"permissions\":[\"call:orders\"]}");

typedef struct c_echo {
  const keel_host_api* host;
  keel_host_ctx* ctx;
  uint32_t events_seen;
} c_echo;

static keel_plugin_bytes lit(const char* s) {
  keel_plugin_bytes b;
  b.ptr = s;
  b.len = strlen(s);
  return b;
}

static void c_log(const c_echo* self, keel_log_level level, const char* text) {
  if (KEEL_HAS_FN(self->host, keel_host_api, log)) self->host->log(self->ctx, level, lit(text));
}

static keel_status c_create(const keel_host_api* host, keel_host_ctx* ctx, keel_host_bytes config, void** out_self) {
  c_echo* self;
  (void)config;
  if (host == NULL || out_self == NULL) return KEEL_ERR_INVALID_ARGUMENT;
  if (KEEL_ABI_MAJOR(host->abi_version) != KEEL_ABI_VERSION_MAJOR) return KEEL_ERR_UNSUPPORTED;
  self = (c_echo*)calloc(1, sizeof *self);
  if (self == NULL) return KEEL_ERR_INTERNAL;
  self->host = host;
  self->ctx = ctx;
  *out_self = self;
  c_log(self, KEEL_LOG_INFO, "created");
  return KEEL_OK;
}

static void c_destroy(void* self) { free(self); }

static keel_status c_start(void* self) {
  const c_echo* echo = (const c_echo*)self;
  const void* storage = NULL;
  if (KEEL_HAS_FN(echo->host, keel_host_api, get_extension)) storage = echo->host->get_extension(echo->ctx, "keel.storage/1");
  c_log(echo, KEEL_LOG_DEBUG, storage != NULL ? "storage available" : "storage not offered");
  return KEEL_OK;
}

static keel_status c_stop(void* self) {
  c_log((const c_echo*)self, KEEL_LOG_INFO, "stopping");
  return KEEL_OK;
}

static keel_status c_on_request(void* self, const keel_request* request, keel_responder responder) {
  const c_echo* echo = (const c_echo*)self;
  keel_plugin_kv header;
  keel_response response;
  keel_host_bytes body = {NULL, 0};
  if (!KEEL_HAS_FN(echo->host, keel_host_api, respond)) return KEEL_ERR_UNSUPPORTED;
  if (KEEL_HAS_FIELD(request, keel_request, body)) body = request->body;
  header.name = lit("x-echo");
  header.value = lit("c");
  memset(&response, 0, sizeof response);
  response.struct_size = sizeof response;
  response.status = 200;
  response.headers.items = &header;
  response.headers.count = 1;
  response.content_type = lit("application/octet-stream");
  response.body.ptr = body.ptr;
  response.body.len = body.len;
  return echo->host->respond(echo->ctx, responder, &response);
}

static void c_on_call_done(void* user_data, keel_status result, const keel_call_response* response) {
  c_echo* echo = (c_echo*)user_data;
  c_log(echo, KEEL_LOG_DEBUG, result == KEEL_OK && response != NULL && response->status == 200 ? "call ok" : "call failed");
}

static keel_status c_on_event(void* self, const keel_event* event) {
  c_echo* echo = (c_echo*)self;
  keel_publish_args pub;
  keel_call_args call;
  keel_status rc;
  echo->events_seen++;
  memset(&pub, 0, sizeof pub);
  pub.struct_size = sizeof pub;
  pub.topic = lit("c_echo.echoed");
  pub.payload.ptr = event->payload.ptr;
  pub.payload.len = event->payload.len;
  pub.content_type.ptr = event->content_type.ptr;
  pub.content_type.len = event->content_type.len;
  pub.traceparent.ptr = event->traceparent.ptr;
  pub.traceparent.len = event->traceparent.len;
  if (!KEEL_HAS_FN(echo->host, keel_host_api, publish)) return KEEL_ERR_UNSUPPORTED;
  rc = echo->host->publish(echo->ctx, &pub);
  if (rc < 0) return rc;
  if (!KEEL_HAS_FN(echo->host, keel_host_api, call)) return KEEL_OK;
  memset(&call, 0, sizeof call);
  call.struct_size = sizeof call;
  call.timeout_ms = 500;
  call.target_plugin = lit("orders");
  call.method = lit("GET");
  call.path = lit("/orders/1");
  return echo->host->call(echo->ctx, &call, c_on_call_done, echo);
}

static keel_health c_health(void* self, keel_plugin_bytes* out_detail) {
  const c_echo* echo = (const c_echo*)self;
  *out_detail = lit(echo->events_seen > 0 ? "events flowing" : "no events yet");
  return KEEL_HEALTH_PASS;
}

static const keel_plugin c_echo_plugin = {
    KEEL_PLUGIN_HEADER_INIT,
    .manifest = keel_manifest_data,
    .create = c_create,
    .destroy = c_destroy,
    .start = c_start,
    .stop = c_stop,
    .on_request = c_on_request,
    .on_event = c_on_event,
    .health = c_health,
};

KEEL_EXPORT const keel_plugin* keel_plugin_entry_v1(void) {
  (void)entry_type_check;
  return &c_echo_plugin;
}
