#pragma once
// The little JSON hello needs, without a JSON library in the plugin: escaping text into a
// string literal, and reading one string member of the config object the host passes to
// create(). Pure functions; thread-safe.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <keel/sdk/json.hpp>

namespace hello::json {

/// Appends `text` to `out` as the inside of a JSON string (see keel/sdk/json.hpp).
inline void append_escaped(std::string& out, std::string_view text) { keel::sdk::append_json_escaped(out, text); }

/// What string_member found.
enum class Lookup { kFound, kAbsent, kNotString, kMalformed };

namespace detail {

// A minimal recursive-descent reader over one JSON text (RFC 8259). It validates structure
// and decodes strings; numbers and literals are only skipped. Depth is bounded.
class Reader {
 public:
  explicit Reader(std::string_view text) noexcept : text_{text} {}

  void skip_space() noexcept {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  [[nodiscard]] bool at_end() noexcept {
    skip_space();
    return pos_ == text_.size();
  }
  [[nodiscard]] bool consume(char c) noexcept {
    skip_space();
    if (pos_ < text_.size() && text_[pos_] == c) {
      ++pos_;
      return true;
    }
    return false;
  }
  [[nodiscard]] bool peek(char c) noexcept {
    skip_space();
    return pos_ < text_.size() && text_[pos_] == c;
  }

  /// Reads a string token into `out` (decoded to UTF-8).
  [[nodiscard]] bool string(std::string& out) {
    if (!consume('"')) return false;
    while (pos_ < text_.size()) {
      const char c = text_[pos_++];
      if (c == '"') return true;
      if (static_cast<unsigned char>(c) < 0x20) return false;
      if (c != '\\') {
        out += c;
        continue;
      }
      if (pos_ >= text_.size()) return false;
      switch (text_[pos_++]) {
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
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // high surrogate: a low one must follow
            std::uint32_t low = 0;
            if (text_.substr(pos_, 2) != "\\u") return false;
            pos_ += 2;
            if (!hex4(low) || low < 0xDC00 || low > 0xDFFF) return false;
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          append_utf8(out, cp);
          break;
        }
        default: return false;
      }
    }
    return false;
  }

  /// Skips any value; false when it is malformed or nested deeper than 64 levels.
  [[nodiscard]] bool skip_value(int depth = 0) {
    if (depth > 64) return false;
    skip_space();
    if (pos_ >= text_.size()) return false;
    const char c = text_[pos_];
    if (c == '"') {
      std::string ignored;
      return string(ignored);
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      if (consume(close)) return true;
      do {
        if (c == '{') {
          std::string key;
          if (!string(key) || !consume(':')) return false;
        }
        if (!skip_value(depth + 1)) return false;
      } while (consume(','));
      return consume(close);
    }
    // A number or true/false/null: the run of characters that can appear in one.
    const std::size_t start = pos_;
    while (pos_ < text_.size() && std::string_view{"+-.0123456789eEtruefalsn"}.find(text_[pos_]) != std::string_view::npos) {
      ++pos_;
    }
    const std::string_view token = text_.substr(start, pos_ - start);
    if (token == "true" || token == "false" || token == "null") return true;
    return !token.empty() && (token[0] == '-' || (token[0] >= '0' && token[0] <= '9'));
  }

 private:
  [[nodiscard]] bool hex4(std::uint32_t& out) noexcept {
    if (pos_ + 4 > text_.size()) return false;
    for (int k = 0; k < 4; ++k) {
      const char h = text_[pos_++];
      out <<= 4;
      if (h >= '0' && h <= '9') {
        out |= static_cast<std::uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        out |= static_cast<std::uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        out |= static_cast<std::uint32_t>(h - 'A' + 10);
      } else {
        return false;
      }
    }
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

  std::string_view text_;
  std::size_t pos_ = 0;
};

}  // namespace detail

/// Reads the string member `key` of the JSON object `object_json` into `out`.
/// @return kFound; kAbsent when the object has no such key; kNotString when its value is not a
/// string; kMalformed when `object_json` is not one well-formed JSON object.
inline Lookup string_member(std::string_view object_json, std::string_view key, std::string& out) {
  detail::Reader reader{object_json};
  Lookup result = Lookup::kAbsent;
  if (!reader.consume('{')) return Lookup::kMalformed;
  if (!reader.consume('}')) {
    do {
      std::string name;
      if (!reader.string(name) || !reader.consume(':')) return Lookup::kMalformed;
      if (name == key && reader.peek('"')) {
        out.clear();
        if (!reader.string(out)) return Lookup::kMalformed;
        result = Lookup::kFound;  // a repeated key: the last one wins, as in most parsers
      } else {
        if (!reader.skip_value()) return Lookup::kMalformed;
        if (name == key) result = Lookup::kNotString;
      }
    } while (reader.consume(','));
    if (!reader.consume('}')) return Lookup::kMalformed;
  }
  return reader.at_end() ? result : Lookup::kMalformed;
}

}  // namespace hello::json
