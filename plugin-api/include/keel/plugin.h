/*
 * keel/plugin.h: the binary contract between the Keel host and its plugins.
 *
 * Pure C11 (also valid C++20); includes only <stddef.h> and <stdint.h>. A plugin is a
 * shared object that exports exactly one symbol, keel_plugin_entry_v1, and carries its
 * manifest as JSON text in an ELF section named ".keel_manifest". The host reads the
 * manifest from the file without running plugin code, then dlopen()s the object, calls the
 * entry point and talks to the plugin only through the two function tables defined here.
 * Plugins never link against the host: every host capability arrives through the
 * keel_host_api table given to create(), and optional capabilities are looked up by id with
 * get_extension(). docs/abi.md holds the full contract; this header is its reference.
 *
 * TRUST MODEL
 *   Plugins run in the host process with the host's privileges and are trusted code chosen
 *   by the operator. The checks below (struct_size, versions, permissions, exactly-once
 *   responders) guard against mistakes and version skew, not against a hostile plugin.
 *   Every host<->plugin exchange is expressible as bytes (integers, byte views, lists of
 *   byte-view pairs, size-prefixed structs of those, opaque tokens echoed back unchanged),
 *   so a later host can run the same .so in a helper process behind a proxy, unchanged.
 *
 * ABI HISTORY (one line per change, never edited)
 *   1.0  entry keel_plugin_entry_v1; keel_plugin (create, destroy, start, stop, on_request,
 *        on_event, health, manifest); keel_host_api (log, log_level, respond, publish, call,
 *        get_extension); keel_request, keel_response, keel_event, keel_publish_args,
 *        keel_call_args, keel_call_response; manifest section ".keel_manifest"
 *   1.0  status codes KEEL_ERR_CONFLICT, KEEL_ERR_STORAGE_FULL appended (codes need no minor
 *        bump: older readers treat them as KEEL_ERR_INTERNAL); extension keel/storage.h
 *
 * CONVENTIONS
 *   Versions     KEEL_ABI_VERSION packs major.minor as (major << 16) | minor. A host loads a
 *                plugin with the same major; a newer minor loads too and its extra members
 *                are ignored; another major is refused. A major bump renames the entry
 *                symbol (keel_plugin_entry_v2), so an old host reports "symbol not found".
 *   Growth       Every struct that can grow starts with `uint32_t struct_size` = sizeof as
 *                compiled by its writer. Members are only appended, under a
 *                "--- 1.N ---" marker; nothing is reordered, resized or removed. Members
 *                added in a minor are optional (hooks may be NULL, data may be absent).
 *                Readers test a member with KEEL_HAS_FIELD before touching it.
 *   Leaf structs keel_host_bytes, keel_plugin_bytes, keel_host_kv, keel_plugin_kv and the two
 *                kv lists carry no struct_size: they are frozen for the whole major.
 *   Widths       Struct members are fixed-width integers, pointers and size_t lengths only:
 *                no enum, bool, long or C++ types. size_t appears only as the length of the
 *                pointer beside it, so it always has that pointer's width; the layout is
 *                pinned per target by tests/unit/plugin_api (baseline: x86_64).
 *                "Enumerations" are int32_t typedefs with #define constants.
 *   Ownership    The type name says who owns the bytes. keel_host_bytes: the host owns them;
 *                valid until the call that delivered them returns (copy to keep). Plugin-owned
 *                keel_plugin_bytes passed to the host are copied before the host function
 *                returns. Every declaration states OWNERSHIP explicitly.
 *   Threads      [init-only]  called by, or callable from, the host's control thread during
 *                             create/start/stop/destroy only; never concurrent with any other
 *                             hook of the same plugin.
 *                [worker]     called on a host thread while serving a request, an event or a
 *                             health probe; may run concurrently with other [worker] hooks
 *                             unless the manifest says "concurrency": "serialized".
 *                [any-thread] callable from any thread, including threads the plugin owns,
 *                             from the start of create() until destroy() returns.
 *   Errors       Only keel_status codes cross the boundary; detail text goes to the log.
 *                Neither side lets an exception, longjmp or abort escape into the other.
 *   Strings      Byte views are not NUL-terminated unless stated; text is UTF-8.
 */
#ifndef KEEL_PLUGIN_H
#define KEEL_PLUGIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------------------------
 * Versions
 * ---------------------------------------------------------------------------------------- */

/** ABI major of this header. A change here means a new entry symbol and a new header. */
#define KEEL_ABI_VERSION_MAJOR 1u
/** ABI minor of this header: the number of append-only revisions within the major. */
#define KEEL_ABI_VERSION_MINOR 0u
/** Packed version written to keel_plugin.abi_version and keel_host_api.abi_version. */
#define KEEL_ABI_VERSION ((KEEL_ABI_VERSION_MAJOR << 16) | KEEL_ABI_VERSION_MINOR)
/** Major part of a packed version (uint32_t in, uint32_t out). */
#define KEEL_ABI_MAJOR(version) ((version) >> 16)
/** Minor part of a packed version (uint32_t in, uint32_t out). */
#define KEEL_ABI_MINOR(version) ((version) & 0xFFFFu)

