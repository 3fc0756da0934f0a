#include "http/request_parser.hpp"

namespace keel::host::http {
namespace {

namespace bhttp = boost::beast::http;

// True if the request line ends in a well-formed "HTTP/x.y" other than 1.0/1.1, which Beast
// reports as bad_version but RFC 9110 §15.6.6 answers with 505.
bool unsupported_version(std::string_view header) {
  const auto line = header.substr(0, header.find("\r\n"));
  const auto version = line.substr(line.rfind(' ') + 1);
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  return version.size() == 8 && version.substr(0, 5) == "HTTP/" && digit(version[5]) && version[6] == '.' &&
         digit(version[7]) && version != "HTTP/1.0" && version != "HTTP/1.1";
}

}  // namespace

ParseFailure map_parse_error(const boost::beast::error_code& ec, std::string_view header) {
  if (ec == bhttp::error::header_limit) return {431, "request header fields too large"};
  if (ec == bhttp::error::body_limit) return {413, "request body larger than the configured limit"};
  if (ec == bhttp::error::bad_version && unsupported_version(header))
    return {505, "only HTTP/1.0 and HTTP/1.1 are supported"};
  if (ec == bhttp::error::bad_version) return {400, "malformed HTTP version"};
  if (ec == bhttp::error::bad_method) return {400, "malformed method"};
  if (ec == bhttp::error::bad_target) return {400, "malformed request target"};
  if (ec == bhttp::error::bad_field) return {400, "malformed header field name"};
  if (ec == bhttp::error::bad_value) return {400, "malformed header field value"};
  if (ec == bhttp::error::bad_content_length || ec == bhttp::error::multiple_content_length)
    return {400, "invalid or conflicting Content-Length"};
  if (ec == bhttp::error::bad_transfer_encoding) return {400, "invalid or conflicting Transfer-Encoding"};
  if (ec == bhttp::error::bad_chunk || ec == bhttp::error::bad_chunk_extension) return {400, "malformed chunked body"};
  if (ec == bhttp::error::bad_line_ending) return {400, "malformed line ending"};
  return {400, "malformed request"};
}

}  // namespace keel::host::http
