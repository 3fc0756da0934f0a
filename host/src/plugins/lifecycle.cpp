// Lifecycle: load, create, start and stop one plugin; start-up and shutdown of the whole set.
#include "abi/plugin_table.hpp"
#include "abi/status.hpp"
#include "plugins/host_impl.hpp"
#include "package/sha256.hpp"
#include "platform/code_copy.hpp"
#include "common/timer_queue.hpp"
#include "storage/migrations.hpp"
#include "storage/offline.hpp"

namespace keel::host::plugins {
namespace {

using abi::status_name;

}  // namespace

// The ABI the plugin's code was built against ("1.0"), wherever it runs; empty if not loaded.
std::string abi_of(const Plugin& p) {
  if (p.placement) return abi::abi_to_string(p.placement->abi_version());
  return {};
}

// The plugin named `name` in `gens` (the first: pre-flight refuses a later file with that name).
Generations::const_iterator find_named(const Generations& gens, std::string_view name) {
  return std::find_if(gens.begin(), gens.end(), [name](const auto& g) { return g->name == name; });
}

std::string_view to_string(PluginState state) noexcept {
  switch (state) {
    case PluginState::kDiscovered: return "discovered";
    case PluginState::kLoaded: return "loaded";
    case PluginState::kCreated: return "created";
    case PluginState::kStarted: return "started";
    case PluginState::kStopping: return "stopping";
    case PluginState::kStopped: return "stopped";
    case PluginState::kFailed: return "failed";
    case PluginState::kDisabled: return "disabled";
  }
  return "unknown";
}

PluginHost::PluginHost(const config::Config& cfg, WorkerPool& pool, TimerQueue& timers)
    : impl_(std::make_unique<Impl>(cfg, pool, timers)) {
  impl_->api = make_host_api();
  impl_->publish_routes(std::get<std::shared_ptr<const http::RouteTable>>(http::RouteTable::build({})));
}

PluginHost::~PluginHost() { stop(); }

// A plugin with ext:keel.storage/1 gets its database, migrated to the manifest's latest version,
// before any of its code runs. Returns false (plugin failed) when that is impossible.
bool PluginHost::Impl::open_storage(Plugin& p) {
  if (!has_permission(p.manifest, "ext:" KEEL_STORAGE_EXTENSION_ID)) return true;
  auto o = storage::options_for(cfg, p.name);
  try {
    if (o.engine == config::StorageEngine::kSqlite) storage::prepare_data_dir(cfg.server.data_dir);
    p.database = storage::open_database(std::move(o));
  } catch (const storage::Unavailable& e) {
    {
      std::lock_guard lock(status_mutex);
      p.state = PluginState::kFailed;
      p.reason = std::string("waiting for storage, trying again: ") + e.what();
    }
    if (waiting_for_storage.insert(p.name).second)
      log->warn("plugin waits for its storage name={} reason=\"{}\"", p.name, e.what());
    schedule_storage_retry();
    return false;
  } catch (const std::exception& e) {
    fail(p, e.what());
    return false;
  }
  waiting_for_storage.erase(p.name);
  if (auto why = storage::migrate(*p.database, p.manifest.migrations); !why.empty()) {
    const auto where = p.database->location();
    p.database.reset();
    fail(p, why + " (database " + where + ")");
    return false;
  }
  p.ctx.storage = p.database.get();
  log->info("plugin database ready name={} at={} migrations={}", p.name, p.database->location(),
            p.manifest.migrations.size());
  return true;
}

// Code is loaded from a private copy nobody can change (platform::CodeCopy: a sealed memfd on
// Linux), so the plugin directory's file may be rewritten while this generation runs. The copy
// is also what the sha256 describes and the allowlist checks; the placement loads it.
void PluginHost::Impl::load_and_create(Plugin& p) {
  auto made = platform::CodeCopy::make(p.file, p.name, cfg.server.data_dir / ".keel-load");
  if (const auto* error = std::get_if<std::string>(&made)) {
    fail(p, "cannot copy " + p.file.string() + " for loading: " + *error);
    return;
  }
  auto code = std::get<platform::CodeCopy>(std::move(made));
  p.sha256 = package::sha256_file_hex(code.path()).value_or("");
  // The allowlist is checked on the bytes that get mapped, not on the file as pre-flight saw it.
  if (const auto sec = cfg.plugin_sections.find(p.name);
      sec != cfg.plugin_sections.end() && !sec->second.sha256.empty() && sec->second.sha256 != p.sha256) {
    fail(p, "sha256 mismatch: config [plugin." + p.name + "] expects " + sec->second.sha256 + ", file has " + p.sha256);
    return;
  }
  try {
    p.placement = place_plugin(isolation_mode(p), *this, p, std::move(code));
  } catch (const std::exception& e) {
    fail(p, e.what());
    return;
  }
  p.table = &p.placement->table();
  p.loaded = true;
  if (p.table->abi_version != ((p.manifest.abi_major << 16) | p.manifest.abi_minor)) {
    fail(p, "manifest says ABI " + std::to_string(p.manifest.abi_major) + "." + std::to_string(p.manifest.abi_minor) +
                " but the plugin table says " + abi_of(p));
    return;
  }
  if (!p.manifest.routes.empty() && p.table->on_request == nullptr) {
    fail(p, "manifest declares routes but the plugin has no on_request hook");
    return;
  }
  if (!p.manifest.subscribes.empty() && p.table->on_event == nullptr) {
    fail(p, "manifest subscribes to events but the plugin has no on_event hook");
    return;
  }
  set_state(p, PluginState::kLoaded);
  log->info("plugin loaded name={} version={} abi={} file={} isolation={}", p.name, p.manifest.version.str(), abi_of(p),
            p.file.string(), isolation_mode(p));
  p.ctx.plugin = &p;
  p.ctx.bus = &bus;
  p.ctx.name = p.name;
  p.placement->attach(p.ctx);
  (void)create_plugin(p);
}

const std::string& PluginHost::Impl::isolation_mode(const Plugin& p) const {
  const auto sec = cfg.plugin_sections.find(p.name);
  return sec != cfg.plugin_sections.end() && !sec->second.isolation.empty() ? sec->second.isolation : cfg.plugins.isolation;
}

void PluginHost::Impl::runner_restarted(const std::string& plugin) { bus.resume_subscriber(plugin); }

// Too many crashes: the plugin leaves routing (state failed) until it is reloaded or enabled.
// On the admin thread, like every other change of a plugin's state.
void PluginHost::Impl::runner_quarantined(const std::string& plugin, const std::string& reason) {
  static_cast<void>(post_admin([this, plugin, reason] {
    std::lock_guard admin(admin_mutex);
    if (stopped) return;
    Plugin* p = find(plugin);
    if (p == nullptr || !p->placement || !p->placement->quarantined()) return;
    p->accepting.store(false);
    {
      std::lock_guard lock(status_mutex);
      p->state = PluginState::kFailed;
      p->reason = "quarantined: " + reason + "; reload or enable it when fixed";
      p->quarantined = reason;
    }
    rebuild_routes();
  }));
}

// create() on the loaded library; false (plugin failed) when it fails.
bool PluginHost::Impl::create_plugin(Plugin& p) {
  void* self = nullptr;
  keel_status st = KEEL_ERR_INTERNAL;
  try {
    st = p.table->create(&api, &p.ctx, host_bytes(p.config_json), &self);
  } catch (...) {
    fail(p, "create() let an exception escape (plugins must not throw across the ABI)");
    return false;
  }
  if (st < 0) {
    fail(p, "create() failed with status " + std::to_string(st) + " (" + std::string(status_name(st)) + ")");
    return false;
  }
  p.self = self;
  set_state(p, PluginState::kCreated);
  return true;
}

void PluginHost::Impl::start_plugin(Plugin& p, bool publish_routes) {
  keel_status st = KEEL_OK;
  p.may_call.store(true);
  if (p.table->start != nullptr) {
    try {
      st = p.table->start(p.self);
    } catch (...) {
      st = KEEL_ERR_INTERNAL;
    }
  }
  if (st < 0) {
    p.may_call.store(false);
    fail(p, "start() failed with status " + std::to_string(st) + " (" + std::string(status_name(st)) + ")");
    if (publish_routes) rebuild_routes();  // its mount answers 503
    return;
  }
  p.accepting.store(true);
  set_state(p, PluginState::kStarted);
  if (publish_routes) rebuild_routes();  // dependents may call this plugin from their own start()
  log->info("plugin started name={} version={} mount={} routes={}", p.name, p.manifest.version.str(), p.mount,
            p.manifest.routes.size());
}

// keep_storage: the database stays open (a plugin disabled at run time: the event bus may still
// read its outbox, and enable() creates it again on the same database).
void PluginHost::Impl::stop_plugin(Plugin& p, bool keep_storage) {
  if (p.self == nullptr) {
    if (!keep_storage) close_storage(p);  // opened, but create() failed or never ran
    return;
  }
  // Failed after it started (quarantined) gets stop(); failed in start() does not (may_call was
  // taken back then).
  const bool was_started =
      p.state == PluginState::kStarted || (p.state == PluginState::kFailed && p.may_call.load());
  p.accepting.store(false);
  p.hooks_closed.store(true);
  set_state(p, PluginState::kStopping);
  // Let hooks already inside the plugin return before stop() (bounded wait).
  for (int i = 0; i < 5000 && p.in_flight.load() != 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  if (was_started && p.table->stop != nullptr) {
    try {
      const auto st = p.table->stop(p.self);
      if (st < 0) log->warn("plugin stop() failed name={} status={}", p.name, st);
    } catch (...) {
      log->warn("plugin stop() let an exception escape name={}", p.name);
    }
  }
  p.may_call.store(false);
  p.responders.abandon_all();
  std::map<std::uint64_t, std::function<void()>> calls;
  {
    std::lock_guard lock(p.calls_mutex);
    calls.swap(p.live_calls);
  }
  for (auto& [id, complete_now] : calls) complete_now();  // each posts its completion to a worker
  for (int i = 0; i < 5000 && p.callbacks_pending.load() != 0; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  try {
    p.table->destroy(p.self);
  } catch (...) {
    log->warn("plugin destroy() let an exception escape name={}", p.name);
  }
  p.self = nullptr;
  if (!keep_storage) close_storage(p);
  {
    std::lock_guard lock(status_mutex);
    if (p.state == PluginState::kStopping) p.state = PluginState::kStopped;
  }
  log->info("plugin stopped name={}", p.name);
}

void PluginHost::Impl::rebuild_routes() {
  std::vector<http::RouteSpec> specs;
  for (auto& p : plugins) {
    if (p->state != PluginState::kStarted) continue;
    for (std::uint32_t r = 0; r < p->manifest.routes.size(); ++r) {
      const auto& decl = p->manifest.routes[r];
      specs.push_back({decl.method, p->mount + decl.path, p->name, {static_cast<std::uint32_t>(p->index), r}});
    }
  }
  auto built = http::RouteTable::build(std::move(specs));
  if (auto* table = std::get_if<std::shared_ptr<const http::RouteTable>>(&built)) {
    publish_routes(*table);
  } else {
    // Pre-flight removed every conflict; reaching this means a bug, not bad input.
    for (const auto& c : std::get<std::vector<http::RouteConflict>>(built)) log->critical("route table: {}", c.message);
  }
}

// Logger plugin.<name>, at [plugin.<name>] log_level when set.
std::shared_ptr<spdlog::logger> PluginHost::Impl::plugin_logger(const std::string& name) const {
  auto named = observability::logger("plugin." + name);
  if (const auto sec = cfg.plugin_sections.find(name); sec != cfg.plugin_sections.end() && !sec->second.log_level.empty())
    named->set_level(spdlog::level::from_str(sec->second.log_level));
  return named;
}

// Mount, timeouts, config and queues from the config for a plugin whose manifest pre-flight
// accepted (so the config schema applies).
void PluginHost::Impl::configure(Plugin& p) {
  p.mount = mount_of(p.manifest, cfg);
  const auto sec = cfg.plugin_sections.find(p.name);
  p.timeout = cfg.http.request_timeout;
  if (sec != cfg.plugin_sections.end() && sec->second.request_timeout) p.timeout = *sec->second.request_timeout;
  p.route_timeouts.assign(p.manifest.routes.size(), std::chrono::milliseconds(0));
  if (sec != cfg.plugin_sections.end()) {
    for (const auto& [key, value] : sec->second.route_timeouts) {
      bool found = false;
      for (std::size_t r = 0; r < p.manifest.routes.size(); ++r) {
        if (p.manifest.routes[r].method + " " + p.manifest.routes[r].path == key) {
          p.route_timeouts[r] = value;
          found = true;
        }
      }
      if (!found) log->warn("route_timeouts key names no route of plugin name={} key=\"{}\"", p.name, key);
    }
  }
  p.config_json = std::get<std::string>(apply_config_schema(
      p.manifest, sec == cfg.plugin_sections.end() ? std::string_view("{}") : sec->second.settings_json));
  if (p.manifest.serialized) p.serial = std::make_shared<SerialQueue>(pool, cfg.server.worker_queue);
  if (sec != cfg.plugin_sections.end() && sec->second.budget.enabled())
    p.budget = std::make_shared<ErrorBudget>(sec->second.budget);
}

void PluginHost::start() {
  auto& s = *impl_;
  const auto& cfg = s.cfg;
  s.sync_directory = [this] { sync_directory(); };
  s.log->info("scanning plugins directory={}", cfg.plugins.directory.string());
  std::error_code ec;
  if (!fs::is_directory(cfg.plugins.directory, ec))
    s.log->warn("plugin directory does not exist directory={}; no plugins loaded", cfg.plugins.directory.string());
  auto candidates = preflight(cfg.plugins.directory, cfg);

  for (auto& c : candidates) {
    auto p = std::make_shared<Plugin>();
    p->host = &s;
    p->index = s.plugins.size();
    p->file = c.file;
    p->name = c.manifest ? c.manifest->name : c.file.stem().string();
    if (c.manifest) p->manifest = *c.manifest;
    p->log = s.plugin_logger(p->name);
    if (c.error == "disabled in config") {
      p->state = PluginState::kDisabled;
      p->reason = c.error;
      s.log->info("plugin disabled name={} file={}", p->name, c.file.string());
    } else if (!c.error.empty()) {
      p->state = PluginState::kFailed;
      p->reason = c.error;
      if (c.manifest) p->mount = mount_of(*c.manifest, cfg);  // where it would serve: 503 there
      s.log->error("plugin refused file={} reason=\"{}\"", c.file.string(), c.error);
    } else {
      s.configure(*p);
    }
    s.plugins.push_back(std::move(p));
  }
  for (auto& p : s.plugins) {
    for (std::size_t r = 0; r < p->manifest.routes.size(); ++r) p->route_counters.push_back(std::make_shared<RouteCounters>());
    p->call_counters = std::shared_ptr<CallCounters[]>(new CallCounters[std::max(s.plugins.size(), Impl::kMaxPlugins)]());
    p->reloads = std::make_shared<ReloadCounters>();
  }
  for (const auto& [name, section] : cfg.plugin_sections) {
    if (s.find(name) == nullptr)
      s.log->warn("config has [plugin.{}] but no such plugin is in {} ({})", name, cfg.plugins.directory.string(),
                  section.where.str());
  }

  // Dependency order: pre-flight guaranteed every dependency of a non-failed plugin is present
  // and acyclic; a depth-first walk gives a topological order that keeps directory order otherwise.
  std::vector<int> mark(s.plugins.size(), 0);
  std::function<void(std::size_t)> visit = [&](std::size_t i) {
    if (mark[i] != 0) return;
    mark[i] = 1;
    auto& p = *s.plugins[i];
    for (const auto& dep : p.manifest.dependencies) {
      if (auto* d = s.find(dep.name)) {
        p.dependencies.push_back(d->index);
        visit(d->index);
      }
    }
    s.order.push_back(i);
  };
  for (std::size_t i = 0; i < s.plugins.size(); ++i)
    if (s.plugins[i]->state == PluginState::kDiscovered) visit(i);

  auto deps_ok = [&](const Plugin& p, PluginState needed) {
    for (auto d : p.dependencies) {
      const auto& dp = *s.plugins[d];
      if (dp.state != needed) return "dependency '" + dp.name + "' is " + std::string(to_string(dp.state)) +
                                     (dp.reason.empty() ? "" : " (" + dp.reason + ")");
    }
    return std::string{};
  };
  for (auto i : s.order) {
    auto& p = *s.plugins[i];
    if (auto why = deps_ok(p, PluginState::kCreated); !why.empty()) {
      s.fail(p, why);
      // It starts with the dependency that waits for its storage.
      for (auto d : p.dependencies)
        if (s.waiting_for_storage.count(s.plugins[d]->name) != 0) s.waiting_for_storage.insert(p.name);
      continue;
    }
    if (s.open_storage(p)) s.load_and_create(p);
  }
  s.connect_events();
  for (auto i : s.order) {
    auto& p = *s.plugins[i];
    if (p.state != PluginState::kCreated) continue;
    if (auto why = deps_ok(p, PluginState::kStarted); !why.empty()) {
      s.fail(p, why);
      continue;
    }
    s.start_plugin(p);
  }
  s.rebuild_routes();  // with the mounts of the plugins that failed before starting (503 there)
  s.bus.begin_delivery();
  if (cfg.plugins.watch) {
    s.watcher = std::make_unique<DirectoryWatcher>(
        WatchOptions{cfg.plugins.directory, cfg.plugins.watch_debounce, cfg.plugins.watch_rescan, false},
        [this] { sync_directory(); });
    s.log->info("watching plugins directory={} ({})", cfg.plugins.directory.string(), s.watcher->start());
  }
  std::size_t started = 0;
  for (auto& p : s.plugins) started += p->state == PluginState::kStarted ? 1 : 0;
  s.log->info("plugins ready started={} total={}", started, s.plugins.size());
}

void PluginHost::Impl::schedule_storage_retry() {
  const auto state = storage_retry;
  std::lock_guard lock(state->mutex);
  if (state->off || state->armed) return;
  state->armed = true;
  const auto delay = state->delay;
  state->delay = std::min(state->delay * 2, kStorageRetryMax);
  state->timer = timers.schedule(Clock::now() + delay, [this, state] {
    std::lock_guard l(state->mutex);
    state->timer = 0;
    if (state->off) return;  // stop() began: `this` may be gone soon
    if (!post_admin([this] { retry_waiting_plugins(); })) state->armed = false;
  });
}

void PluginHost::Impl::retry_waiting_plugins() {
  const auto state = storage_retry;
  auto off = [&state] {
    std::lock_guard lock(state->mutex);
    return state->off;
  };
  {
    std::lock_guard lock(state->mutex);
    state->armed = false;
  }
  bool unknown = false;  // a waiting plugin that never got a generation (a file added later)
  {
    std::lock_guard admin(admin_mutex);
    if (stopped || off()) return;
    auto waits = [this](const Plugin& g) { return waiting_for_storage.count(g.name) != 0; };
    std::set<std::string> known;
    for (auto i : order) known.insert(plugins[i]->name);
    for (const auto& name : waiting_for_storage) unknown = unknown || known.count(name) == 0;
    for (auto i : order) {
      if (off()) return;
      const auto g = current_generations()[i];
      if (!waits(*g)) continue;
      if (g->state == PluginState::kStarted || g->state == PluginState::kDisabled) {
        waiting_for_storage.erase(g->name);
        continue;
      }
      // A dependency still waits: so does this one, without a try.
      const bool blocked = std::any_of(g->dependencies.begin(), g->dependencies.end(),
                                       [&](auto d) { return waits(*plugins[d]); });
      if (blocked) continue;
      // Its server still does not answer: nor would the next plugin's (one server, most often);
      // the next pass tries again.
      if (has_permission(g->manifest, "ext:" KEEL_STORAGE_EXTENSION_ID) &&
          !storage::storage_answers(storage::options_for(cfg, g->name)))
        break;
      waiting_for_storage.erase(g->name);  // open_storage() puts it back if the server went away again
      const auto result = install(g, g->file);
      if (result.status == 200) {
        log->info("plugin started once its storage could be reached name={}", g->name);
        continue;
      }
      constexpr std::string_view kPrefix = "not started: ";
      auto why = std::string_view(result.message).starts_with(kPrefix) ? result.message.substr(kPrefix.size())
                                                                       : result.message;
      if (!waits(*g)) log->error("plugin failed after waiting for its storage name={} reason=\"{}\"", g->name, why);
      std::lock_guard lock(status_mutex);
      g->reason = std::move(why);
    }
    if (unknown) {
      // sync_directory() installs the files no started plugin runs, new ones included.
      for (auto it = waiting_for_storage.begin(); it != waiting_for_storage.end();)
        it = known.count(*it) == 0 ? waiting_for_storage.erase(it) : std::next(it);
    }
    if (waiting_for_storage.empty() && !unknown) return;
  }
  if (unknown && sync_directory) sync_directory();
  std::lock_guard admin(admin_mutex);
  if (!waiting_for_storage.empty() && !stopped) schedule_storage_retry();
}

void PluginHost::stop() {
  auto& s = *impl_;
  {
    std::lock_guard lock(s.storage_retry->mutex);
    s.storage_retry->off = true;
    if (s.storage_retry->timer != 0) s.timers.cancel(s.storage_retry->timer);
  }
  if (s.watcher) s.watcher->stop();  // before admin_mutex: a sync in progress holds it
  s.stop_admin_queue();               // queued admin actions run first
  {
    std::lock_guard admin(s.admin_mutex);  // a disable or enable in progress finishes first
    if (s.stopped) return;
    s.stopped = true;  // later ones are refused (they may be queued on the pool stopped below)
  }
  s.publish_routes(std::get<std::shared_ptr<const http::RouteTable>>(http::RouteTable::build({})));
  s.bus.stop(s.cfg.server.drain_timeout);
  for (auto& p : s.plugins) p->accepting.store(false);
  for (auto it = s.order.rbegin(); it != s.order.rend(); ++it) s.stop_plugin(*s.plugins[*it]);
  // Unload only after every plugin is destroyed: a plugin may hold pointers into another's
  // code only through the host, but completions queued on the pool must have run.
  s.pool.stop();
  for (auto it = s.order.rbegin(); it != s.order.rend(); ++it) {
    s.plugins[*it]->placement.reset();
  }
  for (auto& g : s.unmapped_later) g->placement.reset();
}

}  // namespace keel::host::plugins
