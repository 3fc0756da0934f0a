#include "storage/postgres/sql_text.hpp"

#include <algorithm>
#include <array>
#include <cstddef>
#include <string>
#include <utility>

namespace keel::host::storage::pg {
namespace {

// PostgreSQL's limit on parameters of one statement: the wire protocol counts them in an Int16.
constexpr int kMaxParameter = 65535;

enum class TokenKind {
  kSpace,
  kLineComment,
  kBlockComment,
  kString,        // '...', E'...', B'...', X'...', N'...', U&'...'
  kQuotedIdent,   // "..." and U&"..."
  kDollarString,  // $$...$$ and $tag$...$tag$
  kWord,          // identifier or keyword
  kNumber,
  kParameter,  // ?, ?NNN and $NNN
  kPunct,      // any other single byte
};

struct Token {
  TokenKind kind = TokenKind::kPunct;
  std::size_t begin = 0;
  std::size_t end = 0;
  std::size_t prefix = 0;  // bytes before the opening quote: 1 for E'', 2 for U&""
  bool terminated = true;
};

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
// Bytes >= 0x80 are identifier characters in PostgreSQL's scanner, which is how UTF-8 names get through.
bool is_ident_start(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || static_cast<unsigned char>(c) >= 0x80;
}
bool is_tag_char(char c) noexcept { return is_ident_start(c) || is_digit(c); }
bool is_ident_cont(char c) noexcept { return is_tag_char(c) || c == '$'; }
char to_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }
char to_upper(char c) noexcept { return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c; }

bool iequals(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) { return to_lower(x) == to_lower(y); });
}

