#include "package/manifest.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <limits>
#include <optional>
#include <utility>

#include <nlohmann/json.hpp>

#include "abi/limits.hpp"
#include "abi/topic.hpp"
#include "common/plugin_keys.hpp"
#include "common/suggest.hpp"

namespace keel::host::package {
namespace {

// ordered_json keeps the document's key order, so errors, warnings and Manifest::config come
// out in the order the author wrote them.
using Json = nlohmann::ordered_json;

// The topic grammar is the ABI's (the event bus checks the same); the manifest only reports against it.
using abi::pattern_problem;
using abi::valid_topic;

constexpr std::size_t kMaxNameBytes = 64;
constexpr std::uint64_t kMaxAbiPart = 0xFFFF;  // KEEL_ABI_VERSION packs major and minor into 16 bits each
// Far beyond any sane manifest; keeps the recursive dump() of a config default off the stack's end.
constexpr int kMaxDepth = 100;

constexpr std::array<std::string_view, 11> kTopLevelKeys{
    "name", "version", "abi", "description", "dependencies", "routes",
    "concurrency", "events", "permissions", "config", "migrations"};
constexpr std::array<std::string_view, 2> kDependencyKeys{"name", "version"};
constexpr std::array<std::string_view, 8> kRouteKeys{"method",  "path",      "summary", "blocking",
                                                     "storage", "request",   "responses", "query"};
constexpr std::array<std::string_view, 3> kRequestKeys{"content_type", "schema", "description"};
constexpr std::array<std::string_view, 3> kResponseKeys{"description", "content_type", "schema"};
constexpr std::array<std::string_view, 4> kQueryKeys{"name", "type", "description", "required"};
// JSON Schema type names a query parameter may have: a query string carries scalars only.
constexpr std::array<std::string_view, 4> kQueryTypes{"string", "integer", "number", "boolean"};
constexpr std::string_view kDefaultContentType = "application/json";
constexpr std::array<std::string_view, 3> kEventKeys{"publishes", "subscribes", "durable"};
constexpr std::array<std::string_view, 8> kConfigEntryKeys{"type",   "default", "required", "description",
                                                           "secret", "minimum", "maximum", "enum"};
constexpr std::array<std::string_view, 3> kMigrationKeys{"version", "description", "sql"};
// Migrations run against the database the storage extension owns, so declaring them without it
// would be dead text at best. Durable topics live there too: the publisher's outbox table.
constexpr std::string_view kStoragePermission = "ext:keel.storage/1";
constexpr char kNotATopic[] =
    " is not a topic: two or more dot-separated segments of [a-z0-9_]+, e.g. 'orders.placed'";
constexpr std::array<std::string_view, 2> kConcurrency{"parallel", "serialized"};
constexpr std::array<std::string_view, 2> kPermissionKinds{"call", "ext"};

struct TypeName {
  ConfigType type;
  std::string_view name;
  std::string_view phrase;
};
constexpr std::array<TypeName, 6> kConfigTypes{{
    {ConfigType::kString, "string", "a string"},
    {ConfigType::kInteger, "integer", "an integer"},
    {ConfigType::kNumber, "number", "a number"},
    {ConfigType::kBoolean, "boolean", "a boolean"},
    {ConfigType::kArray, "array", "an array"},
    {ConfigType::kObject, "object", "an object"},
}};

class TooDeep {};

std::string in_quotes(std::string_view s) {
  std::string out = "'";
  out += s;
  out += '\'';
  return out;
}

template <typename Range>
std::string one_of(const Range& names) {
  std::string out;
  for (const auto name : names) {
    if (!out.empty()) out += ", ";
    out += name;
  }
  return out;
}

template <typename Range>
std::optional<std::string> suggestion(std::string_view word, const Range& candidates) {
  ClosestMatch closest{word};
  for (const auto candidate : candidates) closest.consider(candidate);
  return closest.best();
}

std::string did_you_mean(const std::optional<std::string>& best) {
  return best ? " (did you mean " + in_quotes(*best) + "?)" : std::string{};
}

bool is_lower(char c) { return c >= 'a' && c <= 'z'; }
bool is_upper(char c) { return c >= 'A' && c <= 'Z'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

std::string_view value_phrase(const Json& v) {
  switch (v.type()) {
    case Json::value_t::null: return "null";
    case Json::value_t::boolean: return "a boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned: return "an integer";
    case Json::value_t::number_float: return "a number with a fraction or exponent";
    case Json::value_t::string: return "a string";
    case Json::value_t::array: return "an array";
    case Json::value_t::object: return "an object";
    case Json::value_t::binary:
    case Json::value_t::discarded: break;
  }
  return "an unsupported value";
}

std::string mismatch(std::string_view expected, const Json& got) {
  return "expected " + std::string{expected} + ", got " + std::string{value_phrase(got)};
}

// JSON path of `key` inside the object at `path`: "config.greeting", or config["a.b"] when the
// key is not a plain identifier.
std::string key_path(const std::string& path, std::string_view key) {
  const bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return is_lower(c) || is_upper(c) || is_digit(c) || c == '_' || c == '-';
  });
  if (!plain) return path + "[" + Json(std::string{key}).dump(-1, ' ', false, Json::error_handler_t::replace) + "]";
  return path.empty() ? std::string{key} : path + "." + std::string{key};
}

std::string index_path(const std::string& path, std::size_t index) { return path + "[" + std::to_string(index) + "]"; }

std::string plugin_name_problem(std::string_view s) {
  if (s.empty()) return "must not be empty";
  if (s.size() > kMaxNameBytes) return "is " + std::to_string(s.size()) + " bytes long; at most 64 are allowed";
  return in_quotes(s) + " is not a valid plugin name: use [a-z][a-z0-9_]* (a lower-case letter, then a-z, 0-9, '_')";
}

// Splits `s` at '.'; empty pieces are kept, so callers can reject "a..b".
std::vector<std::string_view> split_dots(std::string_view s) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const auto dot = s.find('.', start);
    out.push_back(s.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
    if (dot == std::string_view::npos) return out;
    start = dot + 1;
  }
}

