#include "keel_host.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#ifndef KEEL_BINARY
#error "KEEL_BINARY must name the keel executable"
#endif
#ifndef KEEL_PLUGIN_DIR
#error "KEEL_PLUGIN_DIR must name the build's plugin directory"
#endif
#ifndef KEEL_FIXTURE_DIR
#error "KEEL_FIXTURE_DIR must name the directory of built fixture plugins"
#endif

namespace keel::test {

HostOptions with_plugins(std::vector<std::filesystem::path> plugins, std::string config) {
  HostOptions o;
  o.plugins = std::move(plugins);
  o.config_toml = std::move(config);
  return o;
}

std::filesystem::path fixture(const std::string& name) {
  return std::filesystem::path(KEEL_FIXTURE_DIR) / (name + ".so");
}

std::filesystem::path example_plugin(const std::string& name) {
  return std::filesystem::path(KEEL_PLUGIN_DIR) / (name + ".so");
}

KeelHost::KeelHost(const HostOptions& options) {
  // Paths go through the environment so that options.config_toml may open any section itself.
  const auto config_file = dir_.write("keel.toml", options.config_toml);
  plugin_dir_ = KEEL_PLUGIN_DIR;
  if (!options.plugins.empty()) {
    plugin_dir_ = dir_.path() / "plugins";
    std::filesystem::create_directories(plugin_dir_);
    for (const auto& p : options.plugins) std::filesystem::copy_file(p, plugin_dir_ / p.filename());
  }
  data_dir_ = options.data_dir.empty() ? dir_.path() / "data" : options.data_dir;
  auto env = options.env;
  env.insert(env.begin(), {"KEEL_SERVER_DATA_DIR=" + data_dir_.string(), "KEEL_PLUGINS_DIRECTORY=" + plugin_dir_.string()});
  if (const char* url = std::getenv("KEEL_TEST_POSTGRES_URL"); url != nullptr && *url != '\0') {
    // The ctest "postgres:" variants: plugin data on the shared PostgreSQL server, under a prefix
    // of this data_dir's own, so a host restarted on the same data_dir finds its data again and
    // tests running side by side never meet.
    const auto hash = std::hash<std::string>{}(std::filesystem::absolute(data_dir_).string());
    char prefix[24];
    std::snprintf(prefix, sizeof prefix, "t%016zx", hash);
    storage_env_ = {"KEEL_STORAGE_ENGINE=postgres", std::string("KEEL_STORAGE_POSTGRES_URL=") + url,
                    std::string("KEEL_STORAGE_POSTGRES_PREFIX=") + prefix};
    env.insert(env.begin(), storage_env_.begin(), storage_env_.end());
  }
  const auto port_file = dir_.path() / "port";
  const auto admin_file = dir_.path() / "admin-address";
  std::vector<std::string> args{"serve", "--config", config_file.string(), "--listen", "127.0.0.1:0", "--port-file",
                                port_file.string(), "--admin-address-file", admin_file.string()};
  std::string binary = KEEL_BINARY;
  if (!options.wrapper.empty()) {
    args.insert(args.begin(), binary);
    args.insert(args.begin(), options.wrapper.begin() + 1, options.wrapper.end());
    binary = options.wrapper.front();
  }
  process_ = std::make_unique<Process>(binary, args, dir_.path() / "keel.log", env, options.child_setup);
  port_ = wait_for_port_file(port_file, *process_);
  // Written before the port file, so it is complete now.
  std::ifstream admin(admin_file);
  std::getline(admin, admin_address_);
}

std::uint16_t KeelHost::admin_port() const {
  if (admin_address_.empty() || admin_address_.starts_with("unix:")) return 0;
  return static_cast<std::uint16_t>(std::stoul(admin_address_.substr(admin_address_.rfind(':') + 1)));
}

KeelHost::~KeelHost() {
  if (!stop()) process_->signal(SIGKILL);
}

std::optional<int> KeelHost::kill_at_random(std::chrono::milliseconds lo, std::chrono::milliseconds hi) {
  std::mt19937 rng(std::random_device{}());
  const auto span = static_cast<std::uint32_t>(std::max<std::int64_t>(hi.count() - lo.count(), 1));
  std::this_thread::sleep_for(lo + std::chrono::milliseconds(rng() % span));
  process_->signal(SIGKILL);
  return process_->wait(std::chrono::seconds(10));
}

std::optional<int> KeelHost::stop(std::chrono::milliseconds timeout) {
  process_->signal(SIGTERM);
  return process_->wait(timeout);
}

}  // namespace keel::test
