#include "config/config.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>
#include <memory>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>

#include <unistd.h>

#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include "common/plugin_keys.hpp"
#include "common/suggest.hpp"
#include "config/config_keys.hpp"

namespace keel::host::config {
using namespace detail;

std::optional<std::string> detail::postgres_prefix_problem(std::string_view prefix) {
  const bool ok = !prefix.empty() && prefix.size() <= 20 && prefix.front() >= 'a' && prefix.front() <= 'z' &&
                  std::all_of(prefix.begin(), prefix.end(),
                              [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); });
  if (ok) return std::nullopt;
  // No '_': "<prefix>_<plugin>" must never read the same for two prefixes (plugin names may hold '_').
  return "expected 1 to 20 lowercase letters or digits, starting with a letter (it starts PostgreSQL role and "
         "schema names)";
}

namespace {

enum class Kind { kString, kInteger, kBool };

struct KeyDef {
  std::string_view name;
  Kind kind;
};

struct SectionDef {
  std::string_view name;
  std::vector<KeyDef> keys;
};

constexpr std::string_view kPluginSection = "plugin";
constexpr std::string_view kEnvPrefix = "KEEL_";
constexpr std::string_view kNoFileLabel = "<config>";

using Value = std::variant<std::int64_t, bool, std::string>;

struct Setting {
  Value value;
  SourcePos where;
};

// Keyed "section.key"; the file fills it first, then the environment overwrites.
using Settings = std::map<std::string, Setting, std::less<>>;

std::string setting_id(std::string_view section, std::string_view key) {
  std::string id{section};
  id += '.';
  id += key;
  return id;
}

std::string in_quotes(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

constexpr char ascii_upper(char c) { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

std::string to_upper(std::string_view s) {
  std::string out{s};
  std::transform(out.begin(), out.end(), out.begin(), ascii_upper);
  return out;
}

std::string to_lower(std::string_view s) {
  std::string out{s};
  std::transform(out.begin(), out.end(), out.begin(), ascii_lower);
  return out;
}

// The sections and their keys' names and types, from visit_keys().
struct KeyCollector {
  std::vector<SectionDef> sections;
  void section(std::string_view name) { sections.push_back(SectionDef{name, {}}); }
  void add(std::string_view key, Kind kind) { sections.back().keys.push_back(KeyDef{key, kind}); }
  void integer(std::string_view key, const auto&, auto&&...) { add(key, Kind::kInteger); }
  void duration(std::string_view key, const auto&, auto&&...) { add(key, Kind::kInteger); }
  void flag(std::string_view key, const auto&) { add(key, Kind::kBool); }
  void text(std::string_view key, const auto&, auto&&...) { add(key, Kind::kString); }
  void secret(std::string_view key, const auto&) { add(key, Kind::kString); }
  void conninfo(std::string_view key, const auto&) { add(key, Kind::kString); }
  void path(std::string_view key, const auto&) { add(key, Kind::kString); }
  void list(std::string_view key, const auto&) { add(key, Kind::kString); }
  void choice(std::string_view key, const auto&, const auto&) { add(key, Kind::kString); }
};

const std::vector<SectionDef>& sections() {
  static const std::vector<SectionDef> all = [] {
    KeyCollector collector;
    const Config defaults;
    visit_keys(collector, defaults);
    return std::move(collector.sections);
  }();
  return all;
}

// Suggestions ("did you mean ...?") are shared with the plugin manifest checks.
using Closest = keel::host::ClosestMatch;

const SectionDef* find_section(std::string_view name) {
  for (const auto& section : sections()) {
    if (section.name == name) return &section;
  }
  return nullptr;
}

const KeyDef* find_key(std::span<const KeyDef> keys, std::string_view name) {
  for (const auto& key : keys) {
    if (key.name == name) return &key;
  }
  return nullptr;
}

std::string key_list(const SectionDef& section) {
  std::string out;
  for (const auto& key : section.keys) {
    if (!out.empty()) out += ", ";
    out += key.name;
  }
  return out;
}

std::string_view type_phrase(toml::node_type type) {
  switch (type) {
    case toml::node_type::none: return "nothing";
    case toml::node_type::table: return "a table";
    case toml::node_type::array: return "an array";
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a floating-point number";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::date: return "a date";
    case toml::node_type::time: return "a time";
    case toml::node_type::date_time: return "a date-time";
  }
  return "an unknown type";
}

std::string_view expected_phrase(const KeyDef& key) {
  switch (key.kind) {
    case Kind::kString: return "a string";
    case Kind::kBool: return "a boolean";
    case Kind::kInteger: return key.name.ends_with("_ms") ? "an integer (milliseconds)" : "an integer";
  }
  return "a value";
}

std::string section_key(std::string_view section, std::string_view key) {
  std::string out = "[";
  out += section;
  out += "] ";
  out += key;
  return out;
}

std::string env_name(std::string_view section, std::string_view key) {
  return std::string{kEnvPrefix} + to_upper(section) + "_" + to_upper(key);
}

// "100", or "retry_base_ms = 100" when the bound comes from another setting.
std::string bound_phrase(std::int64_t value, std::string_view name) {
  if (name.empty()) return std::to_string(value);
  return std::string{name} + " = " + std::to_string(value);
}

// lo_name and hi_name name the key a bound comes from, when it is another setting.
std::string range_phrase(std::int64_t lo, std::int64_t hi, std::string_view lo_name, std::string_view hi_name) {
  if (hi == kUnbounded) return "must be at least " + bound_phrase(lo, lo_name);
  return "allowed " + bound_phrase(lo, lo_name) + ".." + bound_phrase(hi, hi_name);
}

struct Context {
  std::string file;
  std::vector<Diagnostic> diagnostics;

  [[nodiscard]] SourcePos at(const toml::source_region& region) const {
    return SourcePos{file, region.begin.line, region.begin.column};
  }
  void error(SourcePos where, std::string message) {
    diagnostics.push_back(Diagnostic{std::move(where), std::move(message)});
  }
};

std::optional<Value> value_of(const toml::node& node, Kind kind) {
  switch (kind) {
    case Kind::kString:
      if (const auto* s = node.as_string()) return Value{std::in_place_type<std::string>, s->get()};
      break;
    case Kind::kInteger:
      if (const auto* i = node.as_integer()) return Value{std::in_place_type<std::int64_t>, i->get()};
      break;
    case Kind::kBool:
      if (const auto* b = node.as_boolean()) return Value{std::in_place_type<bool>, b->get()};
      break;
  }
  return std::nullopt;
}

std::string unknown_key_message(const SectionDef& section, std::string_view key, const toml::node& value) {
  std::string message = "unknown key " + in_quotes(key) + " in [" + std::string{section.name} + "]";
  if (section.name == "plugins" && value.is_table()) {
    return message + " (plugin settings go in [plugin." + std::string{key} + "])";
  }
  const std::string with_unit = std::string{key} + "_ms";
  if (find_key(section.keys, with_unit) != nullptr) {
    return message + " (did you mean " + in_quotes(with_unit) + "? durations are integer milliseconds)";
  }
  Closest closest{key};
  for (const auto& candidate : section.keys) closest.consider(candidate.name);
  if (closest.best()) return message + " (did you mean " + in_quotes(*closest.best()) + "?)";
  return message + "; valid keys: " + key_list(section);
}

void report_unknown_root_key(std::string_view name, const toml::key& key, const toml::node& node, Context& ctx) {
  if (node.is_table()) {
    std::string message = "unknown section [" + std::string{name} + "]";
    Closest closest{name};
    for (const auto& section : sections()) closest.consider(section.name);
    closest.consider(kPluginSection, "plugin.<name>");
    if (closest.best()) {
      message += " (did you mean [" + *closest.best() + "]?)";
    } else {
      message += "; valid sections: ";
      for (const auto& section : sections()) message += "[" + std::string{section.name} + "], ";
      message += "[plugin.<name>]";
    }
    ctx.error(ctx.at(key.source()), std::move(message));
    return;
  }
  // A bare key above the first header: most likely a host key that lost its section.
  std::string message = "key " + in_quotes(name) + " is outside any section";
  Closest closest{name};
  for (const auto& section : sections()) {
    for (const auto& candidate : section.keys) {
      closest.consider(candidate.name, in_quotes(candidate.name) + " in [" + std::string{section.name} + "]");
    }
  }
  if (closest.best()) message += " (did you mean " + *closest.best() + "?)";
  ctx.error(ctx.at(key.source()), std::move(message));
}

void collect_section(const SectionDef& section, const toml::table& table, Context& ctx, Settings& settings) {
  for (auto&& [key, node] : table) {
    const KeyDef* def = find_key(section.keys, key.str());
    if (def == nullptr) {
      ctx.error(ctx.at(key.source()), unknown_key_message(section, key.str(), node));
      continue;
    }
    auto value = value_of(node, def->kind);
    if (!value) {
      ctx.error(ctx.at(node.source()), section_key(section.name, def->name) + ": expected " +
                                           std::string{expected_phrase(*def)} + ", got " +
                                           std::string{type_phrase(node.type())});
      continue;
    }
    settings.insert_or_assign(setting_id(section.name, def->name), Setting{std::move(*value), ctx.at(node.source())});
  }
}

bool valid_plugin_name(std::string_view name) {
  return !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
  });
}

template <typename T>
std::string streamed(const T& value) {
  std::ostringstream out;
  out << value;
  return out.str();
}

// Converts plugin-owned TOML to JSON and records where each (nested) key was written, so the
// plugin layer can point at the offending line when a plugin rejects its settings.
class PluginSettingsConverter {
 public:
  PluginSettingsConverter(std::string_view plugin, Context& ctx, std::map<std::string, SourcePos>& positions)
      : plugin_{plugin}, ctx_{ctx}, positions_{positions} {}