// Extension id "<namespace>.<name>/<revision>", e.g. "keel.storage/1" (CLAP-style ids).
bool valid_extension_id(std::string_view s) {
  const auto slash = s.rfind('/');
  if (slash == std::string_view::npos) return false;
  const auto revision = s.substr(slash + 1);
  if (revision.empty() || !std::all_of(revision.begin(), revision.end(), is_digit)) return false;
  const auto segments = split_dots(s.substr(0, slash));
  return segments.size() >= 2 && std::all_of(segments.begin(), segments.end(), [](std::string_view seg) {
           return !seg.empty() && is_lower(seg.front()) && std::all_of(seg.begin(), seg.end(), [](char c) {
             return is_lower(c) || is_digit(c) || c == '_' || c == '-';
           });
         });
}

// "*" or an upper-case token: a letter, then A-Z, 0-9, '-', '_' (GET, POST, M-SEARCH).
bool valid_method(std::string_view s) {
  if (s == "*") return true;
  if (s.empty() || !is_upper(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_upper(c) || is_digit(c) || c == '-' || c == '_'; });
}

// RFC 3986 pchar without '%': templates hold decoded text (same rule as the router).
bool literal_char(char c) {
  return is_lower(c) || is_upper(c) || is_digit(c) || std::string_view("-._~!$&'()*+,;=:@").find(c) != std::string_view::npos;
}

// RFC 9110 §5.6.2 tchar.
bool token_char(char c) {
  return is_lower(c) || is_upper(c) || is_digit(c) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// A media type or range as OpenAPI keys its content maps: "type/subtype" of tokens (RFC 9110
// §8.3.1), "*/*" and "text/*" included, then optionally "; parameters" of printable ASCII.
bool valid_media_type(std::string_view s) {
  const auto semicolon = s.find(';');
  auto essence = s.substr(0, semicolon);
  if (semicolon != std::string_view::npos) {
    while (!essence.empty() && essence.back() == ' ') essence.remove_suffix(1);
    const auto parameters = s.substr(semicolon);
    if (!std::all_of(parameters.begin(), parameters.end(), [](char c) { return c >= 0x20 && c < 0x7F; })) return false;
  }
  const auto slash = essence.find('/');
  if (slash == std::string_view::npos || slash == 0 || slash + 1 == essence.size()) return false;
  const auto type = essence.substr(0, slash);
  const auto subtype = essence.substr(slash + 1);
  if (type == "*" && subtype != "*") return false;  // "*/json" is no media range
  return std::all_of(type.begin(), type.end(), token_char) && std::all_of(subtype.begin(), subtype.end(), token_char);
}

// "100".."599" (RFC 9110 §15: three digits, first 1-5) or "default", the keys of an OpenAPI
// Responses object this host documents.
bool valid_status_key(std::string_view s) {
  if (s == "default") return true;
  return s.size() == 3 && s[0] >= '1' && s[0] <= '5' && is_digit(s[1]) && is_digit(s[2]);
}

// RFC 3986 unreserved characters: a name that needs no percent-encoding in a query string.
bool valid_query_name(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return is_lower(c) || is_upper(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
  });
}

bool param_name(std::string_view s) {
  if (s.empty() || !(is_lower(s.front()) || s.front() == '_')) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_lower(c) || is_digit(c) || c == '_'; });
}

// docs/abi.md §7.2 routes[].path. On success returns nothing and sets `shape` to the template
// with parameter names erased ("/orders/{}", "/files/{...}"): two routes with the same method
// and shape conflict whatever their parameters are called.
std::optional<std::string> path_problem(std::string_view path, std::string& shape) {
  if (path.empty() || path.front() != '/') return "must start with '/' (it is mounted below /api/<name>)";
  shape.clear();
  std::vector<std::string_view> names;
  std::size_t pos = 1;
  while (true) {
    const auto slash = path.find('/', pos);
    const bool last = slash == std::string_view::npos;
    const auto seg = path.substr(pos, last ? std::string_view::npos : slash - pos);
    shape += '/';
    if (seg.empty()) {
      if (!last) return std::string{"empty segment ('//'); only a trailing '/' may be empty"};
    } else if (seg.front() == '{' || seg.back() == '}') {
      if (seg.size() < 2 || seg.front() != '{' || seg.back() != '}') {
        return "segment " + in_quotes(seg) + ": a parameter spans a whole segment, '{name}' or '{name...}'";
      }
      auto name = seg.substr(1, seg.size() - 2);
      const bool tail = name.ends_with("...");
      if (tail) {
        name.remove_suffix(3);
        if (!last) return "'{" + std::string{name} + "...}' must be the last segment";
      } else if (name.ends_with(":file")) {
        name.remove_suffix(5);  // a file name: the host refuses '/', '\\' and NUL in its value
      }
      if (!param_name(name)) return "parameter name " + in_quotes(name) + " is not [a-z_][a-z0-9_]*";
      if (std::find(names.begin(), names.end(), name) != names.end()) {
        return "parameter " + in_quotes(name) + " appears twice";
      }
      names.push_back(name);
      if (names.size() > abi::kMaxRouteParams) {
        return "more than " + std::to_string(abi::kMaxRouteParams) + " parameters (the router's limit)";
      }
      shape += tail ? "{...}" : "{}";
    } else {
      for (const char c : seg) {
        if (c == '{' || c == '}') {
          return "segment " + in_quotes(seg) + ": a parameter spans a whole segment, '{name}' or '{name...}'";
        }
        if (!literal_char(c)) {
          const auto code = static_cast<unsigned char>(c);
          const bool printable = code > 0x20 && code < 0x7F;
          return "segment " + in_quotes(seg) + " contains " +
                 (printable ? in_quotes(std::string_view(&c, 1)) : "byte " + std::to_string(code)) +
                 ", which is not allowed in a route path";
        }
      }
      if (seg == "." || seg == "..") return std::string{"'.' and '..' are not allowed as segments"};
      shape += seg;
    }
    if (last) return std::nullopt;
    pos = slash + 1;
  }
}

