#include "isolation/cgroup.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace keel::host::isolation {
namespace {

namespace fs = std::filesystem;

struct Mount {
  std::string root;         // the part of the hierarchy mounted here ("/" for all of it)
  std::string point;        // where
  std::string type;         // cgroup or cgroup2
  std::vector<std::string> options;  // super options: the v1 controllers, among others
};

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  for (;;) {
    const auto end = s.find(sep, start);
    out.emplace_back(s.substr(start, end == std::string_view::npos ? std::string_view::npos : end - start));
    if (end == std::string_view::npos) return out;
    start = end + 1;
  }
}

bool contains(const std::vector<std::string>& list, std::string_view item) {
  for (const auto& x : list)
    if (x == item) return true;
  return false;
}

/// The cgroup mounts of this process (proc(5), /proc/self/mountinfo).
std::vector<Mount> cgroup_mounts() {
  std::vector<Mount> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream head(line.substr(0, dash));
    std::istringstream tail(line.substr(dash + 3));
    std::string id, parent, dev, root, point, type, source, super;
    head >> id >> parent >> dev >> root >> point;
    tail >> type >> source >> super;
    if (type != "cgroup" && type != "cgroup2") continue;
    out.push_back({root, point, type, split(super, ',')});
  }
  return out;
}

struct Membership {
  std::string controllers;  // "" for the unified hierarchy
  std::string path;
};

/// This process's cgroup in each hierarchy (/proc/self/cgroup: "id:controllers:path").
std::vector<Membership> memberships() {
  std::vector<Membership> out;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':');
    const auto b = a == std::string::npos ? a : line.find(':', a + 1);
    if (b == std::string::npos) continue;
    out.push_back({line.substr(a + 1, b - a - 1), line.substr(b + 1)});
  }
  return out;
}

std::string directory_of(const Mount& m, const std::string& path) { return cgroup_directory(m.root, m.point, path); }

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::string text;
  std::getline(in, text);
  return text;
}

void write_file(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("cannot open " + path + ": " + std::strerror(errno));
  const auto n = ::write(fd, text.data(), text.size());
  const int e = errno;
  ::close(fd);
  if (n != static_cast<ssize_t>(text.size()))
    throw std::runtime_error("writing \"" + text + "\" to " + path + " failed: " + std::strerror(e));
}

/// Removes groups of host processes that are gone ("keel-<pid>-..."), which a host killed with
/// SIGKILL leaves behind. Only empty ones go (rmdir refuses the others).
void sweep(const std::string& parent) {
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(parent, ec)) {
    const auto name = entry.path().filename().string();
    if (name.rfind("keel-", 0) != 0) continue;
    const auto pid = std::atol(name.c_str() + 5);
    if (pid <= 0 || pid == ::getpid() || ::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;
    ::rmdir(entry.path().c_str());
  }
}

std::atomic<std::uint64_t> groups_made{0};

/// Where a group with `controller` can be made: (directory of the host's group, "v1"/"v2"), or
/// throws with why there is none.
std::pair<std::string, int> parent_for(const std::string& controller, const std::vector<Mount>& mounts,
                                       const std::vector<Membership>& groups) {
  std::string v2_problem;
  for (const auto& m : mounts) {
    if (m.type != "cgroup2") continue;
    for (const auto& g : groups) {
      if (!g.controllers.empty()) continue;
      const auto dir = directory_of(m, g.path);
      if (dir.empty()) continue;
      if (!contains(split(read_file(dir + "/cgroup.controllers"), ' '), controller)) {
        v2_problem = "the unified hierarchy does not offer the '" + controller + "' controller at " + dir;
        continue;
      }
      if (contains(split(read_file(dir + "/cgroup.subtree_control"), ' '), controller)) return {dir, 2};
      try {
        write_file(dir + "/cgroup.subtree_control", "+" + controller);
        return {dir, 2};
      } catch (const std::exception& e) {
        v2_problem = std::string(e.what()) +
                     " (cgroup v2 lets only the root group or a group without processes enable controllers"
                     " for its children)";
      }
    }
  }
  for (const auto& m : mounts) {
    if (m.type != "cgroup" || !contains(m.options, controller)) continue;
    for (const auto& g : groups) {
      if (!contains(split(g.controllers, ','), controller)) continue;
      const auto dir = directory_of(m, g.path);
      if (!dir.empty() && ::access(dir.c_str(), W_OK) == 0) return {dir, 1};
      if (!dir.empty()) v2_problem = "the host may not create groups in " + dir + " (cgroup v1 '" + controller + "')";
    }
  }
  throw std::runtime_error(v2_problem.empty() ? "no cgroup hierarchy with the '" + controller + "' controller is mounted"
                                              : v2_problem);
}

}  // namespace

