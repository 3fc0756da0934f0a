// keel/testing/test_host.h: the installed test host (libkeel-test-host.so). The plugin runs in
// keel::sdk::testing::FakeHost, the same recording host the SDK's own tests use; what makes it a
// host is around it: the manifest parsed and checked by package/manifest, the config by the
// manifest's schema, requests routed by http::RouteTable, and a real database from
// storage::TestDatabase in a private temporary directory.
#include <keel/testing/test_host.h>

#include <keel/sdk/json.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <dlfcn.h>
#include <stdlib.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <variant>
#include <vector>

#include "abi/plugin_table.hpp"
#include "abi/status.hpp"
#include "abi/topic.hpp"
#include "http/query.hpp"
#include "http/router.hpp"
#include "observability/log.hpp"
#include "package/plugin_image.hpp"
#include "package/manifest.hpp"
#include "storage/testing.hpp"

namespace {

namespace fs = std::filesystem;
namespace sdk = keel::sdk;
namespace host = keel::host;

// How long a request may take: KEEL_TEST_TIMEOUT_MS, or 10 s.
std::chrono::milliseconds request_timeout() {
  const char* text = std::getenv("KEEL_TEST_TIMEOUT_MS");
  long long ms = 0;
  if (text != nullptr) {
    const std::string_view v{text};
    const auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), ms);
    if (ec != std::errc{} || end != v.data() + v.size() || ms <= 0) ms = 0;
  }
  return std::chrono::milliseconds{ms > 0 ? ms : 10'000};
}

// The host's own lines (storage, migrations) go to standard error at KEEL_TEST_LOG_LEVEL.
void init_logging_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    host::observability::LogOptions options;
    const char* level = std::getenv("KEEL_TEST_LOG_LEVEL");
    options.level = level != nullptr && *level != '\0' ? level : "warn";
    try {
      host::observability::init(options);
    } catch (const std::exception&) {
      host::observability::init({});  // an unknown level: the default rather than no host at all
    }
  });
}

// A private directory for the database: 0700, removed with the host.
fs::path make_private_dir() {
  std::string pattern = (fs::temp_directory_path() / "keel-test-host.XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "cannot create a temporary directory under " +
                                                                fs::temp_directory_path().string());
  }
  return pattern;
}

// Text as a JSON string; bytes that are not UTF-8 become U+FFFD.
void append_json_string(std::string& out, std::string_view text) {
  out += '"';
  sdk::append_json_escaped(out, text);
  out += '"';
}

// A blob as a JSON string of lowercase hex digits.
void append_hex_string(std::string& out, std::string_view bytes) {
  constexpr std::string_view kHex = "0123456789abcdef";
  out += '"';
  for (const char c : bytes) {
    out += kHex[static_cast<unsigned char>(c) >> 4];
    out += kHex[static_cast<unsigned char>(c) & 0xF];
  }
  out += '"';
}

// A real in its shortest round-trip form, whatever the locale; JSON has no infinity or NaN.
void append_real(std::string& out, double value) {
  if (!std::isfinite(value)) {
    out += "null";
    return;
  }
  char text[32];
  const auto [end, ec] = std::to_chars(text, text + sizeof text, value);
  out.append(text, ec == std::errc{} ? end : text);
}

std::string_view level_name(sdk::LogLevel level) noexcept {
  switch (level) {
    case sdk::LogLevel::kTrace: return "trace";
    case sdk::LogLevel::kDebug: return "debug";
    case sdk::LogLevel::kInfo: return "info";
    case sdk::LogLevel::kWarn: return "warn";
    case sdk::LogLevel::kError: return "error";
    default: return "critical";
  }
}

}  // namespace

struct keel_test_host {
  sdk::testing::FakeHost fake;
  std::optional<host::package::Manifest> manifest;
  std::shared_ptr<const host::http::RouteTable> routes;
  fs::path dir;
  std::unique_ptr<host::storage::TestDatabase> db;
  void* library = nullptr;
  std::string mount;

  std::string error;
  std::string content_type, body;  // the last response
  // Grows only, at the back: a deque keeps its elements (and their strings) where they are.
  mutable std::deque<sdk::testing::PublishedEvent> published;
  std::string query_json, logs;

