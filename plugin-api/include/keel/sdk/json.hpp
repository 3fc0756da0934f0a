#pragma once
/// @file keel/sdk/json.hpp
/// JSON for plugins, header-only and without dependencies (docs/plugin-guide.md "JSON"):
///   - append_json_escaped(): the escaping every JSON Keel emits uses (the host's too);
///   - Json: a value (null, boolean, integer, number, string, array, object) that parses
///     strictly (RFC 8259, with the byte offset of the first error) and writes itself;
///   - JsonReader: typed reading of an object (a request body, the plugin's config) in which every
///     error names the field: "body.items[2].quantity: expected an integer, got a string".
/// Values are plain data: copy them freely; a const value may be read from any thread.

#include <keel/sdk/status.hpp>

#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel::sdk {

/// Appends `text` to `out` as the inside of a JSON string: quotes, backslashes and control
/// characters are escaped, and bytes that are not valid UTF-8 become U+FFFD, so the result is
/// always valid JSON whatever the client put in the URL.
inline void append_json_escaped(std::string& out, std::string_view text) {
  constexpr std::string_view kHex = "0123456789abcdef";
  std::size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c < 0x80) {
      switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
          if (c < 0x20) {
            out += "\\u00";
            out += kHex[c >> 4];
            out += kHex[c & 0xF];
          } else {
            out += static_cast<char>(c);
          }
      }
      ++i;
      continue;
    }
    // Multi-byte sequence: length from the lead byte, then continuation bytes, rejecting
    // overlong forms, surrogates and values above U+10FFFF (RFC 3629 section 4).
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) {
      len = 2;
      cp = c & 0x1Fu;
    } else if (c >= 0xE0 && c <= 0xEF) {
      len = 3;
      cp = c & 0x0Fu;
    } else if (c >= 0xF0 && c <= 0xF4) {
      len = 4;
      cp = c & 0x07u;
    }
    bool valid = len != 0 && i + len <= text.size();
    for (std::size_t k = 1; valid && k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text[i + k]);
      valid = (cc & 0xC0u) == 0x80u;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    valid = valid && !(len == 3 && cp < 0x800) && !(len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) &&
            !(cp >= 0xD800 && cp <= 0xDFFF);
    if (valid) {
      out.append(text.substr(i, len));
      i += len;
    } else {
      out += "\\ufffd";
      ++i;
    }
  }
}

/// The host's error body for a failing `status`, with its message:
/// {"error":{"code":"bad_request","message":"body.name: required member is missing"}} (the code
/// is error_code()). Answer a client's mistake with it so the client learns what to fix:
///   return res.json(static_cast<int>(http_status(st.code())), error_json(st));
/// A Status returned from on_request reaches the log instead; the client then gets the code and
/// "plugin '<name>' failed: <status name>" only.
[[nodiscard]] inline std::string error_json(const Status& status) {
  std::string out = R"({"error":{"code":")";
  out += error_code(status.code());
  out += R"(","message":")";
  append_json_escaped(out, status.message());
  out += "\"}}";
  return out;
}

/// A JSON value. Integers that fit int64 without a fraction or exponent are kept exactly as
/// integers; every other number is a double. Objects keep their members in order.
class Json {
 public:
  enum class Type { kNull, kBool, kInteger, kNumber, kString, kArray, kObject };
  using Member = std::pair<std::string, Json>;

  Json() noexcept = default;  ///< null
  Json(std::nullptr_t) noexcept {}
  Json(bool b) noexcept : type_{Type::kBool}, bool_{b} {}
  /// Any integer type; values beyond int64 are not representable (keep them as strings).
  template <typename I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
  Json(I i) noexcept : type_{Type::kInteger}, int_{static_cast<std::int64_t>(i)} {}
  Json(double d) noexcept : type_{Type::kNumber}, double_{d} {}
  Json(std::string_view s) : type_{Type::kString}, string_{s} {}
  Json(const char* s) : Json(std::string_view{s}) {}
  Json(std::string s) noexcept : type_{Type::kString}, string_{std::move(s)} {}

