#pragma once
// A real PostgreSQL 15 (Debian's postgresql-15) for storage tests: a cluster in a temporary
// directory on a free loopback port, run as the `postgres` account because PostgreSQL refuses to
// run as root. Every wait is bounded. Failures throw std::runtime_error carrying the tail of the
// server log (Catch reports it as the test's failure), so the ctest fixture program
// (postgres_fixture_main.cpp) can use the same code without Catch. One thread drives a server.

#include <cstdint>
#include <filesystem>
#include <string>

#include "temp_dir.hpp"

namespace keel::test {

class PostgresServer {
 public:
  /// initdb (trust auth, UTF8, no fsync) and start on 127.0.0.1 on a free port.
  PostgresServer();
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  [[nodiscard]] std::uint16_t port() const noexcept { return port_; }
  /// libpq connection string: "host=127.0.0.1 port=PORT user=postgres dbname=postgres".
  [[nodiscard]] std::string admin_url() const;
  /// The server log (all starts appended), for INFO() in a failing test.
  [[nodiscard]] std::string log() const;

  /// pg_ctl -m fast stop (the data stays); start() brings it back on the same port and data.
  void stop();
  void start();
  /// SIGKILL the postmaster and wait until its processes are gone and the port refuses; the
  /// next start() runs crash recovery.
  void crash();
  [[nodiscard]] bool running() const noexcept { return running_; }

 private:
  TempDir dir_;
  std::uint16_t port_ = 0;
  bool running_ = false;
};

// The steps PostgresServer and the fixture program share. `root` is a directory root owns; the
// cluster lives in root/pg (data/, server.log and the unix socket), owned by postgres.

/// Create root/pg for the postgres account and initdb in it; checks that postgres can reach it.
void init_postgres_cluster(const std::filesystem::path& root);
/// pg_ctl -w start on `port`, or on a free port when `port` is 0 (a few tries, in case another
/// process takes the port first); returns the port once the server accepts connections.
std::uint16_t start_postgres_cluster(const std::filesystem::path& root, std::uint16_t port = 0);
/// pg_ctl -m fast -w stop; the data stays.
void stop_postgres_cluster(const std::filesystem::path& root);
/// SIGKILL the postmaster named in postmaster.pid, wait until every server process has exited and
/// the port refuses, then drop its shared memory and lock files so a later start needs nothing
/// from the dead process (not even a reaped pid). Does nothing when no postmaster.pid exists.
void crash_postgres_cluster(const std::filesystem::path& root);
/// "host=127.0.0.1 port=PORT user=postgres dbname=postgres".
std::string postgres_admin_url(std::uint16_t port);

/// The ctest fixture's admin URL (the file $KEEL_TEST_POSTGRES_DIR/url), or "" when the variable
/// is unset: such tests then skip. Throws when the variable is set but the file is missing.
std::string shared_postgres_url();

}  // namespace keel::test
