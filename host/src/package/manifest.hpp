#pragma once
// A plugin's manifest: the JSON document in its ".keel_manifest" ELF section (schema in
// docs/abi.md), parsed and validated into plain values, and the checking of a plugin's
// [plugin.<name>] config table against the manifest's config schema. Pure; thread-safe.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "package/semver.hpp"

namespace keel::host::package {

/// The request body a route documents ("routes[].request"). Documentation only: the host
/// does not check requests against it.
struct RequestDecl {
  std::string content_type = "application/json";  ///< media type or range, e.g. "text/*"
  std::string schema_json;  ///< compact JSON text of a JSON Schema object; empty when none is declared
  std::string description;
};

/// One documented answer of a route ("routes[].responses.<status>"). Documentation only.
struct ResponseDecl {
  std::string status;  ///< "100".."599" or "default"
  std::string description;
  /// Media type of the body: the declared one, "application/json" when only a schema is declared,
  /// empty when neither is (a response without a body, e.g. 204).
  std::string content_type;
  std::string schema_json;  ///< compact JSON text of a JSON Schema object; empty when none is declared
};

/// One documented query parameter ("routes[].query[]"). Documentation only.
struct QueryParamDecl {
  std::string name;           ///< unreserved URL characters: A-Z a-z 0-9 - . _ ~
  std::string type = "string";  ///< JSON Schema type: "string", "integer", "number" or "boolean"
  std::string description;
  bool required = false;
};

struct RouteDecl {
  std::string method;   ///< upper-case token
  std::string path;     ///< template below the mount, e.g. "/greet/{name}"
  std::string summary;
  bool blocking = false;  ///< handler may block: run on the worker pool
  /// "storage": "read": the handler only reads its own storage. In process on SQLite it runs on
  /// the I/O thread with a reader connection reserved for it (writes are refused); elsewhere, or
  /// when no reader is free, on the worker pool like a blocking route (docs/storage.md).
  bool storage_read = false;
  // For GET /openapi.json only; routing ignores them.
  std::optional<RequestDecl> request;   ///< "request": the body the route expects, if declared
  std::vector<ResponseDecl> responses;  ///< "responses", in manifest order
  std::vector<QueryParamDecl> query;    ///< "query", in manifest order; names are unique
};

struct Dependency {
  std::string name;
  VersionRange range;
};

enum class ConfigType { kString, kInteger, kNumber, kBoolean, kArray, kObject };

struct ConfigKey {
  std::string name;
  ConfigType type = ConfigType::kString;
  bool required = false;
  std::string default_json;  ///< JSON text of the default; empty when none
  std::string description;
  bool secret = false;  ///< "secret": true — the value is redacted wherever the host shows config
  /// "minimum" / "maximum" (integer and number keys): JSON text of the bound; empty when none.
  std::string minimum_json, maximum_json;
  /// "enum": the JSON text of each value the key may take; empty when any value of its type.
  std::vector<std::string> enum_json;
};

/// One schema step of the plugin's database (docs/abi.md §7.2 "migrations"); the host applies
/// the ones not yet recorded in the database, in version order, before `create`.
struct MigrationDecl {
  std::int64_t version = 0;   ///< >= 1, strictly increasing through the array
  std::string description;    ///< optional, may be empty
  std::string sql;            ///< one or more SQL statements, non-empty
};

struct ManifestError {
  std::string field;    ///< JSON path, e.g. "routes[2].method"
  std::string message;  ///< what is wrong and what is expected
  [[nodiscard]] std::string str() const { return field.empty() ? message : field + ": " + message; }
};

struct Manifest {
  std::string name;
  Version version;
  std::uint32_t abi_major = 0;
  std::uint32_t abi_minor = 0;
  std::string description;
  std::vector<Dependency> dependencies;
  std::vector<RouteDecl> routes;
  bool serialized = false;  ///< "concurrency": "serialized"
  std::vector<std::string> publishes;
  std::vector<std::string> subscribes;
  /// "events.durable": topics published through the outbox in the publisher's database; each is
  /// also in `publishes`, and a non-empty list comes with the permission "ext:keel.storage/1".
  std::vector<std::string> durable;
  std::vector<std::string> permissions;  ///< well-formed call:/ext: permissions only
  std::vector<ConfigKey> config;
  std::vector<MigrationDecl> migrations;  ///< in version order; non-empty only with ext:keel.storage/1
  std::string json;  ///< the manifest text as found in the file
  /// Accepted but worth a `warn` line (docs/abi.md §7.2): unknown keys, which a newer ABI minor
  /// may have added, and permissions of an unknown kind, which are not granted.
  std::vector<ManifestError> warnings;
};

/// Largest ".keel_manifest" section the host accepts (docs/abi.md §7.1 step 3).
inline constexpr std::size_t kMaxManifestBytes = std::size_t{1} << 20;

/// The JSON text inside a ".keel_manifest" section (docs/abi.md §7.1 steps 3-4): at most
/// kMaxManifestBytes, exactly one document followed by exactly one NUL. Returns a view into
/// `section` without the NUL. The error's field is empty.
[[nodiscard]] std::variant<std::string_view, ManifestError> manifest_text_from_section(std::string_view section);

/// Parse and validate a manifest. Every problem found is returned, not just the first.
[[nodiscard]] std::variant<Manifest, std::vector<ManifestError>> parse_manifest(std::string_view json);

struct ConfigIssue {
  std::string key;      ///< the config key, e.g. "greeting"
  std::string message;  ///< e.g. "expected a string, got an integer"
};

/// Check `settings_json` (a JSON object from the host config) against `manifest.config`:
/// unknown keys (with did-you-mean), wrong types, missing required keys. On success returns
/// the effective config as JSON text, with defaults filled in for absent keys. Empty (or
/// all-whitespace) settings mean "{}". The result is compact and lists keys in manifest order.
[[nodiscard]] std::variant<std::string, std::vector<ConfigIssue>> apply_config_schema(const Manifest& manifest,
                                                                                      std::string_view settings_json);

/// True if `permission` (e.g. "call:orders", "ext:keel.storage/1") is granted by the manifest,
/// including wildcards ("call:*").
[[nodiscard]] bool has_permission(const Manifest& manifest, std::string_view permission);

/// A plugin name (docs/abi.md §7.2): [a-z][a-z0-9_]*, 1..64 bytes.
[[nodiscard]] bool valid_plugin_name(std::string_view s) noexcept;

}  // namespace keel::host::package