  nlohmann::json convert(const toml::node& node, const std::string& path) {
    return node.visit([&](auto&& n) -> nlohmann::json {
      using T = std::remove_cvref_t<decltype(n)>;
      if constexpr (std::is_same_v<T, toml::table>) {
        auto object = nlohmann::json::object();
        for (auto&& [key, child] : n) {
          const std::string child_path = path + "." + std::string{key.str()};
          positions_.insert_or_assign(child_path, ctx_.at(key.source()));
          object[std::string{key.str()}] = convert(child, child_path);
        }
        return object;
      } else if constexpr (std::is_same_v<T, toml::array>) {
        auto array = nlohmann::json::array();
        std::size_t index = 0;
        for (auto&& element : n) {
          const std::string element_path = path + "[" + std::to_string(index++) + "]";
          positions_.insert_or_assign(element_path, ctx_.at(element.source()));
          array.push_back(convert(element, element_path));
        }
        return array;
      } else {
        using V = std::remove_cvref_t<decltype(n.get())>;
        if constexpr (std::is_same_v<V, toml::date> || std::is_same_v<V, toml::time> ||
                      std::is_same_v<V, toml::date_time>) {
          return streamed(n.get());
        } else if constexpr (std::is_same_v<V, double>) {
          if (!std::isfinite(n.get())) {
            ctx_.error(ctx_.at(n.source()), "[plugin." + plugin_ + "] " + path +
                                                ": nan and inf cannot be passed to a plugin (JSON has no such numbers)");
            return nullptr;
          }
          return n.get();
        } else {
          return n.get();
        }
      }
    });
  }

