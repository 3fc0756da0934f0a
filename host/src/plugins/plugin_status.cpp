// What the admin API, /readyz and the metrics read: statuses, health, counters and listings.
#include <algorithm>
#include <set>

#include "plugins/host_impl.hpp"
#include "storage/offline.hpp"

namespace keel::host::plugins {

events::Bus& PluginHost::bus() noexcept { return impl_->bus; }

std::vector<ApiRoute> PluginHost::api_routes() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<ApiRoute> out;
  for (const auto& p : impl_->plugins) {
    if (p->state != PluginState::kStarted) continue;
    for (std::uint32_t r = 0; r < p->manifest.routes.size(); ++r) {
      const auto& decl = p->manifest.routes[r];
      out.push_back({p->name, p->manifest.version.str(), p->manifest.description, decl.method, p->mount + decl.path,
                     decl.summary, r, decl.request, decl.responses, decl.query});
    }
  }
  return out;
}

std::vector<RouteStats> PluginHost::route_stats() const {
  std::vector<RouteStats> out;
  for (const auto& p : impl_->current_generations()) {
    for (std::size_t r = 0; r < p->route_counters.size(); ++r) {
      const auto& c = *p->route_counters[r];
      RouteStats st;
      st.plugin = p->name;
      st.method = p->manifest.routes[r].method;
      st.route = p->manifest.routes[r].path;
      for (std::size_t i = 0; i < st.by_class.size(); ++i) st.by_class[i] = c.by_class[i].load(std::memory_order_relaxed);
      c.duration.snapshot(st.buckets, st.seconds_total);
      st.in_flight = c.in_flight.load(std::memory_order_relaxed);
      st.request_bytes = c.request_bytes.load(std::memory_order_relaxed);
      st.response_bytes = c.response_bytes.load(std::memory_order_relaxed);
      out.push_back(std::move(st));
    }
  }
  return out;
}

std::vector<CallStats> PluginHost::call_stats() const {
  std::vector<CallStats> out;
  const auto all = impl_->current_generations();
  for (const auto& p : all) {
    if (!p->call_counters) continue;
    for (std::size_t t = 0; t < all.size(); ++t) {
      const auto& c = p->call_counters[t];
      const auto calls = c.calls.load(std::memory_order_relaxed);
      if (calls == 0) continue;
      CallStats st;
      st.caller = p->name;
      st.target = all[t]->name;
      st.calls = calls;
      st.errors = c.errors.load(std::memory_order_relaxed);
      c.duration.snapshot(st.buckets, st.seconds_total);
      out.push_back(std::move(st));
    }
  }
  return out;
}

std::vector<std::pair<std::string, storage::Stats>> PluginHost::storage_stats() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<std::pair<std::string, storage::Stats>> out;
  for (const auto& p : impl_->plugins)
    if (p->database) out.emplace_back(p->name, p->database->stats());
  return out;
}

std::vector<PluginStatus> PluginHost::statuses() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<PluginStatus> out;
  for (const auto& p : impl_->plugins) {
    PluginStatus st;
    st.name = p->name;
    st.version = p->manifest.name.empty() ? "" : p->manifest.version.str();
    st.abi = abi_of(*p);
    st.file = p->file;
    st.state = p->state;
    st.reason = p->reason;
    st.mount = p->mount;
    for (const auto& d : p->manifest.dependencies) st.calls.push_back(d.name);
    for (const auto& perm : p->manifest.permissions)
      if (perm.starts_with("call:") && std::find(st.calls.begin(), st.calls.end(), perm.substr(5)) == st.calls.end())
        st.calls.push_back(perm.substr(5));
    st.manifest_json = p->manifest.json;
    st.generation = p->loaded ? p->generation : 0;
    st.isolation = impl_->isolation_mode(*p);
    if (p->placement) p->placement->describe(st);
    if (p->runner_counters) {
      st.runner_crashes = p->runner_counters->crashes.load(std::memory_order_relaxed);
      st.runner_restarts = p->runner_counters->restarts.load(std::memory_order_relaxed);
      st.runner_busy = p->runner_counters->busy.load(std::memory_order_relaxed);
    }
    st.quarantine = p->budget && p->budget->over() ? p->budget->reason() : p->quarantined;
    st.sha256 = p->sha256;
    if (p->reloads) {
      st.reloads_succeeded = p->reloads->succeeded.load(std::memory_order_relaxed);
      st.reloads_refused = p->reloads->refused.load(std::memory_order_relaxed);
      st.last_reload_error = p->reloads->last_error;
      p->reloads->drain.snapshot(st.drain_buckets, st.drain_seconds_total);
    }
    out.push_back(std::move(st));
  }
  return out;
}

