// Fuzz target: the bytes a client sends, read as the server reads them (http/server.cpp): the
// framing scan (http/header_scanner.*), then the request parser (http/request_parser.*) on the
// header block and on the body that follows. Properties, each a trap when broken:
// - the scanner's verdict does not depend on how the bytes arrive: whole, or one byte per read;
// - the scanner and the parser agree on where the header ends;
// - a request the server accepts obeys the strict rules of docs/http.md, read independently
//   here (strict_header below), and its body is within the limit.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/asio/buffer.hpp>

#include "http/header_scanner.hpp"
#include "http/request_parser.hpp"

namespace {

using keel::host::http::HeaderScanner;
using keel::host::http::ScanResult;

// Small limits, so that the fuzzer reaches 414, 431 and 413 (config minimums or near them).
constexpr std::size_t kMaxHeader = 1024;
constexpr std::size_t kMaxTarget = 256;
constexpr std::size_t kMaxRequestLine = kMaxTarget + 64;  // as the server sets up its scanner
constexpr std::size_t kMaxBody = 2048;

void check(bool property) {
  if (!property) __builtin_trap();
}

ScanResult scan_whole(std::string_view data) {
  HeaderScanner scanner(kMaxHeader, kMaxRequestLine);
  return scanner.scan(data);
}

ScanResult scan_bytewise(std::string_view data) {
  HeaderScanner scanner(kMaxHeader, kMaxRequestLine);
  ScanResult result;
  for (std::size_t n = 1; n <= data.size() && result.kind == ScanResult::Kind::kNeedMore; ++n)
    result = scanner.scan(data.substr(0, n));
  return result;
}

// --- docs/http.md, read independently of the code under test -----------------------------

bool tchar(char c) {  // RFC 9110 §5.6.2
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}
bool token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), tchar); }
bool digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}
bool ctl(char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The elements of a comma-separated field value (RFC 9110 §5.6.1), empty ones dropped.
std::vector<std::string_view> list_elements(std::string_view value) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto comma = value.find(',');
    if (const auto e = trim_ows(value.substr(0, comma)); !e.empty()) out.push_back(e);
    if (comma == std::string_view::npos) return out;
    value.remove_prefix(comma + 1);
  }
}

// RFC 9112 §3.2: origin-form, absolute-form (a scheme, then ':'), authority-form (CONNECT only:
// host ':' port) or asterisk-form.
bool target_form(std::string_view method, std::string_view target) {
  if (target.front() == '/' || target == "*") return true;
  if (method == "CONNECT") {
    const auto colon = target.rfind(':');
    return colon != 0 && colon != std::string_view::npos && digits(target.substr(colon + 1)) &&
           target.substr(0, colon).find_first_of("/?#@") == std::string_view::npos;
  }
  const auto colon = target.find(':');
  if (colon == 0 || colon == std::string_view::npos) return false;
  const auto scheme = target.substr(0, colon);
  const auto scheme_char = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '+' || c == '-' ||
           c == '.';
  };
  const bool alpha = (scheme.front() >= 'a' && scheme.front() <= 'z') || (scheme.front() >= 'A' && scheme.front() <= 'Z');
  return alpha && std::all_of(scheme.begin(), scheme.end(), scheme_char);
}