 private:
  std::string plugin_;
  Context& ctx_;
  std::map<std::string, SourcePos>& positions_;
};

bool valid_mount(std::string_view m) {
  if (m.size() < 2 || m.front() != '/' || m.back() == '/') return false;
  return std::all_of(m.begin(), m.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '/' || c == '-' ||
           c == '_' || c == '.' || c == '~';
  });
}

// Reads the limit named `key`, when it is one (`matched`).
struct PluginLimitParser {
  const std::string& key;
  const toml::node& value;
  const std::string& prefix;  ///< "[plugin.<name>] <key>: "
  Context& ctx;
  bool matched = false;

  bool is(std::string_view name) {
    if (matched || name != key) return false;
    return matched = true;
  }
  void fail(const std::string& expected) { ctx.error(ctx.at(value.source()), prefix + "expected " + expected); }

  template <typename Int>
  void integer(std::string_view name, Int& out, std::int64_t lo, std::int64_t hi, std::string_view unit) {
    if (!is(name)) return;
    const auto* n = value.as_integer();
    if (n == nullptr || n->get() < lo || n->get() > hi)
      fail("an integer " + std::string(unit) + " in " + std::to_string(lo) + ".." + std::to_string(hi));
    else
      out = static_cast<Int>(n->get());
  }
  void millis(std::string_view name, std::chrono::milliseconds& out, std::int64_t lo, std::int64_t hi) {
    std::int64_t ms = out.count();
    integer(name, ms, lo, hi, "number of milliseconds");
    out = std::chrono::milliseconds(ms);
  }
  void user(std::string_view name, std::string& out) {
    if (!is(name)) return;
    const auto* text = value.as_string();
    if (text == nullptr || text->get().empty()) fail("a user name, e.g. \"nobody\"");
    else out = text->get();
  }
  void flag(std::string_view name, bool& out) {
    if (!is(name)) return;
    const auto* b = value.as_boolean();
    if (b == nullptr) fail("true or false");
    else out = b->get();
  }
  void rate(std::string_view name, double& out) {
    if (!is(name)) return;
    const double rate = value.is_integer() ? static_cast<double>(value.as_integer()->get())
                        : value.is_floating_point() ? value.as_floating_point()->get()
                                                    : -1;
    if (!(rate >= 0 && rate <= 1)) fail("a share of failed answers in 0..1, e.g. 0.5 (0 = off)");
    else out = rate;
  }
};

