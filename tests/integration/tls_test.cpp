// TLS on the HTTP listener ([server] tls_cert, tls_key, tls_min_version), tested with the real
// clients an operator would use: curl and openssl s_client. Certificates are made at test time
// with the openssl command into a temp dir; everything stays on 127.0.0.1.
#include <catch2/catch.hpp>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "eventually.hpp"
#include "admin_token.hpp"
#include "keel_host.hpp"
#include "process.hpp"
#include "prometheus.hpp"
#include "raw_client.hpp"
#include "temp_dir.hpp"

using keel::test::eventually;
using keel::test::HostOptions;
using keel::test::KeelHost;
using keel::test::Process;
using keel::test::TempDir;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

struct Run {
  int code = -1;
  std::string output;
};

// The program's path on PATH (Process execs a path, not a name).
std::string tool(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  for (std::size_t start = 0; start <= dirs.size();) {
    auto end = dirs.find(':', start);
    if (end == std::string::npos) end = dirs.size();
    const auto candidate = fs::path(dirs.substr(start, end - start)) / name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    start = end + 1;
  }
  FAIL(name + " not found on PATH (scripts/common.sh installs it)");
  return {};
}

// s_client reads what to send from standard input: nothing, so it ends after the handshake.
void stdin_from_dev_null() {
  const int fd = ::open("/dev/null", O_RDONLY);
  if (fd >= 0) ::dup2(fd, 0);
}

Run run(const TempDir& dir, const std::string& program, const std::vector<std::string>& args) {
  static int counter = 0;
  Process p(tool(program), args, dir.path() / ("tool-" + std::to_string(++counter) + ".txt"), {}, stdin_from_dev_null);
  const auto code = p.wait(30s);
  REQUIRE(code);
  return {*code, p.output()};
}

struct Pair {
  fs::path cert;
  fs::path key;
};

// A throwaway self-signed certificate for 127.0.0.1 (P-256, two days), its key mode 0600.
Pair make_cert(const TempDir& dir, const std::string& name) {
  Pair p{dir.path() / (name + ".crt"), dir.path() / (name + ".key")};
  const auto r = run(dir, "openssl",
                     {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
                      "-subj", "/CN=" + name, "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout",
                      p.key.string(), "-out", p.cert.string()});
  REQUIRE(r.code == 0);
  fs::permissions(p.key, fs::perms::owner_read | fs::perms::owner_write);
  return p;
}

// Copies a pair to `cert` and `key` (replacing them; key mode 0600): what a renewal does.
void install(const Pair& from, const fs::path& cert, const fs::path& key) {
  fs::copy_file(from.cert, cert, fs::copy_options::overwrite_existing);
  fs::copy_file(from.key, key, fs::copy_options::overwrite_existing);
  fs::permissions(key, fs::perms::owner_read | fs::perms::owner_write);
}

std::string tls_config(const fs::path& cert, const fs::path& key, const std::string& extra = {}) {
  return "[server]\ntls_cert = \"" + cert.string() + "\"\ntls_key = \"" + key.string() + "\"\n" + extra;
}

// openssl s_client against the host: its output (the peer certificate's subject, the protocol).
Run s_client(const TempDir& dir, std::uint16_t port, std::vector<std::string> extra) {
  std::vector<std::string> args{"s_client", "-connect", "127.0.0.1:" + std::to_string(port), "-servername", "localhost"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run(dir, "openssl", args);
}

bool handshake_ok(const Run& r) { return r.code == 0 && r.output.find("-----BEGIN CERTIFICATE-----") != std::string::npos; }

// curl over https trusting only `ca`: "<body>\n<status>".
Run curl_https(const TempDir& dir, std::uint16_t port, const fs::path& ca, const std::string& path,
               std::vector<std::string> extra = {}) {
  std::vector<std::string> args{"-sS", "--max-time", "10", "--cacert", ca.string(), "-w", "\n%{http_code}"};
  args.insert(args.end(), extra.begin(), extra.end());
  args.push_back("https://127.0.0.1:" + std::to_string(port) + path);
  return run(dir, "curl", args);
}

keel::test::prometheus::Scrape scrape(const TempDir& dir, std::uint16_t port, const fs::path& ca) {
  auto r = curl_https(dir, port, ca, "/metrics");
  REQUIRE(r.code == 0);
  r.output.erase(r.output.rfind('\n'));  // the "\n<status>" curl appended
  return keel::test::prometheus::parse(r.output);
}

double metric(const TempDir& dir, std::uint16_t port, const fs::path& ca, const std::string& name,
              const keel::test::prometheus::Labels& labels) {
  const auto value = scrape(dir, port, ca).value(name, labels);
  REQUIRE(value);
  return *value;
}

}  // namespace

