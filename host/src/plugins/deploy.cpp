// PluginHost::deploy: a plugin file uploaded through the admin API (app/plugin_upload.cpp), checked
// and installed as one step under the admin lock (plugin_host.hpp).
#include <unistd.h>
#include <fcntl.h>

#include <filesystem>
#include <string>

#include "package/plugin_image.hpp"
#include "package/sha256.hpp"
#include "plugins/host_impl.hpp"

namespace keel::host::plugins {

namespace {

// A rename into the directory is durable once the directory itself is synced.
void sync_directory_entry(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// The staged file's temporary name in a message, as the file it would become.
std::string as_target(std::string why, const fs::path& staged, const fs::path& target) {
  const auto from = staged.string();
  for (auto at = why.find(from); at != std::string::npos; at = why.find(from, at))
    why.replace(at, from.size(), target.string());
  return why;
}

}  // namespace

PluginHost::DeployResult PluginHost::deploy(const fs::path& staged, bool dry_run) {
  auto& s = *impl_;
  DeployResult out;
  const auto answer = [&out](unsigned status, std::string message) {
    out.result = {status, std::move(message)};
    return out;
  };
  std::lock_guard admin(s.admin_mutex);
  if (s.stopped) return answer(503, "the host is shutting down");
  out.candidate = read_candidate(staged, s.cfg);
  if (out.candidate.sha256.empty()) out.candidate.sha256 = package::sha256_file_hex(staged).value_or("");
  if (!out.candidate.error.empty() || !out.candidate.manifest)
    return answer(422, out.candidate.error.empty() ? "no manifest" : out.candidate.error);
  const auto& name = out.candidate.manifest->name;
  const auto gens = s.current_generations();
  const auto slot = find_named(gens, name);
  const std::shared_ptr<Plugin> old = slot == gens.end() ? nullptr : *slot;
  const fs::path dir = s.cfg.plugins.directory;
  out.target = old ? old->file : dir / (name + std::string(package::kNativePluginSuffix));
  if (old)
    out.replaces = DeployResult::Replaced{old->name, old->manifest.version.str(), std::string(to_string(old->state)),
                                          old->sha256, old->generation};
  if (old && old->state == PluginState::kDisabled)
    return answer(409, "plugin '" + name + "' is disabled: enable it (or change its config) first, then deploy");
  std::error_code ec;
  if (!old && fs::exists(out.target, ec)) {
    // A file of that name that no plugin of this name runs from: another plugin's, or a refused one's.
    const auto there = read_candidate(out.target, s.cfg);
    if (there.manifest && there.manifest->name != name)
      return answer(409, out.target.string() + " holds plugin '" + there.manifest->name +
                                    "': rename one of the files, or give the plugin its own");
  }
  auto checked = s.preflight_next(old, staged, gens);
  if (const auto* no = std::get_if<Impl::Refusal>(&checked))
    return answer(no->status, as_target(no->why, staged, out.target));
  if (dry_run) return answer(200, "pre-flight passed; nothing installed (dry run)");

  // The previous file stays beside it until the plugin runs from the new one.
  const auto previous = dir / ("." + out.target.filename().string() + ".previous");
  fs::remove(previous, ec);
  const bool had_file = fs::is_regular_file(fs::symlink_status(out.target, ec));
  if (had_file) {
    fs::create_hard_link(out.target, previous, ec);
    if (ec) return answer(500, "cannot keep the previous " + out.target.string() + ": " + ec.message());
  }
  fs::rename(staged, out.target, ec);
  if (ec) {
    fs::remove(previous, ec);
    return answer(500, "cannot install " + out.target.string() + ": " + ec.message());
  }
  sync_directory_entry(dir);
  out.installed = true;
  s.log->info("plugin file deployed name={} file={} sha256={}", name, out.target.string(), out.candidate.sha256);
  out.result = s.install(old, out.target);
  if (out.result.status == 200) {
    fs::remove(previous, ec);
    if (!old) out.result.status = 201;
    return out;
  }
  // Refused: what ran before still runs (or nothing did); the disk says the same again.
  if (had_file) fs::rename(previous, out.target, ec);
  else fs::remove(out.target, ec);
  if (ec) {
    s.log->error("plugin deploy refused name={} and the previous file could not be put back: {} ({}); it is {}", name,
                 out.target.string(), ec.message(), had_file ? previous.string() : "gone");
    out.result.message += "; the previous file could not be put back (" + ec.message() + ")";
  } else {
    s.log->warn("plugin deploy refused name={}: the previous file is back in place reason=\"{}\"", name,
                out.result.message);
  }
  sync_directory_entry(dir);
  return out;
}

}  // namespace keel::host::plugins
