#include "app/openapi.hpp"

#include <algorithm>
#include <cctype>
#include <optional>
#include <string>
#include <utility>

#include <keel/plugin.h>
#include <nlohmann/json.hpp>

#include "plugins/plugin_host.hpp"

namespace keel::host::app {
namespace {

using Json = nlohmann::ordered_json;

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

/// "/greet/{name}" stays; a tail capture "{rest...}" becomes "{rest}" (OpenAPI has no multi-segment
/// parameters; its description says it spans segments). Fills the path parameters.
std::string openapi_path(const std::string& path, Json& parameters) {
  std::string out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] != '{') {
      out += path[i++];
      continue;
    }
    const auto end = path.find('}', i);
    std::string name = path.substr(i + 1, end - i - 1);
    const bool tail = name.size() > 3 && name.ends_with("...");
    const bool file = !tail && name.ends_with(":file");
    if (tail) name.resize(name.size() - 3);
    if (file) name.resize(name.size() - 5);
    out += "{" + name + "}";
    Json p{{"name", name}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}};
    if (tail) p["description"] = "the rest of the path, may contain '/'";
    if (file) p["description"] = "one file name: never '/', '\\', NUL, '.' or '..'";
    parameters.push_back(std::move(p));
    i = end + 1;
  }
  return out;
}

constexpr const char* kErrorSchemaRef = "#/components/schemas/Error";
constexpr const char* kErrorResponseRef = "#/components/responses/Error";

/// A schema the manifest parser stored as compact JSON text. A hand-built RouteDecl may hold
/// anything, so text that does not parse is left out rather than thrown on.
std::optional<Json> parse_schema(const std::string& schema_json) {
  if (schema_json.empty()) return std::nullopt;
  auto schema = Json::parse(schema_json, nullptr, false);
  if (schema.is_discarded() || !schema.is_object()) return std::nullopt;
  return schema;
}

/// An OpenAPI content map with one media type: {"<content_type>": {"schema": ...}}.
Json content_map(const std::string& content_type, const std::string& schema_json) {
  Json media = Json::object();
  if (auto schema = parse_schema(schema_json)) media["schema"] = std::move(*schema);
  return Json{{content_type, std::move(media)}};
}

/// 200 for "200"; 0 for "default" (or anything else a hand-built declaration may hold).
unsigned status_code(const std::string& status) {
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  if (status.size() != 3 || !std::all_of(status.begin(), status.end(), digit)) return 0;
  return static_cast<unsigned>((status[0] - '0') * 100 + (status[1] - '0') * 10 + (status[2] - '0'));
}

Json error_content() { return Json{{"application/json", {{"schema", {{"$ref", kErrorSchemaRef}}}}}}; }

/// The Responses object of an operation. Without declarations, one "default" answer as
/// before. With them, each declared status; a 4xx/5xx that declares no body gets the
/// standard error body, and an undeclared "default" stands for every other answer, which is
/// an error from the plugin or the host (404, 413, 500, 503, 504, ...) with that body.
Json responses_of(const plugins::ApiRoute& r) {
  if (r.responses.empty()) {
    return {{"default", {{"description", "the plugin's answer; errors use the standard error body"},
                         {"content", error_content()}}}};
  }
  Json out = Json::object();
  bool has_default = false;
  for (const auto& d : r.responses) {
    Json response = Json::object();
    const bool is_default = d.status == "default";
    const unsigned code = status_code(d.status);
    has_default = has_default || is_default;
    if (!d.description.empty()) {
      response["description"] = d.description;
    } else if (is_default) {
      response["description"] = "the plugin's answer";
    } else {
      const auto phrase = http::reason_phrase(code);
      response["description"] = phrase == "Unknown" ? "status " + d.status : std::string{phrase};
    }
    if (!d.content_type.empty()) {
      response["content"] = content_map(d.content_type, d.schema_json);
    } else if (code >= 400) {
      response["content"] = error_content();
    }
    out[d.status] = std::move(response);
  }
  if (!has_default) out["default"] = {{"$ref", kErrorResponseRef}};
  return out;
}

}  // namespace

void handle_openapi(http::Response& res, const plugins::PluginHost& plugins) {
  Json doc;
  doc["openapi"] = "3.1.0";
  doc["info"] = {{"title", "Keel"},
                 {"version", KEEL_VERSION},
                 {"description", "Routes of the plugins running in this Keel host, generated from their manifests."}};
  Json paths = Json::object();
  Json tags = Json::array();
  std::string last_plugin;
  for (const auto& r : plugins.api_routes()) {
    if (r.plugin != last_plugin) {
      tags.push_back({{"name", r.plugin},
                      {"description", r.plugin_description.empty() ? "plugin " + r.plugin + " " + r.plugin_version
                                                                   : r.plugin_description + " (" + r.plugin_version + ")"}});
      last_plugin = r.plugin;
    }
    Json parameters = Json::array();
    const auto path = openapi_path(r.path, parameters);
    Json op{{"tags", Json::array({r.plugin})}, {"operationId", r.plugin + "_" + lower(r.method) + "_" + std::to_string(r.index)}};
    if (!r.summary.empty()) op["summary"] = r.summary;
    for (const auto& q : r.query) {
      Json p{{"name", q.name}, {"in", "query"}, {"required", q.required}, {"schema", {{"type", q.type}}}};
      if (!q.description.empty()) p["description"] = q.description;
      parameters.push_back(std::move(p));
    }
    if (!parameters.empty()) op["parameters"] = std::move(parameters);
    if (r.request) {
      Json body = Json::object();
      if (!r.request->description.empty()) body["description"] = r.request->description;
      body["required"] = true;
      body["content"] = content_map(r.request->content_type, r.request->schema_json);
      op["requestBody"] = std::move(body);
    }
    op["responses"] = responses_of(r);
    paths[path][lower(r.method)] = std::move(op);
  }
  doc["paths"] = std::move(paths);
  doc["tags"] = std::move(tags);
  // The body of http::Response::set_error: {"error":{"code":"...","message":"..."}}.
  doc["components"]["schemas"]["Error"] = {
      {"type", "object"},
      {"required", Json::array({"error"})},
      {"properties",
       {{"error",
         {{"type", "object"},
          {"required", Json::array({"code", "message"})},
          {"properties",
           {{"code", {{"type", "string"}, {"description", "stable machine-readable code, e.g. not_found"}}},
            {"message", {{"type", "string"}, {"description", "human-readable detail"}}}}}}}}}};
  doc["components"]["responses"]["Error"] = {
      {"description", "an error from the plugin or the host, with the standard error body"},
      {"content", error_content()}};
  res.set_json(200, doc.dump(-1, ' ', false, Json::error_handler_t::replace));
}

}  // namespace keel::host::app
