// The test binaries' main: Catch2's, after one step of set-up shared by every test process.
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>

#include <cstdlib>

#include "postgres_server.hpp"

int main(int argc, char* argv[]) {
  // In the ctest "postgres:" variants (KEEL_TEST_POSTGRES_DIR set by the fixture), plugin unit
  // tests' TestDatabase and the hosts the integration tests start use the shared server.
  if (const auto url = keel::test::shared_postgres_url(); !url.empty()) ::setenv("KEEL_TEST_POSTGRES_URL", url.c_str(), 1);
  return Catch::Session().run(argc, argv);
}