const TypeName* find_type(std::string_view name) {
  for (const auto& t : kConfigTypes)
    if (t.name == name) return &t;
  return nullptr;
}

const TypeName& type_info(ConfigType type) {
  for (const auto& t : kConfigTypes)
    if (t.type == type) return t;
  return kConfigTypes.front();
}

// Why `value` is not of `type`, or nothing. "integer" is a JSON number written without fraction
// or exponent that fits int64 (docs/abi.md §7.2); "number" accepts integers too.
std::optional<std::string> type_problem(ConfigType type, const Json& value) {
  bool ok = false;
  switch (type) {
    case ConfigType::kString: ok = value.is_string(); break;
    case ConfigType::kInteger:
      if (value.is_number_unsigned() &&
          value.get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return std::string{"expected an integer, got an integer outside the signed 64-bit range"};
      }
      ok = value.is_number_integer();
      break;
    case ConfigType::kNumber: ok = value.is_number(); break;
    case ConfigType::kBoolean: ok = value.is_boolean(); break;
    case ConfigType::kArray: ok = value.is_array(); break;
    case ConfigType::kObject: ok = value.is_object(); break;
  }
  if (ok) return std::nullopt;
  return mismatch(type_info(type).phrase, value);
}

std::string dump(const Json& value) { return value.dump(-1, ' ', false, Json::error_handler_t::replace); }

// A value the manifest checker wrote (a bound, an enum entry); discarded if a hand-built
// Manifest holds something else, and then it constrains nothing.
Json schema_value(const std::string& text) { return Json::parse(text, nullptr, false); }

bool in_enum(const ConfigKey& k, const Json& value) {
  return std::any_of(k.enum_json.begin(), k.enum_json.end(), [&](const std::string& e) {
    const auto allowed = schema_value(e);
    return allowed.is_discarded() || allowed == value;  // 1 and 1.0 are the same number
  });
}

// Why `value` (already of the key's type) is below the key's minimum or above its maximum.
std::optional<std::string> range_problem(const ConfigKey& k, const Json& value) {
  if (const auto min = schema_value(k.minimum_json); !k.minimum_json.empty() && !min.is_discarded() && value < min)
    return "must be at least " + k.minimum_json + ", got " + dump(value);
  if (const auto max = schema_value(k.maximum_json); !k.maximum_json.empty() && !max.is_discarded() && max < value)
    return "must be at most " + k.maximum_json + ", got " + dump(value);
  return std::nullopt;
}

// Why `value` (already of the key's type) is outside the key's minimum, maximum or enum; nullopt
// when it is inside.
std::optional<std::string> bounds_problem(const ConfigKey& k, const Json& value) {
  if (auto outside = range_problem(k, value)) return outside;
  if (!k.enum_json.empty() && !in_enum(k, value)) {
    std::string allowed;
    for (const auto& e : k.enum_json) allowed += (allowed.empty() ? "" : ", ") + e;
    return "must be one of " + allowed + ", got " + dump(value);
  }
  return std::nullopt;
}

// nlohmann's parse_error text is "[json.exception.parse_error.101] parse error at line 3,
// column 7: syntax error while parsing ..."; keep everything after the id, which already names
// the line and column, and add the byte offset.
std::string exception_text(const nlohmann::json::exception& e) {
  std::string_view what = e.what();
  if (const auto close = what.find("] "); close != std::string_view::npos) what.remove_prefix(close + 2);
  return std::string{what};
}
std::string parse_error_text(const nlohmann::json::parse_error& e) {
  return exception_text(e) + " (byte " + std::to_string(e.byte) + ")";
}

// nlohmann's lexer takes a NUL byte for the end of the input and ignores whatever follows, so
// "{...}\0{...}" would parse as one document; a NUL is never valid in JSON text.
std::optional<std::string> nul_problem(std::string_view text) {
  const auto nul = text.find('\0');
  if (nul == std::string_view::npos) return std::nullopt;
  return "NUL byte at byte " + std::to_string(nul) + " (JSON text cannot contain one)";
}

// Parses `text`, refusing documents nested deeper than kMaxDepth. Throws parse_error or TooDeep.
Json parse_json(std::string_view text) {
  return Json::parse(text, [](int depth, Json::parse_event_t, Json&) {
    if (depth > kMaxDepth) throw TooDeep{};
    return true;
  });
}

// Validates one manifest document, collecting every problem.
class Checker {
 public:
  void error(std::string field, std::string message) { errors.push_back({std::move(field), std::move(message)}); }
  void warn(std::string field, std::string message) { warnings.push_back({std::move(field), std::move(message)}); }

  // Keys not in `known` are warnings, not errors: a newer ABI minor may add keys (docs/abi.md §7.2).
  template <std::size_t N>
  void check_keys(const Json& object, const std::string& path, const std::array<std::string_view, N>& known) {
    for (const auto& [key, value] : object.items()) {
      if (std::find(known.begin(), known.end(), key) != known.end()) continue;
      const auto best = suggestion(key, known);
      warn(key_path(path, key), "unknown key ignored" + (best ? did_you_mean(best) : "; known keys: " + one_of(known)));
    }
  }

  // The member `key` of `object` if it is present and passes `is_type`; records an error if it
  // has another type, or is missing and `required`.
  template <typename Predicate>
  const Json* member(const Json& object, const std::string& path, std::string_view key, bool required,
                     std::string_view expected, Predicate is_type) {
    const auto it = object.find(std::string{key});
    const auto field = key_path(path, key);
    if (it == object.end()) {
      if (required) error(field, "required key is missing");
      return nullptr;
    }
    if (!is_type(*it)) {
      error(field, mismatch(expected, *it));
      return nullptr;
    }
    return &*it;
  }
  const std::string* string_member(const Json& object, const std::string& path, std::string_view key, bool required) {
    const Json* v = member(object, path, key, required, "a string", [](const Json& j) { return j.is_string(); });
    return v == nullptr ? nullptr : v->get_ptr<const std::string*>();
  }
  std::optional<bool> bool_member(const Json& object, const std::string& path, std::string_view key) {
    const Json* v = member(object, path, key, false, "a boolean", [](const Json& j) { return j.is_boolean(); });
    return v == nullptr ? std::nullopt : std::optional<bool>{v->get<bool>()};
  }
  const Json* array_member(const Json& object, const std::string& path, std::string_view key) {
    return member(object, path, key, false, "an array", [](const Json& j) { return j.is_array(); });
  }
  const Json* object_member(const Json& object, const std::string& path, std::string_view key) {
    return member(object, path, key, false, "an object", [](const Json& j) { return j.is_object(); });
  }