  /// {"id": 42, "name": "mug"}: Json::object({{"id", 42}, {"name", "mug"}}).
  static Json object(std::initializer_list<Member> members = {}) {
    Json j;
    j.type_ = Type::kObject;
    j.members_.assign(members.begin(), members.end());
    return j;
  }
  static Json array(std::initializer_list<Json> items = {}) {
    Json j;
    j.type_ = Type::kArray;
    j.members_.reserve(items.size());
    for (const auto& item : items) j.members_.emplace_back(std::string{}, item);
    return j;
  }

  /// Parses `text` strictly: one value (surrounding whitespace allowed), no comments, no
  /// trailing commas, strings of valid UTF-8 with no raw control characters, no duplicate keys
  /// in an object, at most `max_depth` nested arrays and objects. On failure `out` is null and
  /// the status is invalid_argument "at byte N: <what was expected>".
  [[nodiscard]] static Status parse(std::string_view text, Json& out, int max_depth = 64) noexcept;

  [[nodiscard]] Type type() const noexcept { return type_; }
  [[nodiscard]] bool is_null() const noexcept { return type_ == Type::kNull; }
  [[nodiscard]] bool is_object() const noexcept { return type_ == Type::kObject; }
  [[nodiscard]] bool is_array() const noexcept { return type_ == Type::kArray; }
  [[nodiscard]] bool as_bool() const noexcept { return bool_; }
  [[nodiscard]] std::int64_t as_integer() const noexcept { return int_; }
  /// An integer or a number, as a double.
  [[nodiscard]] double as_number() const noexcept { return type_ == Type::kInteger ? static_cast<double>(int_) : double_; }
  [[nodiscard]] const std::string& as_string() const noexcept { return string_; }

  /// Array: its items; object: its values in order. Empty for any other type.
  [[nodiscard]] std::size_t size() const noexcept { return members_.size(); }
  [[nodiscard]] const Json& operator[](std::size_t i) const noexcept { return members_[i].second; }
  [[nodiscard]] const std::vector<Member>& members() const noexcept { return members_; }
  /// The object member `key`, or nullptr (also for a value that is not an object).
  [[nodiscard]] const Json* find(std::string_view key) const noexcept {
    if (type_ != Type::kObject) return nullptr;
    for (const auto& [name, value] : members_)
      if (name == key) return &value;
    return nullptr;
  }

  /// Adds (or replaces) an object member; turns a null into an object first.
  Json& set(std::string_view key, Json value) {
    if (type_ == Type::kNull) type_ = Type::kObject;
    for (auto& [name, old] : members_)
      if (name == key) return old = std::move(value);
    members_.emplace_back(std::string{key}, std::move(value));
    return members_.back().second;
  }
  /// Appends an array item; turns a null into an array first.
  Json& push_back(Json value) {
    if (type_ == Type::kNull) type_ = Type::kArray;
    members_.emplace_back(std::string{}, std::move(value));
    return members_.back().second;
  }

  /// Compact JSON text; a non-finite number (which JSON cannot hold) is written as null.
  [[nodiscard]] std::string dump() const {
    std::string out;
    dump_to(out);
    return out;
  }
  void dump_to(std::string& out) const;

  /// "a string", "an integer", ... for messages.
  [[nodiscard]] std::string_view type_phrase() const noexcept;

 private:
  Type type_ = Type::kNull;
  bool bool_ = false;
  std::int64_t int_ = 0;
  double double_ = 0;
  std::string string_;
  std::vector<Member> members_;  // array items have empty names
};

namespace detail {

class JsonParser {
 public:
  JsonParser(std::string_view text, int max_depth) : text_{text}, max_depth_{max_depth} {}

  bool parse(Json& out) {
    skip_space();
    if (!value(out, 0)) return false;
    skip_space();
    if (at_ != text_.size()) return fail("expected the end of the text after the value");
    return true;
  }
  [[nodiscard]] std::size_t offset() const noexcept { return at_; }
  [[nodiscard]] const std::string& error() const noexcept { return error_; }

