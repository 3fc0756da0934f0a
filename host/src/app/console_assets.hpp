#pragma once
// The browser console's files (host/ui/), compiled into the binary by host/cmake/embed_assets.cmake:
// the console works with no network and nothing on disk.

#include <span>
#include <string_view>

namespace keel::host::app {

struct Asset {
  std::string_view path;          ///< relative to /admin/ui/, e.g. "console.js"
  std::string_view content_type;  ///< e.g. "text/javascript; charset=utf-8"
  std::string_view etag;          ///< strong entity tag, quotes included: a digest of the bytes
  std::span<const unsigned char> bytes;
};

/// Every embedded file, in the order host/CMakeLists.txt lists them.
[[nodiscard]] std::span<const Asset> console_assets() noexcept;

}  // namespace keel::host::app
