#pragma once
// The admin token every integration test uses: long enough for the host's 32-character minimum
// ([admin] token, docs/security.md). Macros so that tests can splice it into literal config text.

#define KEEL_TEST_ADMIN_TOKEN "keel-test-admin-token-0123456789abcdef"
#define KEEL_TEST_ADMIN_TOML "[admin]\ntoken = \"" KEEL_TEST_ADMIN_TOKEN "\"\n"

namespace keel::test {

inline constexpr const char* kAdminToken = KEEL_TEST_ADMIN_TOKEN;
/// The request header line that carries it.
inline constexpr const char* kAdminBearer = "Authorization: Bearer " KEEL_TEST_ADMIN_TOKEN "\r\n";
/// The environment entry that sets it.
inline constexpr const char* kAdminTokenEnv = "KEEL_ADMIN_TOKEN=" KEEL_TEST_ADMIN_TOKEN;

}  // namespace keel::test