 private:
  bool fail(std::string_view what) {
    if (error_.empty()) error_.assign(what);
    return false;
  }
  void skip_space() {
    while (at_ < text_.size() && (text_[at_] == ' ' || text_[at_] == '\t' || text_[at_] == '\n' || text_[at_] == '\r')) ++at_;
  }
  // Steps over `c` when it comes next.
  bool eat(char c) {
    if (at_ >= text_.size() || text_[at_] != c) return false;
    ++at_;
    return true;
  }
  bool literal(std::string_view word) {
    if (text_.substr(at_, word.size()) != word) return fail("expected a JSON value");
    at_ += word.size();
    return true;
  }

  bool value(Json& out, int depth) {
    if (at_ >= text_.size()) return fail("expected a JSON value, got the end of the text");
    switch (text_[at_]) {
      case '{': return object(out, depth + 1);
      case '[': return array(out, depth + 1);
      case '"': {
        std::string s;
        if (!string(s)) return false;
        out = Json{std::move(s)};
        return true;
      }
      case 't': out = Json{true}; return literal("true");
      case 'f': out = Json{false}; return literal("false");
      case 'n': out = Json{}; return literal("null");
      default: return number(out);
    }
  }

  bool object(Json& out, int depth) {
    if (depth > max_depth_) return fail("nested deeper than the limit");
    out = Json::object();
    ++at_;  // {
    skip_space();
    if (eat('}')) return true;
    for (;;) {
      skip_space();
      if (at_ >= text_.size() || text_[at_] != '"') return fail("expected a member name in double quotes");
      const auto key_at = at_;
      std::string key;
      if (!string(key)) return false;
      if (out.find(key) != nullptr) {
        at_ = key_at;
        return fail("duplicate member name \"" + key + "\"");
      }
      skip_space();
      if (!eat(':')) return fail("expected ':' after the member name");
      skip_space();
      Json member;
      if (!value(member, depth)) return false;
      out.set(key, std::move(member));
      skip_space();
      if (eat(',')) continue;
      if (eat('}')) return true;
      return fail("expected ',' or '}' in the object");
    }
  }

  bool array(Json& out, int depth) {
    if (depth > max_depth_) return fail("nested deeper than the limit");
    out = Json::array();
    ++at_;  // [
    skip_space();
    if (eat(']')) return true;
    for (;;) {
      skip_space();
      Json item;
      if (!value(item, depth)) return false;
      out.push_back(std::move(item));
      skip_space();
      if (eat(',')) continue;
      if (eat(']')) return true;
      return fail("expected ',' or ']' in the array");
    }
  }