// Reads `key` of a [plugin.<name>] table into `section` when it is one the host reads itself
// (kHostPluginKeys, besides `enabled`); everything else belongs to the plugin. Returns true when
// `key` is the host's (valid or not).
bool host_plugin_key(const std::string& plugin, const std::string& key, const toml::node& value, Context& ctx,
                     PluginSection& section) {
  if (!is_host_plugin_key(key)) return false;
  const std::string prefix = "[plugin." + plugin + "] " + key + ": ";
  if (key == "mount") {
    const auto* text = value.as_string();
    if (text == nullptr || !valid_mount(text->get()))
      ctx.error(ctx.at(value.source()), prefix + "expected a path like \"/orders\" (starts with '/', no trailing '/', "
                                                 "letters, digits and -._~ only)");
    else
      section.mount = text->get();
    return true;
  }
  if (key == "log_level") {
    const auto* text = value.as_string();
    const auto* it = text == nullptr ? kLogLevels.end() : std::find(kLogLevels.begin(), kLogLevels.end(), text->get());
    if (it == kLogLevels.end())
      ctx.error(ctx.at(value.source()), prefix + "expected one of trace, debug, info, warn, error, critical, off");
    else
      section.log_level = text->get();
    return true;
  }
  if (key == "sha256") {
    const auto* text = value.as_string();
    const bool ok = text != nullptr && text->get().size() == 64 &&
                    std::all_of(text->get().begin(), text->get().end(),
                                [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
    if (!ok) ctx.error(ctx.at(value.source()), prefix + "expected 64 lowercase hex digits (sha256sum output)");
    else section.sha256 = text->get();
    return true;
  }
  auto duration = [&](const toml::node& v, const std::string& what) -> std::optional<std::chrono::milliseconds> {
    const auto* n = v.as_integer();
    if (n == nullptr || n->get() < 1 || n->get() > kMaxDurationMs) {
      ctx.error(ctx.at(v.source()), what + "expected an integer number of milliseconds in 1.." +
                                        std::to_string(kMaxDurationMs));
      return std::nullopt;
    }
    return std::chrono::milliseconds(n->get());
  };
  if (key == "request_timeout_ms") {
    section.request_timeout = duration(value, prefix);
    return true;
  }
  // Host-owned because the host sizes the database file (SQLite max_page_count); the plugin
  // only sees "storage full" when it writes beyond it.
  if (key == "max_db_bytes") {
    const auto* n = value.as_integer();
    if (n == nullptr) {
      ctx.error(ctx.at(value.source()), prefix + "expected an integer number of bytes (0 = unlimited), got " +
                                            std::string{type_phrase(value.type())});
    } else if (n->get() < 0) {
      ctx.error(ctx.at(value.source()), prefix + std::to_string(n->get()) +
                                            " is out of range (must be at least 0; 0 = unlimited)");
    } else {
      section.max_db_bytes = static_cast<std::uint64_t>(n->get());
    }
    return true;
  }
  if (key == "storage_engine") {
    const auto* text = value.as_string();
    if (text == nullptr || std::find(kStorageEngines.begin(), kStorageEngines.end(), text->get()) == kStorageEngines.end())
      ctx.error(ctx.at(value.source()), prefix + "expected \"sqlite\" or \"postgres\"");
    else
      section.storage_engine = text->get();
    return true;
  }
  if (key == "isolation") {
    const auto* text = value.as_string();
    if (text == nullptr || std::find(kIsolationModes.begin(), kIsolationModes.end(), text->get()) == kIsolationModes.end())
      ctx.error(ctx.at(value.source()), prefix + "expected \"in-process\" or \"process\"");
    else
      section.isolation = text->get();
    return true;
  }
  PluginLimitParser limits{key, value, prefix, ctx};
  visit_plugin_limits(limits, section);
  if (limits.matched) return true;
  if (key == "route_timeouts") {
    const auto* table = value.as_table();
    if (table == nullptr) {
      ctx.error(ctx.at(value.source()), prefix + "expected a table like { \"GET /orders/{id}\" = 500 }");
      return true;
    }
    for (auto&& [route, ms] : *table) {
      if (auto d = duration(ms, prefix + "\"" + std::string(route.str()) + "\": ")) section.route_timeouts[std::string(route.str())] = *d;
    }
    return true;
  }
  throw std::logic_error("[plugin.<name>] " + key + " is in kHostPluginKeys but the config reader does not read it");
}

void collect_plugins(const toml::key& plugin_key, const toml::node& node, Context& ctx, Config& config) {
  const toml::table* plugins = node.as_table();
  if (plugins == nullptr) {
    ctx.error(ctx.at(plugin_key.source()), "'plugin' must hold [plugin.<name>] tables, got " +
                                               std::string{type_phrase(node.type())});
    return;
  }
  for (auto&& [key, value] : *plugins) {
    const std::string name{key.str()};
    const toml::table* table = value.as_table();
    if (table == nullptr) {
      std::string message = in_quotes(name) + " in [plugin] is not a plugin table (got " +
                            std::string{type_phrase(value.type())} + "); plugin settings go in [plugin.<name>]";
      if (find_key(find_section("plugins")->keys, name) != nullptr) message += " (did you mean " + in_quotes(name) + " in [plugins]?)";
      ctx.error(ctx.at(key.source()), std::move(message));
      continue;
    }
    if (!valid_plugin_name(name)) {
      ctx.error(ctx.at(key.source()), "invalid plugin name " + in_quotes(name) +
                                          " in [plugin." + name + "]: use only a-z, 0-9 and '_'");
      continue;
    }
    PluginSection section;
    section.name = name;
    section.where = ctx.at(value.source());
    auto settings = nlohmann::json::object();
    PluginSettingsConverter converter{name, ctx, section.key_positions};
    for (auto&& [setting_key, setting] : *table) {
      const std::string setting_name{setting_key.str()};
      if (setting_name == "enabled") {
        if (const auto* enabled = setting.as_boolean()) {
          section.enabled = enabled->get();
        } else {
          ctx.error(ctx.at(setting.source()), "[plugin." + name + "] enabled: expected a boolean, got " +
                                                  std::string{type_phrase(setting.type())});
        }
        continue;
      }
      if (host_plugin_key(name, setting_name, setting, ctx, section)) continue;
      section.key_positions.insert_or_assign(setting_name, ctx.at(setting_key.source()));
      settings[setting_name] = converter.convert(setting, setting_name);
    }
    // TOML text is valid UTF-8 by the time toml++ accepts it; `replace` only guards against a
    // future change of that guarantee turning into an exception (TOOLCHAIN.md pitfall 5).
    section.settings_json = settings.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    config.plugin_sections.insert_or_assign(name, std::move(section));
  }
}

void collect_file(const toml::table& root, Context& ctx, Settings& settings, Config& config) {
  for (auto&& [key, node] : root) {
    const std::string_view name = key.str();
    if (name == kPluginSection) {
      collect_plugins(key, node, ctx, config);
      continue;
    }
    const SectionDef* section = find_section(name);
    if (section == nullptr) {
      report_unknown_root_key(name, key, node, ctx);
      continue;
    }
    const toml::table* table = node.as_table();
    if (table == nullptr) {
      ctx.error(ctx.at(node.source()), "[" + std::string{name} + "]: expected a table, got " +
                                           std::string{type_phrase(node.type())});
      continue;
    }
    collect_section(*section, *table, ctx, settings);
  }
}

std::optional<Value> parse_env_value(const KeyDef& key, const std::string& text, std::string& problem) {
  switch (key.kind) {
    case Kind::kString: return Value{std::in_place_type<std::string>, text};
    case Kind::kBool:
      if (text == "true" || text == "1") return Value{std::in_place_type<bool>, true};
      if (text == "false" || text == "0") return Value{std::in_place_type<bool>, false};
      problem = "expected true, false, 1 or 0, got " + in_quotes(text);
      return std::nullopt;
    case Kind::kInteger: {
      std::int64_t number = 0;
      const char* const end = text.data() + text.size();
      const auto [ptr, ec] = std::from_chars(text.data(), end, number);
      if (ec == std::errc{} && ptr == end) return Value{std::in_place_type<std::int64_t>, number};
      problem = "expected a decimal integer, got " + in_quotes(text);
      if (ec == std::errc::result_out_of_range) problem += " (does not fit in 64 bits)";
      return std::nullopt;
    }
  }
  return std::nullopt;
}

void collect_env(const Environment& env, Context& ctx, Settings& settings) {
  for (const auto& [variable, text] : env) {
    const std::string_view name{variable};
    if (!name.starts_with(kEnvPrefix)) continue;
    const std::string_view rest = name.substr(kEnvPrefix.size());
    const std::size_t separator = rest.find('_');
    if (separator == std::string_view::npos) continue;
    const std::string_view section_part = rest.substr(0, separator);
    const std::string_view key_part = rest.substr(separator + 1);
    const SectionDef* section = nullptr;
    for (const auto& candidate : sections()) {
      if (to_upper(candidate.name) == section_part) section = &candidate;
    }
    // Other tools share the KEEL_ prefix; only variables naming one of our sections are ours.
    if (section == nullptr) continue;

    SourcePos where{"env " + variable, 0, 0};
    const KeyDef* key = nullptr;
    for (const auto& candidate : section->keys) {
      if (to_upper(candidate.name) == key_part) key = &candidate;
    }
    if (key == nullptr) {
      std::string message = "unknown key " + in_quotes(to_lower(key_part)) + " in [" + std::string{section->name} + "]";
      Closest closest{key_part};
      for (const auto& candidate : section->keys) closest.consider(candidate.name, env_name(section->name, candidate.name));
      if (closest.best()) {
        message += " (did you mean " + *closest.best() + "?)";
      } else {
        message += "; valid keys: " + key_list(*section);
      }
      ctx.error(std::move(where), std::move(message));
      continue;
    }
    std::string problem;
    auto value = parse_env_value(*key, text, problem);
    if (!value) {
      ctx.error(std::move(where), section_key(section->name, key->name) + ": " + problem);
      continue;
    }
    settings.insert_or_assign(setting_id(section->name, key->name), Setting{std::move(*value), std::move(where)});
  }
}

}  // namespace

std::optional<std::string> detail::listen_problem(std::string_view listen) {
  const std::string_view example = "expected HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080";
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string_view::npos) return std::string{example};
  const std::string_view host = listen.substr(0, colon);
  const std::string_view port = listen.substr(colon + 1);
  if (host.empty()) return "missing host before ':' (" + std::string{example} + ")";
  if (host.front() == '[') {
    const std::string_view inner = host.size() >= 2 && host.back() == ']' ? host.substr(1, host.size() - 2) : "";
    if (inner.find(':') == std::string_view::npos || inner.find_first_of("[] ") != std::string_view::npos) {
      return "malformed IPv6 host " + in_quotes(host) + " (write it as [::1]:8080)";
    }
  } else if (host.find(':') != std::string_view::npos) {
    return "IPv6 hosts must be in brackets, e.g. [::1]:8080";
  } else if (!std::all_of(host.begin(), host.end(), [](char c) {
               return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
                      c == '-' || c == '_';
             })) {
    return "host " + in_quotes(host) + " contains characters not allowed in a host name or address";
  }
  if (port.empty() || !std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return "port " + in_quotes(port) + " is not a number (allowed 0..65535)";
  }
  std::uint32_t number = 0;
  const auto [ptr, ec] = std::from_chars(port.data(), port.data() + port.size(), number);
  if (ec != std::errc{} || ptr != port.data() + port.size() || number > 65535) {
    return "port " + std::string{port} + " is out of range (allowed 0..65535)";
  }
  return std::nullopt;
}

