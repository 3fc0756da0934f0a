// Pre-flight of plugin files: what can be known from each file and the config, with no plugin
// code; the checks of a set together are in preflight_set.cpp.
#include "plugins/preflight.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>

#include <sys/stat.h>

#include "abi/plugin_table.hpp"
#include "observability/log.hpp"
#include "plugins/loader.hpp"
#include "package/plugin_image.hpp"
#include "package/sha256.hpp"

namespace keel::host::plugins {
namespace fs = std::filesystem;
using package::ImageError;
using package::Manifest;
using package::ManifestError;
using package::parse_manifest;
using package::manifest_text_from_section;
using package::read_manifest_section_from_file;
using package::sha256_file_hex;
namespace {

std::string octal(unsigned mode) {
  char text[8];
  std::snprintf(text, sizeof text, "%04o", mode & 07777);
  return text;
}

// Only the host's user (or root) may be able to change code the host will run: the file (the
// target, when it is a symlink) must be theirs and writable by no one else, and neither the
// directory it is listed in nor the one it really lives in may let others replace it.
std::string check_permissions(const fs::path& file) {
  struct stat st{};
  if (::stat(file.c_str(), &st) != 0) return "cannot stat: " + std::string(std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return "not a regular file";
  if ((st.st_mode & S_IWOTH) != 0)
    return "refused: the file is writable by others (mode " + octal(st.st_mode) + "); run chmod o-w on it";
  if ((st.st_mode & S_IWGRP) != 0)
    return "refused: the file is writable by its group (gid " + std::to_string(st.st_gid) + ", mode " +
           octal(st.st_mode) + "); run chmod g-w on it";
  if (st.st_uid != 0 && st.st_uid != ::geteuid())
    return "refused: the file belongs to uid " + std::to_string(st.st_uid) +
           ", neither root nor the host's user; chown it to one of them";
  std::error_code ec;
  const auto real = fs::canonical(file, ec);
  for (const auto& dir : {file.parent_path(), ec ? file.parent_path() : real.parent_path()}) {
    struct stat d{};
    if (::stat(dir.c_str(), &d) == 0 && (d.st_mode & S_IWOTH) != 0 && (d.st_mode & S_ISVTX) == 0)
      return "refused: the directory " + dir.string() + " holding the plugin is writable by others; run chmod o-w on it";
  }
  return {};
}

}  // namespace

Candidate read_candidate(const fs::path& file, const config::Config& cfg) {
  Candidate c;
  c.file = file;
  if (auto perm = check_permissions(file); !perm.empty()) {
    c.error = perm;
    return c;
  }
  auto section = read_manifest_section_from_file(file);
  if (auto* err = std::get_if<ImageError>(&section)) {
    c.error = err->message;
    return c;
  }
  const auto image = std::get<package::ManifestSection>(std::move(section));
  c.format = image.format;
  auto text_or_error = manifest_text_from_section(image.bytes);
  if (auto* err = std::get_if<ManifestError>(&text_or_error)) {
    c.error = "manifest section: " + err->str();
    return c;
  }
  const auto text = std::get<std::string_view>(text_or_error);
  auto parsed = parse_manifest(text);
  if (auto* errors = std::get_if<std::vector<ManifestError>>(&parsed)) {
    std::string all = "invalid manifest:";
    for (const auto& e : *errors) all += " " + e.str() + ";";
    all.pop_back();
    c.error = all;
    return c;
  }
  auto manifest = std::get<Manifest>(std::move(parsed));
  for (const auto& w : manifest.warnings)
    observability::logger("plugins")->warn("manifest warning file={} {}", file.string(), w.str());
  if (manifest.abi_major != KEEL_ABI_VERSION_MAJOR) {
    c.error = "ABI major mismatch: manifest says ABI " + std::to_string(manifest.abi_major) + "." +
              std::to_string(manifest.abi_minor) + ", host implements ABI " + abi::abi_to_string(KEEL_ABI_VERSION);
    c.manifest = std::move(manifest);
    return c;
  }
  if (image.format != package::kNativeImageFormat) {
    // Readable everywhere (keel plugin inspect), loadable only where it was built for.
    c.error = "a " + std::string(package::describe(image.format)) + ": this host loads " +
              std::string(package::describe(package::kNativeImageFormat)) + " files; build the plugin for this platform";
    c.manifest = std::move(manifest);
    return c;
  }
  const auto section_it = cfg.plugin_sections.find(manifest.name);
  const bool pinned = section_it != cfg.plugin_sections.end() && !section_it->second.sha256.empty();
  if (!pinned && cfg.plugins.require_sha256) {
    c.sha256 = sha256_file_hex(file).value_or("");
    c.error = "not pinned: [plugins] require_sha256 = true and [plugin." + manifest.name +
              "] has no sha256; this file's is " + c.sha256;
    c.manifest = std::move(manifest);
    return c;
  }
  if (pinned) {
    const auto sum = sha256_file_hex(file);
    c.sha256 = sum.value_or("");
    if (!sum || *sum != section_it->second.sha256) {
      c.error = "sha256 mismatch: config [plugin." + manifest.name + "] expects " + section_it->second.sha256 +
                ", file has " + c.sha256;
      c.manifest = std::move(manifest);
      return c;
    }
  }
  if (section_it != cfg.plugin_sections.end() && !section_it->second.enabled) c.error = "disabled in config";
  c.manifest = std::move(manifest);
  return c;
}

std::vector<fs::path> list_plugin_files(const fs::path& directory) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec))
    if (package::is_plugin_file(entry.path())) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  return files;
}

std::vector<Candidate> preflight(const fs::path& directory, const config::Config& cfg) {
  std::vector<Candidate> all;
  for (const auto& f : list_plugin_files(directory)) all.push_back(read_candidate(f, cfg));
  check_together(all, cfg);
  return all;
}

Candidate preflight_file(const fs::path& file, const config::Config& cfg) {
  std::vector<Candidate> all;
  const auto target = fs::weakly_canonical(file);
  for (const auto& f : list_plugin_files(cfg.plugins.directory))
    if (fs::weakly_canonical(f) != target) all.push_back(read_candidate(f, cfg));
  all.push_back(read_candidate(file, cfg));
  check_together(all, cfg);
  return all.back();
}

}  // namespace keel::host::plugins
