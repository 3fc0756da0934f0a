// Fuzz target: the plugin SDK's JSON parser (keel/sdk/json.hpp), which reads request bodies a
// client controls. Properties, each a trap when broken:
// - it never crashes, and what it accepts nlohmann::json accepts too (it is the stricter one:
//   it also refuses duplicate member names and more than 64 levels of nesting);
// - a value it accepted writes itself as JSON it accepts again and that writes back the same;
// - JsonReader reading any member of any type never throws and keeps its first problem;
// - the C reader (keel/json.h) agrees: it finds a document well-formed exactly when the C++
//   parser reads it as an object (the C one refuses only a duplicate of the member asked for,
//   the C++ one any duplicate, and a number beyond a double's range), and reads member "a"
//   as the C++ parser does.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include <keel/json.h>
#include <keel/sdk/json.hpp>
#include <nlohmann/json.hpp>

namespace {

void check(bool property) {
  if (!property) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  keel::sdk::Json value;
  const auto status = keel::sdk::Json::parse(text, value);
  std::int64_t c_int = 0;
  const auto c_result = keel_json_get_int(text.data(), text.size(), "a", &c_int);
  // What only the C++ parser refuses: a duplicate of another member, a number beyond double.
  const bool stricter = status.message().find("duplicate member name") != std::string::npos ||
                        status.message().find("a number out of range") != std::string::npos;
  if (c_result == KEEL_JSON_MALFORMED) check(!status.ok() || !value.is_object() || stricter);
  else check((status.ok() && value.is_object()) || stricter);
  if (status.ok() && value.is_object()) {
    const auto* a = value.find("a");
    if (a == nullptr || a->is_null()) check(c_result == KEEL_JSON_ABSENT);
    else if (a->type() == keel::sdk::Json::Type::kInteger) check(c_result == KEEL_JSON_OK && c_int == a->as_integer());
    else check(c_result == KEEL_JSON_WRONG_TYPE);
  }
  if (!status.ok()) {
    check(value.is_null());
    check(status.message().rfind("at byte ", 0) == 0);
    return 0;
  }
  check(nlohmann::json::accept(text));
  const auto written = value.dump();
  keel::sdk::Json again;
  check(keel::sdk::Json::parse(written, again).ok());
  check(again.dump() == written);

  if (value.is_object()) {
    keel::sdk::JsonReader reader(value, "body");
    for (const auto& [key, member] : value.members()) {
      (void)reader.optional<std::string>(key);
      (void)reader.optional<std::int32_t>(key);
      (void)reader.optional<double>(key);
      (void)reader.optional<bool>(key);
      (void)reader.optional<std::vector<std::string>>(key);
      for (auto& nested : reader.objects(key)) (void)nested.optional<std::string>("id");
    }
    check(reader.ok() || reader.error().rfind("body", 0) == 0);
  }
  return 0;
}
