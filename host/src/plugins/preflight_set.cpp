// Pre-flight of a set of plugins together (check_together): names, config schemas, topics,
// dependencies, cycles and route conflicts, from manifests and config alone.
#include "plugins/preflight.hpp"

#include <algorithm>
#include <functional>
#include <map>

#include "http/router.hpp"

namespace keel::host::plugins {
using package::apply_config_schema;
using package::ConfigIssue;
using package::Manifest;

std::string mount_of(const Manifest& m, const config::Config& cfg) {
  const auto it = cfg.plugin_sections.find(m.name);
  if (it != cfg.plugin_sections.end() && !it->second.mount.empty()) return it->second.mount;
  return "/api/" + m.name;
}

namespace {

// A candidate nothing has refused (yet).
bool ok(const Candidate& c) { return c.error.empty() && c.manifest.has_value(); }

// Topics named after a plugin ("orders.placed") belong to it: no other plugin may declare them,
// so a subscriber can trust the name. What runs stays: a newcomer named after a topic a running
// plugin publishes is the one refused.
void check_topic_owners(std::vector<Candidate>& all, const std::map<std::string, std::size_t>& by_name) {
  for (auto& c : all) {
    if (!ok(c)) continue;
    for (const auto& topic : c.manifest->publishes) {
      const auto owner_name = topic.substr(0, topic.find('.'));
      const auto owner = by_name.find(owner_name);
      if (owner_name == c.manifest->name || owner == by_name.end() || !ok(all[owner->second])) continue;
      auto& blamed = c.running && !all[owner->second].running ? all[owner->second] : c;
      blamed.error = "plugin '" + c.manifest->name + "' publishes '" + topic + "', a topic of plugin '" + owner_name +
                     "' (a topic whose first segment is a plugin's name belongs to that plugin)";
      break;
    }
  }
}

}  // namespace

// Cross-file checks over the candidates still in play: names, dependencies, cycles, config,
// routes. Marks the losers with an error; never throws.
void check_together(std::vector<Candidate>& all, const config::Config& cfg) {
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!all[i].manifest) continue;
    auto [it, inserted] = by_name.emplace(all[i].manifest->name, i);
    if (!inserted && all[i].error.empty())
      all[i].error = "duplicate plugin name '" + all[i].manifest->name + "': already provided by " +
                     all[it->second].file.filename().string();
  }
  for (auto& c : all) {
    if (!ok(c) || c.running) continue;  // what runs now keeps the config it was started with
    const auto sec = cfg.plugin_sections.find(c.manifest->name);
    auto applied = apply_config_schema(*c.manifest, sec == cfg.plugin_sections.end() ? "{}" : sec->second.settings_json);
    if (auto* issues = std::get_if<std::vector<ConfigIssue>>(&applied)) {
      std::string msg = c.incoming ? "invalid config for the new version:" : "invalid config:";
      for (const auto& i : *issues) {
        std::string where;
        if (sec != cfg.plugin_sections.end()) {
          const auto pos = sec->second.key_positions.find(i.key);
          where = (pos != sec->second.key_positions.end() ? pos->second : sec->second.where).str() + ": ";
        }
        msg += " " + where + "[plugin." + c.manifest->name + "] " + i.key + ": " + i.message + ";";
      }
      msg.pop_back();
      c.error = msg;
      c.config_error = true;
    }
  }
  check_topic_owners(all, by_name);
  // Dependencies: repeat until stable, so a failure propagates to every dependent.
  auto check_dependencies = [&] {
    for (bool changed = true; changed;) {
      changed = false;
      for (auto& c : all) {
        if (!ok(c)) continue;
        for (const auto& dep : c.manifest->dependencies) {
          const auto it = by_name.find(dep.name);
          if (c.running) {  // what runs stays; an incoming version it does not accept is refused
            if (it == by_name.end()) continue;
            auto& target = all[it->second];
            if (ok(target) && !target.running && !dep.range.contains(target.manifest->version)) {
              target.error = "version " + target.manifest->version.str() + " is outside the range '" +
                             dep.range.text() + "' that plugin '" + c.manifest->name + "' requires";
              changed = true;
            }
            continue;
          }
          if (it == by_name.end()) {
            // In a cluster another host may serve it: calls to it go there (docs/cluster.md).
            if (!cfg.cluster.enabled())
              c.error = "missing dependency '" + dep.name + "' (" + dep.range.text() + "): no plugin with that name";
          } else if (const auto& target = all[it->second]; !ok(target)) {
            c.error = "dependency '" + dep.name + "' cannot start: " + target.error;
          } else if (!dep.range.contains(target.manifest->version)) {
            c.error = "dependency '" + dep.name + "' version " + target.manifest->version.str() +
                      " is outside the required range '" + dep.range.text() + "'";
          }
          if (!c.error.empty()) {
            changed = true;
            break;
          }
        }
      }
    }
  };
  check_dependencies();
  // Cycles: depth-first search over the remaining graph.
  std::map<std::string, int> mark;  // 0 new, 1 on stack, 2 done
  std::vector<std::string> stack;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    auto& m = mark[name];
    if (m == 2) return;
    if (m == 1) {
      auto start = std::find(stack.begin(), stack.end(), name);
      std::string cycle;
      for (auto it = start; it != stack.end(); ++it) cycle += *it + " -> ";
      cycle += name;
      for (auto it = start; it != stack.end(); ++it)
        if (auto& member = all[by_name[*it]]; !member.running) member.error = "dependency cycle: " + cycle;
      return;
    }
    m = 1;
    stack.push_back(name);
    for (const auto& dep : all[by_name[name]].manifest->dependencies)
      if (by_name.count(dep.name) && ok(all[by_name[dep.name]])) visit(dep.name);
    stack.pop_back();
    m = 2;
  };
  for (auto& c : all)
    if (ok(c)) visit(c.manifest->name);
  // A plugin depending on a cycle member fails too.
  check_dependencies();
  // Route conflicts, in file order: a later plugin that collides with an earlier one fails.
  std::vector<http::RouteSpec> accepted;
  for (auto& c : all) {
    if (!ok(c)) continue;
    auto trial = accepted;
    const auto mount = mount_of(*c.manifest, cfg);
    for (std::uint32_t r = 0; r < c.manifest->routes.size(); ++r) {
      const auto& decl = c.manifest->routes[r];
      trial.push_back({decl.method, mount + decl.path, c.manifest->name, {0, r}});
    }
    auto built = http::RouteTable::build(trial);
    if (auto* conflicts = std::get_if<std::vector<http::RouteConflict>>(&built)) {
      std::string msg;
      for (const auto& k : *conflicts) msg += (msg.empty() ? "" : "; ") + k.message;
      c.error = msg;
    } else {
      accepted = std::move(trial);
    }
  }
}

}  // namespace keel::host::plugins