std::unique_ptr<Cgroup> Cgroup::create(const std::string& name, const CgroupLimits& limits) {
  std::unique_ptr<Cgroup> cg(new Cgroup());
  const auto mounts = cgroup_mounts();
  const auto groups = memberships();
  const auto leaf = "keel-" + std::to_string(::getpid()) + "-" + name + "-" + std::to_string(++groups_made);

  // The group made for `controller` (or the one already made in the same place, as with v2).
  auto group_for = [&](const std::string& controller) -> std::pair<std::string, int> {
    const auto [parent, version] = parent_for(controller, mounts, groups);
    const auto dir = parent + "/" + leaf;
    for (const auto& d : cg->dirs_)
      if (d == dir) return {dir, version};
    sweep(parent);
    if (::mkdir(dir.c_str(), 0755) != 0)
      throw std::runtime_error("cannot create the cgroup " + dir + ": " + std::strerror(errno));
    cg->dirs_.push_back(dir);
    const int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
    const int high = fd < 0 ? -1 : ::fcntl(fd, F_DUPFD_CLOEXEC, 10);
    if (fd >= 0) ::close(fd);
    if (high < 0) throw std::runtime_error("cannot open " + dir + "/cgroup.procs: " + std::strerror(errno));
    cg->procs_.push_back(high);
    return {dir, version};
  };

  if (limits.cpu_percent != 0) {
    constexpr std::uint64_t kPeriodUs = 100000;
    const auto quota = std::to_string(std::uint64_t{limits.cpu_percent} * kPeriodUs / 100);
    const auto [dir, version] = group_for("cpu");
    if (version == 2) {
      write_file(dir + "/cpu.max", quota + " " + std::to_string(kPeriodUs));
      cg->applied_.push_back("cpu_percent=" + std::to_string(limits.cpu_percent) + " (cgroup v2 cpu.max \"" + quota + " " +
                             std::to_string(kPeriodUs) + "\", " + dir + ")");
    } else {
      write_file(dir + "/cpu.cfs_period_us", std::to_string(kPeriodUs));
      write_file(dir + "/cpu.cfs_quota_us", quota);
      cg->applied_.push_back("cpu_percent=" + std::to_string(limits.cpu_percent) + " (cgroup v1 cpu.cfs_quota_us=" + quota +
                             " per " + std::to_string(kPeriodUs) + ", " + dir + ")");
    }
  }
  if (limits.memory_bytes != 0) {
    const auto bytes = std::to_string(limits.memory_bytes);
    const auto [dir, version] = group_for("memory");
    if (version == 2) {
      write_file(dir + "/memory.max", bytes);
      if (fs::exists(dir + "/memory.swap.max")) write_file(dir + "/memory.swap.max", "0");
      if (fs::exists(dir + "/memory.oom.group")) write_file(dir + "/memory.oom.group", "1");
      cg->applied_.push_back("cgroup_memory_bytes=" + bytes + " (cgroup v2 memory.max, no swap, " + dir + ")");
    } else {
      write_file(dir + "/memory.limit_in_bytes", bytes);
      if (fs::exists(dir + "/memory.memsw.limit_in_bytes")) write_file(dir + "/memory.memsw.limit_in_bytes", bytes);
      cg->applied_.push_back("cgroup_memory_bytes=" + bytes + " (cgroup v1 memory.limit_in_bytes, " + dir + ")");
    }
  }
  return cg;
}

Cgroup::~Cgroup() {
  for (const int fd : procs_) ::close(fd);
  // The processes were reaped, but the kernel may take a moment to empty the group.
  for (auto it = dirs_.rbegin(); it != dirs_.rend(); ++it)
    for (int i = 0; i < 100 && ::rmdir(it->c_str()) != 0 && errno == EBUSY; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
}

std::string cgroup_directory(std::string_view mount_root, std::string_view mount_point, std::string_view path) {
  std::string dir(mount_point);
  if (mount_root == "/") return path == "/" ? dir : dir.append(path);
  if (path == mount_root) return dir;
  if (path.size() > mount_root.size() && path.starts_with(mount_root) && path[mount_root.size()] == '/')
    return dir.append(path.substr(mount_root.size()));
  return {};
}

bool join_cgroups(const std::vector<int>& fds) noexcept {
  char digits[24];
  char* end = digits + sizeof digits;
  char* p = end;
  for (auto pid = static_cast<unsigned long>(::getpid()); p == end || pid != 0; pid /= 10) *--p = static_cast<char>('0' + pid % 10);
  for (const int fd : fds)
    if (::write(fd, p, static_cast<std::size_t>(end - p)) != end - p) return false;
  return true;
}

}  // namespace keel::host::isolation