  static int hex(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }
  bool hex4(std::uint32_t& out) {
    if (at_ + 4 > text_.size()) return fail("expected four hex digits after \\u");
    out = 0;
    for (int i = 0; i < 4; ++i) {
      const int h = hex(text_[at_ + static_cast<std::size_t>(i)]);
      if (h < 0) return fail("expected four hex digits after \\u");
      out = (out << 4) | static_cast<std::uint32_t>(h);
    }
    at_ += 4;
    return true;
  }
  static void append_utf8(std::string& out, std::uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | (cp >> 6));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | (cp >> 12));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | (cp >> 18));
      out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }
  // Length of the valid UTF-8 sequence at `at_` (RFC 3629), 0 if there is none.
  std::size_t utf8_length() const noexcept {
    const auto c = static_cast<unsigned char>(text_[at_]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1Fu;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0Fu;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07u;
    if (len == 0 || at_ + len > text_.size()) return 0;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(text_[at_ + k]);
      if ((cc & 0xC0u) != 0x80u) return 0;
      cp = (cp << 6) | (cc & 0x3Fu);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
  }

  bool string(std::string& out) {
    ++at_;  // "
    for (;;) {
      if (at_ >= text_.size()) return fail("unterminated string");
      const auto c = static_cast<unsigned char>(text_[at_]);
      if (c == '"') {
        ++at_;
        return true;
      }
      if (c < 0x20) return fail("a control character in a string must be escaped");
      if (c >= 0x80) {
        const auto len = utf8_length();
        if (len == 0) return fail("a string holds bytes that are not UTF-8");
        out.append(text_.substr(at_, len));
        at_ += len;
        continue;
      }
      if (c != '\\') {
        out += static_cast<char>(c);
        ++at_;
        continue;
      }
      if (++at_ >= text_.size()) return fail("unterminated string");
      switch (text_[at_++]) {
        case '"': out += '"'; break;
        case '\\': out += '\\'; break;
        case '/': out += '/'; break;
        case 'b': out += '\b'; break;
        case 'f': out += '\f'; break;
        case 'n': out += '\n'; break;
        case 'r': out += '\r'; break;
        case 't': out += '\t'; break;
        case 'u': {
          std::uint32_t cp = 0;
          if (!hex4(cp)) return false;
          if (cp >= 0xDC00 && cp <= 0xDFFF) return fail("a \\u escape holds a lone low surrogate");
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            std::uint32_t low = 0;
            if (text_.substr(at_, 2) != "\\u") return fail("a high surrogate must be followed by a \\u low surrogate");
            at_ += 2;
            if (!hex4(low)) return false;
            if (low < 0xDC00 || low > 0xDFFF) return fail("a high surrogate must be followed by a \\u low surrogate");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --at_;
          return fail("unknown escape in a string");
      }
    }
  }

  bool number(Json& out) {
    const auto start = at_;
    eat('-');
    const auto digits = [this] {
      const auto from = at_;
      while (at_ < text_.size() && text_[at_] >= '0' && text_[at_] <= '9') ++at_;
      return at_ - from;
    };
    const auto int_start = at_;
    const auto int_digits = digits();
    if (int_digits == 0) {
      at_ = start;
      return fail("expected a JSON value");
    }
    if (int_digits > 1 && text_[int_start] == '0') {
      at_ = int_start;
      return fail("a number must not have leading zeros");
    }
    bool integer = true;
    if (eat('.')) {
      integer = false;
      if (digits() == 0) return fail("expected digits after the decimal point");
    }
    if (eat('e') || eat('E')) {
      integer = false;
      if (!eat('+')) eat('-');
      if (digits() == 0) return fail("expected digits in the exponent");
    }
    const char* first = text_.data() + start;
    const char* last = text_.data() + at_;
    if (integer) {
      std::int64_t i = 0;
      if (const auto r = std::from_chars(first, last, i); r.ec == std::errc{} && r.ptr == last) {
        out = Json{i};
        return true;
      }
    }
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec != std::errc{} || r.ptr != last || !std::isfinite(d)) {
      at_ = start;
      return fail("a number out of range");
    }
    out = Json{d};
    return true;
  }

  std::string_view text_;
  int max_depth_;
  std::size_t at_ = 0;
  std::string error_;
};

}  // namespace detail

inline Status Json::parse(std::string_view text, Json& out, int max_depth) noexcept {
  out = Json{};
  try {
    detail::JsonParser parser{text, max_depth};
    Json value;
    if (!parser.parse(value)) {
      return Status::invalid_argument("at byte " + std::to_string(parser.offset()) + ": " + parser.error());
    }
    out = std::move(value);
    return {};
  } catch (...) {
    return detail::make_status(KEEL_ERR_INTERNAL, "parsing JSON: out of memory");
  }
}

inline std::string_view Json::type_phrase() const noexcept {
  switch (type_) {
    case Type::kNull: return "null";
    case Type::kBool: return "a boolean";
    case Type::kInteger: return "an integer";
    case Type::kNumber: return "a number";
    case Type::kString: return "a string";
    case Type::kArray: return "an array";
    case Type::kObject: return "an object";
  }
  return "a value";
}