  ~keel_test_host() {
    static_cast<void>(fake.unload());
    forget_database();
    if (library != nullptr) ::dlclose(library);
  }

  keel_status fail(keel_status status, std::string why) {
    error = std::move(why);
    return status;
  }

  // Runs `fn` (a load step); unless it succeeds, `undo` runs, even when `fn` throws.
  template <class Fn, class Undo>
  static keel_status all_or_nothing(Fn&& fn, Undo&& undo) {
    struct Guard {
      Undo& undo;
      bool keep = false;
      ~Guard() {
        if (!keep) undo();
      }
    } guard{undo};
    const keel_status st = fn();
    guard.keep = st == KEEL_OK;
    return st;
  }

  // What the host's loader refuses in a plugin file before create (abi/plugin_table.hpp), with
  // the manifest text from the file's .keel_manifest section. Empty when the file is fine.
  static std::string file_problem(const char* path, const keel_plugin* table) {
    auto section = host::package::read_manifest_section_from_file(path);
    if (const auto* err = std::get_if<host::package::ImageError>(&section)) return std::string{path} + ": " + err->message;
    const auto text = host::package::manifest_text_from_section(std::get<host::package::ManifestSection>(section).bytes);
    if (const auto* err = std::get_if<host::package::ManifestError>(&text))
      return std::string{path} + ": manifest section: " + err->str();
    auto why = host::abi::plugin_table_problem(table, std::get<std::string_view>(text), "the .keel_manifest section",
                                               "the test host");
    return why.empty() ? why : std::string{path} + ": " + why;
  }

  // A failed load leaves nothing behind: no database, no directory, no library.
  void forget_database() noexcept {
    try {
      fake.add_extension(KEEL_STORAGE_EXTENSION_ID, nullptr);  // get_extension answers NULL again
    } catch (...) {  // out of memory: the plugin that failed to load cannot ask for it anyway
    }
    db.reset();
    std::error_code ignored;
    if (!dir.empty()) fs::remove_all(dir, ignored);
    dir.clear();
  }

  keel_status load(const keel_plugin* plugin, const char* config_json) {
    if (manifest) return fail(KEEL_ERR_INVALID_ARGUMENT, "a plugin is already loaded in this test host");
    return all_or_nothing([&] { return load_table(plugin, config_json); }, [this] { forget_database(); });
  }

  keel_status load_table(const keel_plugin* plugin, const char* config_json) {
    if (plugin == nullptr || plugin->manifest == nullptr)
      return fail(KEEL_ERR_INVALID_ARGUMENT, "the plugin table or its manifest is NULL");
    auto parsed = host::package::parse_manifest(plugin->manifest);
    if (auto* errors = std::get_if<std::vector<host::package::ManifestError>>(&parsed)) {
      std::string why = "invalid manifest:";
      for (const auto& e : *errors) why += "\n  " + e.str();
      return fail(KEEL_ERR_INVALID_ARGUMENT, std::move(why));
    }
    auto& m = std::get<host::package::Manifest>(parsed);
    auto config = host::package::apply_config_schema(m, config_json == nullptr ? "{}" : config_json);
    if (auto* issues = std::get_if<std::vector<host::package::ConfigIssue>>(&config)) {
      std::string why = "config of plugin " + m.name + " does not match its manifest:";
      for (const auto& issue : *issues) why += "\n  " + issue.key + ": " + issue.message;
      return fail(KEEL_ERR_INVALID_ARGUMENT, std::move(why));
    }
    mount = "/api/" + m.name;
    std::vector<host::http::RouteSpec> specs;
    for (std::size_t i = 0; i < m.routes.size(); ++i) {
      const auto& r = m.routes[i];
      specs.push_back({r.method, r.path == "/" ? mount : mount + r.path, m.name,
                       {0, static_cast<std::uint32_t>(i)}});
    }
    auto table = host::http::RouteTable::build(std::move(specs));
    if (auto* conflicts = std::get_if<std::vector<host::http::RouteConflict>>(&table))
      return fail(KEEL_ERR_INVALID_ARGUMENT, "routes of the manifest conflict: " + conflicts->front().message);
    routes = std::get<std::shared_ptr<const host::http::RouteTable>>(std::move(table));

    if (host::package::has_permission(m, "ext:" KEEL_STORAGE_EXTENSION_ID)) {
      dir = make_private_dir();
      db = std::make_unique<host::storage::TestDatabase>(fake.ctx(), dir / (m.name + ".db"), plugin->manifest,
                                                         &fake.api());
      fake.add_extension(KEEL_STORAGE_EXTENSION_ID, &db->table());
    }
    fake.declare_publishes(m.publishes);
    const sdk::Status loaded = fake.load(plugin, std::get<std::string>(std::move(config)));
    if (!loaded.ok()) {
      return fail(static_cast<keel_status>(loaded.code()), "plugin " + m.name + " did not load: " + loaded.message());
    }
    manifest = std::move(m);
    error.clear();
    return KEEL_OK;
  }

