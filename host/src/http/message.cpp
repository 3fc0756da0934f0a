#include "http/message.hpp"

#include <algorithm>

#include "observability/log.hpp"

namespace keel::host::http {

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + 32);
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + 32);
    if (x != y) return false;
  }
  return true;
}

std::string_view Request::header(std::string_view name) const noexcept {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return h.value;
  return {};
}

void Response::set_error(unsigned http_status, std::string_view code, std::string_view message) {
  status = http_status;
  content_type = "application/json";
  body.clear();
  body += R"({"error":{"code":")";
  observability::append_json_escaped(body, code);
  body += R"(","message":")";
  observability::append_json_escaped(body, message);
  body += "\"}}";
}

bool AsyncReply::complete(Response&& response) {
  std::function<void()> waker;
  std::function<void(unsigned, std::size_t)> finish;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kPending) return false;
    state_ = State::kCompleted;
    finished_status_ = response.status;
    finished_bytes_ = response.body.size();
    response_ = std::move(response);
    waker = std::move(waker_);
    finish = std::move(on_finish_);
  }
  if (finish) finish(finished_status_, finished_bytes_);
  if (waker) waker();
  return true;
}

bool AsyncReply::awaited() {
  std::lock_guard lock(mutex_);
  return state_ == State::kPending;
}

bool AsyncReply::expire() noexcept {
  std::function<void(unsigned, std::size_t)> finish;
  {
    std::lock_guard lock(mutex_);
    if (state_ != State::kPending) return state_ == State::kExpired;
    state_ = State::kExpired;
    finished_status_ = 504;
    waker_ = nullptr;
    finish = std::move(on_finish_);
  }
  try {
    if (finish) finish(504, 0);
  } catch (...) {  // metrics never fail the server
  }
  return true;
}

void AsyncReply::on_finish(std::function<void(unsigned, std::size_t)> fn) {
  {
    std::lock_guard lock(mutex_);
    if (state_ == State::kPending) {
      on_finish_ = std::move(fn);
      return;
    }
  }
  fn(finished_status_, finished_bytes_);
}

bool AsyncReply::set_waker(std::function<void()> waker) {
  std::lock_guard lock(mutex_);
  if (state_ != State::kPending) return false;
  waker_ = std::move(waker);
  return true;
}

Response AsyncReply::take() {
  std::lock_guard lock(mutex_);
  return std::move(response_);
}

void Response::set_method_not_allowed(std::string_view allow) {
  set_error(405, "method_not_allowed", "this path allows " + std::string(allow));
  headers.emplace_back("Allow", std::string(allow));
}

void Response::set_json(unsigned http_status, std::string json_body) {
  status = http_status;
  content_type = "application/json";
  body = std::move(json_body);
}

std::string_view reason_phrase(unsigned status) noexcept {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Unknown";
  }
}

bool valid_request_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == ':' || c == '-';
  });
}

std::string_view error_code_for(unsigned status) noexcept {
  switch (status) {
    case 400: return "bad_request";
    case 401: return "unauthorized";
    case 403: return "forbidden";
    case 404: return "not_found";
    case 405: return "method_not_allowed";
    case 408: return "request_timeout";
    case 409: return "conflict";
    case 411: return "length_required";
    case 413: return "content_too_large";
    case 414: return "uri_too_long";
    case 417: return "expectation_failed";
    case 422: return "unprocessable";
    case 429: return "too_many_requests";
    case 431: return "header_fields_too_large";
    case 500: return "internal";
    case 501: return "not_implemented";
    case 502: return "bad_gateway";
    case 503: return "unavailable";
    case 504: return "timeout";
    case 505: return "http_version_not_supported";
    case 507: return "insufficient_storage";
    default: return status >= 500 ? "internal" : "error";
  }
}

}  // namespace keel::host::http