inline void Json::dump_to(std::string& out) const {
  switch (type_) {
    case Type::kNull: out += "null"; return;
    case Type::kBool: out += bool_ ? "true" : "false"; return;
    case Type::kInteger: out += std::to_string(int_); return;
    case Type::kNumber: {
      if (!std::isfinite(double_)) {
        out += "null";
        return;
      }
      char buf[32];
      const auto r = std::to_chars(buf, buf + sizeof buf, double_);  // the shortest text that reads back
      out.append(buf, r.ptr);
      if (std::string_view(buf, static_cast<std::size_t>(r.ptr - buf)) == "-0") out += ".0";  // "-0" would read as 0
      return;
    }
    case Type::kString:
      out += '"';
      append_json_escaped(out, string_);
      out += '"';
      return;
    case Type::kArray:
    case Type::kObject: {
      const bool object = type_ == Type::kObject;
      out += object ? '{' : '[';
      for (std::size_t i = 0; i < members_.size(); ++i) {
        if (i != 0) out += ',';
        if (object) {
          out += '"';
          append_json_escaped(out, members_[i].first);
          out += "\":";
        }
        members_[i].second.dump_to(out);
      }
      out += object ? '}' : ']';
      return;
    }
  }
}

/// Typed reading of a JSON object, for request bodies and the plugin's config. Each getter
/// records the first problem it meets, naming the field by its path from `name`
/// ("body.items[2].quantity: expected an integer, got a string"); check ok() or status() once
/// at the end. Unknown members are refused by finish() when the object should hold nothing
/// else. Reads do not copy the document: keep it alive while the JsonReader are used.
class JsonReader {
 public:
  /// `value` should be an object; anything else is the first problem.
  JsonReader(const Json& value, std::string name) : value_{&value}, name_{std::move(name)} {
    if (!value.is_object()) problem(name_, std::string{"expected an object, got "} + std::string{value.type_phrase()});
  }

  /// Parses `text` (a request body) and reads it; a parse error is the first problem
  /// ("body: at byte 12: expected ',' or '}' in the object").
  static JsonReader parse(std::string_view text, std::string name) {
    auto doc = std::make_shared<Json>();
    const Status parsed = Json::parse(text, *doc);
    JsonReader f{parsed.ok() ? *doc : kObject(), std::move(name)};
    f.owned_ = std::move(doc);
    if (!parsed.ok()) f.problem(f.name_, parsed.message());
    return f;
  }

  template <typename T>
  [[nodiscard]] std::optional<T> optional(std::string_view key) {
    const Json* v = value_->find(key);
    if (v == nullptr || v->is_null()) return std::nullopt;
    return convert<T>(*v, path(key));
  }
  /// The member, or `fallback` when it is absent or null.
  template <typename T>
  [[nodiscard]] T get(std::string_view key, T fallback) {
    auto v = optional<T>(key);
    return v ? std::move(*v) : std::move(fallback);
  }
  /// The member; when it is absent, "body.sku: required member is missing".
  template <typename T>
  [[nodiscard]] T required(std::string_view key) {
    const Json* v = value_->find(key);
    if (v == nullptr || v->is_null()) {
      problem(path(key), "required member is missing");
      return T{};
    }
    auto converted = convert<T>(*v, path(key));
    return converted ? std::move(*converted) : T{};
  }
  /// A nested object as JsonReader of its own (its problems are reported by this one too).
  [[nodiscard]] JsonReader object(std::string_view key) {
    const Json* v = value_->find(key);
    if (v != nullptr && !v->is_object()) problem(path(key), std::string{"expected an object, got "} + std::string{v->type_phrase()});
    return nested_fields(v != nullptr && v->is_object() ? *v : kObject(), path(key));
  }
  /// Each object of the array member `key` as JsonReader named "body.items[0]", ...; empty (and
  /// a problem) when it is not an array of objects, empty when it is absent.
  [[nodiscard]] std::vector<JsonReader> objects(std::string_view key) {
    std::vector<JsonReader> out;
    const Json* v = value_->find(key);
    if (v == nullptr || v->is_null()) return out;
    if (!v->is_array()) {
      problem(path(key), std::string{"expected an array of objects, got "} + std::string{v->type_phrase()});
      return out;
    }
    for (std::size_t i = 0; i < v->size(); ++i) {
      const auto where = path(key) + "[" + std::to_string(i) + "]";
      if (!(*v)[i].is_object()) {
        problem(where, std::string{"expected an object, got "} + std::string{(*v)[i].type_phrase()});
        return {};
      }
      out.push_back(nested_fields((*v)[i], where));
    }
    return out;
  }
  /// The members read must be the only ones: any other is "body.colour: unknown member".
  /// Call after the getters.
  void finish_strict(std::initializer_list<std::string_view> known) {
    for (const auto& [key, value] : value_->members()) {
      bool found = false;
      for (const auto k : known) found = found || k == key;
      if (!found) problem(path(key), "unknown member");
    }
  }

