#include "cluster/directory.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "package/semver.hpp"

namespace keel::host::cluster {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kMaxPlugins = 4096;
constexpr std::size_t kMaxRoutes = 4096;

bool subject_token(std::string_view s) {
  return !s.empty() && s.size() <= kMaxNodeName && std::all_of(s.begin(), s.end(), subject_token_char);
}

std::string text(const Json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_string() ? it->get<std::string>() : std::string{};
}

bool same_plugins(const Announcement& a, const Announcement& b) {
  if (a.plugins.size() != b.plugins.size()) return false;
  for (std::size_t i = 0; i < a.plugins.size(); ++i) {
    const auto &x = a.plugins[i], &y = b.plugins[i];
    if (x.name != y.name || x.version != y.version || x.health != y.health || x.mount != y.mount ||
        x.routes != y.routes || x.calls != y.calls)
      return false;
  }
  return true;
}

// A mount as the host's config allows it: "/" then segments, no trailing slash.
bool valid_mount(std::string_view m) {
  return m.size() > 1 && m.size() <= 256 && m.front() == '/' && m.back() != '/' &&
         m.find("//") == std::string_view::npos && m.find_first_of("?#%\\ ") == std::string_view::npos;
}

bool parse_fields(std::string_view json, Announcement& out, std::string& error);

}  // namespace

bool under_mount(std::string_view path, std::string_view mount) noexcept {
  return path.starts_with(mount) && (path.size() == mount.size() || path[mount.size()] == '/');
}

std::string to_json(const Announcement& a) {
  Json plugins = Json::array();
  for (const auto& p : a.plugins) {
    Json routes = Json::array();
    for (const auto& [method, path] : p.routes) routes.push_back({{"method", method}, {"path", path}});
    plugins.push_back({{"name", p.name},
                       {"version", p.version},
                       {"health", p.health},
                       {"mount", p.mount},
                       {"routes", std::move(routes)},
                       {"calls", p.calls}});
  }
  return Json{{"v", 1},
              {"node", a.node},
              {"keel", a.version},
              {"interval_ms", a.interval.count()},
              {"leaving", a.leaving},
              {"plugins", std::move(plugins)}}
      .dump();
}

bool parse_announcement(std::string_view json, Announcement& out, std::string& error) {
  try {
    return parse_fields(json, out, error);
  } catch (const Json::exception& e) {  // a field of the wrong type
    error = std::string("a field of the wrong type: ") + e.what();
    return false;
  }
}

namespace {

bool parse_fields(std::string_view json, Announcement& out, std::string& error) {
  const auto j = Json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    error = "not a JSON object";
    return false;
  }
  if (j.value("v", 0) != 1) {
    error = "unknown announcement version (expected \"v\": 1)";
    return false;
  }
  out = {};
  out.node = text(j, "node");
  if (!subject_token(out.node)) {
    error = "\"node\" is missing or not a node name";
    return false;
  }
  out.version = text(j, "keel");
  const auto interval = j.value("interval_ms", std::int64_t{0});
  if (interval < 1 || interval > 600000) {
    error = "\"interval_ms\" is missing or out of 1..600000";
    return false;
  }
  out.interval = std::chrono::milliseconds(interval);
  out.leaving = j.value("leaving", false);
  const auto plugins = j.find("plugins");
  if (plugins == j.end() || !plugins->is_array() || plugins->size() > kMaxPlugins) {
    error = "\"plugins\" is missing or not a list";
    return false;
  }
  for (const auto& p : *plugins) {
    if (!p.is_object()) continue;
    AnnouncedPlugin ap{text(p, "name"), text(p, "version"), text(p, "health"), text(p, "mount"), {}, {}};
    if (!subject_token(ap.name)) {
      error = "a plugin without a valid \"name\"";
      return false;
    }
    if (!valid_mount(ap.mount)) {
      error = "plugin '" + ap.name + "' without a valid \"mount\"";
      return false;
    }
    if (!package::parse_version(ap.version)) {  // semver: it reaches log lines and range checks
      error = "plugin '" + ap.name + "' without a valid \"version\"";
      return false;
    }
    if (const auto routes = p.find("routes"); routes != p.end() && routes->is_array() && routes->size() <= kMaxRoutes)
      for (const auto& r : *routes)
        if (r.is_object()) ap.routes.emplace_back(text(r, "method"), text(r, "path"));
    if (const auto calls = p.find("calls"); calls != p.end() && calls->is_array() && calls->size() <= kMaxPlugins)
      for (const auto& c : *calls)
        if (c.is_string() && subject_token(c.get<std::string>())) ap.calls.push_back(c.get<std::string>());
    out.plugins.push_back(std::move(ap));
  }
  return true;
}

}  // namespace

std::string Directory::apply(Announcement a, Clock::time_point now) {
  if (a.node == self_) return {};
  std::lock_guard lock(mutex_);
  const auto it = std::find_if(nodes_.begin(), nodes_.end(), [&](const NodeView& n) { return n.last.node == a.node; });
  if (a.leaving) {
    if (it == nodes_.end()) return {};
    nodes_.erase(it);
    return "left";
  }
  if (it == nodes_.end()) {
    if (nodes_.size() >= kMaxNodes) return "full";
    nodes_.push_back({std::move(a), now, 1});
    return "joined";
  }
  const bool changed = !same_plugins(it->last, a);
  it->last = std::move(a);
  it->last_seen = now;
  ++it->announcements;
  return changed ? "updated" : std::string{};
}

std::vector<std::string> Directory::expire(Clock::time_point now) {
  std::vector<std::string> gone;
  std::lock_guard lock(mutex_);
  std::erase_if(nodes_, [&](const NodeView& n) {
    if (live(n, now)) return false;
    gone.push_back(n.last.node);
    return true;
  });
  return gone;
}

std::vector<std::string> Directory::versions(std::string_view plugin) const {
  std::vector<std::string> out;
  std::lock_guard lock(mutex_);
  for (const auto& n : nodes_)
    for (const auto& p : n.last.plugins)
      if (p.name == plugin) out.push_back(p.version);
  return out;
}

std::string Directory::plugin_at(std::string_view path) const {
  std::lock_guard lock(mutex_);
  const AnnouncedPlugin* best = nullptr;
  for (const auto& n : nodes_)
    for (const auto& p : n.last.plugins)
      if (under_mount(path, p.mount) && (best == nullptr || p.mount.size() > best->mount.size())) best = &p;
  return best != nullptr ? best->name : std::string{};
}

bool Directory::may_call(std::string_view node, std::string_view caller, std::string_view target) const {
  std::lock_guard lock(mutex_);
  for (const auto& n : nodes_) {
    if (n.last.node != node) continue;
    for (const auto& p : n.last.plugins)
      if (p.name == caller) return std::find(p.calls.begin(), p.calls.end(), target) != p.calls.end();
  }
  return false;
}

void Directory::touch_all(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  for (auto& n : nodes_) n.last_seen = now;
}

std::size_t Directory::size() const {
  std::lock_guard lock(mutex_);
  return nodes_.size();
}

bool Directory::knows(std::string_view node) const {
  std::lock_guard lock(mutex_);
  return std::any_of(nodes_.begin(), nodes_.end(), [&](const NodeView& n) { return n.last.node == node; });
}

std::vector<NodeView> Directory::nodes() const {
  std::lock_guard lock(mutex_);
  return nodes_;
}

}  // namespace keel::host::cluster
