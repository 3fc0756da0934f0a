#include "http/header_scanner.hpp"

#include <cstring>

namespace keel::host::http {
namespace {

ScanResult error(unsigned status, std::string_view reason) noexcept {
  return {ScanResult::Kind::kError, 0, status, reason};
}

}  // namespace

ScanResult HeaderScanner::scan(std::string_view data) noexcept {
  // Line by line with memchr (vectorised in glibc): a header costs a few calls per line instead
  // of a branchy loop per byte. Every byte is still examined exactly once across calls.
  const char* const base = data.data();
  const std::size_t size = data.size();
  while (pos_ < size) {
    if (pos_ == line_start_) {
      const char c = base[pos_];
      if (c == ' ' || c == '\t') {
        // A field line starting with whitespace is obs-fold (RFC 9112 §5.2); after the request
        // line it would be a smuggling vector (§2.2). Both are rejected.
        return error(400, request_line_done_ ? "obsolete line folding in request header"
                                             : "whitespace before request line");
      }
      if (c == '\r') {
        if (pos_ + 1 >= size) break;  // need the next byte to judge this CR
        if (base[pos_ + 1] != '\n') return error(400, "bare CR in request header");
        if (!request_line_done_) return error(400, "empty request line");
        pos_ += 2;
        if (pos_ > max_header_) return error(431, "request header fields too large");
        return {ScanResult::Kind::kComplete, pos_, 0, {}};
      }
      if (c == '\n') return error(400, "bare LF in request header");
    }
    const char* const start = base + pos_;
    const std::size_t avail = size - pos_;
    const auto* nl = static_cast<const char*>(std::memchr(start, '\n', avail));
    const std::size_t span = nl != nullptr ? static_cast<std::size_t>(nl - start) : avail;
    if (std::memchr(start, '\0', span) != nullptr) return error(400, "NUL byte in request header");
    const auto* cr = static_cast<const char*>(std::memchr(start, '\r', span));
    if (nl == nullptr) {
      // An unfinished line: a CR is only acceptable as its very last byte (LF may follow).
      if (cr != nullptr && cr != base + size - 1) return error(400, "bare CR in request header");
      pos_ = cr != nullptr ? size - 1 : size;
      break;
    }
    if (cr == nullptr) return error(400, "bare LF in request header");
    if (cr != nl - 1) return error(400, "bare CR in request header");
    const auto line_length = static_cast<std::size_t>(cr - (base + line_start_));
    if (!request_line_done_ && line_length > max_line_) return error(414, "request line too long");
    pos_ = static_cast<std::size_t>(nl - base) + 1;
    if (pos_ > max_header_) return error(431, "request header fields too large");
    request_line_done_ = true;
    line_start_ = pos_;
  }
  // Not complete yet, and the verdict must not depend on where this read ended: the request line
  // so far (less a last CR, which may end it) is already too long, or the block, which needs at
  // least one more byte, can no longer fit.
  if (!request_line_done_ && pos_ - line_start_ > max_line_) return error(414, "request line too long");
  if (size >= max_header_) return error(431, "request header fields too large");
  return {};
}

std::size_t HeaderScanner::leading_empty_lines(std::string_view data) noexcept {
  std::size_t skip = 0;
  while (data.size() >= skip + 2 && data[skip] == '\r' && data[skip + 1] == '\n') skip += 2;
  return skip;
}

}  // namespace keel::host::http