  [[nodiscard]] bool ok() const noexcept { return first_->empty(); }
  /// ok, or invalid_argument with the first problem.
  [[nodiscard]] Status status() const { return ok() ? Status{} : Status::invalid_argument(*first_); }
  /// "body.sku: required member is missing", or empty.
  [[nodiscard]] const std::string& error() const noexcept { return *first_; }

 private:
  JsonReader nested_fields(const Json& value, std::string name) const {
    JsonReader nested{value, std::move(name)};
    nested.first_ = first_;  // one first problem for the whole document
    nested.owned_ = owned_;  // and the document stays alive with any part of it
    return nested;
  }
  static const Json& kObject() {
    static const Json empty = Json::object();
    return empty;
  }
  std::string path(std::string_view key) const { return name_.empty() ? std::string{key} : name_ + "." + std::string{key}; }
  void problem(const std::string& where, const std::string& what) {
    if (first_->empty()) *first_ = where + ": " + what;
  }

  template <typename T>
  std::optional<T> convert(const Json& v, const std::string& where) {
    const auto mismatch = [&](std::string_view expected) {
      problem(where, "expected " + std::string{expected} + ", got " + std::string{v.type_phrase()});
      return std::optional<T>{};
    };
    if constexpr (std::is_same_v<T, bool>) {
      if (v.type() != Json::Type::kBool) return mismatch("a boolean");
      return v.as_bool();
    } else if constexpr (std::is_integral_v<T>) {
      if (v.type() != Json::Type::kInteger) return mismatch("an integer");
      const auto i = v.as_integer();
      if (i < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
          (i > 0 && static_cast<std::uint64_t>(i) > static_cast<std::uint64_t>(std::numeric_limits<T>::max()))) {
        problem(where, "out of range: " + std::to_string(i));
        return std::nullopt;
      }
      return static_cast<T>(i);
    } else if constexpr (std::is_floating_point_v<T>) {
      if (v.type() != Json::Type::kInteger && v.type() != Json::Type::kNumber) return mismatch("a number");
      return static_cast<T>(v.as_number());
    } else if constexpr (std::is_same_v<T, std::string>) {
      if (v.type() != Json::Type::kString) return mismatch("a string");
      return v.as_string();
    } else if constexpr (std::is_same_v<T, Json>) {
      return v;
    } else if constexpr (std::is_same_v<T, std::vector<std::string>>) {
      if (!v.is_array()) return mismatch("an array of strings");
      std::vector<std::string> out;
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (v[i].type() != Json::Type::kString) {
          problem(where + "[" + std::to_string(i) + "]", "expected a string, got " + std::string{v[i].type_phrase()});
          return std::nullopt;
        }
        out.push_back(v[i].as_string());
      }
      return out;
    } else {
      static_assert(sizeof(T) == 0, "JsonReader reads bool, integers, floating point, std::string, "
                                    "std::vector<std::string> and Json");
    }
  }

  const Json* value_;
  std::string name_;
  std::shared_ptr<std::string> first_ = std::make_shared<std::string>();  // shared with nested JsonReader
  std::shared_ptr<Json> owned_;                                             // parse(): the document
};

}  // namespace keel::sdk
