/*
 * keel/storage.h: the storage extension "keel.storage/1" — a plugin's own SQL database and a
 * key-value store on top of it, reached through keel_host_api.get_extension().
 *
 * Pure C11 (also valid C++20); includes only keel/plugin.h. Same conventions as that header
 * (struct_size growth, fixed-width members, OWNERSHIP and thread tags, status codes only).
 * docs/storage.md is the user guide; this header is the reference.
 *
 * MODEL
 *   Every plugin that lists the permission "ext:keel.storage/1" owns exactly one database.
 *   The host opens it, applies the manifest's "migrations" before create(), and is the only
 *   code that touches the file; a plugin names no file and cannot reach another plugin's data
 *   (ATTACH, VACUUM INTO and file-changing PRAGMAs are refused). The interface is SQL text
 *   with positional parameters ("?"), typed values and rows streamed to a callback, plus
 *   integer transaction ids. Nothing in it names SQLite or a file, and every call is a
 *   request/response of plain bytes, so the same table can be served over a process boundary
 *   or by a server-backed database (docs/storage.md lists the portable SQL subset).
 *
 * CALLS BLOCK
 *   Every function here runs to completion on the calling thread before it returns (reads
 *   take microseconds; a write commits to disk). Call them from routes marked
 *   "blocking": true, from event handlers, or from plugin-owned threads, not from an
 *   I/O-thread route that must stay non-blocking. The only callback, keel_sql_row_fn, runs on
 *   the calling thread inside exec() and must not call back into this extension.
 *
 * ERRORS
 *   Every failure returns a keel_status and leaves a message for error_message() on the
 *   calling thread: the database's own text (e.g. "UNIQUE constraint failed: products.sku")
 *   with what the host was doing. Codes used here:
 *     KEEL_ERR_INVALID_ARGUMENT   bad SQL, wrong parameter count or type, two statements in one
 *                                 exec, a call from inside a row callback
 *     KEEL_ERR_PERMISSION_DENIED  a refused statement (ATTACH, VACUUM, PRAGMA that changes the
 *                                 database, "_keel_" tables, BEGIN/COMMIT, TEMP objects), or
 *                                 (from get_extension: NULL) the permission is missing
 *     KEEL_ERR_CONFLICT           a constraint failed, or a compare-and-set lost
 *     KEEL_ERR_NOT_FOUND          unknown or finished transaction id; kv key absent
 *     KEEL_ERR_BUSY               the writer stayed busy for the whole busy timeout
 *     KEEL_ERR_TIMEOUT            the host rolled the transaction back after its timeout
 *     KEEL_ERR_STORAGE_FULL       the disk or the plugin's quota is full (HTTP 507)
 *     KEEL_ERR_UNAVAILABLE        an I/O error, or storage closed (plugin stopping)
 *     KEEL_ERR_INTERNAL           anything else; the message says what
 *
 * EXTENSION HISTORY (one line per change, never edited)
 *   keel.storage/1 struct_size 1: exec, prepare, begin, commit, rollback, kv_get, kv_put,
 *                  kv_delete, kv_list, error_message
 *   keel.storage/1 publish appended (test KEEL_HAS_FN(api, keel_storage_api, publish))
 */
#ifndef KEEL_STORAGE_H
#define KEEL_STORAGE_H

#include <keel/plugin.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Id to pass to keel_host_api.get_extension; the manifest needs "ext:keel.storage/1". */
#define KEEL_STORAGE_EXTENSION_ID "keel.storage/1"

/* ------------------------------------------------------------------------------------------
 * Values
 * ---------------------------------------------------------------------------------------- */

/** Type of a parameter or column value. */
typedef int32_t keel_sql_type;