  // Each element of an array of strings, with its path; non-strings are errors.
  template <typename Fn>
  void each_string(const Json& array, const std::string& path, Fn&& fn) {
    for (std::size_t i = 0; i < array.size(); ++i) {
      const auto field = index_path(path, i);
      if (!array[i].is_string()) {
        error(field, mismatch("a string", array[i]));
        continue;
      }
      fn(array[i].get_ref<const std::string&>(), field);
    }
  }

  void check(const Json& root, Manifest& m) {
    if (!root.is_object()) {
      error("", "the manifest must be a JSON object, got " + std::string{value_phrase(root)});
      return;
    }
    check_keys(root, "", kTopLevelKeys);
    check_identity(root, m);
    check_dependencies(root, m);
    check_routes(root, m);
    if (const auto* c = string_member(root, "", "concurrency", false)) {
      if (*c == "serialized") {
        m.serialized = true;
      } else if (*c != "parallel") {
        error("concurrency", in_quotes(*c) + " is not one of " + one_of(kConcurrency) + did_you_mean(suggestion(*c, kConcurrency)));
      }
    }
    check_events(root, m);
    check_permissions(root, m);
    check_durable_permission(m);
    check_config(root, m);
    check_migrations(root, m);
  }

  std::vector<ManifestError> errors;
  std::vector<ManifestError> warnings;

 private:
  bool durable_declared_ = false;  // a non-empty events.durable; needs kStoragePermission
  std::string storage_read_route_;  // a route with "storage": "read" (its path); needs it too

  void check_identity(const Json& root, Manifest& m) {
    if (const auto* name = string_member(root, "", "name", true)) {
      if (valid_plugin_name(*name)) {
        m.name = *name;
      } else {
        error("name", plugin_name_problem(*name));
      }
    }
    if (const auto* version = string_member(root, "", "version", true)) {
      if (const auto v = parse_version(*version)) {
        m.version = *v;
      } else {
        error("version", in_quotes(*version) + " is not a semantic version (MAJOR.MINOR.PATCH[-pre][+build], e.g. 1.4.2)");
      }
    }
    if (const auto* abi = string_member(root, "", "abi", true)) {
      if (!parse_abi(*abi, m)) error("abi", in_quotes(*abi) + " is not \"MAJOR.MINOR\" (e.g. \"1.0\", each part 0..65535)");
    }
    if (const auto* description = string_member(root, "", "description", false)) m.description = *description;
  }

  static bool parse_abi(std::string_view s, Manifest& m) {
    const auto dot = s.find('.');
    if (dot == std::string_view::npos) return false;
    std::uint64_t parts[2] = {0, 0};
    const std::string_view texts[2] = {s.substr(0, dot), s.substr(dot + 1)};
    for (std::size_t i = 0; i < 2; ++i) {
      const auto t = texts[i];
      if (t.empty() || t.size() > 5 || (t.size() > 1 && t.front() == '0')) return false;
      if (!std::all_of(t.begin(), t.end(), is_digit)) return false;
      for (const char c : t) parts[i] = parts[i] * 10 + static_cast<std::uint64_t>(c - '0');
      if (parts[i] > kMaxAbiPart) return false;
    }
    m.abi_major = static_cast<std::uint32_t>(parts[0]);
    m.abi_minor = static_cast<std::uint32_t>(parts[1]);
    return true;
  }

