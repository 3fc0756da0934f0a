#include "app/plugin_upload.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "app/plugin_inspect.hpp"
#include "observability/log.hpp"
#include "plugins/plugin_host.hpp"

namespace keel::host::app {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;

constexpr std::string_view kStagedPrefix = ".upload-";

// Writes `bytes` to `path` (created 0644, never over an existing file or through a link) and
// syncs it; the reason on failure.
std::string write_new_file(const fs::path& path, std::string_view bytes) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return "cannot create " + path.string() + ": " + std::strerror(errno);
  std::size_t done = 0;
  while (done < bytes.size()) {
    const auto n = ::write(fd, bytes.data() + done, bytes.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const std::string reason = n < 0 ? std::strerror(errno) : "no space written";
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

// Staged files a previous keel process left behind (it ended during an upload): theirs is
// another process id.
void sweep_stale_uploads(const fs::path& dir) {
  const auto mine = std::string(kStagedPrefix) + std::to_string(::getpid()) + "-";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const auto name = entry.path().filename().string();
    if (name.starts_with(kStagedPrefix) && name.ends_with(".tmp") && !name.starts_with(mine)) fs::remove(entry.path(), ec);
  }
}

// Removes the staged file on scope exit (deploy() moved it when it installed it).
struct RemoveOnExit {
  fs::path path;
  ~RemoveOnExit() {
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
    if (file_bytes.empty()) return refuse(400, "bad_request", "send the plugin file (.so) as the request body");
    const auto cfg = plugins.config();
    if (cfg.admin.max_upload_bytes == 0)
      return refuse(403, "forbidden", "plugin uploads are off on this host: [admin] max_upload_bytes = 0");
    if (file_bytes.size() > cfg.admin.max_upload_bytes)
      return refuse(413, "payload_too_large", "the file is larger than [admin] max_upload_bytes (" +
                                                  std::to_string(cfg.admin.max_upload_bytes) + " bytes)");
    const fs::path dir = cfg.plugins.directory;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return refuse(500, "internal", "the plugin directory " + dir.string() + " does not exist");
    sweep_stale_uploads(dir);

    // Staged in the directory itself (one rename installs it, on the same file system) under a
    // name no directory scan reads: scans take *.so only.
    static std::atomic<unsigned> counter{0};
    const auto staged = dir / (std::string(kStagedPrefix) + std::to_string(::getpid()) + "-" +
                               std::to_string(counter.fetch_add(1) + 1) + ".tmp");
    RemoveOnExit cleanup{staged};
    if (auto error = write_new_file(staged, file_bytes); !error.empty()) return refuse(500, "internal", error);

    const auto d = plugins.deploy(staged, dry_run);
    auto report = inspect_json(d.candidate, d.target.empty() ? std::string("(upload)") : d.target.string(), cfg);
    if (!d.target.empty()) {
      Json replaces = nullptr;
      if (d.replaces)
        replaces = {{"name", d.replaces->name}, {"version", d.replaces->version}, {"generation", d.replaces->generation},
                    {"state", d.replaces->state}, {"sha256", d.replaces->sha256}};
      report["install"] = {{"file", d.target.string()}, {"replaces", std::move(replaces)}};
    }
    const auto status = d.result.status;
    if (status >= 400 && !d.installed) {
      // Refused before anything was installed: the file alone, or as a member of the running set.
      report["ok"] = false;
      report["error"] = d.result.message;
      log->warn("admin upload refused bytes={} status={} reason=\"{}\"", file_bytes.size(), status, d.result.message);
      const bool preflight = status == 409 || status == 422;
      return refuse(status, preflight ? "preflight_failed" : http::error_code_for(status), d.result.message,
                    std::move(report));
    }
    UploadResult r;
    r.status = status;
    if (status >= 400) r.body["error"] = {{"code", http::error_code_for(status)}, {"message", d.result.message}};
    r.body["dry_run"] = dry_run;
    r.body["preflight"] = std::move(report);
    if (d.installed)
      for (const auto& st : plugins.statuses())
        if (d.candidate.manifest && st.name == d.candidate.manifest->name)
          r.body["plugin"] = {{"name", st.name}, {"version", st.version}, {"generation", st.generation},
                              {"state", plugins::to_string(st.state)}, {"sha256", st.sha256}};
    r.body["message"] = d.result.message;
    log->info("admin upload{} status={} bytes={} sha256={} message=\"{}\"", dry_run ? " (dry run)" : "", status,
              file_bytes.size(), d.candidate.sha256, d.result.message);
    return r;
  } catch (const std::exception& e) {
    log->error("admin upload failed error=\"{}\"", e.what());
    return refuse(500, "internal", std::string("the upload failed: ") + e.what());
  }
}

}  // namespace keel::host::app
