#pragma once
// GET /openapi.json: an OpenAPI 3.1 document generated from the started plugins' route
// declarations (path templates, methods, summaries), so product teams get API docs for free.

#include "http/message.hpp"

namespace keel::host::plugins {
class PluginHost;
}

namespace keel::host::app {

/// Fills `res` with the OpenAPI document of what `plugins` serves now.
void handle_openapi(http::Response& res, const plugins::PluginHost& plugins);

}  // namespace keel::host::app
