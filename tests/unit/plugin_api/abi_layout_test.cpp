// keel/plugin.h compiled as C++20: the same layout baseline as abi_c11_check.c (static_assert),
// the version and constant values the host and plugins agree on, and KEEL_HAS_FIELD /
// KEEL_HAS_FN behaviour on tables of different struct_size.

#include <keel/plugin.h>

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <type_traits>

#include "abi_layout_baseline.h"

#if __has_include(<spdlog/common.h>)
#include <spdlog/common.h>
static_assert(KEEL_LOG_TRACE == SPDLOG_LEVEL_TRACE && KEEL_LOG_DEBUG == SPDLOG_LEVEL_DEBUG &&
                  KEEL_LOG_INFO == SPDLOG_LEVEL_INFO && KEEL_LOG_WARN == SPDLOG_LEVEL_WARN &&
                  KEEL_LOG_ERROR == SPDLOG_LEVEL_ERROR && KEEL_LOG_CRITICAL == SPDLOG_LEVEL_CRITICAL &&
                  KEEL_LOG_OFF == SPDLOG_LEVEL_OFF,
              "log levels mirror spdlog's numbering");
#endif

// Every ABI struct must stay a C type: standard layout, trivially copyable, no C++ members.
static_assert(std::is_standard_layout_v<keel_request> && std::is_trivially_copyable_v<keel_request>);
static_assert(std::is_standard_layout_v<keel_event> && std::is_trivially_copyable_v<keel_event>);
static_assert(std::is_standard_layout_v<keel_response> && std::is_trivially_copyable_v<keel_response>);
static_assert(std::is_standard_layout_v<keel_call_response> && std::is_trivially_copyable_v<keel_call_response>);
static_assert(std::is_standard_layout_v<keel_publish_args> && std::is_trivially_copyable_v<keel_publish_args>);
static_assert(std::is_standard_layout_v<keel_call_args> && std::is_trivially_copyable_v<keel_call_args>);
static_assert(std::is_standard_layout_v<keel_host_api> && std::is_trivially_copyable_v<keel_host_api>);
static_assert(std::is_standard_layout_v<keel_plugin> && std::is_trivially_copyable_v<keel_plugin>);

// Fixed-width scalars where the ABI promises them.
static_assert(std::is_same_v<keel_status, std::int32_t>);
static_assert(std::is_same_v<keel_log_level, std::int32_t>);
static_assert(std::is_same_v<keel_health, std::int32_t>);
static_assert(std::is_same_v<keel_responder, std::uint64_t>);
static_assert(std::is_same_v<decltype(keel_request::deadline_mono_ns), std::int64_t>);
static_assert(std::is_same_v<decltype(keel_event::timestamp_unix_ns), std::int64_t>);

// The entry point has the loader's function type and C linkage.
static_assert(std::is_same_v<decltype(&keel_plugin_entry_v1), keel_plugin_entry_fn>);

namespace {

keel_status fake_respond(keel_host_ctx*, keel_responder, const keel_response*) { return KEEL_OK; }
keel_status fake_publish(keel_host_ctx*, const keel_publish_args*) { return KEEL_OK; }
const void* fake_get_extension(keel_host_ctx*, const char*) { return nullptr; }

keel_host_api full_table() {
  keel_host_api api{};
  api.struct_size = sizeof(keel_host_api);
  api.abi_version = KEEL_ABI_VERSION;
  api.respond = &fake_respond;
  api.publish = &fake_publish;
  api.get_extension = &fake_get_extension;
  return api;
}

}  // namespace

TEST_CASE("abi version packs major and minor into one uint32", "[plugin_api][abi]") {
  STATIC_REQUIRE(KEEL_ABI_VERSION == ((1u << 16) | 0u));
  STATIC_REQUIRE(KEEL_ABI_MAJOR(0x00030007u) == 3u);
  STATIC_REQUIRE(KEEL_ABI_MINOR(0x00030007u) == 7u);
  STATIC_REQUIRE(std::is_same_v<decltype(KEEL_ABI_VERSION), unsigned int>);
  CHECK(std::string{KEEL_PLUGIN_ENTRY_SYMBOL} == "keel_plugin_entry_v1");
  CHECK(std::string{KEEL_MANIFEST_SECTION} == ".keel_manifest");
}