/* ------------------------------------------------------------------------------------------
 * Export and manifest section
 * ---------------------------------------------------------------------------------------- */

/**
 * Marks the one symbol a plugin exports. Plugins are built with -fvisibility=hidden, so
 * everything else stays local to the shared object (keel_add_plugin() sets this up).
 */
#if defined(_WIN32)
#define KEEL_EXPORT __declspec(dllexport)
#elif defined(__GNUC__) || defined(__clang__)
#define KEEL_EXPORT __attribute__((visibility("default")))
#else
#define KEEL_EXPORT
#endif

/** Name of the ELF section that holds the manifest; the host looks it up by this name. */
#define KEEL_MANIFEST_SECTION ".keel_manifest"

/**
 * Name of the same section in a PE32+ DLL (Windows): PE section names hold at most 8 bytes, and
 * strip and lld cut longer ones. Since ABI 1.0 (added in the 1.x line, docs/abi.md §9).
 */
#define KEEL_MANIFEST_SECTION_PE ".keelmf"

/*
 * The manifest is one JSON object (UTF-8, NUL-terminated) placed in the ".keel_manifest"
 * section, so the host and tools (`readelf -p .keel_manifest x.so`) read it from the file
 * without dlopen() and without running a static initialiser. The section holds exactly one
 * document; the host refuses a file whose section is missing, holds several NUL-terminated
 * documents (the macro was used in two translation units) or does not parse. The same bytes
 * are reachable at run time through keel_plugin.manifest, which must point at them; that
 * reference also keeps the section alive under --gc-sections. Schema (docs/abi.md is normative):
 *
 *   { "name": "orders",                        [a-z][a-z0-9_]*, unique within one host
 *     "version": "1.4.2",                      semver of the plugin itself
 *     "abi": "1.0",                            must equal abi_version in keel_plugin
 *     "description": "Order intake",
 *     "dependencies": [ { "name": "inventory", "version": ">=1.0.0 <2.0.0" } ],
 *     "routes": [ { "method": "GET", "path": "/orders/{id}", "summary": "...",
 *                   "blocking": false } ],      mounted at /api/<name>; index = route_index;
 *                                              "{name}" one segment, "{name...}" the tail
 *     "concurrency": "parallel",              "parallel" (default) | "serialized"
 *     "events": { "publishes": ["orders.placed"], "subscribes": ["inventory.*"] },
 *     "permissions": ["call:inventory", "ext:keel.storage/1"],
 *     "config": { "greeting": { "type": "string", "default": "hello", "required": false,
 *                               "description": "..." } } }
 *     config types: "string" | "integer" | "number" | "boolean" | "array" | "object"
 */

/**
 * Declares the manifest: `KEEL_PLUGIN_MANIFEST("{\"name\":\"orders\", ...}");` at file scope,
 * once per plugin, then point keel_plugin.manifest at keel_manifest_data.
 * @param json_literal a string literal holding the manifest JSON (schema above).
 * OWNERSHIP: static storage inside the plugin image. [init-only] evaluated at compile time.
 * Note: ISO C only promises 4095-byte string literals; C plugins with a larger manifest need
 * -Wno-overlength-strings under -pedantic (C++ promises 65536).
 */
#define KEEL_PLUGIN_MANIFEST(json_literal) KEEL_PLUGIN_MANIFEST_NAMED(keel_manifest_data, json_literal)

/**
 * Same as KEEL_PLUGIN_MANIFEST but names the array, for tests that hold several manifests
 * in one binary. A plugin uses KEEL_PLUGIN_MANIFEST.
 * @param name         identifier of the static const char array to define.
 * @param json_literal a string literal holding the manifest JSON.
 */
#if defined(__ELF__) && (defined(__GNUC__) || defined(__clang__))
#define KEEL_PLUGIN_MANIFEST_NAMED(name, json_literal) \
  static const char name[] __attribute__((section(KEEL_MANIFEST_SECTION), used, aligned(1))) = json_literal
#elif defined(_WIN32) && (defined(__GNUC__) || defined(__clang__))
/* PE (mingw-w64 GCC, clang): the host reads the section's VirtualSize bytes, not its padding. */
#define KEEL_PLUGIN_MANIFEST_NAMED(name, json_literal) \
  static const char name[] __attribute__((section(KEEL_MANIFEST_SECTION_PE), used, aligned(1))) = json_literal