// True when `header` (request line to the empty line, CRLF CRLF included) is a request header
// docs/http.md lets through.
bool strict_header(std::string_view header) {
  if (header.size() > kMaxHeader || !header.ends_with("\r\n\r\n")) return false;
  std::vector<std::string_view> lines;
  for (std::string_view rest = header.substr(0, header.size() - 4);;) {
    const auto crlf = rest.find("\r\n");
    lines.push_back(rest.substr(0, crlf));
    if (crlf == std::string_view::npos) break;
    rest.remove_prefix(crlf + 2);
  }
  // Request line: method SP request-target SP HTTP-version (RFC 9112 §3).
  const auto request_line = lines.front();
  if (request_line.size() > kMaxRequestLine) return false;
  const auto sp1 = request_line.find(' ');
  const auto sp2 = request_line.find(' ', sp1 == std::string_view::npos ? sp1 : sp1 + 1);
  if (sp2 == std::string_view::npos) return false;
  const auto method = request_line.substr(0, sp1);
  const auto target = request_line.substr(sp1 + 1, sp2 - sp1 - 1);
  const auto version = request_line.substr(sp2 + 1);
  if (!token(method) || target.empty() || target.size() > kMaxTarget) return false;
  if (std::any_of(target.begin(), target.end(), [](char c) { return ctl(c) || c == ' '; })) return false;
  if (!target_form(method, target)) return false;
  if (version != "HTTP/1.0" && version != "HTTP/1.1") return false;

  std::size_t hosts = 0;
  std::optional<std::string> length;  // the Content-Length all such fields agree on
  bool bad_length = false;
  std::vector<std::string> codings;
  bool has_transfer_encoding = false;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto line = lines[i];
    // No obs-fold, no bare CR, LF or NUL, no control character but HTAB (RFC 9110 §5.5).
    if (line.empty() || line.front() == ' ' || line.front() == '\t') return false;
    if (std::any_of(line.begin(), line.end(), [](char c) { return ctl(c) && c != '\t'; })) return false;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || !token(line.substr(0, colon))) return false;
    const auto name = lower(line.substr(0, colon));
    const auto value = trim_ows(line.substr(colon + 1));
    if (name == "host") {
      ++hosts;
    } else if (name == "content-length") {
      const auto elements = list_elements(value);
      if (elements.empty()) bad_length = true;
      for (auto e : elements) {
        while (e.size() > 1 && e.front() == '0') e.remove_prefix(1);  // compared as numbers
        if (!digits(e) || (length && *length != e)) bad_length = true;
        length = std::string(e);
      }
    } else if (name == "transfer-encoding") {
      has_transfer_encoding = true;
      for (const auto e : list_elements(value)) codings.push_back(lower(e));
    } else if (name == "expect") {
      if (lower(value) != "100-continue") return false;
    }
  }
  const bool http11 = version == "HTTP/1.1";
  if (hosts > 1 || (http11 && hosts == 0)) return false;
  if (bad_length) return false;
  if (has_transfer_encoding) {
    if (!http11 || length) return false;
    // Exactly one coding, chunked: Keel decodes no other (400 or 501).
    if (codings.size() != 1 || codings.front() != "chunked") return false;
  }
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  // As the server does: empty lines before a request line are skipped (RFC 9112 §2.2), and
  // nothing (or a lone CR) is a request not begun.
  input.remove_prefix(HeaderScanner::leading_empty_lines(input));
  if (input.empty() || input == "\r") return 0;

  const ScanResult scan = scan_whole(input);
  const ScanResult bytewise = scan_bytewise(input);
  check(scan.kind == bytewise.kind);
  if (scan.kind != ScanResult::Kind::kComplete) return 0;  // refused, or the server reads on
  check(scan.header_size == bytewise.header_size);

  const auto header = input.substr(0, scan.header_size);
  std::vector<keel::host::http::Header> headers;
  std::string body;
  keel::host::http::RequestParser parser(headers, body, kMaxTarget);
  parser.header_limit(kMaxHeader + 4);
  parser.body_limit(kMaxBody);
  parser.eager(true);
  boost::beast::error_code ec;
  const auto used = parser.put(boost::asio::buffer(header.data(), header.size()), ec);
  if (ec) return 0;  // refused: the server answers the error and closes
  check(parser.is_header_done() && used == header.size());
  check(strict_header(header));

  // The body, fed as the server's read_body does with whatever follows the header.
  auto rest = input.substr(scan.header_size);
  while (!parser.is_done()) {
    if (rest.empty()) return 0;  // the server would read more
    const auto n = parser.put(boost::asio::buffer(rest.data(), rest.size()), ec);
    rest.remove_prefix(n);
    if (ec == boost::beast::http::error::need_more) {
      ec = {};
      if (n == 0) return 0;  // a chunk line longer than what is here: the server reads more
      continue;
    }
    if (ec) return 0;
  }
  check(body.size() <= kMaxBody);
  return 0;
}
