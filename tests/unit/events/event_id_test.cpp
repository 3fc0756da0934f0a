// Event ids: UUIDv7 text (RFC 9562), time-ordered and unique.
#include "events/bus.hpp"

#include <catch2/catch.hpp>

#include <cstdint>
#include <set>
#include <string>

namespace {

std::string id_at(std::int64_t unix_ns) {
  char out[36];
  keel::host::events::write_event_id(unix_ns, out);
  return std::string(out, sizeof out);
}

}  // namespace

TEST_CASE("event ids are UUIDv7 text: layout, version, variant and the millisecond time", "[events]") {
  const std::int64_t ms = 1'764'000'000'123;  // 2025-11-24
  const auto id = id_at(ms * 1'000'000 + 456);
  REQUIRE(id.size() == 36);
  for (std::size_t i = 0; i < id.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) CHECK(id[i] == '-');
    else CHECK(((id[i] >= '0' && id[i] <= '9') || (id[i] >= 'a' && id[i] <= 'f')));
  }
  CHECK(id[14] == '7');                                        // version
  CHECK(std::string("89ab").find(id[19]) != std::string::npos);  // variant 10xx
  CHECK(std::stoull(id.substr(0, 8) + id.substr(9, 4), nullptr, 16) == static_cast<std::uint64_t>(ms));
}

TEST_CASE("event ids are unique and sort by time", "[events]") {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(id_at(1'764'000'000'000'000'000));
  CHECK(ids.size() == 10000);
  CHECK(id_at(1'764'000'000'000'000'000) < id_at(1'764'000'000'001'000'000));
}