#else
/* No section this header knows how to place: the host falls back to keel_plugin.manifest. */
#define KEEL_PLUGIN_MANIFEST_NAMED(name, json_literal) static const char name[] = json_literal
#endif

/* ------------------------------------------------------------------------------------------
 * Member tests
 * ---------------------------------------------------------------------------------------- */

#ifdef __cplusplus
#define KEEL_FIELD_SIZE_(type, field) sizeof(type::field)
#else
#define KEEL_FIELD_SIZE_(type, field) sizeof(((type*)0)->field)
#endif

/**
 * True when the struct at `p`, whose writer recorded its size in p->struct_size, contains
 * `field` entirely. Use it before reading any member that is not in the reader's own oldest
 * supported minor, and before calling a host function added after 1.0.
 * @param p     pointer to a struct starting with uint32_t struct_size (not NULL).
 * @param type  the struct's typedef name, e.g. keel_host_api.
 * @param field the member name.
 * @return non-zero when present. [any-thread]
 */
#define KEEL_HAS_FIELD(p, type, field) \
  ((p)->struct_size >= offsetof(type, field) + KEEL_FIELD_SIZE_(type, field))

/**
 * True when the function-pointer member `field` is present (KEEL_HAS_FIELD) and not NULL.
 * Optional hooks and host functions are called only after this test. [any-thread]
 */
#define KEEL_HAS_FN(p, type, field) (KEEL_HAS_FIELD(p, type, field) && (p)->field)

/* ------------------------------------------------------------------------------------------
 * Status codes
 * ---------------------------------------------------------------------------------------- */

/**
 * Result of every fallible call in either direction: >= 0 success, < 0 failure (VkResult
 * style). New codes are appended; a reader treats an unknown negative code as
 * KEEL_ERR_INTERNAL. The host maps a failure returned by a request handler to HTTP in one
 * place (docs/abi.md lists the mapping).
 */
typedef int32_t keel_status;

#define KEEL_OK 0                        /**< success */
#define KEEL_ERR_INVALID_ARGUMENT (-1)   /**< caller passed a malformed value (HTTP 400) */
#define KEEL_ERR_NOT_FOUND (-2)          /**< no such plugin, route, responder or item (404) */
#define KEEL_ERR_UNSUPPORTED (-3)        /**< member or extension absent at this struct_size (501) */
#define KEEL_ERR_INTERNAL (-4)           /**< callee bug or caught exception (500) */
#define KEEL_ERR_BUSY (-5)               /**< a bounded queue is full; retry later (503) */
#define KEEL_ERR_PERMISSION_DENIED (-6)  /**< the manifest did not request this (403) */
#define KEEL_ERR_TIMEOUT (-7)            /**< a deadline passed before completion (504) */
#define KEEL_ERR_UNAVAILABLE (-8)        /**< not started yet, stopping, or target down (503) */
#define KEEL_ERR_ALREADY_COMPLETED (-9)  /**< a once-only handle was used a second time (500) */
#define KEEL_ERR_TOO_LARGE (-10)         /**< a payload exceeds a configured limit (413) */
#define KEEL_ERR_CONFLICT (-11)          /**< a uniqueness rule or compare-and-set failed (409) */
#define KEEL_ERR_STORAGE_FULL (-12)      /**< the disk or a storage quota is full (507) */

/* ------------------------------------------------------------------------------------------
 * Log levels, health states
 * ---------------------------------------------------------------------------------------- */

/** Log severity; values mirror spdlog::level::level_enum, so the host maps them 1:1. */
typedef int32_t keel_log_level;

#define KEEL_LOG_TRACE 0     /**< payloads */
#define KEEL_LOG_DEBUG 1     /**< per request or event */
#define KEEL_LOG_INFO 2      /**< lifecycle only */
#define KEEL_LOG_WARN 3      /**< a peer or input misbehaved; the plugin carries on */
#define KEEL_LOG_ERROR 4     /**< the plugin dropped work it owned */
#define KEEL_LOG_CRITICAL 5  /**< the plugin cannot continue */
#define KEEL_LOG_OFF 6       /**< returned by log_level() when logging is disabled; never logged */

/** Result of the health hook (IETF health-check draft names). */
typedef int32_t keel_health;

#define KEEL_HEALTH_PASS 0  /**< fully working */
#define KEEL_HEALTH_WARN 1  /**< degraded but serving */
#define KEEL_HEALTH_FAIL 2  /**< not serving correctly */

/* ------------------------------------------------------------------------------------------
 * Byte views and key/value lists (leaf structs, frozen for the major)
 * ---------------------------------------------------------------------------------------- */

/**
 * Bytes owned by the host, handed to the plugin.
 * OWNERSHIP: host; valid until the call that delivered them returns. Copy to keep.
 * ptr may be NULL only when len is 0. [any-thread] read-only.
 */