TEST_CASE("tls: curl gets a plugin's answer over https, plain HTTP to the TLS port gets none", "[tls]") {
  TempDir certs;
  const auto one = make_cert(certs, "keel-one");
  KeelHost host(keel::test::with_plugins({keel::test::example_plugin("hello")},
                                         tls_config(one.cert, one.key, KEEL_TEST_ADMIN_TOML)));

  // Two requests on one connection: keep-alive works over TLS.
  const auto r = curl_https(certs, host.port(), one.cert, "/api/hello/greet/ada",
                            {"https://127.0.0.1:" + std::to_string(host.port()) + "/healthz"});
  INFO(r.output);
  CHECK(r.code == 0);
  CHECK(r.output.find("Hello, ada!") != std::string::npos);
  CHECK(r.output.find(R"({"status":"alive"})") != std::string::npos);
  CHECK(r.output.ends_with("200"));

  // A client that does not trust the certificate refuses it (nothing falls back to plain text).
  CHECK(run(certs, "curl", {"-sS", "--max-time", "10", "https://127.0.0.1:" + std::to_string(host.port()) + "/healthz"})
            .code != 0);

  // Plain HTTP: no HTTP answer at all, the connection just closes; curl says so.
  CHECK_FALSE(keel::test::simple_request(host.port(), "GET", "/healthz"));
  const auto plain = run(certs, "curl", {"-sS", "--max-time", "10", "http://127.0.0.1:" + std::to_string(host.port()) + "/healthz"});
  CHECK(plain.code != 0);
  CHECK(plain.output.find("alive") == std::string::npos);
  CHECK(eventually([&] { return metric(certs, host.port(), one.cert, "keel_tls_handshake_failures_total", {{"reason", "error"}}) >= 2; }));

  // /admin/config shows where the key is, never what it is.
  const auto config = curl_https(certs, host.port(), one.cert, "/admin/config",
                                 {"-H", "Authorization: Bearer " KEEL_TEST_ADMIN_TOKEN});
  CHECK(config.output.find(one.key.string()) != std::string::npos);
  CHECK(config.output.find("PRIVATE KEY") == std::string::npos);
  CHECK(host.process().output().find("PRIVATE KEY") == std::string::npos);
  CHECK(host.process().output().find("tls certificate loaded") != std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("tls: TLS 1.0/1.1 and weak TLS 1.2 ciphers are refused, tls_min_version = 1.3 refuses 1.2", "[tls]") {
  TempDir certs;
  const auto one = make_cert(certs, "keel-one");
  // SECLEVEL=0 lets this client offer TLS 1.1 (OpenSSL 3 and Debian's openssl.cnf refuse it
  // otherwise), so only the server can be what refuses it.
  const std::vector<std::string> old_client{"-cipher", "DEFAULT@SECLEVEL=0"};
  {
    KeelHost host(tls_config(one.cert, one.key));
    auto tls11 = old_client;
    tls11.insert(tls11.begin(), "-tls1_1");
    CHECK_FALSE(handshake_ok(s_client(certs, host.port(), tls11)));
    auto tls10 = old_client;
    tls10.insert(tls10.begin(), "-tls1");
    CHECK_FALSE(handshake_ok(s_client(certs, host.port(), tls10)));
    // CBC with SHA-1: OpenSSL's default server takes it; Keel offers ECDHE with AEAD only.
    CHECK_FALSE(handshake_ok(s_client(certs, host.port(), {"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA"})));

    const auto tls12 = s_client(certs, host.port(), {"-tls1_2"});
    CHECK(handshake_ok(tls12));
    CHECK(tls12.output.find("Protocol  : TLSv1.2") != std::string::npos);
    CHECK(tls12.output.find("ECDHE") != std::string::npos);
    const auto tls13 = s_client(certs, host.port(), {"-tls1_3"});
    CHECK(handshake_ok(tls13));
    CHECK(tls13.output.find(", TLSv1.3, Cipher is") != std::string::npos);
    CHECK(host.stop() == 0);
  }
  {
    KeelHost host(tls_config(one.cert, one.key, "tls_min_version = \"1.3\"\n"));
    CHECK_FALSE(handshake_ok(s_client(certs, host.port(), {"-tls1_2"})));
    CHECK(handshake_ok(s_client(certs, host.port(), {"-tls1_3"})));
    CHECK(curl_https(certs, host.port(), one.cert, "/healthz").output.ends_with("200"));
    CHECK(host.stop() == 0);
  }
}

TEST_CASE("tls: a handshake that never comes is cut off at header_read_timeout_ms and counted", "[tls]") {
  TempDir certs;
  const auto one = make_cert(certs, "keel-one");
  KeelHost host(tls_config(one.cert, one.key, "[http]\nheader_read_timeout_ms = 300\n"));
  keel::test::RawClient silent(host.port());  // connects, says nothing
  CHECK(silent.wait_closed(10s));
  CHECK(eventually([&] {
    return metric(certs, host.port(), one.cert, "keel_tls_handshake_failures_total", {{"reason", "timeout"}}) == 1;
  }));
  CHECK(host.stop() == 0);
}

TEST_CASE("tls: SIGHUP gives new connections the new certificate, a bad one is refused and the old one stays",
          "[tls][reload]") {
  TempDir certs;
  const auto one = make_cert(certs, "keel-one");
  const auto two = make_cert(certs, "keel-two");
  const auto other = make_cert(certs, "keel-other");
  const auto cert = certs.path() / "live.crt";
  const auto key = certs.path() / "live.key";
  install(one, cert, key);
  KeelHost host(keel::test::with_plugins({keel::test::example_plugin("hello"), keel::test::fixture("slow_handler")},
                                         tls_config(cert, key)));
  const auto subject = [&] { return s_client(certs, host.port(), {}).output; };
  const auto hup = [&] { REQUIRE(::kill(host.process().pid(), SIGHUP) == 0); };
  REQUIRE(subject().find("CN = keel-one") != std::string::npos);

  // A connection made before the reload (trusting only the first certificate) is in a slow
  // request while the reload happens; it finishes, and its next request on the same connection
  // is served too: open connections keep the certificate they started with.
  const auto base = "https://127.0.0.1:" + std::to_string(host.port());
  Process before(tool("curl"),
                 {"-sS", "--max-time", "30", "--cacert", one.cert.string(), base + "/api/slow_handler/slow", "-w",
                  "[%{http_code}]", base + "/api/hello/greet/ada"},
                 certs.path() / "before.txt", {}, stdin_from_dev_null);
  REQUIRE(eventually([&] { return scrape(certs, host.port(), one.cert).sum("keel_http_requests_in_flight") >= 1; }));

  install(two, cert, key);
  hup();
  CHECK(host.process().wait_for_output("SIGHUP: tls certificate reloaded", 10s));
  CHECK(eventually([&] { return subject().find("CN = keel-two") != std::string::npos; }));
  CHECK(curl_https(certs, host.port(), two.cert, "/api/hello/greet/ada").output.ends_with("200"));
  CHECK(curl_https(certs, host.port(), one.cert, "/healthz").code != 0);  // new connections: the old one is gone
  REQUIRE(before.wait(30s) == 0);
  const auto answers = before.output();
  INFO(answers);
  CHECK(answers.starts_with("slow[200]"));  // finished after the reload
  CHECK(answers.find("Hello, ada!") != std::string::npos);  // then one more on the same connection
  CHECK(answers.ends_with("[200]"));

  SECTION("a certificate file that is not PEM") {
    std::ofstream(cert, std::ios::trunc) << "not a certificate\n";
    hup();
    CHECK(host.process().wait_for_output("tls certificate not reloaded: certificate file " + cert.string(), 10s));
  }
  SECTION("a key that does not belong to the certificate") {
    fs::copy_file(other.key, key, fs::copy_options::overwrite_existing);
    hup();
    CHECK(host.process().wait_for_output("tls certificate not reloaded: key file " + key.string() +
                                             " does not match the certificate",
                                         10s));
  }
  SECTION("a key file other users can read") {
    fs::permissions(key, fs::perms::others_read, fs::perm_options::add);
    hup();
    CHECK(host.process().wait_for_output("is accessible to other users", 10s));
  }
  // Refused: new connections still get the certificate loaded before, and the host serves.
  CHECK(subject().find("CN = keel-two") != std::string::npos);
  CHECK(curl_https(certs, host.port(), two.cert, "/api/hello/greet/ada").output.ends_with("200"));
  CHECK(metric(certs, host.port(), two.cert, "keel_tls_certificate_reloads_total", {{"result", "refused"}}) == 1);
  CHECK(metric(certs, host.port(), two.cert, "keel_tls_certificate_reloads_total", {{"result", "succeeded"}}) == 1);
  CHECK(host.process().output().find("PRIVATE KEY") == std::string::npos);
  CHECK(host.stop() == 0);
}

TEST_CASE("tls: keel config check and keel serve refuse unusable TLS settings, naming the key and the file",
          "[tls][cli]") {
  TempDir dir;
  const auto one = make_cert(dir, "keel-one");
  const auto other = make_cert(dir, "keel-other");
  const auto check = [&](const std::string& toml) {
    const auto file = dir.write("keel.toml", toml);
    return run(dir, KEEL_BINARY, {"config", "check", file.string()});
  };
  const auto file = (dir.path() / "keel.toml").string();

  SECTION("valid: ok, and the certificate named") {
    const auto r = check(tls_config(one.cert, one.key));
    CHECK(r.code == 0);
    CHECK(r.output.find("subject=\"CN=keel-one\"") != std::string::npos);
    CHECK(r.output.find(file + ": ok") != std::string::npos);
  }
  SECTION("relative paths resolve against the config file") {
    CHECK(check("[server]\ntls_cert = \"keel-one.crt\"\ntls_key = \"keel-one.key\"\n").code == 0);
  }
  SECTION("a certificate without a key") {
    const auto r = check("[server]\ntls_cert = \"" + one.cert.string() + "\"\n");
    CHECK(r.code == 1);
    CHECK(r.output.find(file + ":2:12: [server] tls_cert is set but tls_key is not") != std::string::npos);
  }
  SECTION("a missing certificate file") {
    const auto r = check(tls_config(dir.path() / "nope.crt", one.key));
    CHECK(r.code == 1);
    CHECK(r.output.find("[server] tls_cert: certificate file " + (dir.path() / "nope.crt").string() +
                        " cannot be read: No such file or directory") != std::string::npos);
  }
  SECTION("a key that does not match the certificate") {
    const auto r = check(tls_config(one.cert, other.key));
    CHECK(r.code == 1);
    CHECK(r.output.find("[server] tls_key: key file " + other.key.string() + " does not match the certificate in " +
                        one.cert.string()) != std::string::npos);
  }
  SECTION("a certificate file that holds no certificate") {
    const auto r = check(tls_config(one.key, one.key));
    CHECK(r.code == 1);
    CHECK(r.output.find("[server] tls_cert: certificate file " + one.key.string() + " holds no usable PEM certificate") !=
          std::string::npos);
  }
  SECTION("a key other users may read is refused; one its group may read is a warning") {
    fs::permissions(other.key, fs::perms::others_read, fs::perm_options::add);
    auto r = check(tls_config(other.cert, other.key));
    CHECK(r.code == 1);
    CHECK(r.output.find("[server] tls_key: key file " + other.key.string() + " is accessible to other users (mode 0604)") !=
          std::string::npos);
    fs::permissions(other.key, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read);
    r = check(tls_config(other.cert, other.key));
    CHECK(r.code == 0);
    CHECK(r.output.find("warning: [server] tls: key file " + other.key.string() + " is accessible to its group") !=
          std::string::npos);
  }
  SECTION("keel serve: exit 2 with the same message, nothing served") {
    const auto config = dir.write("keel.toml", tls_config(one.cert, other.key));
    const auto r = run(dir, KEEL_BINARY, {"serve", "--config", config.string(), "--listen", "127.0.0.1:0"});
    CHECK(r.code == 2);
    CHECK(r.output.find("[server] tls_key: key file " + other.key.string() + " does not match") != std::string::npos);
  }
}