namespace {

template <typename T>
std::string one_of(const T& allowed) {
  std::string out;
  for (const auto& item : allowed) {
    if (!out.empty()) out += ", ";
    out += item;
  }
  return out;
}

std::filesystem::path resolve(const std::filesystem::path& base, const std::filesystem::path& p) {
  // Not lexically_normal(): "dir/../x" differs from "x" when dir is a symlink.
  return p.is_absolute() ? p : base / p;
}

// "a, b ,c" -> {"a", "b", "c"}; empty items dropped.
std::vector<std::string> split_list(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= text.size()) {
    auto end = text.find(',', start);
    if (end == std::string::npos) end = text.size();
    auto item = std::string_view(text).substr(start, end - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) out.emplace_back(item);
    start = end + 1;
  }
  return out;
}

// Turns the merged raw settings into typed fields as visit_keys() declares them, checking ranges
// and allowed values. A value that fails a check leaves the default in place; the caller throws.
class Applier {
 public:
  Applier(const Settings& settings, Context& ctx) : settings_{settings}, ctx_{ctx} {}

  void section(std::string_view name) { section_ = name; }

  [[nodiscard]] const Setting* find(std::string_view section, std::string_view key) const {
    const auto it = settings_.find(setting_id(section, key));
    return it == settings_.end() ? nullptr : &it->second;
  }

