#pragma once
// Keel's own framing check of a request header block, run before Beast parses it. Beast 1.81
// accepts obs-fold (and merges it), so Keel rejects it here, together with bare CR, bare LF and
// NUL anywhere in the header (RFC 9112 §2.2, §5.2). Incremental: every byte is looked at once,
// however the header is split across reads. Pure and single-threaded; one per connection.

#include <cstddef>
#include <string_view>

namespace keel::host::http {

struct ScanResult {
  enum class Kind { kNeedMore, kComplete, kError };
  Kind kind = Kind::kNeedMore;
  std::size_t header_size = 0;  ///< kComplete: bytes up to and including the final CRLF CRLF
  unsigned status = 0;          ///< kError: 400, 414 or 431
  std::string_view reason;      ///< kError: static text for the JSON error body and the log
};

class HeaderScanner {
 public:
  HeaderScanner(std::size_t max_header_bytes, std::size_t max_request_line_bytes) noexcept
      : max_header_(max_header_bytes), max_line_(max_request_line_bytes) {}

  /// `data` holds every byte of this request received so far, starting at the request line.
  /// Resumes where the previous call stopped; call reset() before the next request.
  ScanResult scan(std::string_view data) noexcept;
  void reset() noexcept { *this = HeaderScanner(max_header_, max_line_); }

  /// Number of leading CRLFs a client may send before a request line (RFC 9112 §2.2: a server
  /// SHOULD ignore at least one); returns how many bytes of `data` to skip, or 0.
  static std::size_t leading_empty_lines(std::string_view data) noexcept;

 private:
  std::size_t max_header_;
  std::size_t max_line_;
  std::size_t pos_ = 0;         // next byte to examine
  std::size_t line_start_ = 0;  // first byte of the current line
  bool request_line_done_ = false;
};

}  // namespace keel::host::http