typedef struct keel_host_bytes {
  const char* ptr; /**< first byte; host-owned */
  size_t len;      /**< number of bytes at ptr */
} keel_host_bytes;

/**
 * Bytes owned by the plugin, handed to the host.
 * OWNERSHIP: plugin; the host copies them before the host function returns, so stack and
 * temporary buffers are fine. ptr may be NULL only when len is 0. [any-thread] read-only.
 */
typedef struct keel_plugin_bytes {
  const char* ptr; /**< first byte; plugin-owned */
  size_t len;      /**< number of bytes at ptr */
} keel_plugin_bytes;

/** One host-owned name/value pair (header, path parameter, query parameter). OWNERSHIP: host. */
typedef struct keel_host_kv {
  keel_host_bytes name;  /**< host-owned; header names as received, compare case-insensitively */
  keel_host_bytes value; /**< host-owned */
} keel_host_kv;

/** One plugin-owned name/value pair (response or call header). OWNERSHIP: plugin, copied. */
typedef struct keel_plugin_kv {
  keel_plugin_bytes name;  /**< plugin-owned; ASCII token */
  keel_plugin_bytes value; /**< plugin-owned; no CR or LF */
} keel_plugin_kv;

/** Host-owned list of pairs. OWNERSHIP: host, like the struct that holds it. */
typedef struct keel_host_kv_list {
  const keel_host_kv* items; /**< host-owned array of count pairs; NULL when count is 0 */
  size_t count;              /**< number of pairs; repeated names appear once per occurrence */
} keel_host_kv_list;

/** Plugin-owned list of pairs. OWNERSHIP: plugin; copied before the host function returns. */
typedef struct keel_plugin_kv_list {
  const keel_plugin_kv* items; /**< plugin-owned array of count pairs; NULL when count is 0 */
  size_t count;                /**< number of pairs */
} keel_plugin_kv_list;

/* ------------------------------------------------------------------------------------------
 * Opaque handles
 * ---------------------------------------------------------------------------------------- */

/**
 * The host's per-plugin context, passed to create() and back to every host function.
 * OWNERSHIP: host; valid from the start of create() until destroy() returns. [any-thread]
 */
typedef struct keel_host_ctx keel_host_ctx;

/**
 * Identifies one pending request: pass it to keel_host_api.respond exactly once. A plain
 * integer rather than a pointer, so a stale or repeated use is detected (never a dangling
 * dereference) and the id can cross a process boundary. Ids are unique per keel_host_ctx and
 * never reused; 0 is never issued (KEEL_RESPONDER_NONE).
 */
typedef uint64_t keel_responder;

/** The responder value that is never issued; useful as "empty". */
#define KEEL_RESPONDER_NONE 0u

/* ------------------------------------------------------------------------------------------
 * Host -> plugin data
 * ---------------------------------------------------------------------------------------- */

/**
 * One HTTP request routed to the plugin, or a plugin-to-plugin call made through
 * keel_host_api.call. Append-only.
 * OWNERSHIP: host; the struct and every byte it points to are valid until on_request returns.
 * A handler that answers later copies what it needs first.
 * [worker] read-only; every member is read on the thread that runs on_request.
 */
typedef struct keel_request {
  uint32_t struct_size;          /**< sizeof(keel_request) as compiled into the host */
  uint32_t route_index;          /**< [worker] index into the manifest "routes" array that matched */
  keel_host_bytes method;        /**< [worker] host-owned; upper-case token, e.g. "GET" */
  keel_host_bytes path;          /**< [worker] host-owned; full path as received, still
                                      percent-encoded, without the query, e.g. "/api/orders/42" */
  keel_host_kv_list path_params; /**< [worker] host-owned; "{name}" captures from the route
                                      template, percent-decoded, in template order */
  keel_host_kv_list query;       /**< [worker] host-owned; query parameters, percent-decoded
                                      ('+' is a space), in order; repeats kept */
  keel_host_kv_list headers;     /**< [worker] host-owned; request headers as received, in order */
  keel_host_bytes body;          /**< [worker] host-owned; the complete body (bounded by the
                                      host's max_body_bytes); empty when absent */
  keel_host_bytes remote_address;/**< [worker] host-owned; peer "ip:port" ("[v6]:port");
                                      empty for plugin-to-plugin calls */
  keel_host_bytes request_id;    /**< [worker] host-owned; the id the host logs as req=... */
  keel_host_bytes caller_plugin; /**< [worker] host-owned; calling plugin's name for a call made
                                      through keel_host_api.call; empty for HTTP requests */
  int64_t deadline_mono_ns;      /**< [worker] CLOCK_MONOTONIC nanoseconds after which the host
                                      answers 504 on its own; 0 = no deadline */
  keel_host_bytes traceparent;   /**< [worker] host-owned; W3C traceparent of this request's
                                      span; empty when tracing is off */
  keel_host_bytes tracestate;    /**< [worker] host-owned; W3C tracestate; may be empty */
  /* --- 1.1 goes here --- */
} keel_request;

