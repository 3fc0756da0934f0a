#pragma once
// GET /openapi.json: an OpenAPI 3.1 document generated from the started plugins' route
// declarations, so product teams get API docs for free: one tag per plugin, path templates and
// their parameters, methods and summaries, and, where a manifest declares them (docs/abi.md
// §7.2), query parameters, a required request body and the responses with their JSON Schemas.
// Every operation documents the host's error body (components Error schema and response).

#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::app {

/// Fills `res` with the OpenAPI document of what `plugins` serves now.
void handle_openapi(http::Response& res, const plugins::PluginHost& plugins);

}  // namespace keel::host::app
