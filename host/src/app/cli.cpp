#include <cstdio>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>
#include <keel/plugin.h>
#include <nlohmann/json.hpp>

#include "app/app.hpp"
#include "observability/log.hpp"
#include "plugins/loader.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::app {
namespace {

observability::LogOptions log_options(const config::Config& c) {
  return {c.log.level, c.log.format == config::LogFormat::kJson ? observability::LogFormat::kJson
                                                                : observability::LogFormat::kText};
}

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

int check_config(const std::string& config_file) {
  try {
    (void)config::load(config_file, config::current_environment());
    std::printf("%s: ok\n", config_file.c_str());
    return 0;
  } catch (const config::ConfigError& e) {
    for (const auto& d : e.diagnostics()) std::printf("%s\n", d.str().c_str());
    std::printf("%zu error(s)\n", e.diagnostics().size());
    return 1;
  }
}

std::string_view type_name(plugins::ConfigType t) {
  switch (t) {
    case plugins::ConfigType::kString: return "string";
    case plugins::ConfigType::kInteger: return "integer";
    case plugins::ConfigType::kNumber: return "number";
    case plugins::ConfigType::kBoolean: return "boolean";
    case plugins::ConfigType::kArray: return "array";
    case plugins::ConfigType::kObject: return "object";
  }
  return "?";
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
  nlohmann::ordered_json out;
  out["file"] = file;
  out["ok"] = c.error.empty();
  if (!c.error.empty()) out["error"] = c.error;
  if (c.manifest) {
    const auto& m = *c.manifest;
    nlohmann::ordered_json jm;
    jm["name"] = m.name;
    jm["version"] = m.version.str();
    jm["abi"] = std::to_string(m.abi_major) + "." + std::to_string(m.abi_minor);
    jm["host_abi"] = plugins::abi_to_string(KEEL_ABI_VERSION);
    jm["description"] = m.description;
    jm["concurrency"] = m.serialized ? "serialized" : "parallel";
    jm["dependencies"] = nlohmann::json::array();
    for (const auto& d : m.dependencies) jm["dependencies"].push_back({{"name", d.name}, {"version", d.range.text()}});
    jm["routes"] = nlohmann::json::array();
    for (const auto& r : m.routes)
      jm["routes"].push_back({{"method", r.method}, {"path", r.path}, {"summary", r.summary}, {"blocking", r.blocking}});
    jm["events"] = {{"publishes", m.publishes}, {"subscribes", m.subscribes}};
    jm["permissions"] = m.permissions;
    jm["config"] = nlohmann::ordered_json::object();
    for (const auto& k : m.config) {
      nlohmann::ordered_json jk{{"type", type_name(k.type)}, {"required", k.required}, {"description", k.description}};
      if (!k.default_json.empty()) jk["default"] = nlohmann::json::parse(k.default_json, nullptr, false);
      jm["config"][k.name] = std::move(jk);
    }
    out["manifest"] = std::move(jm);
  }
  if (as_json) {
    std::printf("%s\n", out.dump(2, ' ', false, nlohmann::json::error_handler_t::replace).c_str());
  } else {
    std::printf("file: %s\n", file.c_str());
    if (c.manifest) {
      const auto& jm = out["manifest"];
      std::printf("name: %s\nversion: %s\nabi: %s (host %s)\ndescription: %s\nconcurrency: %s\n",
                  jm["name"].get<std::string>().c_str(), jm["version"].get<std::string>().c_str(),
                  jm["abi"].get<std::string>().c_str(), jm["host_abi"].get<std::string>().c_str(),
                  jm["description"].get<std::string>().c_str(), jm["concurrency"].get<std::string>().c_str());
      for (const auto& d : c.manifest->dependencies) std::printf("depends on: %s %s\n", d.name.c_str(), d.range.text().c_str());
      for (const auto& r : c.manifest->routes)
        std::printf("route: %s %s%s%s\n", r.method.c_str(), r.path.c_str(), r.blocking ? " (blocking)" : "",
                    r.summary.empty() ? "" : ("  " + r.summary).c_str());
      for (const auto& t : c.manifest->publishes) std::printf("publishes: %s\n", t.c_str());
      for (const auto& t : c.manifest->subscribes) std::printf("subscribes: %s\n", t.c_str());
      for (const auto& p : c.manifest->permissions) std::printf("permission: %s\n", p.c_str());
      for (const auto& k : c.manifest->config)
        std::printf("config: %s (%s%s)%s%s\n", k.name.c_str(), std::string(type_name(k.type)).c_str(),
                    k.required ? ", required" : "", k.default_json.empty() ? "" : (" default " + k.default_json).c_str(),
                    k.description.empty() ? "" : ("  " + k.description).c_str());
    }
    std::printf("preflight: %s\n", c.error.empty() ? "ok" : ("FAILED: " + c.error).c_str());
  }
  return c.error.empty() ? 0 : 1;
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
    return serve(serve_config, options);
  }
  if (*check_cmd) return check_config(check_file);
  if (*inspect_cmd) return inspect_plugin(inspect_file, inspect_config, inspect_json);
  std::cout << cli.help();
  return 2;
}

}  // namespace keel::host::app
