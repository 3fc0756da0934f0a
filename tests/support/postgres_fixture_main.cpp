// One PostgreSQL server shared by many test processes, as a ctest fixture:
//   keel_test_postgres_fixture start DIR   cluster in DIR/pg, admin URL in DIR/url; exits, server keeps running
//   keel_test_postgres_fixture stop DIR    fast stop, then DIR is removed (kept with KEEL_TEST_KEEP_DIRS=1)
// Tests find the URL with shared_postgres_url() through KEEL_TEST_POSTGRES_DIR=DIR.

#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <string>
#include <string_view>
#include <system_error>

#include "postgres_server.hpp"

namespace fs = std::filesystem;
using namespace keel::test;

namespace {

int start(const fs::path& dir) {
  // A run aborted before its stop step leaves a server behind; it would hold the directory.
  if (fs::exists(dir)) {
    crash_postgres_cluster(dir);
    fs::remove_all(dir);
  }
  fs::create_directories(dir);
  init_postgres_cluster(dir);
  const auto url = postgres_admin_url(start_postgres_cluster(dir));
  // Readers never see a half-written file.
  std::ofstream(dir / "url.tmp") << url << '\n';
  fs::rename(dir / "url.tmp", dir / "url");
  std::cout << "postgres fixture: " << url << " (" << dir.string() << ")\n";
  return 0;
}

int stop(const fs::path& dir) {
  int rc = 0;
  if (fs::exists(dir / "pg" / "data")) {
    try {
      stop_postgres_cluster(dir);
    } catch (const std::exception& e) {
      std::cerr << e.what() << "\nkilling it instead\n";
      rc = 1;
    }
    crash_postgres_cluster(dir);  // nothing to do after a clean stop
  }
  if (const char* keep = std::getenv("KEEL_TEST_KEEP_DIRS"); keep == nullptr || std::string_view{keep} != "1") {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view command = argc == 3 ? argv[1] : "";
  if (command != "start" && command != "stop") {
    std::cerr << "usage: " << argv[0] << " start|stop DIR\n";
    return 2;
  }
  const fs::path dir = fs::absolute(argv[2]);
  try {
    return command == "start" ? start(dir) : stop(dir);
  } catch (const std::exception& e) {
    std::cerr << e.what() << '\n';
    if (command == "start") {
      try {
        crash_postgres_cluster(dir);  // no half-started server may outlive a failed set-up
      } catch (const std::exception&) {
      }
    }
    return 1;
  }
}
