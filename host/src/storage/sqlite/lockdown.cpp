#include "storage/sqlite/lockdown.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <string>
#include <vector>

#include <sqlite3.h>

namespace keel::host::storage {
namespace {

constexpr std::string_view kReservedPrefix = "_keel_";

// Read-only PRAGMAs a plugin may run; anything else (journal_mode, synchronous, foreign_keys,
// writable_schema, ...) would change how the host runs the database and is refused.
constexpr std::array<std::string_view, 10> kPragmasWithArgument{
    "table_info", "table_xinfo", "index_list",      "index_info", "index_xinfo",
    "foreign_key_list", "foreign_key_check", "integrity_check", "quick_check", "table_list"};
constexpr std::array<std::string_view, 5> kPragmasReadOnly{"user_version", "page_count", "freelist_count",
                                                            "page_size", "data_version"};

}  // namespace

bool iequals_prefix(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    const auto a = static_cast<unsigned char>(s[i]);
    const auto b = static_cast<unsigned char>(prefix[i]);
    if ((a >= 'A' && a <= 'Z' ? a + 32 : a) != (b >= 'A' && b <= 'Z' ? b + 32 : b)) return false;
  }
  return true;
}

std::string_view skip_filler(std::string_view s) noexcept {
  for (;;) {
    const auto start = s.size();
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t' || s.front() == '\n' || s.front() == '\r' ||
                          s.front() == '\f' || s.front() == ';'))
      s.remove_prefix(1);
    if (s.starts_with("--")) {
      const auto nl = s.find('\n');
      s.remove_prefix(nl == std::string_view::npos ? s.size() : nl + 1);
    } else if (s.starts_with("/*")) {
      const auto end = s.find("*/", 2);
      s.remove_prefix(end == std::string_view::npos ? s.size() : end + 2);
    }
    if (s.size() == start) return s;
  }
}

bool reserved(const char* name) noexcept { return name != nullptr && iequals_prefix(name, kReservedPrefix); }

bool renames_onto_reserved(std::string_view sql) {
  std::vector<std::string> words;  // the last three tokens, lowercased words or unquoted identifiers
  auto push = [&](std::string token) {
    words.push_back(std::move(token));
    if (words.size() > 3) words.erase(words.begin());
  };
  for (std::size_t i = 0; i < sql.size();) {
    const char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c)) != 0) {
      ++i;
    } else if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      i = std::min(sql.find('\n', i), sql.size());
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      const auto end = sql.find("*/", i + 2);
      i = end == std::string_view::npos ? sql.size() : end + 2;
    } else if (c == '\'' || c == '"' || c == '`' || c == '[') {
      const char close = c == '[' ? ']' : c;
      std::string text;
      std::size_t j = i + 1;
      for (; j < sql.size(); ++j) {
        if (sql[j] == close && close != ']' && j + 1 < sql.size() && sql[j + 1] == close) {
          text += close;  // a doubled quote inside the quotes
          ++j;
        } else if (sql[j] == close) {
          break;
        } else {
          text += sql[j];
        }
      }
      i = j + 1;
      push(std::move(text));  // SQLite takes a 'string' as a name after RENAME TO, too
    } else if (std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$') {
      std::size_t j = i;
      while (j < sql.size() && (std::isalnum(static_cast<unsigned char>(sql[j])) != 0 || sql[j] == '_' || sql[j] == '$')) ++j;
      std::string word(sql.substr(i, j - i));
      for (auto& ch : word) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      push(std::move(word));
      i = j;
    } else {
      push(std::string(1, c));
      ++i;
    }
    if (words.size() == 3 && words[0] == "rename" && words[1] == "to" && reserved(words[2].c_str())) return true;
  }
  return false;
}

int decide_plugin_action(int action, const char* a1, const char* a2) noexcept {
  switch (action) {
    case SQLITE_ATTACH:
    case SQLITE_DETACH: return SQLITE_DENY;
    case SQLITE_TRANSACTION:
    case SQLITE_SAVEPOINT: return SQLITE_DENY;  // use begin/commit/rollback of the extension
    case SQLITE_CREATE_TEMP_TABLE:
    case SQLITE_CREATE_TEMP_INDEX:
    case SQLITE_CREATE_TEMP_TRIGGER:
    case SQLITE_CREATE_TEMP_VIEW: return SQLITE_DENY;  // per connection: invisible to the reader pool
    case SQLITE_PRAGMA: {
      const std::string_view name = a1 != nullptr ? a1 : "";
      auto match = [&](auto& list) {
        return std::any_of(list.begin(), list.end(), [&](std::string_view p) { return iequals_prefix(name, p) && name.size() == p.size(); });
      };
      if (match(kPragmasWithArgument)) return SQLITE_OK;
      if (match(kPragmasReadOnly) && a2 == nullptr) return SQLITE_OK;
      return SQLITE_DENY;
    }
    case SQLITE_FUNCTION:
      // load_extension runs any code; fts3_tokenizer() hands out (and takes) C pointers.
      return a2 != nullptr && (iequals_prefix(a2, "load_extension") || iequals_prefix(a2, "fts3_tokenizer"))
                 ? SQLITE_DENY
                 : SQLITE_OK;
    default:
      // Every other action names a table or index in a1 or a2: the host's own are off-limits.
      return reserved(a1) || reserved(a2) ? SQLITE_DENY : SQLITE_OK;
  }
}
}  // namespace keel::host::storage
