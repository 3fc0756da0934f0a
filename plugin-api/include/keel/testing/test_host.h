/*
 * keel/testing/test_host.h: a host for a plugin's own tests, outside the Keel repository.
 *
 * The installed package (find_package(Keel)) carries it as the shared library
 * keel::test_host (libkeel-test-host.so). It loads one plugin — its built .so file, or a
 * keel_plugin table linked into the test — the way the host does: it reads and validates the
 * manifest, checks the config against the manifest's schema and fills in its defaults, and when
 * the manifest asks for "ext:keel.storage/1" it gives the plugin a real database of its own (a
 * fresh SQLite file in a private temporary directory, removed by keel_test_host_destroy),
 * migrated by the manifest's "migrations". Requests are routed by the manifest's routes under
 * the mount /api/<name>; events published inside a storage transaction are recorded when that
 * transaction commits, never when it rolls back, as the host's outbox delivers them.
 *
 * It is plain C, so tests in C and in C++ with any framework (or none) use it the same way;
 * keel/sdk/testing/test_host.hpp wraps it for C++. docs/plugin-guide.md has a complete example.
 *
 * With KEEL_TEST_POSTGRES_URL set to a libpq connection string, the database is a schema of its
 * own on that PostgreSQL server instead (a new one for each host, named after the process and a
 * random number; it is left on the server), so the same tests run on both engines.
 * KEEL_TEST_LOG_LEVEL (trace, debug, info, warn, error; default warn) sets what the host's own
 * lines print to standard error; the plugin's lines are kept (keel_test_host_logs).
 * KEEL_TEST_TIMEOUT_MS (default 10000) is each request's deadline.
 *
 * THREADING: a keel_test_host is driven from one thread at a time (the test's). The plugin may
 * call the host functions it was given from any thread, as in the real host.
 * LINKING: link the library into the test program (keel::test_host); it is not meant to be
 * dlopen()ed (its thread-local data uses the initial-exec model).
 * OWNERSHIP: every string a function returns belongs to the host and stays valid until the next
 * call on the same keel_test_host that returns one of the same kind, or until it is destroyed.
 */
#ifndef KEEL_TESTING_TEST_HOST_H
#define KEEL_TESTING_TEST_HOST_H

#include <keel/plugin.h>

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__) || defined(__clang__)
#define KEEL_TEST_HOST_API __attribute__((visibility("default")))
#else
#define KEEL_TEST_HOST_API
#endif

typedef struct keel_test_host keel_test_host;

/** What the plugin answered to keel_test_host_request. */
typedef struct keel_test_response {
  int status;               /**< HTTP status; 0 when the plugin did not respond */
  keel_status returned;     /**< what on_request returned (KEEL_OK, or the failure the host maps) */
  const char* content_type; /**< NUL-terminated; "" when none */
  const char* body;         /**< NUL-terminated (the body may hold NULs: use body_len) */
  size_t body_len;
} keel_test_response;

/** A new, empty test host; NULL only when out of memory. */
KEEL_TEST_HOST_API keel_test_host* keel_test_host_create(void);

/** Stops and destroys the plugin, deletes its database and unloads its file. NULL is ignored. */
KEEL_TEST_HOST_API void keel_test_host_destroy(keel_test_host* host);

/**
 * Loads `plugin`, gives it `config_json` (a JSON object, NULL for "{}") checked against the
 * manifest's schema with defaults filled in, then calls create() and start().
 * @return KEEL_OK, or the failure; keel_test_host_error() says why (the manifest field, the
 *         config key, the migration, or what create()/start() returned).
 */
KEEL_TEST_HOST_API keel_status keel_test_host_load(keel_test_host* host, const keel_plugin* plugin,
                                                   const char* config_json);

/** keel_test_host_load for the plugin file at `path` (a built <name>.so), opened with dlopen. */
KEEL_TEST_HOST_API keel_status keel_test_host_load_file(keel_test_host* host, const char* path,
                                                        const char* config_json);

/** Why the last failing call failed; "" when it succeeded. */
KEEL_TEST_HOST_API const char* keel_test_host_error(const keel_test_host* host);

/**
 * Sends one request and waits (up to 10 s) for the plugin's response.
 * @param method  e.g. "GET".
 * @param target  the path and query as a client sends them: "/api/<name>/items/7?full=1".
 * @param body    NUL-terminated request body, or NULL for none.
 * @param headers NULL, or a NULL-terminated array of "Name: value" strings.
 * @param out     filled in; strings valid until the next request.
 * @return KEEL_OK when the plugin was called (its answer, whatever the status, is in `out`);
 *         KEEL_ERR_NOT_FOUND when no route matches (out->status 404, or 405 for another method);
 *         KEEL_ERR_TIMEOUT when the plugin did not respond within the request's deadline,
 *         KEEL_TEST_TIMEOUT_MS or 10 s (out->status 504, the host's error body; a later respond
 *         gets KEEL_ERR_TIMEOUT, as from the host);
 *         KEEL_ERR_UNAVAILABLE when no plugin is loaded.
 * An on_request failure without a response is reported as the host would answer it:
 * out->returned holds the status, out->status its HTTP mapping and out->body the host's error
 * body (docs/abi.md). A "storage": "read" route runs read-only, as in the host.
 */
KEEL_TEST_HOST_API keel_status keel_test_host_request(keel_test_host* host, const char* method, const char* target,
                                                      const char* body, const char* const* headers,
                                                      keel_test_response* out);

/** keel_test_host_request with a body of `body_len` bytes, which may hold NULs. */
KEEL_TEST_HOST_API keel_status keel_test_host_request_bytes(keel_test_host* host, const char* method,
                                                            const char* target, const char* body, size_t body_len,
                                                            const char* const* headers, keel_test_response* out);

/**
 * Delivers one event (content type application/json) to on_event.
 * @return what on_event returned; KEEL_ERR_NOT_FOUND when the manifest subscribes to no
 *         pattern matching `topic`.
 */
KEEL_TEST_HOST_API keel_status keel_test_host_deliver(keel_test_host* host, const char* topic, const char* payload);

/** How many events the plugin has published (committed ones only, for transactional publishes). */
KEEL_TEST_HOST_API size_t keel_test_host_published_count(const keel_test_host* host);
/** Topic of published event `index` (0 = first), NULL when out of range. Valid until destroy,
 * however many events are published later. */
KEEL_TEST_HOST_API const char* keel_test_host_published_topic(const keel_test_host* host, size_t index);
/** Payload of published event `index`, NUL-terminated, NULL when out of range; *out_len (if
 * not NULL) gets its length, since a payload may hold NULs. Valid until destroy. */
KEEL_TEST_HOST_API const char* keel_test_host_published_payload(const keel_test_host* host, size_t index,
                                                                size_t* out_len);

/**
 * Runs one SQL statement on the plugin's database, outside the plugin, to seed or inspect it.
 * @param out_json NULL, or receives the rows as a JSON array of objects (column name -> value;
 *                 blobs as strings), e.g. [{"k":"a","n":1}]; valid until the next query.
 * @return KEEL_OK, KEEL_ERR_UNSUPPORTED when the plugin has no database, or the database's
 *         failure (keel_test_host_error() says why).
 */
KEEL_TEST_HOST_API keel_status keel_test_host_query(keel_test_host* host, const char* sql, const char** out_json);

/** Every line the plugin logged so far, one "<level> <message>\n" per line. */
KEEL_TEST_HOST_API const char* keel_test_host_logs(keel_test_host* host);

#ifdef __cplusplus
}
#endif

#endif /* KEEL_TESTING_TEST_HOST_H */
