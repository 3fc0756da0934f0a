/*
 * ABI anchor for keel/plugin.h: one exported function per public type, so that a shared
 * object built from this file carries the DWARF description of every type the ABI defines.
 * scripts/abi-check.sh builds it from the current header, dumps it with abidw and compares
 * the dump with the committed baseline keel_plugin_abi.xml using abidiff; a member inserted,
 * removed, resized or reordered anywhere shows up as a change of one of these functions.
 * Never linked into anything. When a minor release adds a type, add an anchor for it here
 * and regenerate the baseline with `scripts/abi-check.sh --update BUILD_DIR`.
 */
#include <keel/plugin.h>

/* Leaf structs and scalar typedefs pass by value: their size and layout are pinned exactly. */
KEEL_EXPORT void keel_abi_anchor_host_bytes(keel_host_bytes v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_plugin_bytes(keel_plugin_bytes v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_host_kv(keel_host_kv v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_plugin_kv(keel_plugin_kv v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_host_kv_list(keel_host_kv_list v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_plugin_kv_list(keel_plugin_kv_list v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_scalars(keel_status status, keel_log_level level, keel_health health,
                                         keel_responder responder) {
  (void)status;
  (void)level;
  (void)health;
  (void)responder;
}

/* Growable structs pass by pointer: members may be appended at the end (suppressions.ini). */
KEEL_EXPORT void keel_abi_anchor_request(const keel_request* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_event(const keel_event* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_call_response(const keel_call_response* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_response(const keel_response* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_publish_args(const keel_publish_args* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_call_args(const keel_call_args* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_host_api(const keel_host_api* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_plugin(const keel_plugin* v) { (void)v; }

/* Opaque handle and function pointer types. */
KEEL_EXPORT void keel_abi_anchor_host_ctx(keel_host_ctx* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_call_callback(keel_call_callback v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_entry_fn(keel_plugin_entry_fn v) { (void)v; }

/* The entry point itself, with the exact declaration plugins implement. */
KEEL_EXPORT const keel_plugin* keel_plugin_entry_v1(void) { return NULL; }

/* The storage extension, keel.storage/1 (keel/storage.h). */
#include <keel/storage.h>

KEEL_EXPORT void keel_abi_anchor_sql_param(keel_sql_param v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_sql_value(keel_sql_value v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_storage_scalars(keel_sql_type type, keel_txn txn) {
  (void)type;
  (void)txn;
}
KEEL_EXPORT void keel_abi_anchor_sql_row_fn(keel_sql_row_fn v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_kv_entry_fn(keel_kv_entry_fn v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_sql_result(const keel_sql_result* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_sql_info(const keel_sql_info* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_kv_entry(const keel_kv_entry* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_kv_put_args(const keel_kv_put_args* v) { (void)v; }
KEEL_EXPORT void keel_abi_anchor_storage_api(const keel_storage_api* v) { (void)v; }