  template <typename Int>
  const Setting* integer(std::string_view key, Int& out, std::int64_t lo, std::int64_t hi,
                         std::string_view hi_name = {}, std::string_view lo_name = {}) {
    const Setting* setting = find(section_, key);
    const auto* number = setting == nullptr ? nullptr : std::get_if<std::int64_t>(&setting->value);
    if (number == nullptr) return nullptr;
    if (*number < lo || *number > hi) {
      ctx_.error(setting->where, section_key(section_, key) + ": " + std::to_string(*number) +
                                     " is out of range (" + range_phrase(lo, hi, lo_name, hi_name) + ")");
      return nullptr;
    }
    out = static_cast<Int>(*number);
    return setting;
  }

  void duration(std::string_view key, std::chrono::milliseconds& out, std::int64_t lo = 1,
                std::int64_t hi = kMaxDurationMs, std::string_view lo_name = {}) {
    std::int64_t ms = 0;
    if (integer(key, ms, lo, hi, {}, lo_name) != nullptr) out = std::chrono::milliseconds{ms};
  }

  void flag(std::string_view key, bool& out) const {
    const Setting* setting = find(section_, key);
    if (const auto* value = setting == nullptr ? nullptr : std::get_if<bool>(&setting->value)) out = *value;
  }

  // A string; `problem`, when given, says what is wrong with it.
  void text(std::string_view key, std::string& out, std::optional<std::string> (*problem)(std::string_view) = nullptr) {
    const std::string* value = string_value(key);
    if (value == nullptr) return;
    if (const auto wrong = problem != nullptr ? problem(*value) : std::nullopt) {
      error(*find(section_, key), section_key(section_, key) + ": " + in_quotes(*value) + ": " + *wrong);
    } else {
      out = *value;
    }
  }
  void secret(std::string_view key, std::string& out) { text(key, out); }
  void conninfo(std::string_view key, std::string& out) { text(key, out); }

  void list(std::string_view key, std::vector<std::string>& out) const {
    if (const std::string* value = string_value(key)) out = split_list(*value);
  }

  // One of `allowed`; an enum field takes the index of the name (the names are in enum order).
  template <typename T, std::size_t N>
  void choice(std::string_view key, T& out, const std::array<std::string_view, N>& allowed) {
    const std::string* value = string_value(key);
    if (value == nullptr) return;
    const auto it = std::find(allowed.begin(), allowed.end(), *value);
    if (it != allowed.end()) {
      if constexpr (std::is_enum_v<T>) {
        out = static_cast<T>(it - allowed.begin());
      } else {
        out = *value;
      }
      return;
    }
    std::string message = section_key(section_, key) + ": " + in_quotes(*value) + " is not one of " + one_of(allowed);
    Closest closest{*value};
    for (const auto& candidate : allowed) closest.consider(candidate);
    if (closest.best()) message += " (did you mean " + in_quotes(*closest.best()) + "?)";
    error(*find(section_, key), std::move(message));
  }