  void check_dependencies(const Json& root, Manifest& m) {
    const Json* deps = array_member(root, "", "dependencies");
    if (deps == nullptr) return;
    std::vector<std::pair<std::string, std::string>> seen;  // name -> field of its first mention
    for (std::size_t i = 0; i < deps->size(); ++i) {
      const auto path = index_path("dependencies", i);
      const Json& dep = (*deps)[i];
      if (!dep.is_object()) {
        error(path, mismatch("an object {\"name\", \"version\"}", dep));
        continue;
      }
      check_keys(dep, path, kDependencyKeys);
      Dependency d;
      bool ok = true;
      if (const auto* name = string_member(dep, path, "name", true)) {
        const auto field = path + ".name";
        if (!valid_plugin_name(*name)) {
          error(field, plugin_name_problem(*name));
          ok = false;
        } else if (!m.name.empty() && *name == m.name) {
          error(field, "a plugin cannot depend on itself");
          ok = false;
        } else if (const auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == *name; });
                   it != seen.end()) {
          error(field, "duplicate dependency " + in_quotes(*name) + " (also " + it->second + ")");
          ok = false;
        } else {
          seen.emplace_back(*name, field);
          d.name = *name;
        }
      } else {
        ok = false;
      }
      if (const auto* range = string_member(dep, path, "version", true)) {
        if (auto r = VersionRange::parse(*range)) {
          d.range = std::move(*r);
        } else {
          error(path + ".version", in_quotes(*range) +
                                       " is not a version range (space-separated comparators such as "
                                       "\">=1.2.0 <2.0.0\", \"^1.4\", \"~1.4.2\", \"1.x\", \"=1.0.0\")");
          ok = false;
        }
      } else {
        ok = false;
      }
      if (ok) m.dependencies.push_back(std::move(d));
    }
  }

  void check_routes(const Json& root, Manifest& m) {
    const Json* routes = array_member(root, "", "routes");
    if (routes == nullptr) return;
    struct Seen {
      std::string method, shape, field;
    };
    std::vector<Seen> seen;  // each route accepted so far
    for (std::size_t i = 0; i < routes->size(); ++i) {
      const auto path = index_path("routes", i);
      const Json& route = (*routes)[i];
      if (!route.is_object()) {
        error(path, mismatch("an object {\"method\", \"path\", ...}", route));
        continue;
      }
      check_keys(route, path, kRouteKeys);
      RouteDecl r;
      bool ok = true;
      if (const auto* method = string_member(route, path, "method", true)) {
        if (valid_method(*method)) {
          r.method = *method;
        } else {
          std::string upper = *method;
          std::transform(upper.begin(), upper.end(), upper.begin(),
                         [](char c) { return is_lower(c) ? static_cast<char>(c - 'a' + 'A') : c; });
          error(path + ".method", in_quotes(*method) + " is not an upper-case method token (e.g. GET, POST) or \"*\"" +
                                      (valid_method(upper) ? did_you_mean(upper) : std::string{}));
          ok = false;
        }
      } else {
        ok = false;
      }
      std::string shape;
      if (const auto* p = string_member(route, path, "path", true)) {
        if (const auto problem = path_problem(*p, shape)) {
          error(path + ".path", in_quotes(*p) + ": " + *problem);
          ok = false;
        } else {
          r.path = *p;
        }
      } else {
        ok = false;
      }
      if (const auto* summary = string_member(route, path, "summary", false)) r.summary = *summary;
      if (const auto blocking = bool_member(route, path, "blocking")) r.blocking = *blocking;
      if (const auto* storage = string_member(route, path, "storage", false)) {
        if (*storage != "read") {
          error(path + ".storage", in_quotes(*storage) + " is not a storage mode: the only one is \"read\" (a handler that "
                                   "only reads its storage); leave it out for a route that writes");
        } else if (r.blocking) {
          error(path + ".storage", "\"read\" with \"blocking\": true: a blocking route always runs on the worker pool; "
                                   "keep one of the two");
        } else {
          r.storage_read = true;
          storage_read_route_ = path;
        }
      }
      check_route_request(route, path, r);
      check_route_responses(route, path, r);
      check_route_query(route, path, r);
      if (!ok) continue;
      // The router's rule: one shape, one route per method, and a "*" route takes them all.
      if (const auto it = std::find_if(seen.begin(), seen.end(), [&](const Seen& s) {
            return s.shape == shape && (s.method == r.method || s.method == "*" || r.method == "*");
          });
          it != seen.end()) {
        error(path, it->method == r.method
                        ? "duplicate route " + r.method + " " + r.path + " (same method and path as " + it->field + ")"
                        : "route " + r.method + " " + r.path + " overlaps " + it->field +
                              ": a \"*\" route takes every method of its path");
        continue;
      }
      seen.push_back({r.method, shape, path});
      m.routes.push_back(std::move(r));
    }
  }

  // The documentation keys of a route (docs/abi.md §7.2): "request", "responses", "query". They
  // only feed GET /openapi.json, so a problem in them never affects routing, but it is still
  // an error: a wrong declaration would publish wrong API documentation.
  void check_route_request(const Json& route, const std::string& path, RouteDecl& r) {
    const Json* request = object_member(route, path, "request");
    if (request == nullptr) return;
    const auto field = path + ".request";
    check_keys(*request, field, kRequestKeys);
    RequestDecl d;
    if (const auto* content_type = content_type_member(*request, field)) d.content_type = *content_type;
    if (const Json* schema = schema_member(*request, field)) d.schema_json = dump(*schema);
    if (const auto* description = string_member(*request, field, "description", false)) d.description = *description;
    r.request = std::move(d);
  }

  void check_route_responses(const Json& route, const std::string& path, RouteDecl& r) {
    const Json* responses = object_member(route, path, "responses");
    if (responses == nullptr) return;
    for (const auto& [status, response] : responses->items()) {
      const auto field = key_path(path + ".responses", status);
      if (!valid_status_key(status)) {
        error(field, "expected a status code 100..599 or \"default\"");
        continue;
      }
      if (!response.is_object()) {
        error(field, mismatch("an object {\"description\"?, \"content_type\"?, \"schema\"?}", response));
        continue;
      }
      check_keys(response, field, kResponseKeys);
      ResponseDecl d;
      d.status = status;
      if (const auto* description = string_member(response, field, "description", false)) d.description = *description;
      if (const auto* content_type = content_type_member(response, field)) d.content_type = *content_type;
      if (const Json* schema = schema_member(response, field)) {
        d.schema_json = dump(*schema);
        if (d.content_type.empty()) d.content_type = kDefaultContentType;
      }
      r.responses.push_back(std::move(d));
    }
  }

  void check_route_query(const Json& route, const std::string& path, RouteDecl& r) {
    const Json* query = array_member(route, path, "query");
    if (query == nullptr) return;
    std::vector<std::pair<std::string, std::string>> seen;  // name -> field of its first mention
    for (std::size_t i = 0; i < query->size(); ++i) {
      const auto field = index_path(path + ".query", i);
      const Json& entry = (*query)[i];
      if (!entry.is_object()) {
        error(field, mismatch("an object {\"name\", \"type\"?, \"description\"?, \"required\"?}", entry));
        continue;
      }
      check_keys(entry, field, kQueryKeys);
      QueryParamDecl d;
      bool ok = true;
      if (const auto* name = string_member(entry, field, "name", true)) {
        if (!valid_query_name(*name)) {
          error(field + ".name", in_quotes(*name) + " is not a query parameter name: use A-Z, a-z, 0-9, '-', '.', '_', '~'");
          ok = false;
        } else if (const auto it = std::find_if(seen.begin(), seen.end(), [&](const auto& s) { return s.first == *name; });
                   it != seen.end()) {
          error(field + ".name", "duplicate query parameter " + in_quotes(*name) + " (also " + it->second + ")");
          ok = false;
        } else {
          seen.emplace_back(*name, field);
          d.name = *name;
        }
      } else {
        ok = false;
      }
      if (const auto* type = string_member(entry, field, "type", false)) {
        if (std::find(kQueryTypes.begin(), kQueryTypes.end(), *type) == kQueryTypes.end()) {
          error(field + ".type",
                in_quotes(*type) + " is not one of " + one_of(kQueryTypes) + did_you_mean(suggestion(*type, kQueryTypes)));
          ok = false;
        } else {
          d.type = *type;
        }
      }
      if (const auto* description = string_member(entry, field, "description", false)) d.description = *description;
      if (const auto required = bool_member(entry, field, "required")) d.required = *required;
      if (ok) r.query.push_back(std::move(d));
    }
  }

  // "content_type" of a request or response: a string that is a media type or range.
  const std::string* content_type_member(const Json& object, const std::string& path) {
    const auto* content_type = string_member(object, path, "content_type", false);
    if (content_type == nullptr || valid_media_type(*content_type)) return content_type;
    error(path + ".content_type", in_quotes(*content_type) +
                                      " is not a media type: expected type/subtype, e.g. \"application/json\" or "
                                      "\"text/*\", optionally followed by \"; parameters\"");
    return nullptr;
  }

  // "schema": a JSON Schema, which the host copies into the OpenAPI document as is. Only the
  // object form is accepted (not the boolean schemas true/false).
  const Json* schema_member(const Json& object, const std::string& path) {
    return member(object, path, "schema", false, "a JSON Schema object", [](const Json& j) { return j.is_object(); });
  }

  void check_events(const Json& root, Manifest& m) {
    const Json* events = object_member(root, "", "events");
    if (events == nullptr) return;
    check_keys(*events, "events", kEventKeys);
    if (const Json* publishes = array_member(*events, "events", "publishes")) {
      each_string(*publishes, "events.publishes", [&](const std::string& topic, const std::string& field) {
        if (valid_topic(topic)) {
          m.publishes.push_back(topic);
        } else {
          error(field, in_quotes(topic) + kNotATopic);
        }
      });
    }
    if (const Json* subscribes = array_member(*events, "events", "subscribes")) {
      each_string(*subscribes, "events.subscribes", [&](const std::string& pattern, const std::string& field) {
        if (const auto problem = pattern_problem(pattern)) {
          error(field, in_quotes(pattern) + " is not a topic pattern: " + *problem);
        } else {
          m.subscribes.push_back(pattern);
        }
      });
    }
    // After publishes: every durable topic must be one of them.
    if (const Json* durable = array_member(*events, "events", "durable")) {
      durable_declared_ = !durable->empty();
      each_string(*durable, "events.durable", [&](const std::string& topic, const std::string& field) {
        if (!valid_topic(topic)) {
          error(field, in_quotes(topic) + kNotATopic);
        } else if (std::find(m.publishes.begin(), m.publishes.end(), topic) == m.publishes.end()) {
          error(field, in_quotes(topic) + " is not in events.publishes");
        } else {
          m.durable.push_back(topic);
        }
      });
    }
  }

  // Runs after check_permissions: durable events are rows of an outbox table in the publisher's
  // own database, which only the storage extension provides.
  void check_durable_permission(const Manifest& m) {
    if (durable_declared_ && !has_permission(m, kStoragePermission)) {
      error("events.durable", "durable topics are stored in the publisher's database: add the permission \"" +
                                  std::string{kStoragePermission} + "\"");
    }
    if (!storage_read_route_.empty() && !has_permission(m, kStoragePermission)) {
      error(storage_read_route_ + ".storage", "\"read\" reads the plugin's database: add the permission \"" +
                                                  std::string{kStoragePermission} + "\"");
    }
  }

  // "call:<plugin>", "call:*" and "ext:<id>". A malformed value of a known kind is an error; a
  // permission of an unknown kind is not granted and only warned about (docs/abi.md §7.2), so a
  // newer host can add kinds.
  void check_permissions(const Json& root, Manifest& m) {
    const Json* permissions = array_member(root, "", "permissions");
    if (permissions == nullptr) return;
    each_string(*permissions, "permissions", [&](const std::string& p, const std::string& field) {
      const auto colon = p.find(':');
      const std::string_view kind = std::string_view(p).substr(0, colon);
      const std::string_view value = colon == std::string::npos ? std::string_view{} : std::string_view(p).substr(colon + 1);
      if (colon != std::string::npos && kind == "call") {
        if (value == "*" || valid_plugin_name(value)) {
          m.permissions.push_back(p);
        } else {
          error(field, in_quotes(p) + " is malformed: expected call:<plugin-name> ([a-z][a-z0-9_]*) or call:*");
        }
      } else if (colon != std::string::npos && kind == "ext") {
        if (valid_extension_id(value)) {
          m.permissions.push_back(p);
        } else {
          error(field, in_quotes(p) + " is malformed: expected ext:<namespace>.<name>/<revision>, e.g. ext:keel.storage/1");
        }
      } else {
        std::string message = "unknown permission " + in_quotes(p) + " is not granted; known forms: call:<plugin-name>, "
                                                                     "call:*, ext:<extension-id>";
        if (const auto best = suggestion(kind, kPermissionKinds)) {
          message += " (did you mean " + in_quotes(*best + ":" + std::string{value}) + "?)";
        }
        warn(field, std::move(message));
      }
    });
  }

  void check_config(const Json& root, Manifest& m) {
    const Json* config = object_member(root, "", "config");
    if (config == nullptr) return;
    for (const auto& [key, entry] : config->items()) {
      const auto path = key_path("config", key);
      if (key.empty()) {
        error(path, "a config key must not be empty");
        continue;
      }
      if (is_host_plugin_key(key)) {
        error(path, in_quotes(key) + " is reserved: the host reads [plugin.<name>] " + key +
                        " itself and never passes it to the plugin (docs/config.md); name the plugin's key otherwise");
        continue;
      }
      if (!entry.is_object()) {
        error(path, mismatch("an object {\"type\", \"default\", \"required\", \"description\", \"secret\", "
                             "\"minimum\", \"maximum\", \"enum\"}",
                             entry));
        continue;
      }
      check_keys(entry, path, kConfigEntryKeys);
      ConfigKey k;
      k.name = key;
      bool ok = true;
      const TypeName* type = nullptr;
      if (const auto* t = string_member(entry, path, "type", true)) {
        type = find_type(*t);
        if (type == nullptr) {
          std::vector<std::string_view> names;
          for (const auto& known : kConfigTypes) names.push_back(known.name);
          error(path + ".type", in_quotes(*t) + " is not one of " + one_of(names) + did_you_mean(suggestion(*t, names)));
          ok = false;
        } else {
          k.type = type->type;
        }
      } else {
        ok = false;
      }
      if (const auto required = bool_member(entry, path, "required")) k.required = *required;
      if (const auto secret = bool_member(entry, path, "secret")) k.secret = *secret;
      if (const auto* description = string_member(entry, path, "description", false)) k.description = *description;
      if (type != nullptr && !check_bounds(entry, path, *type, k)) ok = false;
      if (const auto it = entry.find("default"); it != entry.end()) {
        if (k.required) {
          error(path + ".required", "a required key cannot have a default (a key with a default is never missing)");
          ok = false;
        } else if (type != nullptr) {
          if (const auto problem = type_problem(type->type, *it)) {
            error(path + ".default", "does not match type " + in_quotes(type->name) + ": " + *problem);
            ok = false;
          } else if (const auto outside = bounds_problem(k, *it)) {
            error(path + ".default", *outside);
            ok = false;
          } else {
            k.default_json = dump(*it);
          }
        }
      }
      if (ok) m.config.push_back(std::move(k));
    }
  }

  // "minimum", "maximum" (integer and number keys) and "enum" (any scalar type) into `k`; false
  // after reporting what is wrong.
  bool check_bounds(const Json& entry, const std::string& path, const TypeName& type, ConfigKey& k) {
    bool ok = true;
    const bool numeric = type.type == ConfigType::kInteger || type.type == ConfigType::kNumber;
    for (const auto* bound : {"minimum", "maximum"}) {
      const auto it = entry.find(bound);
      if (it == entry.end()) continue;
      if (!numeric) {
        error(path + "." + bound, "applies to \"integer\" and \"number\" keys only, not " + in_quotes(type.name));
        ok = false;
      } else if (const auto problem = type_problem(type.type, *it)) {
        error(path + "." + bound, "does not match type " + in_quotes(type.name) + ": " + *problem);
        ok = false;
      } else {
        (std::string_view(bound) == "minimum" ? k.minimum_json : k.maximum_json) = dump(*it);
      }
    }
    if (ok && !k.minimum_json.empty() && !k.maximum_json.empty() &&
        schema_value(k.maximum_json) < schema_value(k.minimum_json)) {
      error(path + ".maximum", "is below \"minimum\" (" + k.minimum_json + ")");
      ok = false;
    }
    if (const auto it = entry.find("enum"); it != entry.end()) {
      if (type.type == ConfigType::kArray || type.type == ConfigType::kObject) {
        error(path + ".enum", "applies to string, integer, number and boolean keys only, not " + in_quotes(type.name));
        return false;
      }
      if (!it->is_array() || it->empty()) {
        error(path + ".enum", mismatch("a non-empty array of the allowed values", *it));
        return false;
      }
      for (std::size_t i = 0; i < it->size(); ++i) {
        const auto& value = (*it)[i];
        const auto at = path + ".enum[" + std::to_string(i) + "]";
        if (const auto problem = type_problem(type.type, value)) {
          error(at, "does not match type " + in_quotes(type.name) + ": " + *problem);
          ok = false;
        } else if (const auto outside = range_problem(k, value)) {
          error(at, *outside);
          ok = false;
        } else if (in_enum(k, value)) {
          error(at, dump(value) + " is listed twice");
          ok = false;
        } else {
          k.enum_json.push_back(dump(value));
        }
      }
    }
    return ok;
  }

  // Runs after check_permissions: a non-empty list needs ext:keel.storage/1.
  void check_migrations(const Json& root, Manifest& m) {
    const Json* migrations = array_member(root, "", "migrations");
    if (migrations == nullptr) return;
    if (!migrations->empty() && !has_permission(m, kStoragePermission)) {
      error("migrations", "declaring migrations needs the permission \"" + std::string{kStoragePermission} +
                              "\" in \"permissions\"");
    }
    // The last valid version and where it was; an entry whose version is broken is skipped, so
    // the next one is compared with the last version that could be read.
    std::optional<std::pair<std::int64_t, std::string>> previous;
    for (std::size_t i = 0; i < migrations->size(); ++i) {
      const auto path = index_path("migrations", i);
      const Json& entry = (*migrations)[i];
      if (!entry.is_object()) {
        error(path, mismatch("an object {\"version\", \"description\"?, \"sql\"}", entry));
        continue;
      }
      check_keys(entry, path, kMigrationKeys);
      MigrationDecl d;
      bool ok = true;
      if (const auto version = version_member(entry, path)) {
        const auto field = path + ".version";
        if (previous && *version <= previous->first) {
          const auto prior = std::to_string(previous->first);
          const std::string why =
              *version == previous->first
                  ? "duplicate version " + prior + " (also " + previous->second + ")"
                  : "version " + std::to_string(*version) + " is not greater than version " + prior + " of " +
                        previous->second;
          error(field, why + "; versions must strictly increase, so append new migrations at the end");
          ok = false;
        } else {
          previous.emplace(*version, path);
          d.version = *version;
        }
      } else {
        ok = false;
      }
      if (const auto* sql = string_member(entry, path, "sql", true)) {
        if (sql->find_first_not_of(" \t\r\n\f\v") == std::string::npos) {
          error(path + ".sql", "must not be empty: give one or more SQL statements");
          ok = false;
        } else {
          d.sql = *sql;
        }
      } else {
        ok = false;
      }
      if (const auto* description = string_member(entry, path, "description", false)) d.description = *description;
      if (ok) m.migrations.push_back(std::move(d));
    }
  }

  // migrations[i].version: required, an integer >= 1 that fits int64.
  std::optional<std::int64_t> version_member(const Json& entry, const std::string& path) {
    const Json* v = member(entry, path, "version", true, "an integer >= 1", [](const Json& j) {
      return j.is_number_integer();
    });
    if (v == nullptr) return std::nullopt;
    const auto field = path + ".version";
    if (v->is_number_unsigned() &&
        v->get<std::uint64_t>() > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
      error(field, "expected an integer >= 1, got an integer outside the signed 64-bit range");
      return std::nullopt;
    }
    const auto version = v->get<std::int64_t>();
    if (version < 1) {
      error(field, std::to_string(version) + " is not allowed: versions start at 1");
      return std::nullopt;
    }
    return version;
  }
};

}  // namespace

