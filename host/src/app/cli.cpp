#include <cstdio>
#include <exception>
#include <iostream>

#include <CLI/CLI.hpp>

#include "app/app.hpp"
#include "observability/log.hpp"

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
  std::cout << cli.help();
  return 2;
}

}  // namespace keel::host::app
