#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <optional>
#include <set>
#include <string>
#include <system_error>
#include <vector>

#include <CLI/CLI.hpp>
#include <keel/plugin.h>
#include <keel/storage.h>
#include <nlohmann/json.hpp>

#include "app/app.hpp"
#include "app/migration_report.hpp"
#include "app/plugin_inspect.hpp"
#include "app/scaffold.hpp"
#include "http/tls.hpp"
#include "observability/log.hpp"
#include "plugins/loader.hpp"
#include "plugins/plugin_host.hpp"
#include "storage/postgres/sql_text.hpp"
#include "storage/offline.hpp"

namespace keel::host::app {
namespace {

int serve(const std::string& config_file, const ServeOptions& options) {
  try {
    auto cfg = config::load(config_file, config::current_environment());
    observability::init(log_options(cfg));
    App app(std::move(cfg));
    const int code = app.run(options);
    observability::shutdown();
    return code;
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::fprintf(stderr, "%s\n", d.str().c_str());
    std::fprintf(stderr, "keel: configuration has errors; fix them and start again (check with: keel config check %s)\n",
                 config_file.c_str());
    return 2;
  } catch (const std::exception& e) {
    observability::logger("keel")->critical("start-up failed: {}", e.what());
    observability::shutdown();
    return 1;
  }
}

// `keel config check`'s second half: the plugin directory pre-flighted as `keel serve` would
// at start-up (no plugin code runs), each [plugin.<name>] table against its plugin's config
// schema. Prints one line per plugin; returns how many would not start.
std::size_t check_plugins(const std::string& config_file, const config::Config& cfg) {
  std::error_code ec;
  const auto& dir = cfg.plugins.directory;
  if (!std::filesystem::is_directory(dir, ec)) {
    std::printf("%s: warning: [plugins] directory %s does not exist: no plugin would load\n", config_file.c_str(),
                dir.string().c_str());
    return 0;
  }
  std::size_t refused = 0;
  std::set<std::string> found;
  for (const auto& c : plugins::preflight(dir, cfg)) {
    const auto name = c.manifest ? c.manifest->name : c.file.stem().string();
    found.insert(name);
    if (c.error == "disabled in config") {
      std::printf("plugin %s (%s): disabled in the config\n", name.c_str(), c.file.string().c_str());
    } else if (!c.error.empty()) {
      std::printf("%s: error: plugin %s (%s) would not start: %s\n", config_file.c_str(), name.c_str(),
                  c.file.string().c_str(), c.error.c_str());
      ++refused;
    } else {
      std::printf("plugin %s %s (%s): ok\n", name.c_str(), c.manifest->version.str().c_str(), c.file.string().c_str());
    }
  }
  for (const auto& [name, section] : cfg.plugin_sections)
    if (found.count(name) == 0)
      std::printf("%s: warning: [plugin.%s] matches no plugin in %s\n", section.where.str().c_str(), name.c_str(),
                  dir.string().c_str());
  return refused;
}

int check_config(const std::string& config_file) {
  try {
    const auto cfg = config::load(config_file, config::current_environment());
    // The same load `keel serve` does: files readable, key private and matching the certificate.
    if (const auto tls = load_tls(cfg)) {
      const auto cert = tls->certificate();
      for (const auto& w : cert.warnings) std::printf("%s: warning: [server] tls: %s\n", config_file.c_str(), w.c_str());
      std::printf("%s: tls certificate subject=\"%s\" sha256=%s\n", config_file.c_str(), cert.subject.c_str(),
                  cert.sha256.c_str());
    }
    const auto refused = check_plugins(config_file, cfg);
    if (refused != 0) {
      std::printf("%zu plugin(s) would not start\n", refused);
      return 1;
    }
    std::printf("%s: ok\n", config_file.c_str());
    return 0;
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::printf("%s\n", d.str().c_str());
    std::printf("%zu error(s)\n", e.diagnostics().size());
    return 1;
  }
}

/// The documentation lines under a route in `keel plugin inspect`: "  request: application/json",
/// "  responses: 200, 404", "  query: greeting, page (required)"; nothing for what is not declared.
void print_route_docs(const package::RouteDecl& r) {
  if (r.request) std::printf("  request: %s\n", r.request->content_type.c_str());
  const auto print_list = [](const char* label, const auto& items, const auto& text) {
    if (items.empty()) return;
    std::string line;
    for (const auto& item : items) line += (line.empty() ? "" : ", ") + text(item);
    std::printf("  %s: %s\n", label, line.c_str());
  };
  print_list("responses", r.responses, [](const package::ResponseDecl& d) { return d.status; });
  print_list("query", r.query,
             [](const package::QueryParamDecl& q) { return q.required ? q.name + " (required)" : q.name; });
}

// `keel plugin inspect`: reads the manifest from the file and pre-flights it against a config,
// without loading the library (no plugin code runs, not even static constructors).
int inspect_plugin(const std::string& file, const std::string& config_file, bool as_json) {
  config::Config cfg;
  try {
    if (!config_file.empty()) cfg = config::load(config_file, config::current_environment());
    else cfg.plugins.directory = std::filesystem::path(file).parent_path();
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::fprintf(stderr, "%s\n", d.str().c_str());
    return 2;
  }
  const auto c = plugins::preflight_file(file, cfg);
  const auto out = inspect_json(c, file, cfg);
  if (as_json) {
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("file: %s\n", file.c_str());
    if (c.manifest) {
      const auto& jm = out["manifest"];
      std::printf("format: %s\n", out["format"].get<std::string>().c_str());
      std::printf("name: %s\nversion: %s\nabi: %s (host %s)\ndescription: %s\nconcurrency: %s\nmount: %s\n",
                  jm["name"].get<std::string>().c_str(), jm["version"].get<std::string>().c_str(),
                  jm["abi"].get<std::string>().c_str(), jm["host_abi"].get<std::string>().c_str(),
                  jm["description"].get<std::string>().c_str(), jm["concurrency"].get<std::string>().c_str(),
                  jm["mount"].get<std::string>().c_str());
      const auto mount = jm["mount"].get<std::string>();
      for (const auto& d : c.manifest->dependencies) std::printf("depends on: %s %s\n", d.name.c_str(), d.range.text().c_str());
      for (const auto& r : c.manifest->routes) {
        std::printf("route: %s %s%s%s\n", r.method.c_str(), (mount + r.path).c_str(),
                    r.blocking ? " (blocking)" : r.storage_read ? " (storage: read)" : "",
                    r.summary.empty() ? "" : ("  " + r.summary).c_str());
        print_route_docs(r);
      }
      for (const auto& t : c.manifest->publishes) std::printf("publishes: %s\n", t.c_str());
      for (const auto& t : c.manifest->subscribes) std::printf("subscribes: %s\n", t.c_str());
      for (const auto& t : c.manifest->durable) std::printf("durable: %s\n", t.c_str());
      for (const auto& p : c.manifest->permissions) std::printf("permission: %s\n", p.c_str());
      for (const auto& k : c.manifest->config) {
        std::string rules;
        if (k.required) rules += ", required";
        if (k.secret) rules += ", secret";
        if (!k.minimum_json.empty()) rules += ", minimum " + k.minimum_json;
        if (!k.maximum_json.empty()) rules += ", maximum " + k.maximum_json;
        if (!k.enum_json.empty()) {
          rules += ", one of ";
          for (std::size_t i = 0; i < k.enum_json.size(); ++i) rules += (i == 0 ? "" : " ") + k.enum_json[i];
        }
        std::printf("config: %s (%s%s)%s%s\n", k.name.c_str(), std::string(type_name(k.type)).c_str(), rules.c_str(),
                    k.default_json.empty() ? "" : (" default " + k.default_json).c_str(),
                    k.description.empty() ? "" : ("  " + k.description).c_str());
      }
      for (const auto& mig : jm["migrations"])
        std::printf("migration: %lld %s (sha256 %s)\n", static_cast<long long>(mig["version"].get<std::int64_t>()),
                    mig["description"].get<std::string>().c_str(), mig["checksum"].get<std::string>().substr(0, 12).c_str());
      for (const auto& w : out["warnings"]) std::printf("warning: %s\n", w.get<std::string>().c_str());
    }
    std::printf("preflight: %s\n", c.error.empty() ? "ok" : ("FAILED: " + c.error).c_str());
  }
  return c.error.empty() ? 0 : 1;
}

// ---------------------------------------------------------------------------------------------
// Offline storage tools: `keel migrate status` and `keel backup`. Both read the same config as
// `keel serve`, pre-flight the plugin directory (no plugin code runs) and touch the plugin
// databases only read-only, so they are safe while the host is running.

namespace fs = std::filesystem;

/// The config for a storage tool, or nullopt after printing every diagnostic (exit 2, as serve).
std::optional<config::Config> load_tool_config(const std::string& config_file) {
  try {
    auto cfg = config::load(config_file, config::current_environment());
    observability::init(log_options(cfg));
    std::error_code ec;  // absolute paths in every message; a relative one stays as it is on failure
    if (auto abs = fs::absolute(cfg.server.data_dir, ec); !ec) cfg.server.data_dir = abs.lexically_normal();
    if (auto abs = fs::absolute(cfg.plugins.directory, ec); !ec) cfg.plugins.directory = abs.lexically_normal();
    return cfg;
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::fprintf(stderr, "%s\n", d.str().c_str());
    std::fprintf(stderr, "keel: configuration has errors; fix them and try again (check with: keel config check %s)\n",
                 config_file.c_str());
    return std::nullopt;
  }
}

bool uses_storage(const package::Manifest& m) { return package::has_permission(m, "ext:" KEEL_STORAGE_EXTENSION_ID); }

std::vector<plugins::Candidate> scan_plugins(const config::Config& cfg, const char* tool) {
  std::error_code ec;
  if (!fs::is_directory(cfg.plugins.directory, ec))
    std::fprintf(stderr, "keel %s: plugin directory %s does not exist; no plugins to check\n", tool,
                 cfg.plugins.directory.string().c_str());
  return plugins::preflight(cfg.plugins.directory, cfg);
}

// `keel migrate status`: every storage plugin's database and the state of each migration.
// Exit 0 when nothing is changed or unknown (the host would start every plugin's storage),
// 1 when a migration is changed or unknown or a database cannot be read, 2 on config errors.
int migrate_status(const std::string& config_file, bool as_json) {
  const auto cfg = load_tool_config(config_file);
  if (!cfg) return 2;
  const auto candidates = scan_plugins(*cfg, "migrate status");

  nlohmann::ordered_json out;
  out["config"] = config_file;
  out["data_dir"] = cfg->server.data_dir.string();
  out["plugins"] = nlohmann::ordered_json::array();
  MigrationReport report;
  std::size_t failed = 0;
  std::set<std::string> seen;
  for (const auto& c : candidates) {
    const bool storage = c.manifest && uses_storage(*c.manifest);
    if (c.error.empty() && !storage) continue;  // nothing to report about it
    nlohmann::ordered_json jp;
    jp["name"] = c.manifest ? nlohmann::ordered_json(c.manifest->name) : nlohmann::ordered_json(nullptr);
    jp["file"] = c.file.string();
    jp["preflight"] = c.error.empty() ? "ok" : "failed";
    if (!c.error.empty()) {
      jp["error"] = c.error;
      ++failed;
    }
    jp["storage"] = c.manifest ? nlohmann::ordered_json(storage) : nlohmann::ordered_json(nullptr);
    // A second file with the same name (refused by pre-flight) does not own the database.
    if (storage && seen.insert(c.manifest->name).second)
      report.add_database(jp, storage::options_for(*cfg, c.manifest->name), c.manifest->migrations);
    out["plugins"].push_back(std::move(jp));
  }
  const bool ok = report.ok();
  const std::size_t with_storage = report.databases();
  const std::size_t unreadable = report.unreadable();
  out["summary"] = report.summary(failed);
  out["ok"] = ok;

  if (as_json) {
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
    return ok ? 0 : 1;
  }
  auto str = [](const nlohmann::ordered_json& j, const char* key) {
    const auto it = j.find(key);
    return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
  };
  std::printf("data_dir: %s\n", cfg->server.data_dir.string().c_str());
  for (const auto& jp : out["plugins"]) {
    const auto name = jp["name"].is_string() ? jp["name"].get<std::string>() : fs::path(str(jp, "file")).filename().string();
    if (jp["preflight"] == "failed")
      std::printf("%s (%s): pre-flight failed: %s\n", name.c_str(), str(jp, "file").c_str(), str(jp, "error").c_str());
    if (!jp.contains("database")) continue;
    std::printf("%s: %s%s\n", name.c_str(), str(jp, "database").c_str(),
                jp["database_exists"] == false ? " (not created yet)" : "");
    if (jp.contains("read_error")) {
      std::printf("  cannot read it: %s\n", str(jp, "read_error").c_str());
      continue;
    }
    if (jp["migrations"].empty()) {
      std::printf("  no migrations\n");
      continue;
    }
    std::printf("  %-8s %-8s %-24s %-12s %s\n", "version", "state", "applied_at", "checksum", "description");
    for (const auto& m : jp["migrations"]) {
      const auto applied_at = m["applied_at"].is_string() ? m["applied_at"].get<std::string>() : std::string("-");
      std::printf("  %-8lld %-8s %-24s %-12s %s\n", static_cast<long long>(m["version"].get<std::int64_t>()),
                  str(m, "state").c_str(), applied_at.c_str(), str(m, "checksum").substr(0, 12).c_str(),
                  str(m, "description").c_str());
    }
  }
  const auto& sum = out["summary"];
  std::printf("%zu plugin(s) with storage: %zu migration(s) applied, %zu pending, %zu changed, %zu unknown\n",
              with_storage, sum["applied"].get<std::size_t>(), sum["pending"].get<std::size_t>(),
              sum["changed"].get<std::size_t>(), sum["unknown"].get<std::size_t>());
  if (sum["changed"].get<std::size_t>() > 0)
    std::printf("changed: an applied migration's SQL was edited; the host refuses to start that plugin. Restore the "
                "original SQL and add the change as a new migration\n");
  if (sum["unknown"].get<std::size_t>() > 0)
    std::printf("unknown: the database records a migration the manifest no longer declares (an older plugin "
                "version?); the host refuses to start that plugin\n");
  if (unreadable > 0) std::printf("%zu database(s) could not be read\n", unreadable);
  std::printf("result: %s\n", ok ? "ok" : "FAILED");
  return ok ? 0 : 1;
}

std::string human_size(std::uintmax_t bytes) {
  char text[64];
  if (bytes < 1024) {
    std::snprintf(text, sizeof text, "%ju bytes", bytes);
  } else {
    const double kib = static_cast<double>(bytes) / 1024.0;
    if (kib < 1024.0) std::snprintf(text, sizeof text, "%ju bytes, %.1f KiB", bytes, kib);
    else std::snprintf(text, sizeof text, "%ju bytes, %.1f MiB", bytes, kib / 1024.0);
  }
  return text;
}

// `keel backup`: an online, consistent copy of every storage plugin's database into out_dir
// (SQLite: a copy of the file; PostgreSQL: pg_dump of the plugin's schema).
// Exit 0 when every copy succeeded, 1 when any failed or would overwrite a file without
// --force, 2 on config errors or an --out that is the data directory itself.
int backup_databases(const std::string& config_file, const std::string& out_dir, bool force,
                     const storage::BackupTools& tools) {
  const auto cfg = load_tool_config(config_file);
  if (!cfg) return 2;
  const fs::path out = out_dir;
  std::error_code ec;
  std::error_code ec2;
  const auto out_canonical = fs::weakly_canonical(out, ec);
  if (!ec && out_canonical == fs::weakly_canonical(cfg->server.data_dir, ec2) && !ec2) {
    std::fprintf(stderr, "keel backup: --out %s is the data directory itself; choose another directory\n",
                 out_dir.c_str());
    return 2;
  }
  const auto candidates = scan_plugins(*cfg, "backup");

  struct Job {
    storage::Options source;
    std::string where;
    fs::path target;
  };
  std::vector<Job> jobs;
  std::set<std::string> seen;
  std::size_t failures = 0;
  for (const auto& c : candidates) {
    if (!c.manifest) {
      std::fprintf(stderr, "keel backup: %s: skipped, its manifest cannot be read (%s)\n", c.file.string().c_str(),
                   c.error.c_str());
      continue;
    }
    if (!uses_storage(*c.manifest) || !seen.insert(c.manifest->name).second) continue;
    const auto& name = c.manifest->name;
    auto source = storage::options_for(*cfg, name);
    auto where = storage::describe_location(source);
    try {
      if (!storage::read_migration_history(source).exists) {
        std::printf("%s: no database yet (%s), skipped\n", name.c_str(), where.c_str());
        continue;
      }
    } catch (const std::exception& e) {
      ++failures;
      std::fprintf(stderr, "keel backup: %s: FAILED: %s\n", name.c_str(), e.what());
      continue;
    }
    auto target = out / storage::backup_file_name(source);
    jobs.push_back({std::move(source), std::move(where), std::move(target)});
  }

  if (!fs::create_directories(out, ec) && ec) {
    std::fprintf(stderr, "keel backup: cannot create %s: %s\n", out_dir.c_str(), ec.message().c_str());
    return 1;
  }
  if (!fs::is_directory(out, ec)) {
    std::fprintf(stderr, "keel backup: %s is not a directory\n", out_dir.c_str());
    return 1;
  }
  if (!force) {
    std::size_t existing = 0;
    for (const auto& j : jobs) {
      if (!fs::exists(fs::symlink_status(j.target, ec))) continue;
      ++existing;
      std::fprintf(stderr, "keel backup: %s: %s already exists; refusing to overwrite it\n", j.source.plugin.c_str(),
                   j.target.string().c_str());
    }
    if (existing > 0) {
      std::fprintf(stderr,
                   "keel backup: nothing was copied; use an empty --out directory, or --force to replace the existing "
                   "files\n");
      return 1;
    }
  }

  for (const auto& j : jobs) {
    try {
      // Leftovers of a database that was opened at the target path would be applied to the new
      // copy by SQLite: remove them first (the copy itself replaces the file atomically).
      for (const char* suffix : {"-wal", "-shm", "-journal"}) fs::remove(j.target.string() + suffix, ec);
      storage::backup_database(j.source, j.target, tools);  // mode 0600, complete or absent
      const auto size = fs::file_size(j.target, ec);
      std::printf("%s: %s -> %s (%s)\n", j.source.plugin.c_str(), j.where.c_str(), j.target.string().c_str(),
                  ec ? "size unknown" : human_size(size).c_str());
    } catch (const std::exception& e) {
      ++failures;
      std::fflush(stdout);
      std::fprintf(stderr, "keel backup: %s: FAILED: %s\n", j.source.plugin.c_str(), e.what());
    }
    std::fflush(stdout);
  }
  if (failures > 0) {
    std::fprintf(stderr, "keel backup: %zu backup(s) failed\n", failures);
    return 1;
  }
  std::printf("backed up %zu database(s) to %s\n", jobs.size(), out_dir.c_str());
  return 0;
}

int new_plugin(const ScaffoldOptions& options) {
  try {
    const auto dir = options.project_dir();
    for (const auto& file : scaffold_plugin(options)) std::printf("  %s\n", (dir / file).c_str());
    std::printf(
        "created plugin %s (%s%s%s) in %s\n"
        "build and test it:  cmake -S %s -B %s/build && cmake --build %s/build && ctest --test-dir %s/build\n"
        "  (add -DCMAKE_PREFIX_PATH=<prefix> when Keel is not installed in a standard place)\n"
        "run it:             cd %s && keel serve --config keel.toml\n",
        options.name.c_str(), options.c ? "C11" : "C++20", options.storage ? ", storage" : "",
        options.events ? ", events" : "", dir.c_str(), dir.c_str(), dir.c_str(), dir.c_str(), dir.c_str(), dir.c_str());
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel new plugin: %s\n", e.what());
    return 1;
  }
}

}  // namespace

int run_cli(int argc, char** argv) {
  CLI::App cli{"keel: a plugin host for domain modules"};
  cli.require_subcommand(0, 1);
  bool version = false;
  cli.add_flag("--version", version, "print the version and exit");

  auto* serve_cmd = cli.add_subcommand("serve", "run the host");
  std::string serve_config;
  std::string listen;
  std::string port_file;
  serve_cmd->add_option("--config", serve_config, "host configuration file (TOML)")->required();
  serve_cmd->add_option("--listen", listen, "HOST:PORT to listen on, overriding [server] listen");
  serve_cmd->add_option("--port-file", port_file, "write the bound port to this file once serving");
  std::string admin_address_file;
  serve_cmd->add_option("--admin-address-file", admin_address_file,
                        "write the admin listener's address ([admin] listen: HOST:PORT or unix:/path) to this file "
                        "once serving, before --port-file");

  auto* config_cmd = cli.add_subcommand("config", "configuration tools");
  config_cmd->require_subcommand(1);
  auto* check_cmd = config_cmd->add_subcommand("check", "validate a configuration file and print every error");
  std::string check_file;
  check_cmd->add_option("FILE", check_file, "configuration file")->required();

  auto* plugin_cmd = cli.add_subcommand("plugin", "plugin tools");
  plugin_cmd->require_subcommand(1);
  auto* inspect_cmd = plugin_cmd->add_subcommand(
      "inspect", "print a plugin's manifest and pre-flight it against a config, without loading it");
  std::string inspect_file;
  std::string inspect_config;
  bool inspect_json = false;
  inspect_cmd->add_option("FILE", inspect_file, "plugin shared object (.so)")->required();
  inspect_cmd->add_option("--config", inspect_config,
                          "host configuration to check against (default: the plugin's own directory, no config)");
  inspect_cmd->add_flag("--json", inspect_json, "print JSON");

  auto* migrate_cmd = cli.add_subcommand("migrate", "plugin database migrations");
  migrate_cmd->require_subcommand(1);
  auto* status_cmd = migrate_cmd->add_subcommand(
      "status",
      "show every storage plugin's migrations (applied, pending, changed, unknown); exit 1 if any is changed or "
      "unknown. Read-only: safe while the host runs");
  std::string status_config;
  bool status_json = false;
  status_cmd->add_option("--config", status_config, "host configuration file (TOML), the one given to keel serve")
      ->required();
  status_cmd->add_flag("--json", status_json, "print JSON");

  auto* backup_cmd = cli.add_subcommand(
      "backup", "copy every storage plugin's database into a directory (online: safe while the host runs and writes)");
  std::string backup_config;
  std::string backup_out;
  bool backup_force = false;
  backup_cmd->add_option("--config", backup_config, "host configuration file (TOML), the one given to keel serve")
      ->required();
  backup_cmd->add_option("--out", backup_out,
                         "directory for the copies, <plugin>.db (SQLite) or <plugin>.pgdump (PostgreSQL) each "
                         "(created if missing)")
      ->required();
  backup_cmd->add_flag("--force", backup_force, "replace copies already in --out");
  storage::BackupTools backup_tools;
  backup_cmd->add_option("--pg-dump", backup_tools.pg_dump,
                         "pg_dump program for plugins on PostgreSQL (default: pg_dump in PATH; its major version must "
                         "be at least the server's)");

  auto* new_cmd = cli.add_subcommand("new", "start something new");
  new_cmd->require_subcommand(1);
  auto* new_plugin_cmd = new_cmd->add_subcommand(
      "plugin", "write a ready out-of-tree plugin project: CMake, manifest.json, the plugin, a unit test, keel.toml");
  ScaffoldOptions scaffold;
  std::string scaffold_lang = "cpp";
  std::string scaffold_dir;
  new_plugin_cmd->add_option("NAME", scaffold.name, "the plugin's name, [a-z][a-z0-9_]*")->required();
  new_plugin_cmd->add_option("--lang", scaffold_lang, "c (C11) or cpp (C++20 with the SDK); default cpp")
      ->check(CLI::IsMember({"c", "cpp"}));
  new_plugin_cmd->add_flag("--storage", scaffold.storage, "give it a database of its own (key-value, transactions)");
  new_plugin_cmd->add_flag("--events", scaffold.events, "publish an event and subscribe to it");
  new_plugin_cmd->add_option("--dir", scaffold_dir, "where to write the project (default: ./NAME; must not exist or be empty)");

  try {
    cli.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return cli.exit(e);
  }
  if (version) {
    std::printf("keel %s\n", KEEL_VERSION);
    return 0;
  }
  if (*serve_cmd) {
    ServeOptions options;
    if (!listen.empty()) options.listen = listen;
    if (!port_file.empty()) options.port_file = port_file;
    if (!admin_address_file.empty()) options.admin_address_file = admin_address_file;
    return serve(serve_config, options);
  }
  if (*check_cmd) return check_config(check_file);
  if (*new_plugin_cmd) {
    scaffold.c = scaffold_lang == "c";
    scaffold.dir = scaffold_dir;
    return new_plugin(scaffold);
  }
  if (*inspect_cmd) return inspect_plugin(inspect_file, inspect_config, inspect_json);
  if (*status_cmd) {
    const int code = migrate_status(status_config, status_json);
    observability::shutdown();
    return code;
  }
  if (*backup_cmd) {
    const int code = backup_databases(backup_config, backup_out, backup_force, backup_tools);
    observability::shutdown();
    return code;
  }
  std::cout << cli.help();
  return 2;
}

}  // namespace keel::host::app
