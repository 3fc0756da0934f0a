/*
 * c_plugin: a complete Keel plugin in ISO C11 with no C++ anywhere, to show that the ABI is
 * plain C. GET /api/c_plugin/hi answers 200 {"from":"c"}.
 */
#include <keel/plugin.h>

#include <stdlib.h>
#include <string.h>

#include "keel_manifest.h" /* KEEL_MANIFEST_JSON: manifest.json, checked and embedded by the build */

KEEL_PLUGIN_MANIFEST(KEEL_MANIFEST_JSON);

typedef struct c_plugin {
  const keel_host_api* host;
  keel_host_ctx* ctx;
} c_plugin;

static keel_plugin_bytes text(const char* s) {
  keel_plugin_bytes b;
  b.ptr = s;
  b.len = strlen(s);
  return b;
}

static keel_status create(const keel_host_api* host, keel_host_ctx* ctx, keel_host_bytes config, void** out_self) {
  c_plugin* self = (c_plugin*)calloc(1, sizeof *self);
  (void)config; /* the manifest declares no config keys, so the host passes "{}" */
  if (self == NULL) return KEEL_ERR_INTERNAL;
  self->host = host;
  self->ctx = ctx;
  *out_self = self;
  return KEEL_OK;
}

static void destroy(void* self) { free(self); }

static keel_status on_request(void* self, const keel_request* request, keel_responder responder) {
  const c_plugin* plugin = (const c_plugin*)self;
  keel_response response;
  (void)request; /* one route, so route_index is always 0 */
  memset(&response, 0, sizeof response);
  response.struct_size = (uint32_t)sizeof response;
  response.status = 200;
  response.content_type = text("application/json");
  response.body = text("{\"from\":\"c\"}");
  return plugin->host->respond(plugin->ctx, responder, &response);
}

static const keel_plugin plugin = {
    KEEL_PLUGIN_HEADER_INIT,
    .manifest = keel_manifest_data,
    .create = create,
    .destroy = destroy,
    .on_request = on_request,
};

KEEL_EXPORT const keel_plugin* keel_plugin_entry_v1(void) { return &plugin; }
