#include "app/openapi.hpp"

#include <algorithm>
#include <cctype>
#include <string>

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
    if (tail) name.resize(name.size() - 3);
    out += "{" + name + "}";
    Json p{{"name", name}, {"in", "path"}, {"required", true}, {"schema", {{"type", "string"}}}};
    if (tail) p["description"] = "the rest of the path, may contain '/'";
    parameters.push_back(std::move(p));
    i = end + 1;
  }
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
    if (!parameters.empty()) op["parameters"] = std::move(parameters);
    op["responses"] = {{"default", {{"description", "the plugin's answer; errors use the standard error body"},
                                    {"content", {{"application/json", {{"schema", {{"$ref", "#/components/schemas/Error"}}}}}}}}}};
    paths[path][lower(r.method)] = std::move(op);
  }
  doc["paths"] = std::move(paths);
  doc["tags"] = std::move(tags);
  doc["components"]["schemas"]["Error"] = {
      {"type", "object"},
      {"required", Json::array({"error"})},
      {"properties",
       {{"error",
         {{"type", "object"},
          {"required", Json::array({"code", "message"})},
          {"properties", {{"code", {{"type", "string"}}}, {"message", {{"type", "string"}}}}}}}}}};
  res.set_json(200, doc.dump(-1, ' ', false, Json::error_handler_t::replace));
}

}  // namespace keel::host::app