// docs/abi.md §7.2: [a-z][a-z0-9_]*, at most 64 bytes.
bool valid_plugin_name(std::string_view s) noexcept {
  if (s.empty() || s.size() > kMaxNameBytes || !is_lower(s.front())) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_lower(c) || is_digit(c) || c == '_'; });
}

std::variant<std::string_view, ManifestError> manifest_text_from_section(std::string_view section) {
  if (section.size() > kMaxManifestBytes) {
    return ManifestError{"", "the manifest section is " + std::to_string(section.size()) +
                                 " bytes; at most " + std::to_string(kMaxManifestBytes) + " are allowed"};
  }
  const auto nul = section.find('\0');
  if (nul == std::string_view::npos) {
    return ManifestError{"", "the manifest section is not NUL-terminated"};
  }
  if (nul + 1 != section.size()) {
    return ManifestError{"", "the manifest section holds more than one document (NUL at byte " +
                                 std::to_string(nul) + " of " + std::to_string(section.size()) +
                                 "); was KEEL_PLUGIN_MANIFEST used in two translation units?"};
  }
  return section.substr(0, nul);
}

std::variant<Manifest, std::vector<ManifestError>> parse_manifest(std::string_view json) {
  if (const auto problem = nul_problem(json)) return std::vector<ManifestError>{{"", "invalid JSON: " + *problem}};
  Json root;
  try {
    root = parse_json(json);
  } catch (const nlohmann::json::parse_error& e) {
    return std::vector<ManifestError>{{"", "invalid JSON: " + parse_error_text(e)}};
  } catch (const nlohmann::json::exception& e) {  // out_of_range.406: a number beyond double, e.g. 1e400
    return std::vector<ManifestError>{{"", "invalid JSON: " + exception_text(e)}};
  } catch (const TooDeep&) {
    return std::vector<ManifestError>{{"", "invalid JSON: nested deeper than " + std::to_string(kMaxDepth) + " levels"}};
  }
  Manifest m;
  Checker checker;
  checker.check(root, m);
  if (!checker.errors.empty()) return std::move(checker.errors);
  m.json = std::string{json};
  m.warnings = std::move(checker.warnings);
  return m;
}