TEST_CASE("status codes are distinct and only KEEL_OK is non-negative", "[plugin_api][abi]") {
  const std::set<keel_status> failures{KEEL_ERR_INVALID_ARGUMENT, KEEL_ERR_NOT_FOUND,        KEEL_ERR_UNSUPPORTED,
                                       KEEL_ERR_INTERNAL,         KEEL_ERR_BUSY,             KEEL_ERR_PERMISSION_DENIED,
                                       KEEL_ERR_TIMEOUT,          KEEL_ERR_UNAVAILABLE,      KEEL_ERR_ALREADY_COMPLETED,
                                       KEEL_ERR_TOO_LARGE,        KEEL_ERR_CONFLICT,         KEEL_ERR_STORAGE_FULL};
  CHECK(failures.size() == 12);
  for (keel_status code : failures) CHECK(code < 0);
  CHECK(KEEL_OK == 0);
  // The historical values are part of the ABI: they never change.
  CHECK(KEEL_ERR_INVALID_ARGUMENT == -1);
  CHECK(KEEL_ERR_UNSUPPORTED == -3);
  CHECK(KEEL_ERR_INTERNAL == -4);
  CHECK(KEEL_ERR_TOO_LARGE == -10);
  CHECK(KEEL_ERR_CONFLICT == -11);
  CHECK(KEEL_ERR_STORAGE_FULL == -12);
  CHECK(KEEL_HEALTH_PASS == 0);
  CHECK(KEEL_HEALTH_FAIL == 2);
}

TEST_CASE("KEEL_HAS_FIELD sees only members fully inside struct_size", "[plugin_api][abi]") {
  keel_host_api api = full_table();

  SECTION("a full table has every member") {
    CHECK(KEEL_HAS_FIELD(&api, keel_host_api, log));
    CHECK(KEEL_HAS_FIELD(&api, keel_host_api, get_extension));
  }
  SECTION("a table cut before a member lacks it and everything after it") {
    api.struct_size = offsetof(keel_host_api, publish);
    CHECK(KEEL_HAS_FIELD(&api, keel_host_api, respond));
    CHECK_FALSE(KEEL_HAS_FIELD(&api, keel_host_api, publish));
    CHECK_FALSE(KEEL_HAS_FIELD(&api, keel_host_api, call));
    CHECK_FALSE(KEEL_HAS_FIELD(&api, keel_host_api, get_extension));
  }
  SECTION("a member only partly inside struct_size counts as absent") {
    api.struct_size = static_cast<std::uint32_t>(offsetof(keel_host_api, get_extension) + 4);
    CHECK(KEEL_HAS_FIELD(&api, keel_host_api, call));
    CHECK_FALSE(KEEL_HAS_FIELD(&api, keel_host_api, get_extension));
  }
  SECTION("a newer, larger struct_size still finds the 1.0 members") {
    api.struct_size = sizeof(keel_host_api) + 64;
    CHECK(KEEL_HAS_FIELD(&api, keel_host_api, get_extension));
  }
  SECTION("the two prefix members exist in any table of 8 bytes") {
    api.struct_size = 8;
    CHECK(KEEL_HAS_FIELD(&api, keel_host_api, abi_version));
    CHECK_FALSE(KEEL_HAS_FIELD(&api, keel_host_api, log));
  }
}

TEST_CASE("KEEL_HAS_FN also requires a non-null function pointer", "[plugin_api][abi]") {
  keel_host_api api = full_table();
  CHECK(KEEL_HAS_FN(&api, keel_host_api, respond));
  CHECK_FALSE(KEEL_HAS_FN(&api, keel_host_api, log));  // present but NULL
  CHECK_FALSE(KEEL_HAS_FN(&api, keel_host_api, call));
  api.struct_size = offsetof(keel_host_api, get_extension);
  CHECK_FALSE(KEEL_HAS_FN(&api, keel_host_api, get_extension));  // non-null but outside struct_size
}

TEST_CASE("KEEL_HAS_FIELD works on host-provided data structs", "[plugin_api][abi]") {
  keel_request request{};
  request.struct_size = offsetof(keel_request, traceparent);  // a host that predates tracing
  CHECK(KEEL_HAS_FIELD(&request, keel_request, deadline_mono_ns));
  CHECK_FALSE(KEEL_HAS_FIELD(&request, keel_request, traceparent));
  CHECK_FALSE(KEEL_HAS_FIELD(&request, keel_request, tracestate));
}

TEST_CASE("KEEL_PLUGIN_HEADER_INIT fills struct_size and abi_version", "[plugin_api][abi]") {
  static constexpr keel_plugin table{KEEL_PLUGIN_HEADER_INIT, nullptr, nullptr, nullptr, nullptr,
                                     nullptr,                 nullptr, nullptr, nullptr};
  STATIC_REQUIRE(table.struct_size == sizeof(keel_plugin));
  STATIC_REQUIRE(table.abi_version == KEEL_ABI_VERSION);
  CHECK_FALSE(KEEL_HAS_FN(&table, keel_plugin, start));
  CHECK(KEEL_HAS_FIELD(&table, keel_plugin, health));
}
