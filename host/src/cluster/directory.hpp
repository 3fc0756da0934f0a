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

struct AnnouncedPlugin {
  std::string name;
  std::string version;
  std::string health;  ///< "pass", "warn", "fail" or "" (not reported)
  std::vector<std::pair<std::string, std::string>> routes;  ///< method, path template
};

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
  /// the log: "joined", "left", "updated" (its plugins changed) or "" (a refresh).
  std::string apply(Announcement a, Clock::time_point now);
  /// Forgets the hosts silent for kMissedAnnouncements of their intervals; returns their names.
  std::vector<std::string> expire(Clock::time_point now);
  /// Whether another host serves `plugin` as far as this one knows (a host is known until
  /// expire() forgets it: while the link is down, nothing is forgotten).
  [[nodiscard]] bool serves(std::string_view plugin) const;
  /// Every known host counts as heard from at `now` (the link came back after a gap).
  void touch_all(Clock::time_point now);
  /// Every other host known.
  [[nodiscard]] std::vector<NodeView> nodes() const;

 private:
  [[nodiscard]] static bool live(const NodeView& n, Clock::time_point now) noexcept {
    return now - n.last_seen <= n.last.interval * kMissedAnnouncements;
  }
  const std::string self_;
  mutable std::mutex mutex_;
  std::vector<NodeView> nodes_;  // a handful of hosts: a vector is the fastest map
};

}  // namespace keel::host::cluster