#define KEEL_SQL_NULL 0     /**< SQL NULL; no member is read */
#define KEEL_SQL_INTEGER 1  /**< 64-bit signed integer in .integer */
#define KEEL_SQL_REAL 2     /**< IEEE-754 double in .real */
#define KEEL_SQL_TEXT 3     /**< UTF-8 text in .bytes (no NUL needed; embedded NULs are kept) */
#define KEEL_SQL_BLOB 4     /**< opaque bytes in .bytes */

/**
 * One bound parameter, plugin -> host. Leaf struct: frozen for keel.storage/1.
 * OWNERSHIP: plugin; the host reads it during the call and copies what it keeps.
 */
typedef struct keel_sql_param {
  keel_sql_type type;      /**< KEEL_SQL_*; another value is KEEL_ERR_INVALID_ARGUMENT */
  uint32_t reserved;       /**< must be 0 */
  int64_t integer;         /**< the value when type is KEEL_SQL_INTEGER */
  double real;             /**< the value when type is KEEL_SQL_REAL */
  keel_plugin_bytes bytes; /**< plugin-owned; the value when type is TEXT or BLOB */
} keel_sql_param;

/**
 * One column value of a result row, host -> plugin. Leaf struct: frozen for keel.storage/1.
 * OWNERSHIP: host; valid until the row callback that received it returns.
 */
typedef struct keel_sql_value {
  keel_sql_type type;    /**< KEEL_SQL_*: the stored type of this value (SQLite is dynamically
                              typed: a column may hold different types in different rows) */
  uint32_t reserved;     /**< 0 */
  int64_t integer;       /**< set when type is KEEL_SQL_INTEGER */
  double real;           /**< set when type is KEEL_SQL_REAL */
  keel_host_bytes bytes; /**< host-owned; set when type is TEXT or BLOB */
} keel_sql_value;

/**
 * Receives one result row inside exec(), on the thread that called exec().
 * @param user_data the pointer given to exec, unchanged.
 * @param columns   column_count values, in select-list order.
 * @param names     column_count column names (the "AS" name when given).
 * @param column_count number of columns (the same for every row of one exec).
 * @return 0 to continue with the next row; non-zero to stop early (exec then returns KEEL_OK
 *         with the rows delivered so far; a write statement has already run to completion).
 * OWNERSHIP: columns, names and their bytes: host, until the callback returns.
 * Must not call any function of this extension (those return KEEL_ERR_INVALID_ARGUMENT) and
 * must not throw, longjmp or abort.
 */
typedef int32_t (*keel_sql_row_fn)(void* user_data, const keel_sql_value* columns, const keel_host_bytes* names,
                                   size_t column_count);

/* ------------------------------------------------------------------------------------------
 * Transactions
 * ---------------------------------------------------------------------------------------- */

/**
 * A transaction or savepoint id from begin(). Unique per plugin, never reused; the value
 * KEEL_TXN_NONE (0) means "no transaction": the statement runs on its own (autocommit).
 * A transaction may be used from any thread, one call at a time (calls on one transaction are
 * serialized by the host). It must end with commit or rollback; the host rolls back one left
 * open when the plugin stops, and may roll back one that outlived [storage]
 * transaction_timeout_ms when another writer waits (further use gives KEEL_ERR_TIMEOUT).
 */
typedef uint64_t keel_txn;

/** "No transaction": autocommit. */
#define KEEL_TXN_NONE 0u

/* ------------------------------------------------------------------------------------------
 * Results
 * ---------------------------------------------------------------------------------------- */

/**
 * What exec() did. The plugin sets struct_size; the host fills the members inside it.
 * OWNERSHIP: plugin-allocated, host-written during exec.
 */
typedef struct keel_sql_result {
  uint32_t struct_size;   /**< sizeof(keel_sql_result) as compiled into the plugin */
  uint32_t reserved;      /**< set to 0 by the host */
  int64_t changes;        /**< rows inserted, updated or deleted by this statement (0 for reads) */
  int64_t last_insert_id; /**< rowid of the last row this connection inserted (after an INSERT) */
  int64_t rows;           /**< rows delivered to the row callback */
  /* --- later members go here --- */
} keel_sql_result;

