#include "http/tls.hpp"

#include <array>
#include <cerrno>
#include <cstdio>
#include <ctime>
#include <system_error>

#include <sys/stat.h>

#include <boost/asio/ssl/context.hpp>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "observability/log.hpp"

namespace keel::host::http {

namespace ssl = boost::asio::ssl;

struct TlsContext::Loaded {
  std::unique_ptr<ssl::context> ctx;
  TlsCertificateInfo info;
};

namespace {

using Which = TlsError::Which;

// TLS 1.2 suites: forward secrecy (ECDHE) and AEAD only, the Mozilla "intermediate" list without
// finite-field DHE. TLS 1.3 suites are OpenSSL's defaults (all of them qualify).
constexpr const char* kTls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr auto kReportInterval = std::chrono::minutes(1);

struct FileCloser {
  void operator()(std::FILE* f) const noexcept { std::fclose(f); }
};

// The file's bytes, or TlsError saying why it cannot be read (ENOENT, EACCES, EISDIR).
std::string read_pem(const std::filesystem::path& file, Which which, std::string_view what) {
  const auto fail = [&](int err) {
    return TlsError(which, std::string(what) + " file " + file.string() + " cannot be read: " +
                               std::error_code(err, std::generic_category()).message());
  };
  errno = 0;
  std::unique_ptr<std::FILE, FileCloser> f(std::fopen(file.c_str(), "rb"));
  if (!f) throw fail(errno);
  std::string out;
  std::array<char, 8192> buffer{};
  for (;;) {
    const auto n = std::fread(buffer.data(), 1, buffer.size(), f.get());
    out.append(buffer.data(), n);
    if (n < buffer.size()) break;
    if (out.size() > (1u << 20)) throw TlsError(which, std::string(what) + " file " + file.string() + " is over 1 MiB");
  }
  if (std::ferror(f.get()) != 0) throw fail(errno != 0 ? errno : EIO);
  OPENSSL_cleanse(buffer.data(), buffer.size());
  return out;
}

// The private key's own rule (as ssh and PostgreSQL have): other users may not read it; a
// group that can is allowed (Debian's ssl-cert group: root:ssl-cert 0640) but said.
void check_key_mode(const std::filesystem::path& key, std::vector<std::string>& warnings) {
  struct stat st {};
  if (::stat(key.c_str(), &st) != 0) return;  // read_pem says why
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if ((st.st_mode & S_IRWXO) != 0)
    throw TlsError(Which::kKey, "key file " + key.string() + " is accessible to other users (mode " + mode +
                                    "); a private key must not be: chmod 600 it (or 640 for a group only keel's user is in)");
  if ((st.st_mode & S_IRWXG) != 0)
    warnings.push_back("key file " + key.string() + " is accessible to its group (mode " + mode +
                       "); make sure only keel's user is in that group, or chmod 600 it");
}

// OpenSSL's reason for the last failure ("no start line", "bad decrypt"); never file contents.
std::string openssl_reason(const boost::system::error_code& ec) {
  std::string reason = ec.message();
  ERR_clear_error();
  return reason;
}

// OpenSSL refuses a key that does not belong to the certificate already while loading it.
bool key_mismatch(const boost::system::error_code& ec) {
  if (ec.category() != boost::asio::error::get_ssl_category()) return false;
  const auto reason = ERR_GET_REASON(static_cast<unsigned long>(ec.value()));
  return reason == X509_R_KEY_VALUES_MISMATCH || reason == X509_R_KEY_TYPE_MISMATCH;
}

std::string subject_of(X509* cert) {
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) < 0) return {};
  char* data = nullptr;
  const auto len = BIO_get_mem_data(bio.get(), &data);
  return len > 0 ? std::string(data, static_cast<std::size_t>(len)) : std::string{};
}

std::string sha256_of(X509* cert) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> md{};
  unsigned len = 0;
  if (X509_digest(cert, EVP_sha256(), md.data(), &len) != 1) return {};
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned i = 0; i < len; ++i) {
    out += kHex[md[i] >> 4];
    out += kHex[md[i] & 0xF];
  }
  return out;
}

std::int64_t unix_time(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

void apply_protocol_settings(ssl::context& ctx, TlsMinVersion min_version) {
  // No SSL 3, TLS 1.0 or 1.1 whatever the minimum says; no compression (CRIME), no
  // renegotiation (a client-initiated one costs the server a handshake), the server's order of
  // ciphers, a fresh ECDHE key per handshake. Session tickets stay on (OpenSSL's default).
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use |
                  ssl::context::no_compression);
  auto* native = ctx.native_handle();
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_min_proto_version(native, min_version == TlsMinVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION);
  SSL_CTX_set_cipher_list(native, kTls12Ciphers);
  // Idle keep-alive connections give their read and write buffers back (about 34 KiB each).
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);
}

}  // namespace

