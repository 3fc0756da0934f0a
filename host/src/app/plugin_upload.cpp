#include "app/plugin_upload.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <optional>
#include <vector>

#include "app/plugin_inspect.hpp"
#include "observability/log.hpp"
#include "package/sha256.hpp"
#include "plugins/plugin_host.hpp"
#include "plugins/preflight.hpp"

namespace keel::host::app {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

// Writes `bytes` to `path` (created 0644, never over an existing file) and syncs it; the reason
// on failure.
std::string write_new_file(const fs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return "cannot create " + path.string() + ": " + std::strerror(errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = std::strerror(errno);
      ::close(fd);
      return "cannot write " + path.string() + ": " + reason;
    }
    done += static_cast<std::size_t>(n);
  }
  const bool synced = ::fsync(fd) == 0;
  const std::string reason = synced ? "" : std::strerror(errno);
  ::close(fd);
  return synced ? "" : "cannot sync " + path.string() + ": " + reason;
}

// A rename into the directory is durable once the directory itself is synced.
void sync_directory_entry(const fs::path& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  (void)::fsync(fd);
  ::close(fd);
}

// A name the manifest checker accepted is already a safe file name; checked again here because
// it becomes one.
bool safe_file_stem(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  for (const char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
  return true;
}

// Removes a file on scope exit unless released.
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() {
    if (path.empty()) return;
    std::error_code ec;
    fs::remove(path, ec);
  }
};

UploadResult refuse(unsigned status, std::string_view code, const std::string& message, Json preflight = nullptr) {
  UploadResult r;
  r.status = status;
  r.body["error"] = {{"code", code}, {"message", message}};
  if (!preflight.is_null()) r.body["preflight"] = std::move(preflight);
  return r;
}

}  // namespace

UploadResult upload_plugin(std::string_view file_bytes, bool dry_run, plugins::PluginHost& plugins) {
  auto log = observability::logger("admin");
  try {
    if (file_bytes.empty())
      return refuse(400, "bad_request", "send the plugin file (.so) as the request body");
    const auto cfg = plugins.config();
    const fs::path dir = cfg.plugins.directory;
    std::error_code ec;
    if (!fs::is_directory(dir, ec))
      return refuse(500, "internal", "the plugin directory " + dir.string() + " does not exist");

    // Staged under a name no directory scan reads (*.so only), in the directory itself so the
    // install is one rename on the same file system.
    static std::atomic<unsigned> counter{0};
    const auto staged = dir / (".upload-" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + ".tmp");
    RemoveOnExit cleanup{staged};
    if (auto error = write_new_file(staged, file_bytes); !error.empty()) return refuse(500, "internal", error);

    // Pre-flight alone, then as a member of the directory's set (replacing the file of the
    // plugin with the same name, if there is one).
    auto candidate = plugins::read_candidate(staged, cfg);
    std::optional<plugins::PluginStatus> running;
    fs::path target;
    if (candidate.error.empty() && candidate.manifest) {
      const auto& name = candidate.manifest->name;
      if (!safe_file_stem(name)) return refuse(422, "preflight_failed", "the plugin name '" + name + "' is not a file name");
      for (auto& st : plugins.statuses())
        if (st.name == name && !st.file.empty()) running = std::move(st);
      target = running ? running->file : dir / (name + ".so");
      if (fs::weakly_canonical(target.parent_path(), ec) != fs::weakly_canonical(dir, ec)) target = dir / (name + ".so");
      std::vector<plugins::Candidate> all;
      for (const auto& f : plugins::list_plugin_files(dir))
        if (f.filename() != target.filename()) all.push_back(plugins::read_candidate(f, cfg));
      all.push_back(std::move(candidate));
      plugins::check_together(all, cfg);
      candidate = std::move(all.back());
    }
    if (candidate.sha256.empty()) candidate.sha256 = package::sha256_file_hex(staged).value_or("");
    auto report = inspect_json(candidate, target.empty() ? "(upload)" : target.string());
    if (!target.empty()) {
      Json replaces = nullptr;
      if (running)
        replaces = {{"name", running->name}, {"version", running->version}, {"generation", running->generation},
                    {"state", plugins::to_string(running->state)}, {"sha256", running->sha256}};
      report["install"] = {{"file", target.string()}, {"replaces", std::move(replaces)}};
    }
    if (!candidate.error.empty()) {
      log->warn("admin upload refused by pre-flight bytes={} reason=\"{}\"", file_bytes.size(), candidate.error);
      return refuse(422, "preflight_failed", candidate.error, std::move(report));
    }
    const auto& name = candidate.manifest->name;
    if (dry_run) {
      UploadResult r;
      r.body = {{"dry_run", true}, {"preflight", std::move(report)}};
      return r;
    }

    // Install: the previous file kept aside until the plugin runs from the new one.
    const auto previous = dir / ("." + target.filename().string() + ".previous");
    const bool had_file = fs::exists(target, ec);
    if (had_file) {
      fs::remove(previous, ec);
      fs::create_hard_link(target, previous, ec);
      if (ec) return refuse(500, "internal", "cannot keep the previous " + target.string() + ": " + ec.message());
    }
    fs::rename(staged, target, ec);
    if (ec) return refuse(500, "internal", "cannot install " + target.string() + ": " + ec.message());
    cleanup.path.clear();
    sync_directory_entry(dir);
    log->info("admin upload installed plugin={} file={} sha256={} bytes={}", name, target.string(), candidate.sha256,
              file_bytes.size());

    plugins::PluginHost::AdminResult result;
    const bool reload = running && running->state == plugins::PluginState::kStarted;
    if (reload) {
      result = plugins.reload(name);
    } else {
      plugins.sync_directory();  // starts it (or a failed one again) as a file dropped in would be
      result.message = "started from the uploaded file";
      for (const auto& st : plugins.statuses())
        if (st.name == name && st.state != plugins::PluginState::kStarted)
          result = {500, st.reason.empty() ? "the plugin did not start; see the log" : st.reason};
    }
    if (result.status != 200 && had_file && reload) {
      // Refused: the old generation still serves; its file goes back so a restart runs it too.
      fs::rename(previous, target, ec);
      sync_directory_entry(dir);
      log->warn("admin upload: reload of plugin={} refused; previous file restored reason=\"{}\"", name, result.message);
    } else {
      fs::remove(previous, ec);
    }
    UploadResult r;
    r.status = result.status != 200 ? result.status : running ? 200 : 201;
    if (result.status != 200) r.body["error"] = {{"code", http::error_code_for(result.status)}, {"message", result.message}};
    r.body["dry_run"] = false;
    r.body["preflight"] = std::move(report);
    for (const auto& st : plugins.statuses())
      if (st.name == name)
        r.body["plugin"] = {{"name", st.name}, {"version", st.version}, {"generation", st.generation},
                            {"state", plugins::to_string(st.state)}, {"sha256", st.sha256}};
    r.body["message"] = result.message;
    return r;
  } catch (const std::exception& e) {
    log->error("admin upload failed error=\"{}\"", e.what());
    return refuse(500, "internal", std::string("the upload failed: ") + e.what());
  }
}

}  // namespace keel::host::app
