#pragma once
// A deliberately dumb blocking HTTP/1.1 client over a loopback TCP socket: tests write exact
// bytes (including malformed ones) and read responses back one at a time. Every read is bounded
// by a receive timeout, so a test never hangs on a server that does not answer.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::test {

struct RawResponse {
  int status = 0;
  std::string reason;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  /// First header named `name` (case-insensitive), or empty.
  [[nodiscard]] std::string header(std::string_view name) const;
  [[nodiscard]] bool has_header(std::string_view name) const;
};

class RawClient {
 public:
  explicit RawClient(std::uint16_t port, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  ~RawClient();
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  /// Send every byte; returns false if the peer closed or reset the connection.
  bool send(std::string_view bytes);
  /// Read exactly one response. For a response to HEAD pass `head` (no body is read).
  /// nullopt if the connection closed (or timed out) before a complete response arrived.
  std::optional<RawResponse> read_response(bool head = false);
  /// True if the server closes the connection (EOF or reset) within `within`.
  bool wait_closed(std::chrono::milliseconds within = std::chrono::seconds(5));
  /// Bytes received but not yet consumed by read_response().
  [[nodiscard]] const std::string& pending() const noexcept { return buffer_; }
  /// Read whatever arrives until `n` bytes are pending or the timeout/EOF hits.
  bool read_at_least(std::size_t n);
  /// Read whatever arrives until the pending bytes contain `needle`; false on timeout or EOF.
  bool read_until(std::string_view needle);

 private:
  bool fill();
  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
};

/// One request on a fresh connection: "GET path" with Host, Connection: close.
std::optional<RawResponse> simple_request(std::uint16_t port, std::string_view method, std::string_view path,
                                          std::string_view body = {}, std::string_view extra_headers = {});

}  // namespace keel::test
