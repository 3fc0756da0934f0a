// Changes at run time: reload, drop-in and removal, disable and enable, SIGHUP config.
#include <set>

#include "plugins/host_impl.hpp"
#include "plugins/preflight.hpp"
#include "package/sha256.hpp"
#include "storage/migrations.hpp"

namespace keel::host::plugins {
namespace {

bool same_section(const config::PluginSection& a, const config::PluginSection& b) {
  return a.enabled == b.enabled && a.mount == b.mount && a.sha256 == b.sha256 && a.log_level == b.log_level &&
         a.request_timeout == b.request_timeout && a.route_timeouts == b.route_timeouts &&
         a.max_db_bytes == b.max_db_bytes && a.settings_json == b.settings_json && a.isolation == b.isolation &&
         a.runner == b.runner && a.budget == b.budget;
}

}  // namespace

bool PluginHost::post_admin_job(std::function<void()> job) { return impl_->post_admin(std::move(job)); }

PluginHost::AdminResult PluginHost::reload(std::string_view name) {
  auto& s = *impl_;
  return s.with_plugin(name, [&s](Plugin& found) -> AdminResult {
    const std::shared_ptr<Plugin> old = s.current_generations()[found.index];
    if (old->state != PluginState::kStarted && old->quarantined.empty())
      return {409, "plugin '" + old->name + "' is " + std::string(to_string(old->state)) +
                       "; only a started plugin can be reloaded (fix the file or the config and restart for the others)"};
    return s.install(old, old->file);
  });
}

// Unmaps a generation that no hook can enter any more, once nothing is inside it; otherwise keeps
// it mapped until the host stops. The placement is moved out under status_mutex (statuses() reads
// it) and let go outside it.
void PluginHost::Impl::unload(const std::shared_ptr<Plugin>& p) {
  if (p->self != nullptr) stop_plugin(*p, /*keep_storage=*/true);  // e.g. failed in start(): destroy() first
  if (p->in_flight.load() != 0 || p->callbacks_pending.load() != 0) {
    log->warn("plugin generation kept mapped name={} generation={}: work still inside it", p->name, p->generation);
    unmapped_later.push_back(p);
    return;
  }
  std::unique_ptr<Placement> placement;  // unmapped or its process ended when it goes, outside the lock
  {
    std::lock_guard lock(status_mutex);
    placement = std::move(p->placement);
  }
}

// Names of the started plugins that depend on `p`, comma-separated; empty if none.
std::string PluginHost::Impl::started_dependents(const Plugin& p) const {
  std::string out;
  for (const auto& other : current_generations())
    for (auto d : other->dependencies)
      if (d == p.index && other->state == PluginState::kStarted) out += (out.empty() ? "" : ", ") + other->name;
  return out;
}

// Waits until what `p` admitted has finished (work running or queued for it, deferred answers a
// client still waits for), at most [server] drain_timeout after `since`. `p` admits nothing new.
void PluginHost::Impl::drain(Plugin& p, Clock::time_point since) const {
  const auto deadline = since + cfg.server.drain_timeout;
  while ((p.in_flight.load() != 0 || p.responders.pending() != 0) && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
}

// A started plugin whose file was removed or that the config disabled: drained, stopped and
// destroyed like a retired generation, then left in `final_state` with `reason`; its database
// stays open (the bus may still read its outbox). Under admin_mutex.
void PluginHost::Impl::remove(const std::shared_ptr<Plugin>& p, PluginState final_state, const std::string& reason) {
  log->info("plugin stopping name={} file={}: {}", p->name, p->file.string(), reason);
  p->accepting.store(false);
  set_state(*p, PluginState::kStopping);
  rebuild_routes();
  drain(*p, Clock::now());
  stop_plugin(*p, /*keep_storage=*/true);
  {
    std::lock_guard lock(status_mutex);
    p->state = final_state;
    p->reason = reason;
  }
  unload(p);
}

void PluginHost::sync_directory() {
  auto& s = *impl_;
  std::lock_guard admin(s.admin_mutex);
  if (s.stopped) return;
  const auto files = list_plugin_files(s.cfg.plugins.directory);
  const auto gens = s.current_generations();
  auto is_present = [&](const fs::path& f) { return std::find(files.begin(), files.end(), f) != files.end(); };
  for (const auto& g : gens) {
    if (g->state != PluginState::kStarted) continue;
    if (!is_present(g->file)) {
      const auto dependents = s.started_dependents(*g);
      if (dependents.empty()) s.remove(g, PluginState::kStopped, "its file " + g->file.string() + " was removed");
      else s.log->error("plugin file removed name={} file={}, but started plugins depend on it ({}): it keeps running "
                        "from its loaded copy", g->name, g->file.string(), dependents);
      continue;
    }
    if (package::sha256_file_hex(g->file).value_or(g->sha256) != g->sha256) static_cast<void>(s.install(g, g->file));
  }
  // Files no started plugin runs: a plugin that failed, stopped or whose file came back, or a new
  // one. Again while a pass started something: a dependency may come after its dependent.
  for (bool progress = true; progress;) {
    progress = false;
    const auto now = s.current_generations();
    for (const auto& f : files) {
      const auto running = std::any_of(now.begin(), now.end(), [&](const auto& g) {
        return g->file == f && g->state == PluginState::kStarted;
      });
      if (running) continue;
      const auto candidate = read_candidate(f, s.cfg);
      const auto name = candidate.manifest ? candidate.manifest->name : f.stem().string();
      const auto slot = find_named(now, name);
      AdminResult result{0, {}};
      if (slot == now.end()) {
        result = s.install(nullptr, f);
      } else {
        const auto& g = *slot;
        // Disabled (config or admin API), or running from another file: left alone.
        if (g->state == PluginState::kStarted || g->state == PluginState::kDisabled) continue;
        if (g->file != f && is_present(g->file)) continue;
        result = s.install(g, f);
      }
      progress = progress || result.status == 200;
    }
  }
}

// The set `file` would run in as the next generation of `old` (or, with `old` null, as a new
// plugin): every other current generation (a plugin that is not started stands in it with why
// not) and the file's candidate, checked together exactly as at start-up. Returns the candidate
// (manifest set, error empty) or the refusal.
std::variant<Candidate, PluginHost::Impl::Refusal> PluginHost::Impl::preflight_next(const std::shared_ptr<Plugin>& old,
                                                                                    const fs::path& file,
                                                                                    const Generations& gens) const {
  auto c = read_candidate(file, cfg);
  if (!c.error.empty() || !c.manifest) return Refusal{422, c.file.string() + ": " + c.error};
  const Manifest& m = *c.manifest;
  if (old && m.name != old->name) return Refusal{422, file.string() + " now declares plugin '" + m.name + "'"};
  if (old && old->database && !has_permission(m, "ext:" KEEL_STORAGE_EXTENSION_ID))
    return Refusal{409, "its storage permission was removed; restart the host to apply it"};
  if (!old && gens.size() >= kMaxPlugins)
    return Refusal{409, "the host runs at most " + std::to_string(kMaxPlugins) + " plugins"};
  std::vector<Candidate> set;
  for (const auto& g : gens) {
    // Not in the set: the generation replaced, a file that never had a manifest, and another
    // file refused at start-up for declaring the same name (it never ran).
    if (g.get() == old.get() || g->manifest.name.empty() || (old && g->name == old->name)) continue;
    Candidate member{g->file, g->manifest, {}, g->sha256, true, false, false};
    if (g->state != PluginState::kStarted)
      member.error = "plugin '" + g->name + "' is " + std::string(to_string(g->state)) +
                     (g->reason.empty() ? "" : " (" + g->reason + ")");
    set.push_back(std::move(member));
  }
  c.incoming = true;
  set.push_back(std::move(c));
  check_together(set, cfg);
  auto& mine = set.back();
  if (!mine.error.empty()) return Refusal{mine.config_error ? 422u : 409u, mine.error};
  return std::move(mine);
}

// A new generation of `old` (same index, logger, database, event queue and counters) or a new
// plugin, for `m`; not loaded yet.
std::shared_ptr<Plugin> PluginHost::Impl::next_generation(const std::shared_ptr<Plugin>& old, const fs::path& file,
                                                          const Manifest& m, const Generations& gens) {
  auto next = std::make_shared<Plugin>();
  next->host = this;
  next->index = old ? old->index : gens.size();
  next->name = m.name;
  next->file = file;
  next->manifest = m;
  next->log = old ? old->log : plugin_logger(m.name);
  next->generation = old ? old->generation + 1 : 1;
  for (const auto& dep : m.dependencies)  // one another host serves (a cluster) has no index here
    if (const auto it = find_named(gens, dep.name); it != gens.end()) next->dependencies.push_back((*it)->index);
  configure(*next);
  next->events = old ? old->events : nullptr;
  if (next->serial) {  // a serialized plugin runs one hook at a time: requests and events share its queue
    if (old && old->serial) next->serial = old->serial;
    else if (next->events) next->serial = next->events;
  }
  next->database = old ? old->database : nullptr;
  next->ctx.storage = next->database.get();
  next->call_counters = old ? old->call_counters : std::shared_ptr<CallCounters[]>(new CallCounters[kMaxPlugins]());
  next->reloads = old ? old->reloads : std::make_shared<ReloadCounters>();
  next->runner_counters = old ? old->runner_counters : nullptr;  // made by the process placement
  for (const auto& decl : m.routes) {
    std::shared_ptr<RouteCounters> counters;
    for (std::size_t r = 0; old && r < old->manifest.routes.size() && !counters; ++r)
      if (old->manifest.routes[r].method == decl.method && old->manifest.routes[r].path == decl.path)
        counters = old->route_counters[r];
    next->route_counters.push_back(counters ? counters : std::make_shared<RouteCounters>());
  }
  return next;
}

// Starts what `file` holds as the next generation of `old` (a started plugin: reload; a stopped
// or failed one: start again) or, with `old` null, as a new plugin. Pre-flights it against the
// plugins running now; any failure leaves everything as it was. Under admin_mutex.
PluginHost::AdminResult PluginHost::Impl::install(const std::shared_ptr<Plugin>& old, const fs::path& file) {
  auto& s = *this;
  const bool running = old && old->state == PluginState::kStarted;
  auto refuse = [&](unsigned status, const std::string& why) {
    if (old) {
      old->reloads->refused.fetch_add(1, std::memory_order_relaxed);
      std::lock_guard lock(s.status_mutex);
      old->reloads->last_error = why;
    }
    if (running) {
      s.log->error("plugin reload refused name={} file={} reason=\"{}\"; version {} keeps serving", old->name,
                   file.string(), why, old->manifest.version.str());
      return AdminResult{status, "reload refused: " + why + "; version " + old->manifest.version.str() +
                                     " (generation " + std::to_string(old->generation) + ") keeps serving"};
    }
    s.log->error("plugin not started file={} reason=\"{}\"", file.string(), why);
    return AdminResult{status, "not started: " + why};
  };

  const auto gens = s.current_generations();
  auto checked = preflight_next(old, file, gens);
  if (const auto* no = std::get_if<Refusal>(&checked)) return refuse(no->status, no->why);
  const Manifest& m = *std::get<Candidate>(checked).manifest;
  auto next = next_generation(old, file, m, gens);
  const auto storage_permission = "ext:" KEEL_STORAGE_EXTENSION_ID;
  if (next->database) {
    if (auto why = storage::migrate(*next->database, m.migrations); !why.empty()) return refuse(422, why);
  } else if (has_permission(m, storage_permission) && !s.open_storage(*next)) {
    return refuse(422, next->reason);
  }
  s.load_and_create(*next);
  if (next->state != PluginState::kCreated) {
    if (!old || !old->database) s.close_storage(*next);
    return refuse(422, next->reason);
  }
  // The bus takes the new declarations before start(), which may publish. The old generation
  // may publish what it declared until it stops: both sets count until then.
  const bool keep_storage = old && old->database;
  try {
    s.bus.set_publisher(running && old->on_bus ? merged_publisher(*old, *next) : publisher_of(*next));
  } catch (const std::exception& e) {
    s.stop_plugin(*next, keep_storage);
    return refuse(422, e.what());
  }
  s.start_plugin(*next, /*publish_routes=*/false);
  if (next->state != PluginState::kStarted) {
    const auto why = next->reason;
    try {  // what the bus had before (a plugin that never joined it leaves it, database and all)
      s.bus.set_publisher(old && old->on_bus ? publisher_of(*old) : events::Publisher{m.name, {}, {}, nullptr});
    } catch (const std::exception& e) {
      s.log->error("event bus: cannot restore the declarations of plugin name={} error=\"{}\"", m.name, e.what());
    }
    s.stop_plugin(*next, keep_storage);
    return refuse(422, why);
  }

  // Switch: from the next snapshot on, requests, calls and events go to the new generation; a
  // thread still routing by an older snapshot finds the old one retired and routes again.
  // The new snapshot is published before the old generation stops admitting, so a retry always
  // finds the new one.
  {
    std::lock_guard lock(s.status_mutex);
    if (old) s.plugins[old->index] = next;
    else s.plugins.push_back(next);
    next->reloads->last_error.clear();
  }
  s.rebuild_routes();
  // Subscriptions switch with the routes (a plugin that never subscribed has nothing to switch).
  if (!m.subscribes.empty() || next->events) s.bus.set_subscriber(s.endpoint_of(*next));
  next->on_bus = true;
  s.bus.resume_subscriber(next->name);  // durable deliveries paused while it was stopped
  if (!running) {
    if (old) {
      old->retired.store(true);
      unload(old);  // stopped, failed or never started
    }
    if (!old) order.push_back(next->index);  // stopped at shutdown like the others
    s.log->info("plugin started name={} version={} generation={} file={} sha256={}", next->name,
                next->manifest.version.str(), next->generation, file.string(), next->sha256);
    return {200, "plugin '" + next->name + "' started: version " + next->manifest.version.str() + ", generation " +
                     std::to_string(next->generation)};
  }
  old->retired.store(true);
  old->accepting.store(false);
  const auto switched = Clock::now();

  s.drain(*old, switched);
  s.stop_plugin(*old, /*keep_storage=*/true);
  old->reloads->drain.observe(Clock::now() - switched);
  s.unload(old);  // no call into its code can be in flight any more: unmapped
  try {  // only what the new generation declares from now on
    s.bus.set_publisher(publisher_of(*next));
  } catch (const std::exception& e) {
    s.log->warn("event bus: topics of the retired generation stay publishable name={} error=\"{}\"", next->name,
                e.what());
  }
  old->reloads->succeeded.fetch_add(1, std::memory_order_relaxed);
  const auto drain_ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - switched).count();
  s.log->info("plugin reloaded name={} version={} -> {} generation={} sha256={} drain_ms={}", next->name,
              old->manifest.version.str(), next->manifest.version.str(), next->generation, next->sha256, drain_ms);
  return {200, "plugin '" + next->name + "' reloaded: version " + old->manifest.version.str() + " -> " +
                   next->manifest.version.str() + ", generation " + std::to_string(next->generation)};
}

PluginHost::AdminResult PluginHost::disable(std::string_view name) {
  auto& s = *impl_;
  return s.with_plugin(name, [&s](Plugin& p) -> AdminResult {
    if (p.state != PluginState::kStarted)
      return {409, "plugin '" + p.name + "' is " + std::string(to_string(p.state)) + "; only a started plugin can be disabled"};
    if (const auto dependents = s.started_dependents(p); !dependents.empty())
      return {409, "plugin '" + p.name + "' is a dependency of started plugins (" + dependents + "); disable them first"};
    s.log->info("plugin disabling name={} (admin API)", p.name);
    p.accepting.store(false);
    s.set_state(p, PluginState::kStopping);
    s.rebuild_routes();  // its routes answer 404 from now on; requests already inside finish
    s.stop_plugin(p, /*keep_storage=*/true);
    {
      std::lock_guard lock(s.status_mutex);
      p.state = PluginState::kDisabled;
      p.reason = "disabled through the admin API";
    }
    return {200, "plugin '" + p.name + "' disabled"};
  });
}

PluginHost::AdminResult PluginHost::enable(std::string_view name) {
  auto& s = *impl_;
  return s.with_plugin(name, [&s](Plugin& p) -> AdminResult {
    if (p.state == PluginState::kStarted && p.budget && p.budget->over()) {
      s.log->info("plugin back in routing name={} (admin API) after: {}", p.name, p.budget->reason());
      p.budget->reset();
      s.bus.resume_subscriber(p.name);  // durable deliveries paused while it was quarantined
      return {200, "plugin '" + p.name + "' is back in routing"};
    }
    if (p.state == PluginState::kStarted) return {200, "plugin '" + p.name + "' is already started"};
    const bool quarantined = p.state == PluginState::kFailed && !p.quarantined.empty() && p.placement;
    if (!quarantined && (p.state != PluginState::kDisabled || !p.placement))
      return {409, "plugin '" + p.name + "' is " + std::string(to_string(p.state)) +
                       (p.reason.empty() ? "" : " (" + p.reason + ")") +
                       "; only a plugin disabled through the admin API or quarantined can be enabled (change the "
                       "config and restart for the others)"};
    for (auto d : p.dependencies) {
      const auto& dep = *s.plugins[d];
      if (dep.state != PluginState::kStarted)
        return {409, "plugin '" + p.name + "' depends on '" + dep.name + "', which is " +
                         std::string(to_string(dep.state)) + "; enable it first"};
    }
    s.log->info("plugin enabling name={} (admin API)", p.name);
    if (quarantined) s.stop_plugin(p, /*keep_storage=*/true);  // the instance its dead runner served
    {
      std::lock_guard lock(s.status_mutex);
      p.reason.clear();
      p.quarantined.clear();
    }
    p.hooks_closed.store(false);
    if (!s.create_plugin(p)) {
      s.rebuild_routes();  // its mount answers 503
      return {500, "plugin '" + p.name + "' failed to start again: " + p.reason};
    }
    s.start_plugin(p);
    if (p.state != PluginState::kStarted) return {500, "plugin '" + p.name + "' failed to start again: " + p.reason};
    s.bus.resume_subscriber(p.name);  // durable deliveries paused while it was disabled
    return {200, "plugin '" + p.name + "' enabled"};
  });
}

void PluginHost::apply_config(const config::Config& next) {
  auto& s = *impl_;
  std::lock_guard admin(s.admin_mutex);
  if (s.stopped) return;
  std::set<std::string> changed;
  for (const auto& [name, section] : next.plugin_sections) {
    const auto it = s.cfg.plugin_sections.find(name);
    if (it == s.cfg.plugin_sections.end() || !same_section(it->second, section)) changed.insert(name);
  }
  for (const auto& [name, section] : s.cfg.plugin_sections)
    if (next.plugin_sections.count(name) == 0) changed.insert(name);
  {
    std::lock_guard lock(s.status_mutex);
    s.cfg.plugin_sections = next.plugin_sections;
    s.cfg.log.level = next.log.level;
  }
  // observability::init() just set every logger to [log] level: the per-plugin levels again.
  for (const auto& [name, section] : s.cfg.plugin_sections)
    if (!section.log_level.empty()) static_cast<void>(s.plugin_logger(name));
  for (const auto& name : changed) {
    s.log->info("config: [plugin.{}] changed", name);
    const auto sec = s.cfg.plugin_sections.find(name);
    const bool enabled = sec == s.cfg.plugin_sections.end() || sec->second.enabled;
    auto logger = s.plugin_logger(name);
    if (sec == s.cfg.plugin_sections.end() || sec->second.log_level.empty())
      logger->set_level(spdlog::level::from_str(s.cfg.log.level));
    const auto gens = s.current_generations();
    const auto it = find_named(gens, name);
    if (it == gens.end()) continue;  // no such plugin (yet): the directory pass starts it when it comes
    const auto& g = *it;
    if (g->state == PluginState::kStarted && !enabled) {
      const auto dependents = s.started_dependents(*g);
      if (!dependents.empty()) {
        s.log->error("config: [plugin.{}] enabled = false ignored: started plugins depend on it ({})", name, dependents);
        continue;
      }
      s.remove(g, PluginState::kDisabled, "disabled in config");
    } else if (g->state == PluginState::kStarted) {
      static_cast<void>(s.install(g, g->file));  // its new settings take effect in a new generation
    } else if (enabled && (g->state == PluginState::kDisabled || g->state == PluginState::kFailed ||
                           g->state == PluginState::kStopped) &&
               g->reason != "disabled through the admin API") {
      static_cast<void>(s.install(g, g->file));
    }
  }
  // Runners answer log_level() from what they were told last.
  for (const auto& g : s.current_generations())
    if (g->placement) g->placement->set_log_level(static_cast<std::int32_t>(g->log->level()));
}

}  // namespace keel::host::plugins
