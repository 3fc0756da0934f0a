#pragma once
// The shop's timestamps: RFC 3339 UTC with milliseconds, e.g. "2025-03-02T10:14:07.123Z". The
// plugins compute them instead of asking the database (SQLite's strftime() is not PostgreSQL's),
// so their SQL runs unchanged on both storage engines (docs/storage.md "Portable plugins").

#include <chrono>
#include <cstdint>
#include <ctime>
#include <string>

namespace catalog {

/// `unix_ms` (milliseconds since the Unix epoch) as an RFC 3339 UTC timestamp with milliseconds.
[[nodiscard]] inline std::string utc_from_ms(std::int64_t unix_ms) {
  const auto ms = static_cast<int>(((unix_ms % 1000) + 1000) % 1000);
  const std::time_t seconds = static_cast<std::time_t>((unix_ms - ms) / 1000);
  std::tm tm{};
  gmtime_r(&seconds, &tm);
  char buffer[32];
  const std::size_t n = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string out{buffer, n};
  out += '.';
  out += static_cast<char>('0' + ms / 100);
  out += static_cast<char>('0' + ms / 10 % 10);
  out += static_cast<char>('0' + ms % 10);
  out += 'Z';
  return out;
}

/// Now, as utc_from_ms().
[[nodiscard]] inline std::string utc_now() {
  return utc_from_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count());
}

}  // namespace catalog
