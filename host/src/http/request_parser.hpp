#pragma once
// The request parser: Beast's basic_parser tokenizes a request whose header passed the framing
// scan (header_scanner.hpp), and the callbacks here enforce the rules of docs/http.md that Beast
// 1.81 does not. Views it hands out point into the bytes given to put(). One per request,
// single-threaded. The callbacks stay inline, so the server's parse compiles as one unit; the
// server and the fuzz target (tests/fuzz/http_parser) include this header.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <boost/beast/http/basic_parser.hpp>
#include <boost/beast/http/error.hpp>

#include "http/message.hpp"

namespace keel::host::http {

inline constexpr std::size_t kMaxChunkExtension = 1024;
inline constexpr std::size_t kMaxTrailerBytes = 8192;
inline constexpr std::size_t kMaxTrailerFields = 64;

/// Why a request is refused: the status to answer and a static reason.
struct ParseFailure {
  unsigned status = 0;
  std::string_view reason;
};

class RequestParser final : public boost::beast::http::basic_parser<true> {
 public:
  RequestParser(std::vector<Header>& headers, std::string& body, std::size_t max_target)
      : headers_(headers), body_(body), max_target_(max_target) {
    headers_.clear();
    body_.clear();
  }

  [[nodiscard]] const ParseFailure& failure() const noexcept { return failure_; }
  [[nodiscard]] std::string_view method() const noexcept { return method_; }
  [[nodiscard]] std::string_view target() const noexcept { return target_; }
  [[nodiscard]] unsigned version() const noexcept { return version_; }
  [[nodiscard]] bool expects_continue() const noexcept { return expect_continue_; }
  [[nodiscard]] bool started() const noexcept { return started_; }

 private:
  using error_code = boost::beast::error_code;
  using bsv = boost::beast::string_view;
  using verb = boost::beast::http::verb;
  using field = boost::beast::http::field;

  static std::string_view trim(std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
    return s;
  }

  // RFC 9112 §3.2: origin-form ("/..."), asterisk-form ("*"), absolute-form (a scheme, then
  // "://"), or for CONNECT authority-form ("host:port").
  static bool valid_target_form(std::string_view method, std::string_view target) {
    const auto alpha = [](char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); };
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    if (target.empty()) return false;
    if (target.front() == '/' || target == "*") return true;
    if (method == "CONNECT") {
      const auto colon = target.rfind(':');
      if (colon == 0 || colon == std::string_view::npos || colon + 1 == target.size()) return false;
      const auto port = target.substr(colon + 1);
      return std::all_of(port.begin(), port.end(), digit) &&
             target.substr(0, colon).find_first_of("/?#@") == std::string_view::npos;
    }
    const auto scheme = target.substr(0, target.find("://"));
    if (scheme.empty() || scheme.size() == target.size() || !alpha(scheme.front())) return false;
    return std::all_of(scheme.begin(), scheme.end(),
                       [&](char c) { return alpha(c) || digit(c) || c == '+' || c == '-' || c == '.'; });
  }

  void fail(error_code& ec, unsigned status, std::string_view reason) {
    failure_ = {status, reason};
    ec = boost::beast::http::error::bad_value;  // any error stops Beast; failure_ carries the real answer
  }

  void on_request_impl(verb, bsv method_in, bsv target_in, int version, error_code& ec) override {
    const std::string_view method(method_in.data(), method_in.size());
    const std::string_view target(target_in.data(), target_in.size());
    started_ = true;
    method_ = method;
    target_ = target;
    version_ = static_cast<unsigned>(version);
    if (version != 10 && version != 11) return fail(ec, 505, "only HTTP/1.0 and HTTP/1.1 are supported");
    if (target.size() > max_target_) return fail(ec, 414, "request target too long");
    if (!valid_target_form(method, target)) return fail(ec, 400, "invalid request target");
  }

  void on_response_impl(int, bsv, int, error_code& ec) override { ec = boost::beast::http::error::bad_version; }

