// [admin]: the token rules (length, token_file, rotation) and the admin listener's address.
// No message here ever contains a token's text: only lengths, line numbers and file names.
#include <cerrno>
#include <cstdio>
#include <string>
#include <system_error>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config_keys.hpp"

namespace keel::host::config::detail {
namespace {

constexpr std::string_view kUnixPrefix = "unix:";
// sun_path holds 108 bytes including the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;
// A token file is a line or two; anything larger is not one.
constexpr std::size_t kMaxTokenFileBytes = 4096;

std::string how_to_make_one() {
  return "use at least " + std::to_string(kMinAdminTokenLength) +
         " characters, e.g. the output of `openssl rand -hex 32`";
}

std::string too_short(std::size_t length) {
  return "too short (" + std::to_string(length) + " characters); " + how_to_make_one();
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\r')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

std::string mode_text(mode_t mode) {
  char out[8];
  std::snprintf(out, sizeof out, "%04o", static_cast<unsigned>(mode & 07777));
  return out;
}

// Reads `file` into `tokens` (one per non-empty line); a problem comes back as text.
std::optional<std::string> read_token_file(const std::filesystem::path& file, std::vector<std::string>& tokens) {
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) return "cannot read " + file.string() + ": " + std::error_code(errno, std::generic_category()).message();
  struct stat st {};
  std::string text;
  std::optional<std::string> problem;
  if (::fstat(fd, &st) != 0) {
    problem = "cannot stat " + file.string() + ": " + std::error_code(errno, std::generic_category()).message();
  } else if (!S_ISREG(st.st_mode)) {
    problem = file.string() + " is not a regular file";
  } else if ((st.st_mode & 077) != 0) {
    problem = file.string() + " is open to group or others (mode " + mode_text(st.st_mode) +
              "); run: chmod 600 " + file.string();
  } else {
    char buffer[kMaxTokenFileBytes + 1];
    for (;;) {
      const auto n = ::read(fd, buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) problem = "cannot read " + file.string() + ": " + std::error_code(errno, std::generic_category()).message();
      if (n > 0) text.append(buffer, static_cast<std::size_t>(n));
      if (n <= 0 || text.size() > kMaxTokenFileBytes) break;
    }
    if (!problem && text.size() > kMaxTokenFileBytes)
      problem = file.string() + " is larger than " + std::to_string(kMaxTokenFileBytes) +
                " bytes; it should hold the token on one line (and the next token on a second line while rotating)";
  }
  ::close(fd);
  if (problem) return problem;
  std::size_t line_number = 0;
  for (std::size_t start = 0; start <= text.size();) {
    auto end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    ++line_number;
    const auto line = trim(std::string_view(text).substr(start, end - start));
    start = end + 1;
    if (line.empty()) continue;
    if (tokens.size() == 2)
      return file.string() + " has more than two tokens (line " + std::to_string(line_number) +
             "); it holds the token and, while rotating, the next token on a second line";
    if (line.size() < kMinAdminTokenLength)
      return "the token on line " + std::to_string(line_number) + " of " + file.string() + " is " +
             too_short(line.size());
    tokens.emplace_back(line);
  }
  if (tokens.empty())
    return file.string() + " holds no token; write one into it, e.g. openssl rand -hex 32 > " + file.string();
  return std::nullopt;
}

}  // namespace

std::optional<std::string> admin_listen_problem(std::string_view listen) {
  if (listen.empty()) return std::nullopt;
  if (!listen.starts_with(kUnixPrefix)) {
    auto problem = listen_problem(listen);
    if (problem) *problem += "; or unix:/path/to/socket";
    return problem;
  }
  const auto path = listen.substr(kUnixPrefix.size());
  if (path.empty() || path.back() == '/') return "expected unix:/path/to/socket (a file name after unix:)";
  if (path.find('\0') != std::string_view::npos) return "the socket path contains a NUL byte";
  return std::nullopt;
}

std::vector<AdminProblem> check_admin(AdminConfig& admin, const std::filesystem::path& base) {
  std::vector<AdminProblem> problems;
  if (admin.listen.starts_with(kUnixPrefix)) {
    std::filesystem::path socket = admin.listen.substr(kUnixPrefix.size());
    if (!socket.is_absolute()) socket = base / socket;
    admin.listen = std::string{kUnixPrefix} + socket.string();
    if (socket.string().size() > kMaxSocketPath)
      problems.push_back({"listen", "the socket path " + socket.string() + " is longer than " +
                                        std::to_string(kMaxSocketPath) + " bytes (the limit of a unix socket address)"});
  }
  if (!admin.token_file.empty()) {
    if (!admin.token_file.is_absolute()) admin.token_file = base / admin.token_file;
    if (!admin.token.empty() || !admin.token_next.empty()) {
      problems.push_back({"token_file", std::string("cannot be combined with [admin] ") +
                                            (!admin.token.empty() ? "token" : "token_next") +
                                            " (or its KEEL_ADMIN_* variable); keep the tokens in one place"});
      return problems;
    }
    std::vector<std::string> tokens;
    if (auto problem = read_token_file(admin.token_file, tokens)) {
      problems.push_back({"token_file", std::move(*problem)});
      return problems;
    }
    admin.token = tokens[0];
    admin.token_next = tokens.size() > 1 ? tokens[1] : std::string{};
    return problems;
  }
  if (!admin.token.empty() && admin.token.size() < kMinAdminTokenLength)
    problems.push_back({"token", too_short(admin.token.size())});
  if (!admin.token_next.empty() && admin.token_next.size() < kMinAdminTokenLength)
    problems.push_back({"token_next", too_short(admin.token_next.size())});
  if (!admin.token_next.empty() && admin.token.empty())
    problems.push_back({"token_next", "is set but [admin] token is not; token_next is the second token accepted "
                                      "while clients move to it, so set token (the current one) too"});
  return problems;
}

}  // namespace keel::host::config::detail