std::vector<PluginStatus> PluginHost::statuses_with_health() const {
  auto out = statuses();
  const auto gens = impl_->current_generations();
  for (std::size_t i = 0; i < out.size() && i < gens.size(); ++i) {
    auto& p = *gens[i];
    if (out[i].state != PluginState::kStarted) continue;
    keel_health h = KEEL_HEALTH_PASS;
    std::string detail;
    if (!Impl::admit(p)) continue;  // before touching its table: admitted, its code stays mapped
    const Impl::Admission admission(&p);
    if (p.table != nullptr && p.table->health != nullptr) {
      std::lock_guard lock(p.health_mutex);
      keel_plugin_bytes out_detail{};
      try {
        h = p.table->health(p.self, &out_detail);
      } catch (...) {
        h = KEEL_HEALTH_FAIL;
        detail = "health() let an exception escape";
      }
      if (detail.empty()) detail.assign(view(out_detail));
    }
    out[i].health = h == KEEL_HEALTH_PASS ? "pass" : h == KEEL_HEALTH_WARN ? "warn" : "fail";
    out[i].health_detail = std::move(detail);
  }
  return out;
}

std::string PluginHost::not_ready_reason() const {
  std::string reason;
  for (const auto& st : statuses_with_health()) {
    std::string why;
    if (st.state != PluginState::kStarted && st.state != PluginState::kDisabled)
      why = "plugin '" + st.name + "' is " + std::string(to_string(st.state)) + (st.reason.empty() ? "" : ": " + st.reason);
    else if (st.health == "fail")
      why = "plugin '" + st.name + "' reports health fail" + (st.health_detail.empty() ? "" : ": " + st.health_detail);
    if (!why.empty()) reason += (reason.empty() ? "" : "; ") + why;
  }
  return reason;
}

const http::RouteTable& PluginHost::route_table_for_this_thread() const {
  return *impl_->routes.current().table;
}

std::string_view PluginHost::failed_plugin_at(std::string_view path) const {
  for (const auto& [mount, name] : impl_->routes.current().failed_mounts) {
    if (!path.starts_with(mount)) continue;
    const auto rest = path.substr(mount.size());
    if (rest.empty() || rest.front() == '/' || mount.back() == '/') return name;
  }
  return {};
}

std::vector<PluginHost::StoragePlugin> PluginHost::storage_plugins() const {
  std::lock_guard lock(impl_->status_mutex);
  std::vector<StoragePlugin> out;
  std::set<std::string_view> seen;
  for (const auto& p : impl_->plugins) {
    // A file whose manifest could not be read has an empty manifest and no permissions.
    if (!has_permission(p->manifest, "ext:" KEEL_STORAGE_EXTENSION_ID) || !seen.insert(p->name).second) continue;
    out.push_back({p->name, p->state, storage::options_for(impl_->cfg, p->name), p->manifest.migrations});
  }
  return out;
}

config::SecretKeys PluginHost::secret_config_keys() const {
  config::SecretKeys out;
  for (const auto& p : impl_->current_generations()) {
    for (const auto& k : p->manifest.config)
      if (k.secret) out[p->name].push_back(k.name);
  }
  return out;
}

config::Config PluginHost::config() const {
  std::lock_guard lock(impl_->status_mutex);
  return impl_->cfg;
}

}  // namespace keel::host::plugins
