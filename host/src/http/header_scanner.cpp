#include "http/header_scanner.hpp"

namespace keel::host::http {
namespace {

ScanResult error(unsigned status, std::string_view reason) noexcept {
  return {ScanResult::Kind::kError, 0, status, reason};
}

}  // namespace

ScanResult HeaderScanner::scan(std::string_view data) noexcept {
  const std::size_t size = data.size();
  while (pos_ < size) {
    const char c = data[pos_];
    if (c == '\r') {
      if (pos_ + 1 >= size) break;  // need the next byte to judge this CR
      if (data[pos_ + 1] != '\n') return error(400, "bare CR in request header");
      const bool empty_line = pos_ == line_start_;
      pos_ += 2;
      if (empty_line) {
        if (!request_line_done_) return error(400, "empty request line");
        return {ScanResult::Kind::kComplete, pos_, 0, {}};
      }
      request_line_done_ = true;
      line_start_ = pos_;
      continue;
    }
    if (c == '\n') return error(400, "bare LF in request header");
    if (c == '\0') return error(400, "NUL byte in request header");
    if (pos_ == line_start_ && (c == ' ' || c == '\t')) {
      // A field line starting with whitespace is obs-fold (RFC 9112 §5.2); after the request
      // line it would be a smuggling vector (§2.2). Both are rejected.
      return error(400, request_line_done_ ? "obsolete line folding in request header"
                                           : "whitespace before request line");
    }
    ++pos_;
    if (!request_line_done_ && pos_ - line_start_ > max_line_) return error(414, "request line too long");
    if (pos_ > max_header_) return error(431, "request header fields too large");
  }
  if (!request_line_done_ && size - line_start_ > max_line_) return error(414, "request line too long");
  if (size > max_header_) return error(431, "request header fields too large");
  return {};
}

std::size_t HeaderScanner::leading_empty_lines(std::string_view data) noexcept {
  std::size_t skip = 0;
  while (data.size() >= skip + 2 && data[skip] == '\r' && data[skip + 1] == '\n') skip += 2;
  return skip;
}

}  // namespace keel::host::http