std::shared_ptr<const TlsContext::Loaded> TlsContext::load(const TlsOptions& o) {
  auto loaded = std::make_shared<TlsContext::Loaded>();
  auto& info = loaded->info;
  const auto cert_pem = read_pem(o.cert_file, Which::kCert, "certificate");
  check_key_mode(o.key_file, info.warnings);
  auto key_pem = read_pem(o.key_file, Which::kKey, "key");
  struct Cleanse {
    std::string& s;
    ~Cleanse() { OPENSSL_cleanse(s.data(), s.size()); }
  } cleanse{key_pem};

  loaded->ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  auto& ctx = *loaded->ctx;
  apply_protocol_settings(ctx, o.min_version);
  boost::system::error_code ec;
  ctx.use_certificate_chain(boost::asio::buffer(cert_pem), ec);
  if (ec)
    throw TlsError(Which::kCert, "certificate file " + o.cert_file.string() +
                                     " holds no usable PEM certificate (" + openssl_reason(ec) + ")");
  // An encrypted key would make OpenSSL ask for its pass phrase on the terminal: answer nothing.
  ctx.set_password_callback([](std::size_t, ssl::context::password_purpose) { return std::string(); });
  ctx.use_private_key(boost::asio::buffer(key_pem), ssl::context::pem, ec);
  if (ec && key_mismatch(ec)) ec = {};  // a readable key for another certificate: said below
  if (ec)
    throw TlsError(Which::kKey, "key file " + o.key_file.string() +
                                    " holds no usable PEM private key (" + openssl_reason(ec) +
                                    "); keel needs an unencrypted key, protected by the file's permissions");
  if (SSL_CTX_check_private_key(ctx.native_handle()) != 1) {
    ERR_clear_error();
    throw TlsError(Which::kKey, "key file " + o.key_file.string() + " does not match the certificate in " +
                                    o.cert_file.string() + "; install the key the certificate was issued for");
  }

  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  info.subject = subject_of(cert);
  info.sha256 = sha256_of(cert);
  info.not_after = unix_time(X509_get0_notAfter(cert));
  if (X509_cmp_current_time(X509_get0_notAfter(cert)) < 0)
    info.warnings.push_back("certificate in " + o.cert_file.string() + " has expired; clients will refuse it");
  else if (X509_cmp_current_time(X509_get0_notBefore(cert)) > 0)
    info.warnings.push_back("certificate in " + o.cert_file.string() + " is not valid yet; clients will refuse it");
  return loaded;
}

std::string_view to_string(TlsMinVersion v) noexcept { return v == TlsMinVersion::kTls13 ? "1.3" : "1.2"; }

TlsContext::TlsContext(TlsOptions options) : options_(std::move(options)), loaded_(load(options_)) {}

TlsContext::~TlsContext() = default;

TlsCertificateInfo TlsContext::reload() {
  std::shared_ptr<const Loaded> next;
  try {
    next = load(options_);
  } catch (...) {
    reloads_refused_.fetch_add(1, std::memory_order_relaxed);
    throw;
  }
  loaded_.publish(next);
  reloads_succeeded_.fetch_add(1, std::memory_order_relaxed);
  return next->info;
}

std::shared_ptr<ssl::context> TlsContext::current() const {
  auto loaded = loaded_.load();
  auto* ctx = loaded->ctx.get();
  return {std::move(loaded), ctx};  // keeps the whole Loaded alive as long as the connection
}

TlsCertificateInfo TlsContext::certificate() const { return loaded_.load()->info; }

TlsStats TlsContext::stats() const noexcept {
  TlsStats s;
  s.handshake_failures = failures_.load(std::memory_order_relaxed);
  s.handshake_timeouts = timeouts_.load(std::memory_order_relaxed);
  s.reloads_succeeded = reloads_succeeded_.load(std::memory_order_relaxed);
  s.reloads_refused = reloads_refused_.load(std::memory_order_relaxed);
  s.not_after = loaded_.load()->info.not_after;
  return s;
}

void TlsContext::handshake_failed(std::string_view peer, std::string_view error, bool timed_out) noexcept {
  (timed_out ? timeouts_ : failures_).fetch_add(1, std::memory_order_relaxed);
  try {
    auto log = observability::logger("http");
    log->debug("tls handshake failed peer={} error=\"{}\"", peer, timed_out ? "timeout" : error);
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_report_ns_.load(std::memory_order_relaxed);
    const auto interval = std::chrono::duration_cast<std::chrono::steady_clock::duration>(kReportInterval).count();
    if (last != 0 && now - last < interval) return;
    if (!last_report_ns_.compare_exchange_strong(last, now, std::memory_order_relaxed)) return;  // another thread reports
    const auto total = failures_.load(std::memory_order_relaxed) + timeouts_.load(std::memory_order_relaxed);
    const auto since = total - reported_.exchange(total, std::memory_order_relaxed);
    log->info("tls handshakes failing count={} last_peer={} last_error=\"{}\" (each one at debug level; next summary "
              "in a minute at the earliest)",
              since, peer, timed_out ? "timeout" : error);
  } catch (...) {  // logging must not take the connection's coroutine down
  }
}

}  // namespace keel::host::http
