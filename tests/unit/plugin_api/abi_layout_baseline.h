/*
 * The committed layout baseline of the keel/plugin.h 1.0 and keel/storage.h structs, asserted at compile time.
 * Included by abi_c11_check.c (as C11) and abi_layout_test.cpp (as C++20) so both languages
 * check the same numbers. A failing assertion here means a struct was reordered, resized or
 * had a member inserted: that breaks every compiled plugin. Appending a member in a minor
 * release changes only the sizeof line of that struct (and adds an offset line).
 *
 * Exact offsets and sizes are pinned for x86_64 (LP64, the CI target); on other targets only
 * the architecture-independent invariants are checked.
 */
#ifndef KEEL_TESTS_ABI_LAYOUT_BASELINE_H
#define KEEL_TESTS_ABI_LAYOUT_BASELINE_H

#include <keel/plugin.h>
#include <keel/storage.h>

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
#define KEEL_LAYOUT_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define KEEL_LAYOUT_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

#define KEEL_ASSERT_SIZE(type, size) KEEL_LAYOUT_ASSERT(sizeof(type) == (size), "sizeof(" #type ") changed")
#define KEEL_ASSERT_OFFSET(type, field, offset) \
  KEEL_LAYOUT_ASSERT(offsetof(type, field) == (offset), "offsetof(" #type ", " #field ") changed")

/* --- Architecture-independent invariants ------------------------------------------------ */

KEEL_LAYOUT_ASSERT(KEEL_ABI_VERSION == 0x00010000u, "this baseline describes ABI 1.0");
KEEL_LAYOUT_ASSERT(KEEL_ABI_MAJOR(KEEL_ABI_VERSION) == 1u && KEEL_ABI_MINOR(KEEL_ABI_VERSION) == 0u, "version packing");

/* Every growable struct starts with struct_size; the two tables follow it with abi_version. */
KEEL_ASSERT_OFFSET(keel_request, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_event, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_call_response, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_response, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_publish_args, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_call_args, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_host_api, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_host_api, abi_version, 4);
KEEL_ASSERT_OFFSET(keel_plugin, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_plugin, abi_version, 4);

/* Fixed-width scalars. */
KEEL_LAYOUT_ASSERT(sizeof(keel_status) == 4 && sizeof(keel_log_level) == 4 && sizeof(keel_health) == 4, "int32 typedefs");
KEEL_LAYOUT_ASSERT(sizeof(keel_responder) == 8, "responder ids are 64-bit");

/* The two byte views (and the two kv pairs) are layout-identical, so a host can treat them alike. */
KEEL_LAYOUT_ASSERT(sizeof(keel_host_bytes) == sizeof(keel_plugin_bytes), "byte views match");
KEEL_LAYOUT_ASSERT(sizeof(keel_host_kv) == sizeof(keel_plugin_kv), "kv pairs match");
KEEL_LAYOUT_ASSERT(sizeof(keel_host_kv_list) == sizeof(keel_plugin_kv_list), "kv lists match");

/* --- x86_64 baseline (LP64) --------------------------------------------------------------- */
#if defined(__x86_64__) && defined(__LP64__)

KEEL_ASSERT_SIZE(keel_host_bytes, 16);
KEEL_ASSERT_OFFSET(keel_host_bytes, ptr, 0);
KEEL_ASSERT_OFFSET(keel_host_bytes, len, 8);

KEEL_ASSERT_SIZE(keel_plugin_bytes, 16);
KEEL_ASSERT_OFFSET(keel_plugin_bytes, ptr, 0);
KEEL_ASSERT_OFFSET(keel_plugin_bytes, len, 8);

KEEL_ASSERT_SIZE(keel_host_kv, 32);
KEEL_ASSERT_OFFSET(keel_host_kv, name, 0);
KEEL_ASSERT_OFFSET(keel_host_kv, value, 16);

KEEL_ASSERT_SIZE(keel_plugin_kv, 32);
KEEL_ASSERT_OFFSET(keel_plugin_kv, name, 0);
KEEL_ASSERT_OFFSET(keel_plugin_kv, value, 16);

KEEL_ASSERT_SIZE(keel_host_kv_list, 16);
KEEL_ASSERT_OFFSET(keel_host_kv_list, items, 0);
KEEL_ASSERT_OFFSET(keel_host_kv_list, count, 8);

KEEL_ASSERT_SIZE(keel_plugin_kv_list, 16);
KEEL_ASSERT_OFFSET(keel_plugin_kv_list, items, 0);
KEEL_ASSERT_OFFSET(keel_plugin_kv_list, count, 8);

KEEL_ASSERT_SIZE(keel_request, 192);
KEEL_ASSERT_OFFSET(keel_request, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_request, route_index, 4);
KEEL_ASSERT_OFFSET(keel_request, method, 8);
KEEL_ASSERT_OFFSET(keel_request, path, 24);
KEEL_ASSERT_OFFSET(keel_request, path_params, 40);
KEEL_ASSERT_OFFSET(keel_request, query, 56);
KEEL_ASSERT_OFFSET(keel_request, headers, 72);
KEEL_ASSERT_OFFSET(keel_request, body, 88);
KEEL_ASSERT_OFFSET(keel_request, remote_address, 104);
KEEL_ASSERT_OFFSET(keel_request, request_id, 120);
KEEL_ASSERT_OFFSET(keel_request, caller_plugin, 136);
KEEL_ASSERT_OFFSET(keel_request, deadline_mono_ns, 152);
KEEL_ASSERT_OFFSET(keel_request, traceparent, 160);
KEEL_ASSERT_OFFSET(keel_request, tracestate, 176);

KEEL_ASSERT_SIZE(keel_event, 128);
KEEL_ASSERT_OFFSET(keel_event, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_event, delivery_attempt, 4);
KEEL_ASSERT_OFFSET(keel_event, topic, 8);
KEEL_ASSERT_OFFSET(keel_event, payload, 24);
KEEL_ASSERT_OFFSET(keel_event, content_type, 40);
KEEL_ASSERT_OFFSET(keel_event, event_id, 56);
KEEL_ASSERT_OFFSET(keel_event, publisher, 72);
KEEL_ASSERT_OFFSET(keel_event, timestamp_unix_ns, 88);
KEEL_ASSERT_OFFSET(keel_event, traceparent, 96);
KEEL_ASSERT_OFFSET(keel_event, tracestate, 112);

KEEL_ASSERT_SIZE(keel_call_response, 56);
KEEL_ASSERT_OFFSET(keel_call_response, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_call_response, status, 4);
KEEL_ASSERT_OFFSET(keel_call_response, headers, 8);
KEEL_ASSERT_OFFSET(keel_call_response, content_type, 24);
KEEL_ASSERT_OFFSET(keel_call_response, body, 40);

KEEL_ASSERT_SIZE(keel_response, 56);
KEEL_ASSERT_OFFSET(keel_response, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_response, status, 4);
KEEL_ASSERT_OFFSET(keel_response, headers, 8);
KEEL_ASSERT_OFFSET(keel_response, content_type, 24);
KEEL_ASSERT_OFFSET(keel_response, body, 40);

KEEL_ASSERT_SIZE(keel_publish_args, 88);
KEEL_ASSERT_OFFSET(keel_publish_args, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_publish_args, flags, 4);
KEEL_ASSERT_OFFSET(keel_publish_args, topic, 8);
KEEL_ASSERT_OFFSET(keel_publish_args, payload, 24);
KEEL_ASSERT_OFFSET(keel_publish_args, content_type, 40);
KEEL_ASSERT_OFFSET(keel_publish_args, traceparent, 56);
KEEL_ASSERT_OFFSET(keel_publish_args, tracestate, 72);

KEEL_ASSERT_SIZE(keel_call_args, 120);
KEEL_ASSERT_OFFSET(keel_call_args, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_call_args, timeout_ms, 4);
KEEL_ASSERT_OFFSET(keel_call_args, target_plugin, 8);
KEEL_ASSERT_OFFSET(keel_call_args, method, 24);
KEEL_ASSERT_OFFSET(keel_call_args, path, 40);
KEEL_ASSERT_OFFSET(keel_call_args, headers, 56);
KEEL_ASSERT_OFFSET(keel_call_args, body, 72);
KEEL_ASSERT_OFFSET(keel_call_args, traceparent, 88);
KEEL_ASSERT_OFFSET(keel_call_args, tracestate, 104);

KEEL_ASSERT_SIZE(keel_host_api, 56);
KEEL_ASSERT_OFFSET(keel_host_api, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_host_api, abi_version, 4);
KEEL_ASSERT_OFFSET(keel_host_api, log, 8);
KEEL_ASSERT_OFFSET(keel_host_api, log_level, 16);
KEEL_ASSERT_OFFSET(keel_host_api, respond, 24);
KEEL_ASSERT_OFFSET(keel_host_api, publish, 32);
KEEL_ASSERT_OFFSET(keel_host_api, call, 40);
KEEL_ASSERT_OFFSET(keel_host_api, get_extension, 48);

KEEL_ASSERT_SIZE(keel_plugin, 72);
KEEL_ASSERT_OFFSET(keel_plugin, struct_size, 0);
KEEL_ASSERT_OFFSET(keel_plugin, abi_version, 4);
KEEL_ASSERT_OFFSET(keel_plugin, manifest, 8);
KEEL_ASSERT_OFFSET(keel_plugin, create, 16);
KEEL_ASSERT_OFFSET(keel_plugin, destroy, 24);
KEEL_ASSERT_OFFSET(keel_plugin, start, 32);
KEEL_ASSERT_OFFSET(keel_plugin, stop, 40);
KEEL_ASSERT_OFFSET(keel_plugin, on_request, 48);
KEEL_ASSERT_OFFSET(keel_plugin, on_event, 56);
KEEL_ASSERT_OFFSET(keel_plugin, health, 64);


/* keel/storage.h, extension keel.storage/1 */
KEEL_ASSERT_SIZE(keel_sql_param, 40);
KEEL_ASSERT_OFFSET(keel_sql_param, integer, 8);
KEEL_ASSERT_OFFSET(keel_sql_param, real, 16);
KEEL_ASSERT_OFFSET(keel_sql_param, bytes, 24);
KEEL_ASSERT_SIZE(keel_sql_value, 40);
KEEL_ASSERT_OFFSET(keel_sql_value, integer, 8);
KEEL_ASSERT_OFFSET(keel_sql_value, real, 16);
KEEL_ASSERT_OFFSET(keel_sql_value, bytes, 24);
KEEL_ASSERT_SIZE(keel_sql_result, 32);
KEEL_ASSERT_OFFSET(keel_sql_result, changes, 8);
KEEL_ASSERT_OFFSET(keel_sql_result, last_insert_id, 16);
KEEL_ASSERT_OFFSET(keel_sql_result, rows, 24);
KEEL_ASSERT_SIZE(keel_sql_info, 16);
KEEL_ASSERT_OFFSET(keel_sql_info, param_count, 4);
KEEL_ASSERT_OFFSET(keel_sql_info, column_count, 8);
KEEL_ASSERT_OFFSET(keel_sql_info, read_only, 12);
KEEL_ASSERT_SIZE(keel_kv_entry, 56);
KEEL_ASSERT_OFFSET(keel_kv_entry, key, 8);
KEEL_ASSERT_OFFSET(keel_kv_entry, value, 24);
KEEL_ASSERT_OFFSET(keel_kv_entry, version, 40);
KEEL_ASSERT_OFFSET(keel_kv_entry, expires_unix_ms, 48);
KEEL_ASSERT_SIZE(keel_kv_put_args, 56);
KEEL_ASSERT_OFFSET(keel_kv_put_args, key, 8);
KEEL_ASSERT_OFFSET(keel_kv_put_args, value, 24);
KEEL_ASSERT_OFFSET(keel_kv_put_args, expected_version, 40);
KEEL_ASSERT_OFFSET(keel_kv_put_args, ttl_ms, 48);
KEEL_ASSERT_SIZE(keel_storage_api, 96);
KEEL_ASSERT_OFFSET(keel_storage_api, exec, 8);
KEEL_ASSERT_OFFSET(keel_storage_api, prepare, 16);
KEEL_ASSERT_OFFSET(keel_storage_api, begin, 24);
KEEL_ASSERT_OFFSET(keel_storage_api, commit, 32);
KEEL_ASSERT_OFFSET(keel_storage_api, rollback, 40);
KEEL_ASSERT_OFFSET(keel_storage_api, kv_get, 48);
KEEL_ASSERT_OFFSET(keel_storage_api, kv_put, 56);
KEEL_ASSERT_OFFSET(keel_storage_api, kv_delete, 64);
KEEL_ASSERT_OFFSET(keel_storage_api, kv_list, 72);
KEEL_ASSERT_OFFSET(keel_storage_api, error_message, 80);
KEEL_ASSERT_OFFSET(keel_storage_api, publish, 88); /* appended: transactional publish */

#endif /* x86_64 */

#endif /* KEEL_TESTS_ABI_LAYOUT_BASELINE_H */
