// /admin/config: the effective configuration as JSON, secrets redacted.
#include <algorithm>
#include <array>
#include <optional>
#include <string_view>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "config/config_keys.hpp"

namespace keel::host::config {
using namespace detail;
namespace {

constexpr std::array<std::string_view, 8> kSecretWords{"password", "passwd",  "secret",      "token",
                                                      "api_key",  "apikey", "private_key", "credential"};
// A name that ends in one of these after a prefix ("stripe_key", "smtp_pass") names a secret too.
constexpr std::array<std::string_view, 4> kSecretSuffixes{"_key", "_pass", "_pwd", "_auth"};

using OrderedJson = nlohmann::ordered_json;

OrderedJson optional_text(const std::string& s) { return s.empty() ? OrderedJson(nullptr) : OrderedJson(s); }

// An empty string stays "": it tells the operator the secret is unset without revealing anything.
OrderedJson redacted(const OrderedJson& value) {
  if (value.is_string() && value.get_ref<const std::string&>().empty()) return value;
  return std::string{kRedacted};
}

// A URL's password: "postgres://app:s3cret@db/x" -> "postgres://app:<redacted>@db/x". Other text
// is returned as it is. The user part may run up to the first '/': libpq ends it there only (a
// '?' or '#' in a password is the password's), and hiding too much is the safe side.
std::string without_url_password(const std::string& text) {
  const auto scheme_end = text.find("://");
  if (scheme_end == std::string::npos) return text;
  const auto authority = scheme_end + 3;
  const auto authority_end = std::min(text.find('/', authority), text.size());
  const auto at = text.rfind('@', authority_end - 1);
  if (at == std::string::npos || at < authority) return text;
  const auto colon = text.find(':', authority);
  if (colon == std::string::npos || colon > at || colon + 1 == at) return text;
  return text.substr(0, colon + 1) + std::string{kRedacted} + text.substr(at);
}

// libpq's blanks between keys and values: isspace() in the C locale (fe-connect.c conninfo_parse).
bool blank(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' || c == '\r'; }

// Percent-decoding as libpq applies it to a URI's query keywords; a malformed escape stays as it is.
std::string percent_decoded(std::string_view s) {
  const auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
      out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

// "key = value" pairs as libpq's conninfo_parse (fe-connect.c) reads them, each password value
// replaced; nothing when libpq would refuse the string. A value is bare, up to a blank, or
// single-quoted from its first character; a backslash escapes the next character in either.
std::optional<std::string> without_key_value_password(std::string_view text) {
  std::string out;
  std::size_t i = 0;
  while (i < text.size()) {
    if (blank(text[i])) {
      out += text[i++];
      continue;
    }
    const auto key_start = i;
    while (i < text.size() && text[i] != '=' && !blank(text[i])) ++i;
    const auto key = text.substr(key_start, i - key_start);
    while (i < text.size() && blank(text[i])) ++i;
    if (i == text.size() || text[i] != '=') return std::nullopt;  // libpq: missing "="
    ++i;
    while (i < text.size() && blank(text[i])) ++i;
    out += text.substr(key_start, i - key_start);
    const auto value = i;
    const bool quoted = i < text.size() && text[i] == '\'';
    if (quoted) {
      for (++i; i < text.size() && text[i] != '\''; ++i)
        if (text[i] == '\\') ++i;
      if (i >= text.size()) return std::nullopt;  // libpq: unterminated quoted string
      ++i;
    } else {
      for (; i < text.size() && !blank(text[i]); ++i)
        if (text[i] == '\\') ++i;
      i = std::min(i, text.size());
    }
    // A quoted password stays quoted: the pair after it may follow without a blank.
    if (key != "password") out += text.substr(value, i - value);
    else if (quoted) out += "'" + std::string{kRedacted} + "'";
    else out += kRedacted;
  }
  return out;
}

// A libpq connection string's password, read as libpq reads it: a string that starts with
// "postgresql://" or "postgres://" is a URI (the password of its user part, and every query
// parameter whose keyword decodes to "password", up to the next '&'); any other is key = value
// pairs. A string libpq would refuse connects nowhere but may still hold a password: none of it
// is shown.
std::string without_conninfo_password(const std::string& text) {
  if (text.starts_with("postgresql://") || text.starts_with("postgres://")) {
    auto out = without_url_password(text);
    const auto query = out.find('?');
    for (auto at = query; at != std::string::npos && at < out.size(); at = out.find('&', at + 1)) {
      const auto end = std::min(out.find('&', at + 1), out.size());
      const auto eq = out.find('=', at + 1);
      if (eq >= end || percent_decoded(std::string_view(out).substr(at + 1, eq - at - 1)) != "password") continue;
      out.replace(eq + 1, end - eq - 1, kRedacted);
    }
    return out;
  }
  return without_key_value_password(text).value_or(std::string{kRedacted});
}

// Plugin settings may nest ([plugin.x.db] password = ...): redact secret-looking names at any
// depth, and the password of any URL written with one.
void redact_nested(OrderedJson& value) {
  if (value.is_string()) {
    value = without_url_password(value.get_ref<const std::string&>());
  } else if (value.is_object()) {
    for (auto& item : value.items()) {
      if (looks_secret(item.key())) item.value() = redacted(item.value());
      else redact_nested(item.value());
    }
  } else if (value.is_array()) {
    for (auto& element : value) redact_nested(element);
  }
}

// Each key's value as /admin/config shows it, from visit_keys().
struct Dumper {
  OrderedJson& out;
  OrderedJson* section_json = nullptr;
  void section(std::string_view name) { section_json = &out[std::string{name}]; }
  void set(std::string_view key, OrderedJson value) { (*section_json)[std::string{key}] = std::move(value); }
  void integer(std::string_view key, const auto& value, auto&&...) { set(key, value); }
  void duration(std::string_view key, std::chrono::milliseconds value, auto&&...) { set(key, value.count()); }
  void flag(std::string_view key, bool value) { set(key, value); }
  void text(std::string_view key, const std::string& value, auto&&...) { set(key, value); }
  void secret(std::string_view key, const std::string& value) { set(key, value.empty() ? std::string{} : std::string{kRedacted}); }
  void conninfo(std::string_view key, const std::string& value) { set(key, without_conninfo_password(value)); }
  void path(std::string_view key, const std::filesystem::path& value) { set(key, value.string()); }
  void list(std::string_view key, const std::vector<std::string>& value) { set(key, value); }
  template <typename T, std::size_t N>
  void choice(std::string_view key, const T& value, const std::array<std::string_view, N>& names) {
    if constexpr (std::is_enum_v<T>) {
      set(key, names[static_cast<std::size_t>(value)]);
    } else {
      set(key, value);
    }
  }
};

struct PluginLimitDumper {
  OrderedJson& p;
  void integer(std::string_view name, auto value, auto&&...) { p[std::string{name}] = value; }
  void millis(std::string_view name, std::chrono::milliseconds value, auto&&...) { p[std::string{name}] = value.count(); }
  void user(std::string_view name, const std::string& value) { p[std::string{name}] = optional_text(value); }
  void flag(std::string_view name, bool value) { p[std::string{name}] = value; }
  void rate(std::string_view name, double value) { p[std::string{name}] = value; }
};

OrderedJson plugin_section_json(const PluginSection& s, const std::vector<std::string>* declared_secrets) {
  OrderedJson p;
  p["enabled"] = s.enabled;
  p["mount"] = optional_text(s.mount);
  p["sha256"] = optional_text(s.sha256);
  p["log_level"] = optional_text(s.log_level);
  p["request_timeout_ms"] = s.request_timeout ? OrderedJson(s.request_timeout->count()) : OrderedJson(nullptr);
  auto routes = OrderedJson::object();
  for (const auto& [route, timeout] : s.route_timeouts) routes[route] = timeout.count();
  p["route_timeouts"] = std::move(routes);
  p["max_db_bytes"] = s.max_db_bytes ? OrderedJson(*s.max_db_bytes) : OrderedJson(nullptr);
  p["isolation"] = optional_text(s.isolation);
  p["storage_engine"] = optional_text(s.storage_engine);
  PluginLimitDumper limits{p};
  visit_plugin_limits(limits, s);
  // settings_json was written by collect_plugins(), so it is a valid object; a discarded parse
  // would only drop the plugin-owned keys, never show them unredacted.
  auto settings = OrderedJson::parse(s.settings_json, nullptr, false);
  if (!settings.is_object()) return p;
  for (auto& item : settings.items()) {
    OrderedJson value = std::move(item.value());
    const bool declared = declared_secrets != nullptr && std::find(declared_secrets->begin(), declared_secrets->end(),
                                                                   item.key()) != declared_secrets->end();
    if (declared || looks_secret(item.key())) value = redacted(value);
    else redact_nested(value);
    p[item.key()] = std::move(value);
  }
  return p;
}

}  // namespace

bool looks_secret(std::string_view key) noexcept {
  // Case-insensitive substring search without allocating (the words are lowercase ASCII).
  const auto contains = [key](std::string_view word) {
    for (std::size_t i = 0; i + word.size() <= key.size(); ++i) {
      std::size_t j = 0;
      while (j < word.size() && ascii_lower(key[i + j]) == word[j]) ++j;
      if (j == word.size()) return true;
    }
    return false;
  };
  const auto ends_with = [key](std::string_view suffix) {
    if (key.size() <= suffix.size()) return false;  // a prefix is needed: "key" alone is not a secret
    for (std::size_t i = 0; i < suffix.size(); ++i)
      if (ascii_lower(key[key.size() - suffix.size() + i]) != suffix[i]) return false;
    return true;
  };
  return std::any_of(kSecretWords.begin(), kSecretWords.end(), contains) ||
         std::any_of(kSecretSuffixes.begin(), kSecretSuffixes.end(), ends_with);
}

std::string to_json(const Config& c, const SecretKeys& secret_keys) {
  OrderedJson out;
  out["source"] = c.source.string();
  Dumper dumper{out};
  visit_keys(dumper, c);
  auto plugins = OrderedJson::object();
  for (const auto& [name, section] : c.plugin_sections) {
    const auto secrets = secret_keys.find(name);
    plugins[name] = plugin_section_json(section, secrets == secret_keys.end() ? nullptr : &secrets->second);
  }
  out["plugin"] = std::move(plugins);
  return out.dump(-1, ' ', false, OrderedJson::error_handler_t::replace);
}

}  // namespace keel::host::config