/**
 * One event delivered to a subscriber. Append-only.
 * OWNERSHIP: host; the struct and every byte it points to are valid until on_event returns.
 * [worker] read-only.
 */
typedef struct keel_event {
  uint32_t struct_size;        /**< sizeof(keel_event) as compiled into the host */
  uint32_t delivery_attempt;   /**< [worker] 1 on first delivery, > 1 when redelivered
                                    (durable topics are at-least-once) */
  keel_host_bytes topic;       /**< [worker] host-owned; e.g. "orders.placed" */
  keel_host_bytes payload;     /**< [worker] host-owned; opaque to the host */
  keel_host_bytes content_type;/**< [worker] host-owned; media type given by the publisher */
  keel_host_bytes event_id;    /**< [worker] host-owned; unique per published event, stable
                                    across redeliveries (use it to deduplicate) */
  keel_host_bytes publisher;   /**< [worker] host-owned; name of the publishing plugin */
  int64_t timestamp_unix_ns;   /**< [worker] publish time, nanoseconds since the Unix epoch, UTC */
  keel_host_bytes traceparent; /**< [worker] host-owned; W3C traceparent given at publish */
  keel_host_bytes tracestate;  /**< [worker] host-owned; W3C tracestate given at publish */
  /* --- 1.1 goes here --- */
} keel_event;

/**
 * The answer to a plugin-to-plugin call, handed to the caller's completion callback.
 * Append-only.
 * OWNERSHIP: host; valid until the completion callback returns. [any-thread] read-only.
 */
typedef struct keel_call_response {
  uint32_t struct_size;         /**< sizeof(keel_call_response) as compiled into the host */
  int32_t status;               /**< [any-thread] HTTP status the target answered with */
  keel_host_kv_list headers;    /**< [any-thread] host-owned; response headers */
  keel_host_bytes content_type; /**< [any-thread] host-owned; media type; may be empty */
  keel_host_bytes body;         /**< [any-thread] host-owned; response body */
  /* --- 1.1 goes here --- */
} keel_call_response;

/* ------------------------------------------------------------------------------------------
 * Plugin -> host data
 * ---------------------------------------------------------------------------------------- */

/**
 * A response passed to keel_host_api.respond. Append-only; the host reads only the members
 * inside struct_size and uses the documented default for missing ones.
 * OWNERSHIP: plugin; the host copies everything before respond returns. [any-thread]
 */
typedef struct keel_response {
  uint32_t struct_size;           /**< sizeof(keel_response) as compiled into the plugin */
  int32_t status;                 /**< [any-thread] HTTP status, 100..599 */
  keel_plugin_kv_list headers;    /**< [any-thread] plugin-owned; extra response headers; the
                                       host owns Content-Length, Connection, Date, Server */
  keel_plugin_bytes content_type; /**< [any-thread] plugin-owned; Content-Type; empty = none */
  keel_plugin_bytes body;         /**< [any-thread] plugin-owned; response body */
  /* --- 1.1 goes here --- */
} keel_response;

/**
 * An event passed to keel_host_api.publish. Append-only.
 * OWNERSHIP: plugin; the host copies everything before publish returns. [any-thread]
 */
typedef struct keel_publish_args {
  uint32_t struct_size;           /**< sizeof(keel_publish_args) as compiled into the plugin */
  uint32_t flags;                 /**< [any-thread] none defined in 1.0; must be 0 */
  keel_plugin_bytes topic;        /**< [any-thread] plugin-owned; must be listed in the manifest
                                       "events.publishes", e.g. "orders.placed" */
  keel_plugin_bytes payload;      /**< [any-thread] plugin-owned; opaque bytes */
  keel_plugin_bytes content_type; /**< [any-thread] plugin-owned; e.g. "application/json" */
  keel_plugin_bytes traceparent;  /**< [any-thread] plugin-owned; W3C traceparent to propagate
                                       (usually the request's); empty = the span of the hook the
                                       calling thread runs in (none outside hooks) */
  keel_plugin_bytes tracestate;   /**< [any-thread] plugin-owned; W3C tracestate; may be empty */
  /* --- 1.1 goes here --- */
} keel_publish_args;

/**
 * A plugin-to-plugin request passed to keel_host_api.call. The host routes it exactly like
 * an HTTP request to /api/<target_plugin><path>, without a socket. Append-only.
 * OWNERSHIP: plugin; the host copies everything before call returns. [any-thread]
 */
