#pragma once
// Strict reading of request bodies for catalog (and the shop plugins that share its input rules:
// orders, notifications): nlohmann::json (already a Keel dependency, header only) parses RFC 8259 text and rejects invalid UTF-8; on top of it this file refuses what
// nlohmann accepts silently: duplicate object keys (the last would win) and a top level that is
// not an object. Integer members are read exactly (int64, never through a double).
// Pure functions; thread-safe.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

namespace catalog::json {

using Value = nlohmann::json;

/// Result of parse_object: the object, or why the text is not one.
struct Parsed {
  std::optional<Value> value;
  std::string error;  ///< set when !value: a short reason for the 400 answer
};

/// Parses `text` as exactly one JSON object with unique keys at every level.
[[nodiscard]] inline Parsed parse_object(std::string_view text) {
  std::vector<std::unordered_set<std::string>> open_objects;  // keys seen so far, per open object
  std::optional<std::string> duplicate;
  const Value::parser_callback_t on_event = [&](int, Value::parse_event_t event, Value& parsed) {
    switch (event) {
      case Value::parse_event_t::object_start: open_objects.emplace_back(); break;
      case Value::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case Value::parse_event_t::key: {  // a hash set: many keys cost linear time, not quadratic
        const auto& key = parsed.get_ref<const std::string&>();
        if (!open_objects.back().insert(key).second && !duplicate) duplicate = key;
        break;
      }
      default: break;
    }
    return true;
  };
  Parsed out;
  try {
    Value value = Value::parse(text.begin(), text.end(), on_event);
    if (duplicate) {
      out.error = "duplicate key \"" + *duplicate + "\"";
    } else if (!value.is_object()) {
      out.error = "the body must be a JSON object";
    } else {
      out.value = std::move(value);
    }
  } catch (const Value::parse_error& e) {
    out.error = "not valid JSON (at byte " + std::to_string(e.byte) + ")";
  } catch (const Value::out_of_range&) {  // a number beyond a double's range, e.g. 1e400
    out.error = "not valid JSON (a number out of range)";
  }
  return out;
}

/// The integer a JSON number holds exactly, if it is an integer in int64 range. 12.0, 1e3 and
/// integers beyond int64 are refused: money and counts never go through floating point.
[[nodiscard]] inline std::optional<std::int64_t> as_int64(const Value& v) {
  if (v.is_number_unsigned()) {
    const auto u = v.get<std::uint64_t>();
    if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return std::nullopt;
    return static_cast<std::int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<std::int64_t>();
  return std::nullopt;
}

/// Serializes `v` compactly; invalid UTF-8 (impossible for validated input) becomes U+FFFD
/// instead of throwing (TOOLCHAIN.md pitfall 5).
template <class Json>
[[nodiscard]] std::string dump(const Json& v) {
  return v.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace catalog::json
