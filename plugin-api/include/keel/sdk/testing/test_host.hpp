#pragma once
// keel::sdk::testing::TestHost: the installed test host (keel/testing/test_host.h) for C++
// tests, with owning results. Link keel::test_host. Works with any test framework:
//
//   keel::sdk::testing::TestHost host;
//   host.load_file(NOTES_PLUGIN_FILE, R"({"greeting": "Hi"})");   // throws with the reason
//   auto r = host.request("PUT", "/api/notes/items/a", R"({"value": "x"})");
//   assert(r.status == 200 && host.published().size() == 1);
//
// Thread-safety: as the C API, one thread drives a TestHost at a time.

#include <keel/testing/test_host.h>

#include <cstddef>
#include <initializer_list>
#include <stdexcept>
#include <string>
#include <vector>

namespace keel::sdk::testing {

/// What the plugin answered; see keel_test_response.
struct TestResponse {
  int status = 0;
  keel_status returned = KEEL_OK;
  std::string content_type{};
  std::string body{};
};

/// An event the plugin published (committed ones only for transactional publishes).
struct TestEvent {
  std::string topic{};
  std::string payload{};
};

class TestHost {
 public:
  TestHost() : host_{keel_test_host_create()} {
    if (host_ == nullptr) throw std::bad_alloc{};
  }
  ~TestHost() { keel_test_host_destroy(host_); }
  TestHost(const TestHost&) = delete;
  TestHost& operator=(const TestHost&) = delete;

  /// Loads a plugin table linked into the test; throws std::runtime_error with the reason.
  void load(const keel_plugin* plugin, const std::string& config_json = "{}") {
    check(keel_test_host_load(host_, plugin, config_json.c_str()));
  }
  /// Loads the built plugin file at `path`; throws std::runtime_error with the reason.
  void load_file(const std::string& path, const std::string& config_json = "{}") {
    check(keel_test_host_load_file(host_, path.c_str(), config_json.c_str()));
  }

  /// Sends a request (the body may hold NULs); throws when no route matches, no plugin is loaded
  /// or no answer comes within 10 s.
  TestResponse request(const std::string& method, const std::string& target, const std::string& body = {},
                       std::initializer_list<std::string> headers = {}) {
    std::vector<const char*> lines;
    for (const auto& h : headers) lines.push_back(h.c_str());
    lines.push_back(nullptr);
    keel_test_response r{};
    check(keel_test_host_request_bytes(host_, method.c_str(), target.c_str(), body.data(), body.size(), lines.data(),
                                       &r));
    return {r.status, r.returned, r.content_type, std::string(r.body, r.body_len)};
  }

  /// Delivers an event; returns what on_event returned (an unsubscribed topic throws).
  keel_status deliver(const std::string& topic, const std::string& payload) {
    const keel_status st = keel_test_host_deliver(host_, topic.c_str(), payload.c_str());
    if (st == KEEL_ERR_NOT_FOUND) check(st);
    return st;
  }

  [[nodiscard]] std::vector<TestEvent> published() const {
    std::vector<TestEvent> out;
    const std::size_t n = keel_test_host_published_count(host_);
    for (std::size_t i = 0; i < n; ++i) {
      std::size_t len = 0;
      const char* payload = keel_test_host_published_payload(host_, i, &len);
      out.push_back({keel_test_host_published_topic(host_, i), std::string(payload, len)});
    }
    return out;
  }

  /// Runs SQL on the plugin's database; returns the rows as a JSON array. Throws on failure.
  std::string query(const std::string& sql) {
    const char* json = nullptr;
    check(keel_test_host_query(host_, sql.c_str(), &json));
    return json;
  }

  /// Every line the plugin logged, "<level> <message>\n" each.
  [[nodiscard]] std::string logs() { return keel_test_host_logs(host_); }
  /// Why the last failing call failed.
  [[nodiscard]] std::string error() const { return keel_test_host_error(host_); }
  [[nodiscard]] keel_test_host* get() const noexcept { return host_; }

 private:
  void check(keel_status st) const {
    if (st != KEEL_OK) throw std::runtime_error(keel_test_host_error(host_));
  }

  keel_test_host* host_;
};

}  // namespace keel::sdk::testing
