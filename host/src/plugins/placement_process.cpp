// The "process" placement: the plugin in a keel-plugin-runner child process (isolation/,
// docs/isolation.md), called through the runner's proxy table.
#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fcntl.h>
#include <unistd.h>

#include "plugins/host_impl.hpp"

namespace keel::host::plugins {
namespace {

class InRunner final : public Placement {
 public:
  explicit InRunner(std::unique_ptr<isolation::Runner> runner) : runner_(std::move(runner)) {}
  [[nodiscard]] const keel_plugin& table() const noexcept override { return runner_->table(); }
  [[nodiscard]] std::uint32_t abi_version() const noexcept override { return runner_->abi_version(); }
  void attach(keel_host_ctx& ctx) noexcept override { ctx.runner = runner_.get(); }
  void describe(PluginStatus& out) const override {
    const auto r = runner_->status();
    out.runner_pid = r.pid;
    out.runner_state = r.state;
    out.runner_last_crash = r.last_crash;
    out.runner_limits = r.limits;
  }
  void set_log_level(std::int32_t level) override { runner_->set_log_level(level); }
  [[nodiscard]] bool quarantined() const override { return runner_->status().state == "quarantined"; }

 private:
  std::unique_ptr<isolation::Runner> runner_;
};

}  // namespace

// The code copy goes to the runner child (duplicated there), which loads it and checks its table.
std::unique_ptr<Placement> place_in_runner(PluginHost::Impl& host, Plugin& p, platform::CodeCopy code) {
  const auto& cfg = host.cfg;
  isolation::RunnerOptions o;
  o.plugin = p.name;
  o.binary = cfg.plugins.runner;
  if (o.binary.empty()) {
    std::error_code ec;
    o.binary = fs::read_symlink("/proc/self/exe", ec).parent_path() / "keel-plugin-runner";
  }
  o.manifest_json = p.manifest.json;
  // The directories of everything the host reads or writes that a plugin must not: its data, the
  // plugins, the config, the log, the TLS files and the admin token file (absolute: a relative
  // "--config keel.toml" has no parent path of its own).
  o.hidden = {cfg.server.data_dir, cfg.plugins.directory};
  for (const auto& file : {cfg.source, cfg.log.file, cfg.server.tls_cert, cfg.server.tls_key, cfg.admin.token_file}) {
    std::error_code ec;
    if (!file.empty()) o.hidden.push_back(fs::absolute(file, ec).parent_path());
  }
  if (const auto sec = cfg.plugin_sections.find(p.name); sec != cfg.plugin_sections.end()) o.settings = sec->second.runner;
  o.queue_limit = cfg.server.worker_queue;
  o.log_level = static_cast<std::int32_t>(p.log->level());
  o.serialized = p.manifest.serialized;
  // A route that reads storage waits for the host: off the runner's reader thread, as on the pool here.
  for (const auto& route : p.manifest.routes) o.blocking_routes.push_back(route.blocking || route.storage_read);
  o.frame_limits = isolation::FrameLimits::from(cfg.http.max_body_bytes, cfg.events.max_payload_bytes);
  if (!p.runner_counters) p.runner_counters = std::make_shared<isolation::RunnerCounters>();
  // The runner gets a read-only descriptor of the sealed copy (a description of its own: the
  // host's stays as it is).
  const int read_only = ::open(code.path().c_str(), O_RDONLY | O_CLOEXEC);
  if (read_only < 0)
    throw std::runtime_error(std::string("cannot run it in its own process: reopening its code read-only: ") +
                             std::strerror(errno));
  // The runner duplicates the descriptor into the child; this one goes when this function does.
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } const closer{read_only};
  try {
    return std::make_unique<InRunner>(std::make_unique<isolation::Runner>(std::move(o), read_only, host, p.runner_counters));
  } catch (const std::exception& e) {
    throw std::runtime_error(std::string("cannot run it in its own process: ") + e.what());
  }
}

}  // namespace keel::host::plugins