  void path(std::string_view key, std::filesystem::path& out) {
    const std::string* value = string_value(key);
    if (value == nullptr) return;
    if (value->empty()) {
      error(*find(section_, key), section_key(section_, key) + ": must not be empty");
      return;
    }
    out = *value;
  }

  void error(const Setting& at, std::string message) { ctx_.error(at.where, std::move(message)); }
  void error(const SourcePos& where, std::string message) { ctx_.error(where, std::move(message)); }

 private:
  // The setting's text if it was given as a string.
  [[nodiscard]] const std::string* string_value(std::string_view key) const {
    const Setting* setting = find(section_, key);
    return setting == nullptr ? nullptr : std::get_if<std::string>(&setting->value);
  }

  const Settings& settings_;
  Context& ctx_;
  std::string_view section_;
};

void apply(const Settings& settings, Context& ctx, const std::filesystem::path& base, Config& config) {
  Applier a{settings, ctx};
  visit_keys(a, config);

  // Two bounds come from another key (see visit_keys); when only the other key was written and it
  // crosses the first key's default, the error goes to the key that was written, naming the other.
  const Setting* header = a.find("http", "max_header_bytes");
  if (header != nullptr && a.find("http", "max_target_bytes") == nullptr &&
      config.http.max_target_bytes > config.http.max_header_bytes) {
    a.error(*header, "[http] max_header_bytes: " + std::to_string(config.http.max_header_bytes) +
                         " is less than max_target_bytes (" + std::to_string(config.http.max_target_bytes) +
                         ", the default); raise it or set max_target_bytes lower");
  }
  const Setting* retry_base = a.find("events", "retry_base_ms");
  if (retry_base != nullptr && a.find("events", "retry_max_ms") == nullptr &&
      config.events.retry_base > config.events.retry_max) {
    a.error(*retry_base, "[events] retry_base_ms: " + std::to_string(config.events.retry_base.count()) +
                             " is more than retry_max_ms (" + std::to_string(config.events.retry_max.count()) +
                             ", the default); lower it or set retry_max_ms higher");
  }

  // CORS: "null" is an origin anyone can send (sandboxed frames, file: pages), and "*" with
  // credentials would let every site read credentialed answers.
  const auto& origins = config.cors.allowed_origins;
  if (const Setting* listed = a.find("cors", "allowed_origins"); listed != nullptr) {
    if (std::find(origins.begin(), origins.end(), "null") != origins.end())
      a.error(*listed, "[cors] allowed_origins: \"null\" cannot be allowed (any page can send Origin: null); "
                       "list the real origins");
    if (config.cors.allow_credentials && std::find(origins.begin(), origins.end(), "*") != origins.end())
      a.error(*listed, "[cors] allowed_origins: \"*\" cannot be combined with allow_credentials = true (every "
                       "site could read credentialed answers); list the origins that may send credentials");
  }

  // TLS needs both files; one alone is almost certainly a typo or a forgotten line.
  const Setting* cert = a.find("server", "tls_cert");
  const Setting* key = a.find("server", "tls_key");
  if ((cert == nullptr) != (key == nullptr)) {
    a.error(cert != nullptr ? *cert : *key,
            cert != nullptr ? "[server] tls_cert is set but tls_key is not: set tls_key to the certificate's private "
                              "key file (PEM), or remove tls_cert to serve plain HTTP"
                            : "[server] tls_key is set but tls_cert is not: set tls_cert to the certificate chain file "
                              "(PEM), or remove tls_key to serve plain HTTP");
  }

  // [cluster]: one way to authenticate, and a password only with its user.
  if (const Setting* token = a.find("cluster", "token"); token != nullptr && !config.cluster.user.empty())
    a.error(*token, "[cluster] token: set either token or user and password, not both");
  if (const Setting* password = a.find("cluster", "password"); password != nullptr && config.cluster.user.empty())
    a.error(*password, "[cluster] password: set user too (NATS takes a user and its password together)");
  if (!config.cluster.enabled())
    for (const char* name : {"node", "token", "user", "password"})
      if (const Setting* set = a.find("cluster", name); set != nullptr)
        a.error(*set, section_key("cluster", name) + " is set but nats_url is not: set nats_url to the NATS "
                                                    "server(s), e.g. \"nats://127.0.0.1:4222\", or remove the key");

  // [storage]: PostgreSQL needs a server to reach, whether every plugin or one plugin uses it.
  if (config.storage.postgres_url.empty()) {
    if (const Setting* engine = a.find("storage", "engine");
        engine != nullptr && config.storage.engine == StorageEngine::kPostgres)
      a.error(*engine, "[storage] engine = \"postgres\" needs postgres_url: set it to a libpq connection string "
                       "of a role that may create roles and schemas, e.g. \"host=127.0.0.1 user=keel dbname=keel\"");
    for (const auto& [name, section] : config.plugin_sections)
      if (section.storage_engine == "postgres")
        a.error(section.where, "[plugin." + name + "] storage_engine = \"postgres\" needs [storage] postgres_url: "
                               "set it to a libpq connection string of a role that may create roles and schemas");
  }

  // [admin]: token lengths, token_file, the admin socket's path. A problem names the key it is about.
  for (auto& problem : check_admin(config.admin, base)) {
    const Setting* at = a.find("admin", problem.key);
    ctx.error(at != nullptr ? at->where : SourcePos{ctx.file, 0, 0},
              section_key("admin", problem.key) + ": " + std::move(problem.message));
  }

  config.server.data_dir = resolve(base, config.server.data_dir);
  if (!config.server.tls_cert.empty()) config.server.tls_cert = resolve(base, config.server.tls_cert);
  if (!config.server.tls_key.empty()) config.server.tls_key = resolve(base, config.server.tls_key);
  config.plugins.directory = resolve(base, config.plugins.directory);
  if (!config.log.file.empty()) config.log.file = resolve(base, config.log.file);
}

