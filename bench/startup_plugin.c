/*
 * A tiny C plugin for the start-up benchmark (bench/http.sh, scenario "startup").
 * bench/http.sh compiles this file once per name with -DPLUGIN_NAME=p001 ... p100, so one host
 * loads 100 distinct plugins (manifest names must be unique). Each declares one route, so the
 * measurement includes manifest parsing, dlopen, create, start and route registration.
 */
#include <keel/plugin.h>

#include <string.h>

#ifndef PLUGIN_NAME
#error "compile with -DPLUGIN_NAME=<name>"
#endif
#define BENCH_STR_(x) #x
#define BENCH_STR(x) BENCH_STR_(x)

KEEL_PLUGIN_MANIFEST("{\"name\":\"" BENCH_STR(PLUGIN_NAME) "\",\"version\":\"1.0.0\",\"abi\":\"1.0\","
                     "\"description\":\"start-up benchmark plugin\","
                     "\"routes\":[{\"method\":\"GET\",\"path\":\"/ping\"}]}");

typedef struct bench_plugin {
  const keel_host_api* host;
  keel_host_ctx* ctx;
} bench_plugin;

static bench_plugin instance; /* one instance per .so: the host creates each plugin once */

static keel_status bench_create(const keel_host_api* host, keel_host_ctx* ctx, keel_host_bytes config,
                                void** out_self) {
  (void)config;
  if (host == NULL || out_self == NULL) return KEEL_ERR_INVALID_ARGUMENT;
  instance.host = host;
  instance.ctx = ctx;
  *out_self = &instance;
  return KEEL_OK;
}

static void bench_destroy(void* self) { (void)self; }

static keel_status bench_on_request(void* self, const keel_request* request, keel_responder responder) {
  const bench_plugin* p = (const bench_plugin*)self;
  keel_response response;
  (void)request;
  memset(&response, 0, sizeof response);
  response.struct_size = sizeof response;
  response.status = 200;
  response.content_type.ptr = "text/plain";
  response.content_type.len = 10;
  response.body.ptr = "pong";
  response.body.len = 4;
  return p->host->respond(p->ctx, responder, &response);
}

static const keel_plugin bench_table = {
    KEEL_PLUGIN_HEADER_INIT,
    .manifest = keel_manifest_data,
    .create = bench_create,
    .destroy = bench_destroy,
    .on_request = bench_on_request,
};

KEEL_EXPORT const keel_plugin* keel_plugin_entry_v1(void) { return &bench_table; }