std::string lowered(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

// Follows PostgreSQL 15's scan.l with standard_conforming_strings on (the default since 9.1), so a backslash
// escapes only inside E'...'. A token never ends past the text: an unterminated one runs to the end and says so.
class Lexer {
 public:
  explicit Lexer(std::string_view sql) : sql_{sql} {}

  std::vector<Token> run() {
    std::vector<Token> out;
    for (std::size_t pos = 0; pos < sql_.size(); pos = out.back().end) out.push_back(next(pos));
    return out;
  }

 private:
  char at(std::size_t i) const noexcept { return i < sql_.size() ? sql_[i] : '\0'; }

  Token next(std::size_t i) const {
    const char c = sql_[i];
    if (is_space(c)) {
      auto j = i;
      while (j < sql_.size() && is_space(sql_[j])) ++j;
      return {TokenKind::kSpace, i, j};
    }
    if (c == '-' && at(i + 1) == '-') {
      const auto eol = sql_.find('\n', i);
      return {TokenKind::kLineComment, i, eol == std::string_view::npos ? sql_.size() : eol};
    }
    if (c == '/' && at(i + 1) == '*') return block_comment(i);
    if (c == '\'') return quoted(TokenKind::kString, i, 0, false);
    if (c == '"') return quoted(TokenKind::kQuotedIdent, i, 0, false);
    // Literal prefixes belong to the literal: E'' changes how it ends, and X'' is SQLite's blob literal.
    if ((c == 'E' || c == 'e') && at(i + 1) == '\'') return quoted(TokenKind::kString, i, 1, true);
    if ((c == 'B' || c == 'b' || c == 'X' || c == 'x' || c == 'N' || c == 'n') && at(i + 1) == '\'')
      return quoted(TokenKind::kString, i, 1, false);
    if ((c == 'U' || c == 'u') && at(i + 1) == '&' && (at(i + 2) == '\'' || at(i + 2) == '"'))
      return quoted(at(i + 2) == '"' ? TokenKind::kQuotedIdent : TokenKind::kString, i, 2, false);
    if (c == '$') return dollar(i);
    if (c == '?') return {TokenKind::kParameter, i, digits_end(i + 1)};
    if (is_digit(c) || (c == '.' && is_digit(at(i + 1)))) return number(i);
    if (is_ident_start(c)) {
      auto j = i + 1;
      while (j < sql_.size() && is_ident_cont(sql_[j])) ++j;
      return {TokenKind::kWord, i, j};
    }
    return {TokenKind::kPunct, i, i + 1};
  }

  std::size_t digits_end(std::size_t i) const noexcept {
    while (i < sql_.size() && is_digit(sql_[i])) ++i;
    return i;
  }

  // PostgreSQL nests block comments, unlike the SQL standard and SQLite.
  Token block_comment(std::size_t i) const {
    auto j = i + 2;
    int depth = 1;
    while (j < sql_.size() && depth > 0) {
      if (sql_[j] == '/' && at(j + 1) == '*') {
        ++depth;
        j += 2;
      } else if (sql_[j] == '*' && at(j + 1) == '/') {
        --depth;
        j += 2;
      } else {
        ++j;
      }
    }
    return {TokenKind::kBlockComment, i, j, 0, depth == 0};
  }

  // A doubled quote stands for itself; with `backslash`, a backslash escapes the next byte (E'a\'b').
  Token quoted(TokenKind kind, std::size_t i, std::size_t prefix, bool backslash) const {
    const char quote = sql_[i + prefix];
    for (auto j = i + prefix + 1; j < sql_.size(); ++j) {
      if (backslash && sql_[j] == '\\') {
        ++j;
      } else if (sql_[j] == quote) {
        if (at(j + 1) != quote) return {kind, i, j + 1, prefix, true};
        ++j;
      }
    }
    return {kind, i, sql_.size(), prefix, false};
  }

  // "$1" is a parameter; "$$" and "$tag$" (the tag cannot start with a digit) open a dollar quote that only the
  // same delimiter closes; any other '$' is a lone byte (SQLite's $name, which PostgreSQL cannot run anyway).
  // A '$' inside a word never gets here: PostgreSQL identifiers may contain it.
  Token dollar(std::size_t i) const {
    if (is_digit(at(i + 1))) return {TokenKind::kParameter, i, digits_end(i + 1)};
    auto j = i + 1;
    if (is_ident_start(at(j))) {
      while (j < sql_.size() && is_tag_char(sql_[j])) ++j;
    }
    if (at(j) != '$') return {TokenKind::kPunct, i, i + 1};
    const auto delimiter = sql_.substr(i, j + 1 - i);
    const auto close = sql_.find(delimiter, j + 1);
    if (close == std::string_view::npos) return {TokenKind::kDollarString, i, sql_.size(), 0, false};
    return {TokenKind::kDollarString, i, close + delimiter.size()};
  }

  Token number(std::size_t i) const {
    auto j = digits_end(i);
    if (at(j) == '.' && at(j + 1) != '.') j = digits_end(j + 1);
    if (at(j) == 'e' || at(j) == 'E') {
      const auto sign = at(j + 1) == '+' || at(j + 1) == '-' ? std::size_t{1} : std::size_t{0};
      if (is_digit(at(j + 1 + sign))) j = digits_end(j + 1 + sign);
    }
    return {TokenKind::kNumber, i, j};
  }

  std::string_view sql_;
};

// The tokens of a text that carry meaning (no whitespace, no comments), with bounds-checked matchers so that
// pattern code can look ahead without testing the size first.
class Code {
 public:
  explicit Code(std::string_view sql) : sql_{sql}, all_{Lexer{sql}.run()} {
    for (const auto& t : all_) {
      if (t.kind != TokenKind::kSpace && t.kind != TokenKind::kLineComment && t.kind != TokenKind::kBlockComment)
        code_.push_back(t);
    }
  }

  const std::vector<Token>& all() const noexcept { return all_; }
  std::size_t size() const noexcept { return code_.size(); }
  const Token& operator[](std::size_t i) const noexcept { return code_[i]; }
  std::string_view text(const Token& t) const noexcept { return sql_.substr(t.begin, t.end - t.begin); }
  std::string_view text(std::size_t i) const noexcept { return i < size() ? text(code_[i]) : std::string_view{}; }

  bool kind(std::size_t i, TokenKind k) const noexcept { return i < size() && code_[i].kind == k; }
  /// A keyword: a bare word, compared case-insensitively; quoted identifiers never match.
  bool word(std::size_t i, std::string_view keyword) const noexcept {
    return kind(i, TokenKind::kWord) && iequals(text(i), keyword);
  }
  bool punct(std::size_t i, char c) const noexcept { return kind(i, TokenKind::kPunct) && sql_[code_[i].begin] == c; }
  bool name(std::size_t i) const noexcept { return kind(i, TokenKind::kWord) || kind(i, TokenKind::kQuotedIdent); }
  /// False when a literal, quoted identifier or comment runs to the end of the text unterminated.
  bool complete() const noexcept {
    return std::all_of(all_.begin(), all_.end(), [](const Token& t) { return t.terminated; });
  }

  /// The statements as [begin, end) ranges of code tokens, split at ';' and without empty ones.
  std::vector<std::pair<std::size_t, std::size_t>> statements() const {
    std::vector<std::pair<std::size_t, std::size_t>> out;
    std::size_t begin = 0;
    for (std::size_t i = 0; i <= size(); ++i) {
      if (i < size() && !punct(i, ';')) continue;
      if (i > begin) out.emplace_back(begin, i);
      begin = i + 1;
    }
    return out;
  }

 private:
  std::string_view sql_;
  std::vector<Token> all_;
  std::vector<Token> code_;
};

struct Edit {
  std::size_t begin;
  std::size_t end;
  std::string text;
};

// Copies `sql` with each edited byte range replaced; everything between edits stays byte for byte.
std::string apply(std::string_view sql, std::vector<Edit> edits) {
  std::sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.begin < b.begin; });
  std::string out;
  out.reserve(sql.size() + 32 * edits.size());
  std::size_t copied = 0;
  for (const auto& e : edits) {
    out.append(sql.substr(copied, e.begin - copied));
    out.append(e.text);
    copied = e.end;
  }
  out.append(sql.substr(copied));
  return out;
}

