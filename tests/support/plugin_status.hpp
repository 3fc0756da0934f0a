#pragma once
// What the real host reports about one plugin, for integration tests: its entry in
// GET /admin/plugins (asked with the shared test token, admin_token.hpp) and one of its samples
// on /metrics. Catch2 REQUIREs that the host answered.

#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "keel_host.hpp"
#include "prometheus.hpp"
#include "raw_client.hpp"

namespace keel::test {

/// The plugin's object in GET /admin/plugins, or null when the host does not list it.
inline nlohmann::json plugin_entry(const KeelHost& host, const std::string& name) {
  const auto r = simple_request(host.port(), "GET", "/admin/plugins", {}, kAdminBearer);
  REQUIRE(r);
  for (const auto& p : nlohmann::json::parse(r->body))
    if (p["name"] == name) return p;
  return nullptr;
}

/// The pid of the plugin's isolated runner process, or 0 when it has none (in process, stopped).
inline int runner_pid(const KeelHost& host, const std::string& name) {
  const auto p = plugin_entry(host, name);
  return p.is_object() && p.contains("runner") && p["runner"]["pid"].is_number() ? p["runner"]["pid"].get<int>() : 0;
}

/// The sample of metric `name` labelled plugin=`plugin` on /metrics; -1 when there is none.
inline double plugin_metric(const KeelHost& host, const std::string& name, const std::string& plugin) {
  const auto r = simple_request(host.port(), "GET", "/metrics");
  REQUIRE(r);
  return prometheus::parse(r->body).value(name, {{"plugin", plugin}}).value_or(-1);
}

}  // namespace keel::test