std::string join(const std::vector<Diagnostic>& diagnostics) {
  std::string out;
  for (const auto& diagnostic : diagnostics) {
    if (!out.empty()) out += '\n';
    out += diagnostic.str();
  }
  return out;
}

std::string syntax_message(std::string_view description) {
  std::string out{description};
  if (!out.empty()) out[0] = ascii_lower(out[0]);
  return out;
}

struct FileCloser {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

// fopen/fread rather than ifstream: iostreams do not report errno, and the message should say
// why the file could not be read (ENOENT, EACCES, EISDIR).
std::optional<std::string> read_file(const std::filesystem::path& file, std::string& out) {
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> handle{std::fopen(file.c_str(), "rb")};
  if (!handle) return std::error_code{errno, std::generic_category()}.message();
  std::array<char, 65536> buffer{};
  for (;;) {
    const std::size_t n = std::fread(buffer.data(), 1, buffer.size(), handle.get());
    out.append(buffer.data(), n);
    if (n < buffer.size()) break;
  }
  if (std::ferror(handle.get()) != 0) {
    return std::error_code{errno != 0 ? errno : EIO, std::generic_category()}.message();
  }
  return std::nullopt;
}

void sort_diagnostics(std::vector<Diagnostic>& diagnostics) {
  // File problems first in reading order, then environment problems by variable name.
  std::stable_sort(diagnostics.begin(), diagnostics.end(), [](const Diagnostic& a, const Diagnostic& b) {
    const bool a_env = a.where.line == 0;
    const bool b_env = b.where.line == 0;
    if (a_env != b_env) return b_env;
    if (a_env) return a.where.file < b.where.file;
    return std::tie(a.where.line, a.where.column) < std::tie(b.where.line, b.where.column);
  });
}

}  // namespace

std::string SourcePos::str() const {
  if (line == 0) return file;
  return file + ":" + std::to_string(line) + ":" + std::to_string(column);
}

ConfigError::ConfigError(std::vector<Diagnostic> diagnostics)
    : std::runtime_error(join(diagnostics)), diagnostics_(std::move(diagnostics)) {}

Environment current_environment() {
  Environment env;
  for (char** entry = environ; entry != nullptr && *entry != nullptr; ++entry) {
    const std::string_view text{*entry};
    const std::size_t eq = text.find('=');
    if (eq == std::string_view::npos) continue;
    // getenv() returns the first of duplicate entries; emplace keeps the first too.
    env.emplace(std::string{text.substr(0, eq)}, std::string{text.substr(eq + 1)});
  }
  return env;
}

Config load(const std::filesystem::path& file, const Environment& env) {
  std::string text;
  if (auto problem = read_file(file, text)) {
    throw ConfigError({Diagnostic{SourcePos{file.string(), 0, 0}, "cannot read config file: " + *problem}});
  }
  return parse(text, file, env);
}

Config parse(std::string_view text, const std::filesystem::path& name, const Environment& env) {
  Context ctx{name.empty() ? std::string{kNoFileLabel} : name.string(), {}};
  Config config;
  config.source = name;
  Settings settings;

  toml::table root;
  try {
    root = toml::parse(text, std::string{ctx.file});
  } catch (const toml::parse_error& e) {
    // toml++ stops at the first syntax error; keep going with an empty document so that
    // environment problems are still reported in the same run.
    ctx.error(ctx.at(e.source()), syntax_message(e.description()));
  }
  collect_file(root, ctx, settings, config);
  collect_env(env, ctx, settings);
  apply(settings, ctx, name.parent_path(), config);

  if (!ctx.diagnostics.empty()) {
    sort_diagnostics(ctx.diagnostics);
    throw ConfigError(std::move(ctx.diagnostics));
  }
  return config;
}

}  // namespace keel::host::config