/**
 * What prepare() learned about a statement without running it.
 * OWNERSHIP: plugin-allocated, host-written during prepare.
 */
typedef struct keel_sql_info {
  uint32_t struct_size;  /**< sizeof(keel_sql_info) as compiled into the plugin */
  uint32_t param_count;  /**< number of "?" parameters */
  uint32_t column_count; /**< columns each result row has (0 for statements without rows) */
  uint32_t read_only;    /**< 1 when the statement never writes */
  /* --- later members go here --- */
} keel_sql_info;

/* ------------------------------------------------------------------------------------------
 * Key-value store
 * ---------------------------------------------------------------------------------------- */

/** expected_version for an unconditional put or delete. */
#define KEEL_KV_ANY_VERSION (-1)
/** Largest key, in bytes. */
#define KEEL_KV_MAX_KEY_BYTES 1024u
/** Most entries one kv_list call returns. */
#define KEEL_KV_MAX_LIST 1000u

/**
 * One key-value entry, host -> plugin.
 * OWNERSHIP: plugin-allocated; the host writes it. key and value are host-owned and valid until
 * the next call into this extension on the same thread (kv_get), or until the list callback
 * returns (kv_list).
 */
typedef struct keel_kv_entry {
  uint32_t struct_size;    /**< sizeof(keel_kv_entry) as compiled into the plugin (kv_get) or
                                host (kv_list) */
  uint32_t reserved;       /**< 0 */
  keel_host_bytes key;     /**< host-owned */
  keel_host_bytes value;   /**< host-owned */
  int64_t version;         /**< >= 1; grows by one with every put of this key, so a later
                                compare-and-set can name it; a deleted and re-created key
                                starts again at 1 */
  int64_t expires_unix_ms; /**< absolute expiry, milliseconds since the Unix epoch; 0 = never */
} keel_kv_entry;

/**
 * Arguments of kv_put. OWNERSHIP: plugin; read during the call.
 */
typedef struct keel_kv_put_args {
  uint32_t struct_size;      /**< sizeof(keel_kv_put_args) as compiled into the plugin */
  uint32_t flags;            /**< none defined; must be 0 */
  keel_plugin_bytes key;     /**< plugin-owned; 1..KEEL_KV_MAX_KEY_BYTES bytes, any bytes */
  keel_plugin_bytes value;   /**< plugin-owned; any bytes, may be empty */
  int64_t expected_version;  /**< KEEL_KV_ANY_VERSION: unconditional; 0: only if the key is
                                  absent (create); > 0: only if the current version equals it
                                  (compare-and-set). A mismatch is KEEL_ERR_CONFLICT. */
  int64_t ttl_ms;            /**< > 0: the entry expires this many ms from now; 0: never.
                                  An expired entry is invisible (absent) and removed later. */
  /* --- later members go here --- */
} keel_kv_put_args;

/**
 * Receives one entry inside kv_list, on the calling thread.
 * @return 0 to continue, non-zero to stop early.
 * OWNERSHIP: entry and its bytes: host, until the callback returns. Same rules as
 * keel_sql_row_fn (no calls into this extension, no exceptions).
 */
typedef int32_t (*keel_kv_entry_fn)(void* user_data, const keel_kv_entry* entry);

/* ------------------------------------------------------------------------------------------
 * The extension table
 * ---------------------------------------------------------------------------------------- */

/**
 * Returned by get_extension(ctx, "keel.storage/1"). APPEND ONLY; every function is
 * [any-thread], blocking (see CALLS BLOCK), never throws, and takes the plugin's ctx first.
 * Usable from the start of create() until destroy() returns (during create() and after stop()
 * too: the database is open for the plugin's whole life).
 * OWNERSHIP: host; valid until destroy() returns.
 */