std::string_view describe(TokenKind kind) noexcept {
  switch (kind) {
    case TokenKind::kString: return "quoted string";
    case TokenKind::kQuotedIdent: return "quoted identifier";
    case TokenKind::kDollarString: return "dollar-quoted string";
    case TokenKind::kBlockComment: return "block comment";
    default: return "token";
  }
}

// The digits after '?' or '$'; anything above the limit saturates, so a hundred digits cannot overflow.
int parameter_index(std::string_view digits) noexcept {
  int n = 0;
  for (const char c : digits) {
    n = n * 10 + (c - '0');
    if (n > kMaxParameter) return kMaxParameter + 1;
  }
  return n;
}

// ---- translate_ddl ----

enum class TypeSlot { kNone, kColumn, kCast };

// Where a type name stands. Only these are rewritten, so that a column or table called "real" or "blob" stays
// itself: a column definition ("(name TYPE", ", name TYPE", "ADD [COLUMN] [IF NOT EXISTS] name TYPE") or a cast
// ("AS TYPE" in CAST, "::TYPE", PostgreSQL's "ALTER COLUMN x TYPE TYPE").
// A column may itself be called "type" or "as", so the column definition is tried first.
TypeSlot type_slot(const Code& code, std::size_t i) {
  if (i == 0) return TypeSlot::kNone;
  if (i >= 2 && code.name(i - 1)) {
    const auto before = i - 2;
    if (code.punct(before, '(') || code.punct(before, ',') || code.word(before, "column") ||
        code.word(before, "add") || code.word(before, "exists"))
      return TypeSlot::kColumn;
  }
  if (code.punct(i - 1, ':') || code.word(i - 1, "as") || code.word(i - 1, "type")) return TypeSlot::kCast;
  return TypeSlot::kNone;
}