typedef struct keel_call_args {
  uint32_t struct_size;           /**< sizeof(keel_call_args) as compiled into the plugin */
  uint32_t timeout_ms;            /**< [any-thread] give up after this long (KEEL_ERR_TIMEOUT);
                                       0 = the host's default request timeout */
  keel_plugin_bytes target_plugin;/**< [any-thread] plugin-owned; manifest name of the target */
  keel_plugin_bytes method;       /**< [any-thread] plugin-owned; e.g. "GET" */
  keel_plugin_bytes path;         /**< [any-thread] plugin-owned; path below the target's mount,
                                       percent-encoded, may carry "?query": "/stock/42?x=1" */
  keel_plugin_kv_list headers;    /**< [any-thread] plugin-owned; request headers */
  keel_plugin_bytes body;         /**< [any-thread] plugin-owned; request body */
  keel_plugin_bytes traceparent;  /**< [any-thread] plugin-owned; W3C traceparent of the caller's
                                       span; empty = the span of the hook the calling thread runs
                                       in. The host starts the call's span as its child. */
  keel_plugin_bytes tracestate;   /**< [any-thread] plugin-owned; W3C tracestate */
  /* --- 1.1 goes here --- */
} keel_call_args;

/**
 * Completion of keel_host_api.call, invoked exactly once for every call that returned
 * KEEL_OK, and never for one that returned an error.
 * @param user_data the pointer given to call, unchanged (the host never dereferences it).
 * @param result    KEEL_OK when the target answered (any HTTP status, see response->status);
 *                  KEEL_ERR_TIMEOUT, KEEL_ERR_UNAVAILABLE (target or caller stopping),
 *                  KEEL_ERR_BUSY or KEEL_ERR_INTERNAL otherwise.
 * @param response  the answer when result is KEEL_OK, else NULL.
 * OWNERSHIP: response and its bytes: host, until the callback returns. user_data: plugin.
 * [any-thread] Runs on a host thread, never inside the call() that started it (so a lock held
 * around call() cannot deadlock), possibly before call()'s caller does its next step. All
 * pending completions of a plugin are delivered before its destroy() is called.
 */
typedef void (*keel_call_callback)(void* user_data, keel_status result, const keel_call_response* response);

/* ------------------------------------------------------------------------------------------
 * Host function table
 * ---------------------------------------------------------------------------------------- */

/**
 * Functions the host implements, passed to create(). APPEND ONLY. Every function is
 * [any-thread], never throws and never calls back into the plugin before it returns.
 * OWNERSHIP: host; the table is valid from the start of create() until destroy() returns.
 * A plugin built against a newer minor checks KEEL_HAS_FN(host, keel_host_api, member) before
 * calling a member the host may lack, and treats absence as KEEL_ERR_UNSUPPORTED.
 */
