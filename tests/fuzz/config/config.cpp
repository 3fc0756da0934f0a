// Fuzz target: the host config (config/): a TOML file and KEEL_* environment overrides, then
// /admin/config's view of what was accepted (config_json.cpp). The input is the file's text,
// optionally followed by a NUL byte and environment lines NAME=VALUE. Properties, each a trap
// when broken:
// - a refusal is a ConfigError with at least one diagnostic; nothing else is thrown;
// - /admin/config of an accepted config is JSON and shows no secret: the admin and cluster
//   tokens and the cluster password are redacted, and so is every password of
//   [storage] postgres_url as libpq reads it (a key=value string, or a postgres:// URI: its
//   user information and its query parameters, percent-decoded).

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"

namespace {

namespace cfg = keel::host::config;

void check(bool property) {
  if (!property) __builtin_trap();
}

bool space(char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; }

// libpq's conninfo_parse (fe-connect.c): "key = value ..." with values bare or single-quoted,
// backslash escaping the next character. Every (key, value), or nothing when libpq refuses it.
std::optional<std::vector<std::pair<std::string, std::string>>> key_values(std::string_view s) {
  std::vector<std::pair<std::string, std::string>> out;
  std::size_t i = 0;
  while (i < s.size()) {
    if (space(s[i])) {
      ++i;
      continue;
    }
    std::string key;
    while (i < s.size() && s[i] != '=' && !space(s[i])) key += s[i++];
    while (i < s.size() && space(s[i])) ++i;
    if (i == s.size() || s[i] != '=') return std::nullopt;
    ++i;
    while (i < s.size() && space(s[i])) ++i;
    std::string value;
    if (i < s.size() && s[i] == '\'') {
      for (++i;; ++i) {
        if (i == s.size()) return std::nullopt;  // unterminated quoted string
        if (s[i] == '\\' && i + 1 < s.size()) value += s[++i];
        else if (s[i] == '\\') continue;
        else if (s[i] == '\'') break;
        else value += s[i];
      }
      ++i;
    } else {
      for (; i < s.size() && !space(s[i]); ++i) {
        if (s[i] == '\\' && i + 1 < s.size()) value += s[++i];
        else if (s[i] != '\\') value += s[i];
      }
    }
    out.emplace_back(std::move(key), std::move(value));
  }
  return out;
}

// libpq's URI percent-decoding; nothing when an escape is malformed.
std::optional<std::string> uri_decode(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    if (i + 2 >= s.size() || !std::isxdigit(static_cast<unsigned char>(s[i + 1])) ||
        !std::isxdigit(static_cast<unsigned char>(s[i + 2])))
      return std::nullopt;
    out += static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16));
    i += 2;
  }
  return out;
}

// The password texts of a connection string as libpq finds them (conninfo_uri_parse_options,
// conninfo_uri_parse_params and conninfo_parse), as written (not decoded).
std::vector<std::string> passwords(std::string_view url) {
  std::vector<std::string> out;
  std::size_t prefix = 0;
  for (const std::string_view scheme : {"postgresql://", "postgres://"})
    if (prefix == 0 && url.starts_with(scheme)) prefix = scheme.size();
  if (prefix == 0) {
    if (const auto pairs = key_values(url))
      for (const auto& [key, value] : *pairs)
        if (key == "password") out.push_back(value);
    return out;
  }
  // The user information ends at the first '@' before any '/'.
  std::size_t rest = prefix;
  const auto stop = url.find_first_of("@/", prefix);
  if (stop != std::string_view::npos && url[stop] == '@') {
    const auto colon = url.find(':', prefix);
    if (colon < stop) out.emplace_back(url.substr(colon + 1, stop - colon - 1));
    rest = stop + 1;
  }
  const auto query = url.find('?', rest);
  if (query == std::string_view::npos) return out;
  std::string_view params = url.substr(query + 1);
  while (!params.empty()) {
    const auto amp = params.find('&');
    const auto param = params.substr(0, amp);
    const auto eq = param.find('=');
    if (eq == std::string_view::npos || param.find('=', eq + 1) != std::string_view::npos) return out;
    if (uri_decode(param.substr(0, eq)) == "password") out.emplace_back(param.substr(eq + 1));
    params = amp == std::string_view::npos ? std::string_view{} : params.substr(amp + 1);
  }
  return out;
}

bool redacted(const nlohmann::json& value) {
  return value.is_string() && (value == "" || value == std::string(cfg::kRedacted));
}

void check_shown(const cfg::Config& config) {
  const auto shown = nlohmann::json::parse(cfg::to_json(config));  // throws (a crash) on bad JSON
  check(redacted(shown.at("admin").at("token")) && redacted(shown.at("admin").at("token_next")));
  check(redacted(shown.at("cluster").at("token")) && redacted(shown.at("cluster").at("password")));
  for (const auto& password : passwords(shown.at("storage").at("postgres_url").get<std::string>()))
    check(password.empty() || password == cfg::kRedacted);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto nul = input.find('\0');
  cfg::Environment env;
  if (nul != std::string_view::npos) {
    std::string_view lines = input.substr(nul + 1);
    while (!lines.empty()) {
      const auto nl = lines.find('\n');
      const auto line = lines.substr(0, nl);
      const auto eq = line.find('=');
      if (eq != std::string_view::npos) env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
      lines = nl == std::string_view::npos ? std::string_view{} : lines.substr(nl + 1);
    }
  }
  cfg::Config config;
  try {
    config = cfg::parse(input.substr(0, nul), "fuzz/keel.toml", env);
  } catch (const cfg::ConfigError& e) {
    check(!e.diagnostics().empty());
    return 0;
  }
  check_shown(config);
  return 0;
}
