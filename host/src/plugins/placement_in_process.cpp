// The "in-process" placement: the plugin's code mapped into the host's own process.
#include <atomic>
#include <stdexcept>

#include <unistd.h>

#include "plugins/host_impl.hpp"

namespace keel::host::plugins {
namespace {

class InProcess final : public Placement {
 public:
  InProcess(platform::CodeCopy code, std::unique_ptr<Library> library)
      : code_(std::move(code)), library_(std::move(library)) {}
  [[nodiscard]] const keel_plugin& table() const noexcept override { return library_->table(); }
  [[nodiscard]] std::uint32_t abi_version() const noexcept override { return library_->table().abi_version; }
  [[nodiscard]] bool runs_on_caller_thread() const noexcept override { return true; }

 private:
  platform::CodeCopy code_;  // held only when the code was mapped through its path (declared first: let go last)
  std::unique_ptr<Library> library_;
};

}  // namespace

// The code copy is dlopen()ed through a symlink with a name never used before
// (<data_dir>/.keel-load/<name>.<generation>.<pid>.<n>.so, removed once mapped): the dynamic
// loader recognises an already loaded library by path and by inode, so it never hands back an
// older mapping of a file replaced in place, and no disk space is used.
std::unique_ptr<Placement> place_in_process(PluginHost::Impl& host, Plugin& p, platform::CodeCopy code) {
  static std::atomic<std::uint64_t> loads{0};
  const fs::path fd_path = code.path();
  const auto dir = host.cfg.server.data_dir / ".keel-load";
  const auto link = dir / (p.name + "." + std::to_string(p.generation) + "." + std::to_string(::getpid()) + "." +
                           std::to_string(loads.fetch_add(1)) + ".so");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (!ec) fs::permissions(dir, fs::perms::owner_all, ec);
  if (!ec) fs::create_symlink(fd_path, link, ec);
  // Without the link (data_dir not writable), the fd path itself: unique while the fd stays open,
  // which it then does for as long as this generation exists.
  const fs::path load_path = ec ? fd_path : link;
  std::unique_ptr<Library> library;
  try {
    library = std::make_unique<Library>(load_path, p.manifest.json);
  } catch (const PluginLoadError& e) {
    if (!ec) fs::remove(link, ec);
    throw std::runtime_error(e.reason());
  }
  if (!ec) {
    fs::remove(link, ec);
    code.reset();  // mapped: the memory stays while the mapping does
  }
  return std::make_unique<InProcess>(std::move(code), std::move(library));
}

}  // namespace keel::host::plugins