  keel_status load_file(const char* path, const char* config_json) {
    if (path == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "the plugin path is NULL");
    if (manifest) return fail(KEEL_ERR_INVALID_ARGUMENT, "a plugin is already loaded in this test host");
    library = ::dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) return fail(KEEL_ERR_NOT_FOUND, std::string{"cannot load "} + path + ": " + ::dlerror());
    const auto close_library = [this] {
      ::dlclose(library);
      library = nullptr;
    };
    return all_or_nothing(
        [&] {
          using Entry = const keel_plugin* (*)();
          const auto entry = reinterpret_cast<Entry>(::dlsym(library, "keel_plugin_entry_v1"));
          if (entry == nullptr)
            return fail(KEEL_ERR_NOT_FOUND, std::string{path} + " does not export keel_plugin_entry_v1");
          const keel_plugin* table = entry();
          if (const auto why = file_problem(path, table); !why.empty()) return fail(KEEL_ERR_INVALID_ARGUMENT, why);
          return load(table, config_json);
        },
        close_library);
  }

  keel_status request(const char* method, const char* target, std::string_view request_body,
                      const char* const* headers, keel_test_response& out) {
    out = keel_test_response{0, KEEL_OK, "", "", 0};
    content_type.clear();
    body.clear();
    if (!manifest) return fail(KEEL_ERR_UNAVAILABLE, "no plugin is loaded");
    if (method == nullptr || target == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "method and target are required");
    const std::string_view full{target};
    const auto question = full.find('?');
    const auto path = full.substr(0, question);
    sdk::testing::RequestSpec spec;
    spec.method = method;
    spec.path = std::string{path};
    if (question != std::string_view::npos) {
      host::http::for_each_query_pair(full.substr(question + 1), [&](std::string_view name, std::string_view value) {
        sdk::testing::OwnedField field;
        host::http::append_form_decoded(field.name, name);
        host::http::append_form_decoded(field.value, value);
        spec.query.push_back(std::move(field));
        return true;
      });
    }
    host::http::MatchScratch scratch;
    const auto match = routes->match(spec.method, path, scratch);
    if (match.kind != host::http::MatchResult::Kind::kFound) {
      const bool wrong_method = match.kind == host::http::MatchResult::Kind::kMethodNotAllowed;
      out.status = wrong_method ? 405 : match.kind == host::http::MatchResult::Kind::kBadPath ? 400 : 404;
      return fail(KEEL_ERR_NOT_FOUND, std::string{"no route of "} + manifest->name + " matches " + method + " " +
                                          std::string{path} +
                                          (wrong_method ? " (allowed: " + std::string{match.allow} + ")" : "") +
                                          "; routes live under " + mount);
    }
    spec.route_index = match.target.route;
    for (std::size_t i = 0; i < scratch.param_count; ++i)
      spec.path_params.push_back({std::string{scratch.params[i].name}, std::string{scratch.params[i].value}});
    for (const char* const* h = headers; h != nullptr && *h != nullptr; ++h) {
      const std::string_view line{*h};
      const auto colon = line.find(':');
      if (colon == std::string_view::npos) return fail(KEEL_ERR_INVALID_ARGUMENT, "header without ':': " + std::string{line});
      auto value = line.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      spec.headers.push_back({std::string{line.substr(0, colon)}, std::string{value}});
    }
    spec.body = request_body;
    const auto timeout = request_timeout();
    spec.deadline = std::chrono::steady_clock::now() + timeout;

    // A "storage": "read" route only reads, as in the host: a write in its handler is refused.
    host::storage::ReadOnlyScope reads;
    if (db != nullptr && manifest->routes[spec.route_index].storage_read) reads.begin(db->database(), false);
    auto pending = fake.request(spec);
    reads.end();
    auto response = pending.wait(timeout);
    const bool expired = !response && pending.expire();  // a later respond gets KEEL_ERR_TIMEOUT
    if (!expired) response = pending.response();
    const sdk::Status returned = pending.returned();
    out.returned = expired ? KEEL_ERR_TIMEOUT : static_cast<keel_status>(returned.code());
    const std::string who = "plugin '" + manifest->name + "'";
    if (response) {
      out.status = response->status;
      content_type = response->content_type;
      body = response->body;
    } else if (expired) {  // what the host answers past the deadline
      answer_error(out, 504, {sdk::StatusCode::kTimeout, who + " did not answer within " +
                                                          std::to_string(timeout.count()) + " ms"});
    } else if (!returned.ok()) {  // on_request failed without responding (plugins/dispatch.cpp)
      answer_error(out, static_cast<int>(host::abi::http_status_for(out.returned)),
                   {returned.code(), who + " failed: " + std::string{host::abi::status_name(out.returned)}});
    } else {  // retired without a response and without a failure
      answer_error(out, 500, {sdk::StatusCode::kInternal, who + " returned without responding"});
    }
    out.content_type = content_type.c_str();
    out.body = body.c_str();
    out.body_len = body.size();
    if (expired) return fail(KEEL_ERR_TIMEOUT, std::string{method} + " " + target + ": " + body);
    error.clear();
    return KEEL_OK;
  }

  // The host's error body, {"error":{"code":...,"message":...}}, as the answer.
  void answer_error(keel_test_response& out, int status, const sdk::Status& why) {
    out.status = status;
    content_type = "application/json";
    body = sdk::error_json(why);
  }

  keel_status deliver(const char* topic, const char* payload) {
    if (!manifest) return fail(KEEL_ERR_UNAVAILABLE, "no plugin is loaded");
    if (topic == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "the topic is NULL");
    if (!host::abi::matches_any(manifest->subscribes, topic))
      return fail(KEEL_ERR_NOT_FOUND, "plugin " + manifest->name + " subscribes to no pattern matching " + topic);
    sdk::testing::EventSpec spec;
    spec.topic = topic;
    spec.payload = payload == nullptr ? "" : payload;
    const sdk::Status st = fake.deliver(spec);
    if (!st.ok()) return fail(static_cast<keel_status>(st.code()), "on_event failed: " + st.message());
    error.clear();
    return KEEL_OK;
  }

  // Takes in what the plugin published since the last call; returns how many events there are.
  std::size_t sync_published() const {
    auto now = fake.published();
    for (std::size_t i = published.size(); i < now.size(); ++i) published.push_back(std::move(now[i]));
    return published.size();
  }

  // Event `index`, taking in new ones only when it is past those already taken; null when none.
  const sdk::testing::PublishedEvent* published_at(std::size_t index) const {
    if (index >= published.size()) sync_published();
    return index < published.size() ? &published[index] : nullptr;
  }

  keel_status query(const char* sql, const char** out_json) {
    if (db == nullptr) return fail(KEEL_ERR_UNSUPPORTED, "the plugin has no database (its manifest lacks ext:keel.storage/1)");
    if (sql == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "the SQL text is NULL");
    std::string rows = "[";
    const host::storage::RowSink sink{
        [](void* user, const keel_sql_value* columns, const keel_host_bytes* names, size_t count) -> int32_t {
          auto& json = *static_cast<std::string*>(user);
          if (json.size() > 1) json += ',';
          json += '{';
          for (size_t i = 0; i < count; ++i) {
            if (i != 0) json += ',';
            append_json_string(json, {names[i].ptr, names[i].len});
            json += ':';
            const auto& v = columns[i];
            switch (v.type) {
              case KEEL_SQL_INTEGER: json += std::to_string(v.integer); break;
              case KEEL_SQL_REAL: append_real(json, v.real); break;
              case KEEL_SQL_TEXT: append_json_string(json, {v.bytes.ptr, v.bytes.len}); break;
              case KEEL_SQL_BLOB: append_hex_string(json, {v.bytes.ptr, v.bytes.len}); break;
              default: json += "null"; break;
            }
          }
          json += '}';
          return 0;
        },
        &rows};
    const keel_status st = db->database().exec_host(KEEL_TXN_NONE, sql, {}, sink, nullptr);
    if (st != KEEL_OK) return fail(st, "query failed (" + std::string{host::abi::status_name(st)} + "): " + sql);
    rows += ']';
    query_json = std::move(rows);
    if (out_json != nullptr) *out_json = query_json.c_str();
    error.clear();
    return KEEL_OK;
  }

  const char* log_text() {
    logs.clear();
    for (const auto& record : fake.logs()) {
      logs += level_name(record.level);
      logs += ' ';
      logs += record.message;
      logs += '\n';
    }
    return logs.c_str();
  }
};

