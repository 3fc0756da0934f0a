// Pre-flight: everything that can be known from the files and the config, with no plugin code.
#include "plugins/preflight.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <map>

#include <sys/stat.h>

#include "http/router.hpp"
#include "observability/log.hpp"
#include "plugins/loader.hpp"
#include "package/elf_reader.hpp"
#include "package/sha256.hpp"

namespace keel::host::plugins {
namespace fs = std::filesystem;
using package::apply_config_schema;
using package::ConfigIssue;
using package::ElfError;
using package::Manifest;
using package::ManifestError;
using package::parse_manifest;
using package::manifest_text_from_section;
using package::read_elf_section_from_file;
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

std::string mount_of(const Manifest& m, const config::Config& cfg) {
  const auto it = cfg.plugin_sections.find(m.name);
  if (it != cfg.plugin_sections.end() && !it->second.mount.empty()) return it->second.mount;
  return "/api/" + m.name;
}

Candidate read_candidate(const fs::path& file, const config::Config& cfg) {
  Candidate c;
  c.file = file;
  if (auto perm = check_permissions(file); !perm.empty()) {
    c.error = perm;
    return c;
  }
  auto section = read_elf_section_from_file(file, KEEL_MANIFEST_SECTION);
  if (auto* err = std::get_if<ElfError>(&section)) {
    c.error = err->message;
    return c;
  }
  const auto bytes = std::get<std::string>(std::move(section));
  auto text_or_error = manifest_text_from_section(bytes);
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
              std::to_string(manifest.abi_minor) + ", host implements ABI " + abi_to_string(KEEL_ABI_VERSION);
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

namespace {

// A candidate nothing has refused (yet).
bool ok(const Candidate& c) { return c.error.empty() && c.manifest.has_value(); }

// Topics named after a plugin ("orders.placed") belong to it: no other plugin may declare them,
// so a subscriber can trust the name. What runs stays: a newcomer named after a topic a running
// plugin publishes is the one refused.
void check_topic_owners(std::vector<Candidate>& all, const std::map<std::string, std::size_t>& by_name) {
  for (auto& c : all) {
    if (!ok(c)) continue;
    for (const auto& topic : c.manifest->publishes) {
      const auto owner_name = topic.substr(0, topic.find('.'));
      const auto owner = by_name.find(owner_name);
      if (owner_name == c.manifest->name || owner == by_name.end() || !ok(all[owner->second])) continue;
      auto& blamed = c.running && !all[owner->second].running ? all[owner->second] : c;
      blamed.error = "plugin '" + c.manifest->name + "' publishes '" + topic + "', a topic of plugin '" + owner_name +
                     "' (a topic whose first segment is a plugin's name belongs to that plugin)";
      break;
    }
  }
}

}  // namespace

// Cross-file checks over the candidates still in play: names, dependencies, cycles, config,
// routes. Marks the losers with an error; never throws.
void check_together(std::vector<Candidate>& all, const config::Config& cfg) {
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < all.size(); ++i) {
    if (!all[i].manifest) continue;
    auto [it, inserted] = by_name.emplace(all[i].manifest->name, i);
    if (!inserted && all[i].error.empty())
      all[i].error = "duplicate plugin name '" + all[i].manifest->name + "': already provided by " +
                     all[it->second].file.filename().string();
  }
  for (auto& c : all) {
    if (!ok(c) || c.running) continue;  // what runs now keeps the config it was started with
    const auto sec = cfg.plugin_sections.find(c.manifest->name);
    auto applied = apply_config_schema(*c.manifest, sec == cfg.plugin_sections.end() ? "{}" : sec->second.settings_json);
    if (auto* issues = std::get_if<std::vector<ConfigIssue>>(&applied)) {
      std::string msg = c.incoming ? "invalid config for the new version:" : "invalid config:";
      for (const auto& i : *issues) {
        std::string where;
        if (sec != cfg.plugin_sections.end()) {
          const auto pos = sec->second.key_positions.find(i.key);
          where = (pos != sec->second.key_positions.end() ? pos->second : sec->second.where).str() + ": ";
        }
        msg += " " + where + "[plugin." + c.manifest->name + "] " + i.key + ": " + i.message + ";";
      }
      msg.pop_back();
      c.error = msg;
      c.config_error = true;
    }
  }
  check_topic_owners(all, by_name);
  // Dependencies: repeat until stable, so a failure propagates to every dependent.
  auto check_dependencies = [&] {
    for (bool changed = true; changed;) {
      changed = false;
      for (auto& c : all) {
        if (!ok(c)) continue;
        for (const auto& dep : c.manifest->dependencies) {
          const auto it = by_name.find(dep.name);
          if (c.running) {  // what runs stays; an incoming version it does not accept is refused
            if (it == by_name.end()) continue;
            auto& target = all[it->second];
            if (ok(target) && !target.running && !dep.range.contains(target.manifest->version)) {
              target.error = "version " + target.manifest->version.str() + " is outside the range '" +
                             dep.range.text() + "' that plugin '" + c.manifest->name + "' requires";
              changed = true;
            }
            continue;
          }
          if (it == by_name.end()) {
            // In a cluster another host may serve it: calls to it go there (docs/cluster.md).
            if (!cfg.cluster.enabled())
              c.error = "missing dependency '" + dep.name + "' (" + dep.range.text() + "): no plugin with that name";
          } else if (const auto& target = all[it->second]; !ok(target)) {
            c.error = "dependency '" + dep.name + "' cannot start: " + target.error;
          } else if (!dep.range.contains(target.manifest->version)) {
            c.error = "dependency '" + dep.name + "' version " + target.manifest->version.str() +
                      " is outside the required range '" + dep.range.text() + "'";
          }
          if (!c.error.empty()) {
            changed = true;
            break;
          }
        }
      }
    }
  };
  check_dependencies();
  // Cycles: depth-first search over the remaining graph.
  std::map<std::string, int> mark;  // 0 new, 1 on stack, 2 done
  std::vector<std::string> stack;
  std::function<void(const std::string&)> visit = [&](const std::string& name) {
    auto& m = mark[name];
    if (m == 2) return;
    if (m == 1) {
      auto start = std::find(stack.begin(), stack.end(), name);
      std::string cycle;
      for (auto it = start; it != stack.end(); ++it) cycle += *it + " -> ";
      cycle += name;
      for (auto it = start; it != stack.end(); ++it)
        if (auto& member = all[by_name[*it]]; !member.running) member.error = "dependency cycle: " + cycle;
      return;
    }
    m = 1;
    stack.push_back(name);
    for (const auto& dep : all[by_name[name]].manifest->dependencies)
      if (by_name.count(dep.name) && ok(all[by_name[dep.name]])) visit(dep.name);
    stack.pop_back();
    m = 2;
  };
  for (auto& c : all)
    if (ok(c)) visit(c.manifest->name);
  // A plugin depending on a cycle member fails too.
  check_dependencies();
  // Route conflicts, in file order: a later plugin that collides with an earlier one fails.
  std::vector<http::RouteSpec> accepted;
  for (auto& c : all) {
    if (!ok(c)) continue;
    auto trial = accepted;
    const auto mount = mount_of(*c.manifest, cfg);
    for (std::uint32_t r = 0; r < c.manifest->routes.size(); ++r) {
      const auto& decl = c.manifest->routes[r];
      trial.push_back({decl.method, mount + decl.path, c.manifest->name, {0, r}});
    }
    auto built = http::RouteTable::build(trial);
    if (auto* conflicts = std::get_if<std::vector<http::RouteConflict>>(&built)) {
      std::string msg;
      for (const auto& k : *conflicts) msg += (msg.empty() ? "" : "; ") + k.message;
      c.error = msg;
    } else {
      accepted = std::move(trial);
    }
  }
}

std::vector<fs::path> list_plugin_files(const fs::path& directory) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(directory, ec))
    if (entry.path().extension() == ".so") files.push_back(entry.path());
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
