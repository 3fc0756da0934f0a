// The [cluster] values that have a grammar: the NATS server list, the node name and the subject
// prefix (docs/config.md "[cluster]"). Messages never repeat a credential.
#include <charconv>
#include <string>
#include <string_view>
#include <vector>

#include "config/config_keys.hpp"

namespace keel::host::config::detail {
namespace {

constexpr std::size_t kMaxNodeName = 64;
constexpr std::size_t kMaxPrefix = 128;

bool token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The comma-separated entries of a server list, trimmed; empty ones kept (a stray comma).
std::vector<std::string_view> split_servers(std::string_view list) {
  std::vector<std::string_view> out;
  for (std::size_t start = 0;;) {
    const auto comma = list.find(',', start);
    out.push_back(trim(list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start)));
    if (comma == std::string_view::npos) return out;
    start = comma + 1;
  }
}

// One "nats://HOST:PORT" (HOST a name, an IPv4 address or a bracketed IPv6 address).
std::optional<std::string> server_problem(std::string_view url) {
  constexpr std::string_view kScheme = "nats://";
  if (!url.starts_with(kScheme)) return "expected nats://HOST:PORT (no other scheme is supported)";
  const auto authority = url.substr(kScheme.size());
  if (authority.find('@') != std::string_view::npos)
    return "credentials in the URL would show wherever the URL does: put them in [cluster] token, or user and "
           "password";
  if (authority.find('/') != std::string_view::npos) return "expected nats://HOST:PORT without a path";
  const auto colon = authority.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return "expected nats://HOST:PORT (the port is required)";
  const auto host = authority.substr(0, colon);
  const auto port_text = authority.substr(colon + 1);
  unsigned port = 0;
  const auto [end, ec] = std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
  if (ec != std::errc{} || end != port_text.data() + port_text.size() || port == 0 || port > 65535)
    return "the port must be a number in 1..65535";
  const bool v6 = host.size() > 2 && host.front() == '[' && host.back() == ']';
  for (const char c : v6 ? host.substr(1, host.size() - 2) : host) {
    const bool ok = v6 ? (c == ':' || (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))
                       : (token_char(c) || c == '.');
    if (!ok) return "the host contains characters not allowed in a host name or address";
  }
  return std::nullopt;
}

}  // namespace

std::optional<std::string> nats_url_problem(std::string_view url) {
  if (trim(url).empty()) return std::nullopt;  // no cluster
  const auto servers = split_servers(url);
  for (std::size_t n = 1; n <= servers.size(); ++n) {
    const auto one = servers[n - 1];
    if (one.empty()) return "server " + std::to_string(n) + " of the list is empty (a stray comma?)";
    if (auto problem = server_problem(one)) return "server " + std::to_string(n) + ": " + *problem;
  }
  return std::nullopt;
}

std::optional<std::string> node_name_problem(std::string_view node) {
  if (node.empty()) return std::nullopt;  // the host name
  if (node.size() > kMaxNodeName) return "longer than " + std::to_string(kMaxNodeName) + " characters";
  for (const char c : node)
    if (!token_char(c)) return "use letters, digits, '_' and '-' only (it becomes a NATS subject token)";
  return std::nullopt;
}

std::optional<std::string> subject_prefix_problem(std::string_view prefix) {
  if (prefix.empty() || prefix.size() > kMaxPrefix)
    return "expected 1.." + std::to_string(kMaxPrefix) + " characters, e.g. \"keel\" or \"shop.prod\"";
  std::size_t token = 0;
  for (const char c : prefix) {
    if (c == '.') {
      if (token == 0) return "an empty token (\"..\", or a dot at the start)";
      token = 0;
    } else if (!token_char(c)) {
      return "use tokens of letters, digits, '_' and '-' separated by '.' (no wildcards or spaces)";
    } else {
      ++token;
    }
  }
  if (token == 0) return "an empty token (a dot at the end)";
  return std::nullopt;
}

}  // namespace keel::host::config::detail

namespace keel::host::config {

std::vector<std::string> ClusterConfig::servers() const {
  std::vector<std::string> out;
  for (const auto one : detail::split_servers(nats_url))
    if (!one.empty()) out.emplace_back(one);
  return out;
}

}  // namespace keel::host::config
