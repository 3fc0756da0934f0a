#pragma once
// TLS for the HTTP listeners: the certificate, the private key and the protocol settings as one
// OpenSSL context, owned by a TlsContext that every TLS listener (Server) of the host shares.
// reload() builds a new context from the files and swaps it in whole (Published): connections
// accepted afterwards use it, open ones keep theirs; a bad new certificate or key changes
// nothing. Every function is thread-safe; current() runs once per accepted connection. Loading
// logs nothing (the caller says what it loaded, or why not); handshake_failed() logs. OpenSSL
// and Asio stay out of this header (boost::asio::ssl::context is only named).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "common/published.hpp"

namespace boost::asio::ssl {
class context;
}

namespace keel::host::http {

enum class TlsMinVersion { kTls12, kTls13 };

struct TlsOptions {
  std::filesystem::path cert_file;  ///< PEM: the server certificate, then its intermediates
  std::filesystem::path key_file;   ///< PEM: the certificate's private key, unencrypted (never logged)
  TlsMinVersion min_version = TlsMinVersion::kTls12;
};

/// A certificate or key that cannot be used; which() says which file is at fault and what()
/// names it and says what to do.
class TlsError : public std::runtime_error {
 public:
  enum class Which { kCert, kKey };
  TlsError(Which which, const std::string& message) : std::runtime_error(message), which_(which) {}
  [[nodiscard]] Which which() const noexcept { return which_; }

 private:
  Which which_;
};

/// The certificate a context serves, for logs and /metrics (never anything of the key).
struct TlsCertificateInfo {
  std::string subject;         ///< RFC 2253, e.g. "CN=example.org"
  std::string sha256;          ///< fingerprint of the DER certificate, lowercase hex
  std::int64_t not_after = 0;  ///< expiry, Unix seconds
  std::vector<std::string> warnings;  ///< usable but worth a look (group-readable key, expired)
};

struct TlsStats {
  std::uint64_t handshake_failures = 0;  ///< handshakes that failed (not a timeout)
  std::uint64_t handshake_timeouts = 0;  ///< handshakes not done within [http] header_read_timeout_ms
  std::uint64_t reloads_succeeded = 0;
  std::uint64_t reloads_refused = 0;
  std::int64_t not_after = 0;  ///< expiry of the certificate new connections get, Unix seconds
};

class TlsContext {
 public:
  /// Reads and checks both files; throws TlsError naming the file at fault.
  explicit TlsContext(TlsOptions options);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  /// Reads both files again. On success new connections get the new context and its
  /// certificate is returned; on failure throws TlsError and the context in use stays.
  TlsCertificateInfo reload();

  /// The context for a connection accepted now; the connection keeps it for its whole life.
  [[nodiscard]] std::shared_ptr<boost::asio::ssl::context> current() const;
  /// The certificate current() serves.
  [[nodiscard]] TlsCertificateInfo certificate() const;
  [[nodiscard]] const TlsOptions& options() const noexcept { return options_; }
  [[nodiscard]] TlsStats stats() const noexcept;

  /// Counts a failed handshake and logs it: each one at debug, and at most once a minute an
  /// info line with how many failed since the last one (a scan or a plain-HTTP client must not
  /// flood the log).
  void handshake_failed(std::string_view peer, std::string_view error, bool timed_out) noexcept;

 private:
  struct Loaded;
  static std::shared_ptr<const Loaded> load(const TlsOptions& o);

  TlsOptions options_;
  Published<Loaded> loaded_;
  std::atomic<std::uint64_t> failures_{0};
  std::atomic<std::uint64_t> timeouts_{0};
  std::atomic<std::uint64_t> reloads_succeeded_{0};
  std::atomic<std::uint64_t> reloads_refused_{0};
  std::atomic<std::uint64_t> reported_{0};  ///< failures + timeouts at the last info line
  std::atomic<std::int64_t> last_report_ns_{0};
};

/// "1.2" / "1.3".
[[nodiscard]] std::string_view to_string(TlsMinVersion v) noexcept;

}  // namespace keel::host::http
