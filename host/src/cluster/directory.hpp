#pragma once
// cluster::Directory: what this host knows of the other hosts of its cluster — which plugins
// each serves (name, version, health, routes) and when it last said so (docs/cluster.md
// "Announcements"). Hosts announce every [cluster] announce_interval_ms; a host silent for
// kMissedAnnouncements of its own intervals is forgotten, and one that says goodbye at once.
// Thread-safe.

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::host::cluster {

using Clock = std::chrono::steady_clock;

/// A host is forgotten after this many of its announcement intervals without one.
inline constexpr int kMissedAnnouncements = 3;
/// Hosts one host keeps track of; announcements from more are ignored (and counted refused).
inline constexpr std::size_t kMaxNodes = 1024;

struct AnnouncedPlugin {
  std::string name;
  std::string version;
  std::string health;  ///< "pass", "warn", "fail" or "" (not reported)
  std::string mount;   ///< where its routes live on that host, e.g. "/api/catalog"
  std::vector<std::pair<std::string, std::string>> routes;  ///< method, full path template
  std::vector<std::string> calls;  ///< the plugins it may call (dependencies and call: permissions)
};

/// A character of a node name or a plugin name as NATS subject tokens carry them: [A-Za-z0-9_-].
[[nodiscard]] constexpr bool subject_token_char(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}
/// The longest node name (a config check says the same for [cluster] node).
inline constexpr std::size_t kMaxNodeName = 64;

/// True when `path` is `mount` or below it ("/api/x" holds "/api/x" and "/api/x/y", not "/api/xy").
[[nodiscard]] bool under_mount(std::string_view path, std::string_view mount) noexcept;

struct Announcement {
  std::string node;
  std::chrono::milliseconds interval{1000};
  bool leaving = false;  ///< the host is stopping: forget it now
  std::string version;   ///< the host's Keel version
  std::vector<AnnouncedPlugin> plugins;
};

/// The announcement as JSON: {"v":1,"node":..,"keel":..,"interval_ms":..,"leaving":..,"plugins":[..]}.
[[nodiscard]] std::string to_json(const Announcement& a);
/// Parses one; false with `error` saying why (a field missing, a name out of grammar).
[[nodiscard]] bool parse_announcement(std::string_view json, Announcement& out, std::string& error);

struct NodeView {
  Announcement last;
  Clock::time_point last_seen;
  std::uint64_t announcements = 0;
};

class Directory {
 public:
  explicit Directory(std::string self) : self_(std::move(self)) {}

  /// Takes an announcement heard at `now` (this host's own is ignored). Returns what changed for
  /// the log: "joined", "left", "updated" (its plugins changed), "" (a refresh), or "full" (a new
  /// host beyond kMaxNodes: ignored).
  std::string apply(Announcement a, Clock::time_point now);
  /// Forgets the hosts silent for kMissedAnnouncements of their intervals; returns their names.
  std::vector<std::string> expire(Clock::time_point now);
  /// The version of `plugin` each host serving it announced, in host order (may repeat; empty:
  /// no other host serves it as far as this one knows). A host is known until expire() forgets
  /// it: while the link is down, nothing is forgotten.
  [[nodiscard]] std::vector<std::string> versions(std::string_view plugin) const;
  /// The plugin another host serves under whose mount `path` lies (the longest mount), or "".
  [[nodiscard]] std::string plugin_at(std::string_view path) const;
  /// Whether host `node` announced plugin `caller` as one that may call `target`.
  [[nodiscard]] bool may_call(std::string_view node, std::string_view caller, std::string_view target) const;
  /// Every known host counts as heard from at `now` (the link came back after a gap).
  void touch_all(Clock::time_point now);
  /// Every other host known.
  [[nodiscard]] std::vector<NodeView> nodes() const;
  [[nodiscard]] std::size_t size() const;
  /// Whether `node` is a host this one knows (for labels: an unknown name is not kept).
  [[nodiscard]] bool knows(std::string_view node) const;

 private:
  [[nodiscard]] static bool live(const NodeView& n, Clock::time_point now) noexcept {
    return now - n.last_seen <= n.last.interval * kMissedAnnouncements;
  }
  const std::string self_;
  mutable std::mutex mutex_;
  std::vector<NodeView> nodes_;  // a handful of hosts: a vector is the fastest map
};

}  // namespace keel::host::cluster