std::variant<std::string, std::vector<ConfigIssue>> apply_config_schema(const Manifest& manifest,
                                                                       std::string_view settings_json) {
  std::vector<ConfigIssue> issues;
  Json settings = Json::object();
  if (const auto problem = nul_problem(settings_json)) {
    return std::vector<ConfigIssue>{{"", "settings are not valid JSON: " + *problem}};
  }
  if (settings_json.find_first_not_of(" \t\r\n") != std::string_view::npos) {
    try {
      settings = parse_json(settings_json);
    } catch (const nlohmann::json::parse_error& e) {
      return std::vector<ConfigIssue>{{"", "settings are not valid JSON: " + parse_error_text(e)}};
    } catch (const nlohmann::json::exception& e) {
      return std::vector<ConfigIssue>{{"", "settings are not valid JSON: " + exception_text(e)}};
    } catch (const TooDeep&) {
      return std::vector<ConfigIssue>{{"", "settings are nested deeper than " + std::to_string(kMaxDepth) + " levels"}};
    }
  }
  if (!settings.is_object()) {
    return std::vector<ConfigIssue>{{"", "settings must be an object of keys, got " + std::string{value_phrase(settings)}}};
  }

  auto find_key = [&](std::string_view name) -> const ConfigKey* {
    for (const auto& k : manifest.config)
      if (k.name == name) return &k;
    return nullptr;
  };
  for (const auto& [key, value] : settings.items()) {
    const ConfigKey* k = find_key(key);
    if (k == nullptr) {
      std::string message = "unknown key " + in_quotes(key);
      if (manifest.config.empty()) {
        message += "; plugin '" + manifest.name + "' accepts no settings";
      } else {
        ClosestMatch closest{key};
        std::string known;
        for (const auto& candidate : manifest.config) {
          closest.consider(candidate.name);
          known += (known.empty() ? "" : ", ") + candidate.name;
        }
        message += closest.best() ? did_you_mean(closest.best()) : "; known keys: " + known;
      }
      issues.push_back({key, std::move(message)});
      continue;
    }
    if (const auto problem = type_problem(k->type, value)) issues.push_back({key, *problem});
    else if (const auto outside = bounds_problem(*k, value)) issues.push_back({key, *outside});
  }
  for (const auto& k : manifest.config) {
    if (k.required && !settings.contains(k.name)) {
      issues.push_back({k.name, "required key is missing" + (k.description.empty() ? "" : " (" + k.description + ")")});
    }
  }
  if (!issues.empty()) return issues;

  Json effective = Json::object();
  for (const auto& k : manifest.config) {
    if (const auto it = settings.find(k.name); it != settings.end()) {
      effective[k.name] = *it;
    } else if (!k.default_json.empty()) {
      // parse_manifest wrote default_json; a hand-built Manifest might not have.
      auto value = Json::parse(k.default_json, nullptr, false);
      if (value.is_discarded()) {
        issues.push_back({k.name, "the manifest's default is not valid JSON: " + k.default_json});
        continue;
      }
      effective[k.name] = std::move(value);
    }
  }
  if (!issues.empty()) return issues;
  return dump(effective);
}

bool has_permission(const Manifest& manifest, std::string_view permission) {
  const auto& granted = manifest.permissions;
  if (std::find(granted.begin(), granted.end(), permission) != granted.end()) return true;
  constexpr std::string_view kCall = "call:";
  if (permission.size() > kCall.size() && permission.substr(0, kCall.size()) == kCall) {
    return std::find(granted.begin(), granted.end(), "call:*") != granted.end();
  }
  return false;
}

}  // namespace keel::host::package
