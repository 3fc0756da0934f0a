#include "app/plugin_inspect.hpp"

#include <keel/plugin.h>

#include "abi/plugin_table.hpp"
#include "plugins/loader.hpp"
#include "storage/migrations.hpp"
#include "storage/postgres/sql_text.hpp"

namespace keel::host::app {
namespace {

/// A schema the manifest parser stored as compact JSON text, as a JSON value (null if unreadable).
nlohmann::ordered_json schema_value(const std::string& schema_json) {
  auto schema = nlohmann::ordered_json::parse(schema_json, nullptr, false);
  return schema.is_discarded() ? nlohmann::ordered_json(nullptr) : schema;
}

/// One route of `keel plugin inspect --json`; "request", "responses" and "query" only when declared.
nlohmann::ordered_json route_json(const package::RouteDecl& r, const std::string& mount) {
  nlohmann::ordered_json jr{{"method", r.method},          {"path", r.path},         {"mounted_path", mount + r.path},
                            {"summary", r.summary},        {"blocking", r.blocking}};
  if (r.storage_read) jr["storage"] = "read";
  if (r.request) {
    nlohmann::ordered_json jq{{"content_type", r.request->content_type}, {"description", r.request->description}};
    if (!r.request->schema_json.empty()) jq["schema"] = schema_value(r.request->schema_json);
    jr["request"] = std::move(jq);
  }
  if (!r.responses.empty()) {
    auto& responses = jr["responses"] = nlohmann::ordered_json::object();
    for (const auto& d : r.responses) {
      nlohmann::ordered_json jd{{"description", d.description}};
      if (!d.content_type.empty()) jd["content_type"] = d.content_type;  // empty: no body
      if (!d.schema_json.empty()) jd["schema"] = schema_value(d.schema_json);
      responses[d.status] = std::move(jd);
    }
  }
  if (!r.query.empty()) {
    auto& query = jr["query"] = nlohmann::ordered_json::array();
    for (const auto& q : r.query)
      query.push_back({{"name", q.name}, {"type", q.type}, {"required", q.required}, {"description", q.description}});
  }
  return jr;
}

}  // namespace

std::string_view type_name(package::ConfigType t) {
  switch (t) {
    case package::ConfigType::kString: return "string";
    case package::ConfigType::kInteger: return "integer";
    case package::ConfigType::kNumber: return "number";
    case package::ConfigType::kBoolean: return "boolean";
    case package::ConfigType::kArray: return "array";
    case package::ConfigType::kObject: return "object";
  }
  return "?";
}

nlohmann::ordered_json inspect_json(const plugins::Candidate& c, const std::string& file, const config::Config& cfg) {
  nlohmann::ordered_json out;
  out["file"] = file;
  out["ok"] = c.error.empty();
  if (!c.error.empty()) out["error"] = c.error;
  if (!c.sha256.empty()) out["sha256"] = c.sha256;
  if (c.manifest) {
    out["format"] = package::describe(c.format);
    const auto& m = *c.manifest;
    nlohmann::ordered_json jm;
    jm["name"] = m.name;
    jm["version"] = m.version.str();
    jm["abi"] = std::to_string(m.abi_major) + "." + std::to_string(m.abi_minor);
    jm["host_abi"] = abi::abi_to_string(KEEL_ABI_VERSION);
    jm["description"] = m.description;
    jm["concurrency"] = m.serialized ? "serialized" : "parallel";
    const auto mount = plugins::mount_of(m, cfg);
    jm["mount"] = mount;
    jm["dependencies"] = nlohmann::json::array();
    for (const auto& d : m.dependencies) jm["dependencies"].push_back({{"name", d.name}, {"version", d.range.text()}});
    jm["routes"] = nlohmann::json::array();
    for (const auto& r : m.routes) jm["routes"].push_back(route_json(r, mount));
    jm["events"] = {{"publishes", m.publishes}, {"subscribes", m.subscribes}, {"durable", m.durable}};
    jm["permissions"] = m.permissions;
    jm["config"] = nlohmann::ordered_json::object();
    for (const auto& k : m.config) {
      nlohmann::ordered_json jk{{"type", type_name(k.type)}, {"required", k.required}, {"description", k.description}};
      if (k.secret) jk["secret"] = true;
      if (!k.default_json.empty()) jk["default"] = schema_value(k.default_json);
      if (!k.minimum_json.empty()) jk["minimum"] = schema_value(k.minimum_json);
      if (!k.maximum_json.empty()) jk["maximum"] = schema_value(k.maximum_json);
      if (!k.enum_json.empty()) {
        auto& allowed = jk["enum"] = nlohmann::ordered_json::array();
        for (const auto& e : k.enum_json) allowed.push_back(schema_value(e));
      }
      jm["config"][k.name] = std::move(jk);
    }
    jm["migrations"] = nlohmann::json::array();
    for (const auto& mig : m.migrations)
      jm["migrations"].push_back(
          {{"version", mig.version}, {"description", mig.description}, {"checksum", storage::migration_checksum(mig)}});
    out["manifest"] = std::move(jm);
    // Migrations that would not run on the PostgreSQL engine (docs/storage.md "Portable plugins").
    nlohmann::ordered_json warnings = nlohmann::json::array();
    for (const auto& mig : m.migrations)
      for (const auto& construct : storage::pg::sqlite_only_constructs(mig.sql))
        warnings.push_back("migration " + std::to_string(mig.version) + " uses SQLite-only SQL: " + construct);
    out["warnings"] = std::move(warnings);
  }
  return out;
}

}  // namespace keel::host::app