// Exceptions never leave this file: each entry point turns them into a status and a reason.
#define KEEL_TEST_HOST_GUARD(host, body)                                              \
  try {                                                                               \
    body                                                                              \
  } catch (const std::bad_alloc&) {                                                   \
    return (host).fail(KEEL_ERR_INTERNAL, "out of memory");                          \
  } catch (const std::exception& e) {                                                 \
    return (host).fail(KEEL_ERR_INTERNAL, e.what());                                  \
  }

extern "C" {

keel_test_host* keel_test_host_create(void) {
  try {
    init_logging_once();
    return new keel_test_host;
  } catch (...) {
    return nullptr;
  }
}

void keel_test_host_destroy(keel_test_host* host) { delete host; }

keel_status keel_test_host_load(keel_test_host* host, const keel_plugin* plugin, const char* config_json) {
  if (host == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  KEEL_TEST_HOST_GUARD(*host, return host->load(plugin, config_json);)
}

keel_status keel_test_host_load_file(keel_test_host* host, const char* path, const char* config_json) {
  if (host == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  KEEL_TEST_HOST_GUARD(*host, return host->load_file(path, config_json);)
}

const char* keel_test_host_error(const keel_test_host* host) { return host == nullptr ? "" : host->error.c_str(); }

keel_status keel_test_host_request(keel_test_host* host, const char* method, const char* target, const char* body,
                                   const char* const* headers, keel_test_response* out) {
  return keel_test_host_request_bytes(host, method, target, body, body == nullptr ? 0 : std::strlen(body), headers,
                                      out);
}

keel_status keel_test_host_request_bytes(keel_test_host* host, const char* method, const char* target,
                                         const char* body, size_t body_len, const char* const* headers,
                                         keel_test_response* out) {
  if (host == nullptr || out == nullptr || (body == nullptr && body_len != 0)) return KEEL_ERR_INVALID_ARGUMENT;
  KEEL_TEST_HOST_GUARD(*host, return host->request(method, target, {body, body_len}, headers, *out);)
}

keel_status keel_test_host_deliver(keel_test_host* host, const char* topic, const char* payload) {
  if (host == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  KEEL_TEST_HOST_GUARD(*host, return host->deliver(topic, payload);)
}

size_t keel_test_host_published_count(const keel_test_host* host) {
  if (host == nullptr) return 0;
  try {
    return host->sync_published();
  } catch (...) {
    return host->published.size();
  }
}

const char* keel_test_host_published_topic(const keel_test_host* host, size_t index) {
  if (host == nullptr) return nullptr;
  try {
    const auto* event = host->published_at(index);
    return event == nullptr ? nullptr : event->topic.c_str();
  } catch (...) {
    return nullptr;
  }
}

const char* keel_test_host_published_payload(const keel_test_host* host, size_t index, size_t* out_len) {
  if (host == nullptr) return nullptr;
  try {
    const auto* event = host->published_at(index);
    if (event == nullptr) return nullptr;
    if (out_len != nullptr) *out_len = event->payload.size();
    return event->payload.c_str();
  } catch (...) {
    return nullptr;
  }
}

keel_status keel_test_host_query(keel_test_host* host, const char* sql, const char** out_json) {
  if (host == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  KEEL_TEST_HOST_GUARD(*host, return host->query(sql, out_json);)
}

const char* keel_test_host_logs(keel_test_host* host) {
  if (host == nullptr) return "";
  try {
    return host->log_text();
  } catch (...) {
    return "";
  }
}

}  // extern "C"