typedef struct keel_storage_api {
  uint32_t struct_size; /**< sizeof(keel_storage_api) as compiled into the host */
  uint32_t reserved;    /**< 0 */

  /**
   * Runs one SQL statement with bound parameters; rows go to on_row.
   * @param ctx         the plugin's context.
   * @param txn         KEEL_TXN_NONE (autocommit: reads run on a reader connection and never
   *                    wait for writers; writes run on the writer) or an open transaction.
   * @param sql         exactly one statement, "?" or "?NNN" parameters; a trailing ";" and
   *                    comments are fine. Prepared once and cached per connection by text.
   * @param params      param_count values for the parameters, in order (NULL if 0).
   * @param param_count must equal the statement's parameter count.
   * @param on_row      called once per result row; may be NULL to discard rows.
   * @param user_data   handed to on_row.
   * @param out         may be NULL; receives changes, last insert id and row count.
   * @return KEEL_OK, or a failure (see ERRORS). A failure of a statement inside a
   *         transaction leaves the transaction open and usable unless the message says it was
   *         rolled back (then use of it gives KEEL_ERR_NOT_FOUND).
   * OWNERSHIP: sql, params: plugin, read during the call. [any-thread]
   */
  keel_status (*exec)(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes sql, const keel_sql_param* params,
                      size_t param_count, keel_sql_row_fn on_row, void* user_data, keel_sql_result* out);

  /**
   * Compiles a statement without running it, to check it (e.g. at start) and learn its shape.
   * @param out must not be NULL; struct_size set by the plugin.
   * @return KEEL_OK; KEEL_ERR_INVALID_ARGUMENT with the database's message for bad SQL.
   * OWNERSHIP: sql: plugin, read during the call. [any-thread]
   */
  keel_status (*prepare)(keel_host_ctx* ctx, keel_plugin_bytes sql, keel_sql_info* out);

  /**
   * Opens a transaction, or a savepoint inside one.
   * @param parent     KEEL_TXN_NONE: a new transaction that holds the plugin's single writer
   *                   until it ends (waits up to [storage] busy_timeout_ms for it, then
   *                   KEEL_ERR_BUSY). An open transaction or savepoint id: a nested savepoint;
   *                   rolling it back undoes only what ran since it began.
   * @param out        receives the new id; never KEEL_TXN_NONE on success.
   * @return KEEL_OK; KEEL_ERR_BUSY; KEEL_ERR_NOT_FOUND for an unknown parent.
   * OWNERSHIP: none. [any-thread]
   */
  keel_status (*begin)(keel_host_ctx* ctx, keel_txn parent, keel_txn* out);

  /**
   * Commits a transaction (durable when this returns KEEL_OK), or releases a savepoint into
   * its parent. Ends every savepoint opened inside it.
   * @return KEEL_OK; KEEL_ERR_NOT_FOUND for an unknown or finished id; on
   *         KEEL_ERR_STORAGE_FULL, KEEL_ERR_UNAVAILABLE or KEEL_ERR_BUSY from a top-level
   *         commit the transaction has been rolled back and is finished.
   * OWNERSHIP: none. [any-thread]
   */
  keel_status (*commit)(keel_host_ctx* ctx, keel_txn txn);

  /**
   * Rolls back a transaction, or a savepoint (undoing its changes; the parent stays open).
   * Ends every savepoint opened inside it. Never fails for an open id.
   * @return KEEL_OK; KEEL_ERR_NOT_FOUND for an unknown or finished id.
   * OWNERSHIP: none. [any-thread]
   */
  keel_status (*rollback)(keel_host_ctx* ctx, keel_txn txn);

  /**
   * Reads one key.
   * @param txn  KEEL_TXN_NONE or an open transaction (to read its own uncommitted writes).
   * @param key  the key.
   * @param out  must not be NULL; struct_size set by the plugin; filled on KEEL_OK.
   * @return KEEL_OK; KEEL_ERR_NOT_FOUND when absent or expired.
   * OWNERSHIP: key: plugin. out's bytes: host, until the next call into this extension on
   * this thread. [any-thread]
   */
  keel_status (*kv_get)(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes key, keel_kv_entry* out);

  /**
   * Writes one key: create, overwrite, or compare-and-set (see keel_kv_put_args).
   * @param out_version may be NULL; receives the entry's new version.
   * @return KEEL_OK; KEEL_ERR_CONFLICT when expected_version does not match;
   *         KEEL_ERR_INVALID_ARGUMENT for an empty or too long key, non-zero flags or a
   *         negative ttl; KEEL_ERR_STORAGE_FULL; KEEL_ERR_BUSY.
   * OWNERSHIP: args: plugin, read during the call. [any-thread]
   */
  keel_status (*kv_put)(keel_host_ctx* ctx, keel_txn txn, const keel_kv_put_args* args, int64_t* out_version);

  /**
   * Deletes one key.
   * @param expected_version KEEL_KV_ANY_VERSION, or the version the entry must have.
   * @return KEEL_OK; KEEL_ERR_NOT_FOUND when absent or expired; KEEL_ERR_CONFLICT on a
   *         version mismatch; KEEL_ERR_INVALID_ARGUMENT for an expected_version below -1.
   * OWNERSHIP: key: plugin. [any-thread]
   */
  keel_status (*kv_delete)(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes key, int64_t expected_version);

  /**
   * Lists live entries whose key starts with prefix, in ascending byte order of key, after
   * the key start_after (exclusive; empty = from the first), at most limit of them.
   * Paginate by passing the last key received as the next start_after while *out_more is 1.
   * @param limit    1..KEEL_KV_MAX_LIST (larger values are clamped).
   * @param on_entry called once per entry; must not be NULL.
   * @param out_more may be NULL; set to 1 when more entries follow the last one delivered.
   * @return KEEL_OK (also when nothing matched).
   * OWNERSHIP: prefix, start_after: plugin. [any-thread]
   */
  keel_status (*kv_list)(keel_host_ctx* ctx, keel_txn txn, keel_plugin_bytes prefix, keel_plugin_bytes start_after,
                         uint32_t limit, keel_kv_entry_fn on_entry, void* user_data, uint32_t* out_more);

  /**
   * The message of the last failed call into this extension made on the calling thread
   * (empty after a success). OWNERSHIP: host; valid until the next call into this extension
   * on this thread. [any-thread]
   */
  keel_host_bytes (*error_message)(keel_host_ctx* ctx);

  /* --- members appended after the first release of keel.storage/1 --- */

  /**
   * Publishes an event of a durable topic (manifest "events.durable") inside a transaction: the
   * event is written to this plugin's outbox in the same database transaction as the plugin's
   * own changes, so both commit or neither does, and it is delivered (at least once) only after
   * the commit. With txn KEEL_TXN_NONE it is written on its own, like keel_host_api.publish.
   * Member added after the first release of keel.storage/1: check KEEL_HAS_FN first.
   * @param txn  an open transaction or savepoint, or KEEL_TXN_NONE.
   * @param args as for keel_host_api.publish.
   * @return KEEL_OK (written; delivered after commit); KEEL_ERR_PERMISSION_DENIED when the topic
   *         is not in "events.publishes"; KEEL_ERR_INVALID_ARGUMENT when it is an in-memory topic
   *         (publish those with keel_host_api.publish after the commit) or flags are not 0;
   *         KEEL_ERR_NOT_FOUND for an unknown txn; storage errors of the outbox write.
   * OWNERSHIP: args and its bytes: plugin, copied before return. [any-thread]
   */
  keel_status (*publish)(keel_host_ctx* ctx, keel_txn txn, const keel_publish_args* args);

  /* --- later members go here --- */
} keel_storage_api;

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KEEL_STORAGE_H */