// SQLite makes a column the rowid alias when its declared type is exactly INTEGER and it carries a PRIMARY KEY
// constraint, wherever that constraint stands ("id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT" too). An identity
// column is PostgreSQL's counterpart: ids are assigned when omitted and may still be given explicitly.
void rowid_alias(const Code& code, std::size_t i, std::vector<Edit>& edits) {
  if (code.word(i + 1, "primary") && code.word(i + 2, "key")) {
    const auto last = code.word(i + 3, "autoincrement") ? i + 3 : i + 2;
    edits.push_back({code[i].begin, code[last].end, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"});
    return;
  }
  int depth = 0;
  for (auto k = i + 1; k < code.size(); ++k) {
    if (code.punct(k, '(')) {
      ++depth;
    } else if (code.punct(k, ')')) {
      if (--depth < 0) break;
    } else if (code.punct(k, ';') || (depth == 0 && code.punct(k, ','))) {
      break;
    } else if (depth == 0 && code.word(k, "primary") && code.word(k + 1, "key")) {
      edits.push_back({code[i].begin, code[i].end, "BIGINT GENERATED BY DEFAULT AS IDENTITY"});
      if (code.word(k + 2, "autoincrement")) edits.push_back({code[k + 1].end, code[k + 2].end, ""});
      return;
    }
  }
  edits.push_back({code[i].begin, code[i].end, "BIGINT"});
}

// "CREATE [TEMP] TABLE [IF NOT EXISTS] name (...) WITHOUT ROWID, STRICT;": the options after the column list are
// SQLite's alone (PostgreSQL tables have no rowid and always check types), so they go, with the space before them.
void drop_table_options(const Code& code, std::size_t i, std::vector<Edit>& edits) {
  auto k = i + 1;
  if (code.word(k, "temp") || code.word(k, "temporary")) ++k;
  if (!code.word(k, "table")) return;
  ++k;
  if (code.word(k, "if") && code.word(k + 1, "not") && code.word(k + 2, "exists")) k += 3;
  if (!code.name(k)) return;
  ++k;
  if (code.punct(k, '.')) {
    if (!code.name(k + 1)) return;
    k += 2;
  }
  if (!code.punct(k, '(')) return;
  int depth = 0;
  for (; k < code.size(); ++k) {
    if (code.punct(k, '(')) ++depth;
    if (code.punct(k, ')') && --depth == 0) break;
    if (code.punct(k, ';')) return;
  }
  if (k >= code.size()) return;
  const auto close = k;
  auto last = close;
  for (k = close + 1;;) {
    if (code.word(k, "without") && code.word(k + 1, "rowid")) {
      last = k + 1;
      k += 2;
    } else if (code.word(k, "strict")) {
      last = k;
      k += 1;
    } else {
      break;
    }
    if (!code.punct(k, ',')) break;
    ++k;
  }
  // Options followed by anything but the end of the statement are not SQLite's syntax: leave them for the error.
  if (last == close || (last + 1 < code.size() && !code.punct(last + 1, ';'))) return;
  edits.push_back({code[close].end, code[last].end, ""});
}

// ---- sqlite_only_constructs ----

struct Construct {
  std::string_view name;
  std::string_view line;
};

// SQLite functions that PostgreSQL lacks, or has with another meaning.
constexpr std::array<Construct, 23> kFunctions{{
    {"strftime", "strftime() (PostgreSQL: to_char())"},
    {"datetime", "datetime() (PostgreSQL: now(), to_timestamp() or a timestamp cast)"},
    {"date", "date() (PostgreSQL: CURRENT_DATE or a ::date cast)"},
    {"time", "time() (PostgreSQL: CURRENT_TIME or a ::time cast)"},
    {"julianday", "julianday() (PostgreSQL: extract(julian from ...))"},
    {"unixepoch", "unixepoch() (PostgreSQL: extract(epoch from ...))"},
    {"ifnull", "ifnull() (PostgreSQL: coalesce())"},
    {"iif", "iif() (PostgreSQL: CASE WHEN ... THEN ... ELSE ... END)"},
    {"group_concat", "group_concat() (PostgreSQL: string_agg())"},
    {"typeof", "typeof() (PostgreSQL: pg_typeof(), which names PostgreSQL's types)"},
    {"randomblob", "randomblob() (PostgreSQL: gen_random_uuid() or pgcrypto's gen_random_bytes())"},
    {"zeroblob", "zeroblob() (PostgreSQL: decode(repeat('00', n), 'hex'))"},
    {"random", "random() (PostgreSQL: returns a double precision in [0, 1), not a 64-bit integer)"},
    {"last_insert_rowid", "last_insert_rowid() (PostgreSQL: INSERT ... RETURNING or lastval())"},
    {"changes", "changes() (PostgreSQL: the statement's row count, or RETURNING)"},
    {"total_changes", "total_changes() (PostgreSQL: no equivalent)"},
    {"printf", "printf() (PostgreSQL: format())"},
    {"instr", "instr() (PostgreSQL: strpos())"},
    {"hex", "hex() (PostgreSQL: encode(..., 'hex'))"},
    {"total", "total() (PostgreSQL: coalesce(sum(...), 0))"},
    {"sqlite_version", "sqlite_version() (PostgreSQL: version())"},
    {"json_extract", "json_extract() (PostgreSQL: the -> and ->> operators or jsonb_path_query())"},
    {"likelihood", "likelihood() (PostgreSQL: no planner hints; drop it)"},
}};

// SQLite's GLOB operator, and its glob() function form.
constexpr std::string_view kGlob = "GLOB (PostgreSQL: LIKE, SIMILAR TO or ~ regular expressions)";

constexpr std::array<Construct, 3> kTables{{
    {"sqlite_master", "sqlite_master (PostgreSQL: information_schema or pg_catalog)"},
    {"sqlite_schema", "sqlite_schema (PostgreSQL: information_schema or pg_catalog)"},
    {"sqlite_sequence", "sqlite_sequence (PostgreSQL: identity sequences, pg_get_serial_sequence() and setval())"},
}};

constexpr std::array<Construct, 4> kStatements{{
    {"pragma", "PRAGMA (PostgreSQL: SET, server settings, or the system catalogs)"},
    {"attach", "ATTACH DATABASE (PostgreSQL: no equivalent; one database per connection, use schemas)"},
    {"detach", "DETACH DATABASE (PostgreSQL: no equivalent)"},
    {"vacuum", "VACUUM (PostgreSQL: cannot run inside a transaction block, so not in a migration)"},
}};

constexpr std::array<Construct, 5> kConflicts{{
    {"ignore", "(PostgreSQL: INSERT ... ON CONFLICT DO NOTHING)"},
    {"replace", "(PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)"},
    {"abort", "(PostgreSQL: the default behaviour; drop OR ABORT)"},
    {"fail", "(PostgreSQL: no equivalent; a failing statement is undone entirely)"},
    {"rollback", "(PostgreSQL: no equivalent; a failing statement aborts the transaction)"},
}};

template <std::size_t N>
const Construct* find(const std::array<Construct, N>& table, std::string_view name) {
  const auto it = std::find_if(table.begin(), table.end(), [&](const Construct& c) { return iequals(c.name, name); });
  return it == table.end() ? nullptr : &*it;
}

// A quoted identifier's name: quotes removed and "" unescaped; nullopt for U&"..." (its escapes are not decoded)
// and for what PostgreSQL rejects (unterminated, or empty).
std::optional<std::string> quoted_name(const Code& code, std::size_t i) {
  const auto& t = code[i];
  if (!t.terminated || t.prefix != 0) return std::nullopt;
  const auto inner = code.text(i).substr(1, t.end - t.begin - 2);
  if (inner.empty()) return std::nullopt;
  std::string out;
  for (std::size_t k = 0; k < inner.size(); ++k) {
    out.push_back(inner[k]);
    if (inner[k] == '"') ++k;
  }
  return out;
}

}  // namespace

Placeholders translate_placeholders(std::string_view sql) {
  Placeholders out;
  const Code code{sql};
  std::vector<Edit> edits;
  int highest = 0;
  for (const auto& t : code.all()) {
    if (!t.terminated) {
      out.error = "unterminated " + std::string(describe(t.kind)) + " at offset " + std::to_string(t.begin);
      return out;
    }
    if (t.kind != TokenKind::kParameter) continue;
    const auto text = code.text(t);
    int index = 0;
    if (text.size() == 1) {
      if (highest >= kMaxParameter) {
        out.error = "placeholder ? would be $" + std::to_string(highest + 1) + ": PostgreSQL allows at most $" +
                    std::to_string(kMaxParameter);
        return out;
      }
      index = highest + 1;
    } else {
      index = parameter_index(text.substr(1));
      if (index < 1 || index > kMaxParameter) {
        const auto shown = text.size() > 24 ? std::string(text.substr(0, 24)) + "..." : std::string(text);
        out.error = "placeholder " + shown + " is out of range: indexes run from 1 to " + std::to_string(kMaxParameter);
        return out;
      }
    }
    highest = std::max(highest, index);
    if (text.front() != '?') continue;
    // After an identifier byte, "$1" would continue the identifier (PostgreSQL names may contain '$').
    const bool glued = t.begin > 0 && is_ident_cont(sql[t.begin - 1]);
    edits.push_back({t.begin, t.end, (glued ? " $" : "$") + std::to_string(index)});
  }
  out.sql = apply(sql, std::move(edits));
  out.count = highest;
  return out;
}

std::string translate_ddl(std::string_view script) {
  const Code code{script};
  std::vector<Edit> edits;
  for (std::size_t i = 0; i < code.size(); ++i) {
    if (code.word(i, "create")) {
      drop_table_options(code, i, edits);
      continue;
    }
    if (!code.kind(i, TokenKind::kWord)) continue;
    const auto slot = type_slot(code, i);
    if (slot == TypeSlot::kNone) continue;
    if (code.word(i, "integer") && slot == TypeSlot::kColumn) {
      rowid_alias(code, i, edits);
    } else if (code.word(i, "integer") || code.word(i, "int")) {
      edits.push_back({code[i].begin, code[i].end, "BIGINT"});
    } else if (code.word(i, "blob")) {
      edits.push_back({code[i].begin, code[i].end, "BYTEA"});
    } else if (code.word(i, "real")) {
      edits.push_back({code[i].begin, code[i].end, "DOUBLE PRECISION"});
    }
  }
  return apply(script, std::move(edits));
}

std::string first_keyword(std::string_view sql) {
  const Code code{sql};
  std::size_t i = 0;
  while (code.punct(i, '(')) ++i;
  return code.kind(i, TokenKind::kWord) ? lowered(code.text(i)) : std::string{};
}

std::vector<std::string> statement_keywords(std::string_view sql) {
  const Code code{sql};
  std::vector<std::string> out;
  for (const auto& [begin, end] : code.statements()) {
    auto i = begin;
    while (i < end && code.punct(i, '(')) ++i;
    out.push_back(i < end && code.kind(i, TokenKind::kWord) ? lowered(code.text(i)) : std::string{});
  }
  return out;
}

bool read_only(std::string_view sql) {
  static constexpr std::array<std::string_view, 6> kReads{"select", "values", "table", "show", "with", "explain"};
  static constexpr std::array<std::string_view, 13> kWrites{"insert", "update", "delete",   "merge", "create",
                                                            "drop",   "alter",  "truncate", "grant", "revoke",
                                                            "copy",   "lock",   "into"};
  const Code code{sql};
  // What an unterminated literal or comment hides cannot be judged.
  if (!code.complete()) return false;
  const auto statements = code.statements();
  if (statements.empty()) return false;
  for (const auto& [begin, end] : statements) {
    auto i = begin;
    while (i < end && code.punct(i, '(')) ++i;
    if (i == end || !code.kind(i, TokenKind::kWord)) return false;
    const auto first = code.text(i);
    if (std::none_of(kReads.begin(), kReads.end(), [&](auto k) { return iequals(k, first); })) return false;
    for (auto k = i; k < end; ++k) {
      if (!code.kind(k, TokenKind::kWord)) continue;
      const auto w = code.text(k);
      if (std::any_of(kWrites.begin(), kWrites.end(), [&](auto x) { return iequals(x, w); })) return false;
      // FOR UPDATE and FOR NO KEY UPDATE already fail on UPDATE; the share locks take row locks too.
      if (iequals(w, "for") && (code.word(k + 1, "share") || (code.word(k + 1, "key") && code.word(k + 2, "share"))))
        return false;
    }
  }
  return true;
}

std::optional<InsertTarget> insert_without_returning(std::string_view sql) {
  // Reserved words that cannot name a table unquoted, and what may follow the name of an INSERT's target.
  static constexpr std::array<std::string_view, 7> kReserved{"select", "values", "default", "as",
                                                             "with",   "table",  "returning"};
  static constexpr std::array<std::string_view, 7> kAfterName{"values", "select",     "default", "as",
                                                              "with",   "overriding", "table"};
  const Code code{sql};
  const auto statements = code.statements();
  if (!code.complete() || statements.size() != 1) return std::nullopt;
  const auto [begin, end] = statements.front();
  if (!code.word(begin, "insert") || !code.word(begin + 1, "into")) return std::nullopt;
  std::vector<std::string> parts;
  auto k = begin + 2;
  for (;;) {
    if (k >= end) return std::nullopt;
    if (code.kind(k, TokenKind::kWord)) {
      parts.push_back(lowered(code.text(k)));
      if (std::find(kReserved.begin(), kReserved.end(), parts.back()) != kReserved.end()) return std::nullopt;
    } else if (code.kind(k, TokenKind::kQuotedIdent)) {
      auto part = quoted_name(code, k);
      if (!part) return std::nullopt;
      parts.push_back(std::move(*part));
    } else {
      return std::nullopt;
    }
    ++k;
    if (k >= end || !code.punct(k, '.')) break;
    ++k;
  }
  // database.schema.table at most, followed by a column list or the start of the rows.
  if (parts.size() > 3 || k >= end) return std::nullopt;
  const auto starts_rows = [&](std::string_view w) { return code.word(k, w); };
  if (!code.punct(k, '(') && std::none_of(kAfterName.begin(), kAfterName.end(), starts_rows)) return std::nullopt;
  int depth = 0;
  for (; k < end; ++k) {
    if (code.punct(k, '(')) ++depth;
    if (code.punct(k, ')')) --depth;
    if (depth == 0 && code.word(k, "returning")) return std::nullopt;
  }
  InsertTarget target;
  target.table = std::move(parts.back());
  if (parts.size() >= 2) target.schema = std::move(parts[parts.size() - 2]);
  return target;
}

std::vector<std::string> sqlite_only_constructs(std::string_view sql) {
  const Code code{sql};
  std::vector<std::string> found;
  const auto report = [&](std::string line) {
    if (std::find(found.begin(), found.end(), line) == found.end()) found.push_back(std::move(line));
  };
  bool statement_start = true;
  for (std::size_t i = 0; i < code.size(); ++i) {
    const bool at_start = std::exchange(statement_start, code.punct(i, ';'));
    const auto text = code.text(i);
    if ((code.word(i, "insert") || code.word(i, "update")) && code.word(i + 1, "or")) {
      if (const auto* c = find(kConflicts, code.text(i + 2)); c != nullptr && code.kind(i + 2, TokenKind::kWord)) {
        std::string line;
        for (const char ch : text) line.push_back(to_upper(ch));
        line += " OR ";
        for (const char ch : c->name) line.push_back(to_upper(ch));
        report(line + " " + std::string(c->line));
        i += 2;  // so that the REPLACE of "INSERT OR REPLACE INTO" is not a REPLACE INTO as well
        continue;
      }
    }
    if (code.word(i, "replace") && code.word(i + 1, "into")) {
      report("REPLACE INTO (PostgreSQL: INSERT ... ON CONFLICT DO UPDATE)");
      continue;
    }
    if (code.word(i, "create") && code.word(i + 1, "virtual") && code.word(i + 2, "table")) {
      report("CREATE VIRTUAL TABLE (PostgreSQL: no virtual tables; full-text search uses tsvector)");
      continue;
    }
    if (code.punct(i, '`')) {
      report("`name` quoting (PostgreSQL: \"name\")");
      continue;
    }
    if (code.kind(i, TokenKind::kQuotedIdent)) {
      // SQLite matches its own tables case-insensitively even when quoted.
      if (const auto name = quoted_name(code, i)) {
        if (const auto* c = find(kTables, *name)) report(std::string(c->line));
      }
      continue;
    }
    if (!code.kind(i, TokenKind::kWord)) continue;
    // PostgreSQL has ALTER TABLE ... DETACH PARTITION: these count only where a statement starts.
    if (const auto* c = find(kStatements, text); c != nullptr && at_start) {
      report(std::string(c->line));
    } else if (const auto* t = find(kTables, text)) {
      report(std::string(t->line));
    } else if (iequals(text, "glob")) {
      report(std::string(kGlob));
    } else if (const auto* f = find(kFunctions, text); f != nullptr && code.punct(i + 1, '(') &&
                                                       !(i > 0 && code.punct(i - 1, '.'))) {
      report(std::string(f->line));
    }
  }
  return found;
}

}  // namespace keel::host::storage::pg