typedef struct keel_host_api {
  uint32_t struct_size; /**< sizeof(keel_host_api) as compiled into the host */
  uint32_t abi_version; /**< KEEL_ABI_VERSION as compiled into the host */

  /**
   * Writes one line to the host logger "plugin.<name>"; the host adds time, level and name.
   * @param ctx     the plugin's context.
   * @param level   KEEL_LOG_TRACE..KEEL_LOG_CRITICAL; other values are clamped.
   * @param message UTF-8 text without trailing newline, e.g. "order rejected id=42".
   * OWNERSHIP: message: plugin, copied. [any-thread]
   */
  void (*log)(keel_host_ctx* ctx, keel_log_level level, keel_plugin_bytes message);

  /**
   * Lowest level log() currently records for this plugin, so a plugin can skip formatting.
   * @param ctx the plugin's context.
   * @return KEEL_LOG_TRACE..KEEL_LOG_CRITICAL, or KEEL_LOG_OFF. May change at run time.
   * OWNERSHIP: none. [any-thread]
   */
  keel_log_level (*log_level)(keel_host_ctx* ctx);

  /**
   * Completes a request with a response. Exactly once per responder; the first completion wins.
   * @param ctx       the plugin's context (the one whose on_request received the responder).
   * @param responder the id given to on_request.
   * @param response  status, headers, content type and body.
   * @return KEEL_OK when accepted (the client may still have gone away);
   *         KEEL_ERR_ALREADY_COMPLETED when the responder was completed before, by respond or
   *         by the host after on_request failed (the host logs a warning);
   *         KEEL_ERR_TIMEOUT when the host already answered 504 because the deadline passed;
   *         KEEL_ERR_UNAVAILABLE when the request was abandoned (client gone, shutdown);
   *         KEEL_ERR_NOT_FOUND for an id never issued to this ctx;
   *         KEEL_ERR_INVALID_ARGUMENT for a NULL response, a status outside 100..599 or a
   *         malformed header; the responder then stays pending;
   *         KEEL_ERR_TOO_LARGE when the body exceeds the host limit; the responder stays pending.
   * OWNERSHIP: response and its bytes: plugin, copied before return. [any-thread]
   */
  keel_status (*respond)(keel_host_ctx* ctx, keel_responder responder, const keel_response* response);

  /**
   * Publishes an event to every subscriber of its topic. Delivery is asynchronous; publish
   * never calls on_event of any plugin before it returns.
   * @param ctx  the plugin's context.
   * @param args topic, payload, content type, trace context.
   * @return KEEL_OK when queued; KEEL_ERR_PERMISSION_DENIED when the topic is not in the
   *         manifest "events.publishes"; KEEL_ERR_INVALID_ARGUMENT for an empty or malformed
   *         topic or non-zero flags; KEEL_ERR_BUSY when a bounded queue is full;
   *         KEEL_ERR_TOO_LARGE when the payload exceeds the host limit;
   *         KEEL_ERR_UNAVAILABLE before start() or after stop() returned.
   * OWNERSHIP: args and its bytes: plugin, copied before return. [any-thread]
   */
  keel_status (*publish)(keel_host_ctx* ctx, const keel_publish_args* args);

  /**
   * Sends a request to another plugin's route through the host router and returns at once.
   * @param ctx         the plugin's context.
   * @param args        target plugin, method, path, headers, body, timeout, trace context.
   * @param on_complete invoked exactly once, later, iff call returns KEEL_OK (see
   *                    keel_call_callback for threads and arguments). Must not be NULL.
   * @param user_data   opaque pointer handed back to on_complete.
   * @return KEEL_OK when dispatched; KEEL_ERR_NOT_FOUND when the target is not loaded;
   *         KEEL_ERR_PERMISSION_DENIED without "call:<target>" (or "call:*") in the
   *         manifest permissions; KEEL_ERR_INVALID_ARGUMENT for malformed args or a NULL
   *         on_complete; KEEL_ERR_BUSY; KEEL_ERR_UNAVAILABLE before start() or after stop().
   * OWNERSHIP: args and its bytes: plugin, copied before return. user_data: plugin; must stay
   * valid until on_complete runs. [any-thread]
   */
  keel_status (*call)(keel_host_ctx* ctx, const keel_call_args* args, keel_call_callback on_complete,
                      void* user_data);

  /**
   * Looks up an optional capability by id, "<namespace>.<name>/<revision>", e.g.
   * "keel.storage/1". Extension tables start with uint32_t struct_size and follow the same
   * append-only and bytes-only rules as this header.
   * @param ctx the plugin's context.
   * @param id  NUL-terminated ASCII id.
   * @return the extension's function table, or NULL when the host does not provide it or the
   *         manifest lacks the permission "ext:<id>".
   * OWNERSHIP: id: plugin (read during the call). The returned table: host, valid until
   * destroy() returns. [any-thread]
   */
  const void* (*get_extension)(keel_host_ctx* ctx, const char* id);

  /* --- 1.1 goes here --- */
} keel_host_api;

/* ------------------------------------------------------------------------------------------
 * Plugin table and entry point
 * ---------------------------------------------------------------------------------------- */

/**
 * What a plugin implements, returned by keel_plugin_entry_v1(). APPEND ONLY.
 * OWNERSHIP: plugin; static storage, valid until the host dlclose()s the object.
 * Lifecycle: the host calls create() for every plugin in config order, then start() for every
 * plugin; on shutdown it stops accepting requests, then calls stop() and destroy() in reverse
 * order. None of the hooks may throw, longjmp or abort; the C++ SDK enforces this.
 */