  void on_field_impl(field f, bsv name_in, bsv value_in, error_code& ec) override {
    const std::string_view name(name_in.data(), name_in.size());
    const std::string_view value(value_in.data(), value_in.size());
    if (header_done_) {
      // Trailer fields are parsed (to find the end of the message) but discarded; bounded so
      // a client cannot make the connection hold an unbounded trailer section.
      trailer_bytes_ += name.size() + value.size();
      if (++trailer_fields_ > kMaxTrailerFields || trailer_bytes_ > kMaxTrailerBytes)
        return fail(ec, 431, "chunked trailer section too large");
      return;
    }
    headers_.push_back({name, value});
    switch (f) {
      case field::host:
        ++host_count_;
        break;
      case field::transfer_encoding:
        if (has_transfer_encoding_) transfer_encoding_ += ',';
        transfer_encoding_.append(value.data(), value.size());
        has_transfer_encoding_ = true;
        break;
      case field::content_length:
        has_content_length_ = true;
        break;
      case field::expect:
        if (iequals(trim(value), "100-continue")) expect_continue_ = true;
        else return fail(ec, 417, "unsupported Expect value");
        break;
      default:
        break;
    }
  }

  void on_header_impl(error_code& ec) override {
    header_done_ = true;
    if (version_ == 11 && host_count_ == 0) return fail(ec, 400, "missing Host header");
    if (host_count_ > 1) return fail(ec, 400, "more than one Host header");
    if (!has_transfer_encoding_) return;  // an empty field is there too: refused below
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; with Content-Length
    // it is a smuggling attempt; the final coding must be chunked or the length is unknowable.
    if (version_ == 10) return fail(ec, 400, "Transfer-Encoding is not allowed in HTTP/1.0");
    if (has_content_length_) return fail(ec, 400, "both Transfer-Encoding and Content-Length");
    std::string_view rest = transfer_encoding_;
    std::string_view last;
    std::size_t chunked = 0;
    bool unknown = false;
    while (!rest.empty()) {
      const auto comma = rest.find(',');
      const auto coding = trim(rest.substr(0, comma));
      rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      if (coding.empty()) continue;
      last = coding;
      if (iequals(coding, "chunked")) ++chunked;
      else unknown = true;
    }
    if (last.empty()) return fail(ec, 400, "empty Transfer-Encoding");
    if (!iequals(last, "chunked")) return fail(ec, 400, "final transfer coding is not chunked");
    if (chunked > 1) return fail(ec, 400, "chunked applied more than once");
    if (unknown) return fail(ec, 501, "unsupported transfer coding");
  }

  void on_body_init_impl(const boost::optional<std::uint64_t>& length, error_code&) override {
    if (length) body_.reserve(static_cast<std::size_t>(*length));
  }

  std::size_t on_body_impl(bsv s, error_code&) override {
    body_.append(s.data(), s.size());
    return s.size();
  }

  void on_chunk_header_impl(std::uint64_t, bsv extensions, error_code& ec) override {
    if (extensions.size() > kMaxChunkExtension) return fail(ec, 400, "chunk extension too long");
  }

  std::size_t on_chunk_body_impl(std::uint64_t, bsv s, error_code&) override {
    body_.append(s.data(), s.size());
    return s.size();
  }

  void on_finish_impl(error_code&) override {}

  std::vector<Header>& headers_;
  std::string& body_;
  std::size_t max_target_;
  ParseFailure failure_;
  std::string_view method_;
  std::string_view target_;
  unsigned version_ = 11;
  unsigned host_count_ = 0;
  bool has_content_length_ = false;
  bool expect_continue_ = false;
  bool header_done_ = false;
  bool started_ = false;
  bool has_transfer_encoding_ = false;
  std::string transfer_encoding_;
  std::size_t trailer_fields_ = 0;
  std::size_t trailer_bytes_ = 0;
};

/// Beast's own parse errors (those no callback set) as a status and a reason for the client;
/// `header` is the request's header block.
[[nodiscard]] ParseFailure map_parse_error(const boost::beast::error_code& ec, std::string_view header);

}  // namespace keel::host::http