typedef struct keel_plugin {
  uint32_t struct_size; /**< sizeof(keel_plugin) as compiled into the plugin */
  uint32_t abi_version; /**< KEEL_ABI_VERSION as compiled into the plugin */

  /**
   * The manifest JSON, NUL-terminated: must be keel_manifest_data from KEEL_PLUGIN_MANIFEST,
   * i.e. the very bytes in the ".keel_manifest" section. The host checks they match what it
   * read from the file.
   * OWNERSHIP: plugin, static storage. [init-only]
   */
  const char* manifest;

  /**
   * Creates one plugin instance. Validate config here; do not call other plugins yet.
   * @param host     the host function table (struct_size tells which members exist).
   * @param ctx      the context to pass back to every host function.
   * @param config   the plugin's config table as a JSON object (UTF-8), "{}" when absent.
   * @param out_self receives the instance pointer passed to every other hook; set on success.
   * @return KEEL_OK, or < 0 to refuse to load (log why first). On failure destroy() is NOT
   *         called: release what was acquired before returning.
   * OWNERSHIP: host and ctx: host, valid until destroy() returns. config: host, until
   * create returns. *out_self: plugin. [init-only]
   * During create only log, log_level and get_extension may be used; publish and call
   * return KEEL_ERR_UNAVAILABLE. Required (never NULL).
   */
  keel_status (*create)(const keel_host_api* host, keel_host_ctx* ctx, keel_host_bytes config, void** out_self);

  /**
   * Releases the instance. Plugin-owned threads must be joined by the time it returns:
   * afterwards ctx and the host table are gone.
   * @param self the instance from create.
   * OWNERSHIP: self: plugin, freed here. [init-only] Required (never NULL).
   */
  void (*destroy)(void* self);

  /**
   * Called once every plugin has been created: other plugins can now be called, events
   * published, and requests arrive once start() returns.
   * @param self the instance.
   * @return KEEL_OK, or < 0 to abort host startup (the host then calls stop() for the plugins
   *         already started, not this one, and destroy() for all).
   * OWNERSHIP: none. [init-only] Optional (NULL = nothing to do).
   */
  keel_status (*start)(void* self);

  /**
   * Quiesces: no new on_request or on_event follows; finish or abandon pending work. Other
   * plugins are still alive, so respond, publish and call still work (the latter two may
   * return KEEL_ERR_UNAVAILABLE if their target already stopped).
   * @param self the instance.
   * @return KEEL_OK; < 0 is logged by the host, which carries on and still calls destroy().
   * OWNERSHIP: none. [init-only] Optional (NULL = nothing to do).
   */
  keel_status (*stop)(void* self);

  /**
   * Handles one request for a route declared in the manifest.
   * @param self      the instance.
   * @param request   the request; request->route_index says which declared route matched.
   * @param responder pass to host->respond exactly once, now or later, from any thread.
   * @return >= 0: accepted. The request is answered by respond(), or by the host with 504 if
   *         nobody responds before the deadline. A responder that is never completed is not
   *         an error the host can see early: it ends in that timeout.
   *         < 0: the handler failed. If respond() was not called yet, the host answers with
   *         the HTTP status mapped from the code and retires the responder (a later respond
   *         gets KEEL_ERR_ALREADY_COMPLETED); if it was, the response stands and the host
   *         logs a warning.
   * OWNERSHIP: request and its bytes: host, until on_request returns; copy what an
   * asynchronous answer needs. responder: a plain id, see keel_responder.
   * [worker] Concurrent with other [worker] hooks unless "concurrency": "serialized". Routes
   * not marked "blocking" run on an I/O thread: return quickly or answer later from another
   * thread. Optional only when the manifest declares no routes.
   */
  keel_status (*on_request)(void* self, const keel_request* request, keel_responder responder);

  /**
   * Handles one event whose topic matches a manifest "events.subscribes" pattern. Events reach
   * one plugin in publish order per topic, one at a time.
   * @param self  the instance.
   * @param event the event.
   * @return >= 0: handled. < 0: failed; the host logs a warning and delivers it again later
   *         (delivery_attempt + 1, exponential backoff) up to [events] max_attempts, then
   *         dead-letters it (docs/events.md).
   * OWNERSHIP: event and its bytes: host, until on_event returns.
   * [worker] Concurrent with on_request unless "concurrency": "serialized". Optional only
   * when the manifest subscribes to nothing.
   */
  keel_status (*on_event)(void* self, const keel_event* event);

  /**
   * Reports the instance's health for the host's health endpoint (issue 8).
   * @param self       the instance.
   * @param out_detail may be set to a short UTF-8 explanation; left empty by default.
   * @return KEEL_HEALTH_PASS, KEEL_HEALTH_WARN or KEEL_HEALTH_FAIL (others count as FAIL).
   * OWNERSHIP: *out_detail: plugin; must stay valid until the next health call or destroy;
   * the host copies it as soon as health returns.
   * [worker] Never concurrent with another health call of the same instance; must not block.
   * Optional (NULL = KEEL_HEALTH_PASS while started).
   */
  keel_health (*health)(void* self, keel_plugin_bytes* out_detail);

  /* --- 1.1 goes here --- */
} keel_plugin;

/** Initialiser for the first two members of keel_plugin (nginx NGX_MODULE_V1 style). */
#define KEEL_PLUGIN_HEADER_INIT sizeof(keel_plugin), KEEL_ABI_VERSION

/**
 * Type of the entry point, for dlsym() in the host.
 * @return the plugin's static table; never NULL.
 */
typedef const keel_plugin* (*keel_plugin_entry_fn)(void);

/**
 * The single symbol a plugin exports. Side-effect free: it returns a pointer to a static
 * table and runs no other code; it may be called more than once and from any thread.
 * @return the plugin table. OWNERSHIP: plugin, static storage. [any-thread]
 */
KEEL_EXPORT const keel_plugin* keel_plugin_entry_v1(void);

/** Name of the entry symbol, for dlsym() and for error messages. */
#define KEEL_PLUGIN_ENTRY_SYMBOL "keel_plugin_entry_v1"

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* KEEL_PLUGIN_H */
