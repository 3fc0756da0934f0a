// The C++ SDK exercised end to end through its C table: test plugins built with the same
// trampolines KEEL_PLUGIN uses, driven by keel::sdk::testing::FakeHost (no sockets, no dlopen).
// KEEL_PLUGIN itself is not expanded here because keel_plugin_entry_v1 may exist only once
// per binary; the test uses KEEL_PLUGIN_MANIFEST_NAMED + detail::plugin_table, which is what
// KEEL_PLUGIN expands to.

#include <keel/sdk/json.hpp>
#include <keel/sdk/plugin.hpp>
#include <keel/sdk/testing/fake_host.hpp>

#include <catch2/catch.hpp>

#include <elf.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http/message.hpp"

namespace sdk = keel::sdk;
using sdk::testing::CallReply;
using sdk::testing::FakeHost;
using sdk::testing::HostMember;
using sdk::testing::RecordedCall;
using sdk::testing::RequestSpec;
using namespace std::chrono_literals;

// Global scope, as KEEL_PLUGIN places it: lands in the .keel_manifest section of this binary.
KEEL_PLUGIN_MANIFEST_NAMED(greeter_manifest, R"json({
  "name": "greeter", "version": "1.2.0", "abi": "1.0", "description": "sdk test plugin",
  "routes": [
    {"method": "GET", "path": "/greet/{name}"},
    {"method": "POST", "path": "/later", "blocking": true},
    {"method": "GET", "path": "/twice"},
    {"method": "GET", "path": "/throw"},
    {"method": "GET", "path": "/reject"},
    {"method": "GET", "path": "/stock/{item}"},
    {"method": "GET", "path": "/extension"},
    {"method": "POST", "path": "/publish"},
    {"method": "GET", "path": "/inspect/{rest...}"},
    {"method": "GET", "path": "/moved"}
  ],
  "events": {"publishes": ["greeter.seen"], "subscribes": ["orders.*"]},
  "permissions": ["call:inventory", "ext:keel.storage/1"],
  "config": {"greeting": {"type": "string", "default": "hello"}}
})json");

namespace {

// Route indices, in manifest order.
enum Route : std::uint32_t { kGreet, kLater, kTwice, kThrow, kReject, kStock, kExtension, kPublish, kInspect, kMoved };

// Lets a test hold the plugin's worker thread until it has checked the request is pending.
class Gate {
 public:
  void reset() {
    std::lock_guard lock{mutex_};
    open_ = false;
  }
  void open() {
    {
      std::lock_guard lock{mutex_};
      open_ = true;
    }
    cv_.notify_all();
  }
  bool wait(std::chrono::milliseconds timeout) {
    std::unique_lock lock{mutex_};
    return cv_.wait_for(lock, timeout, [this] { return open_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = true;
};

Gate& async_gate() {
  static Gate gate;
  return gate;
}

class GreeterPlugin final : public sdk::Plugin {
 public:
  explicit GreeterPlugin(sdk::Host& host) : host_{host} {
    if (host.config_json().find("\"greeting\": \"hi\"") != std::string_view::npos) greeting_ = "hi";
  }
  ~GreeterPlugin() override { join_workers(); }

  sdk::Status start() override {
    host_.info("greeter started");
    return {};
  }
  sdk::Status stop() override {
    join_workers();
    return {};
  }

  sdk::Status on_request(const sdk::Request& req, sdk::Responder res) override {
    switch (req.route_index()) {
      case kGreet: {
        const std::string_view lang = req.query("lang").value_or("en");
        std::string body = lang == "fr" ? std::string{"bonjour"} : greeting_;
        body.append(" ").append(req.path_param("name").value_or("world"));
        return res.respond(200, body, sdk::kTextPlain,
                           {{"x-agent", req.header("USER-AGENT").value_or("none")}, {"x-request-id", req.request_id()}});
      }
      case kLater: {
        std::lock_guard lock{workers_mutex_};
        workers_.emplace_back([this, responder = std::move(res), body = std::string{req.body()}] {
          async_gate().wait(2s);
          const sdk::Status s = responder.respond(202, body, "application/octet-stream");
          if (!s.ok()) host_.warn("late respond refused status=" + s.to_string());
        });
        return {};
      }
      case kTwice: {
        sdk::Status first = res.json(200, R"({"n":1})");
        const sdk::Status second = res.json(200, R"({"n":2})");
        host_.warn("second completion status=" + std::string{sdk::status_name(second.code())});
        return first;
      }
      case kThrow:
        throw std::runtime_error("boom in handler");
      case kReject:
        return sdk::Status::invalid_argument("name too long");
      case kStock: {
        const std::string path = "/stock/" + std::string{req.path_param("item").value_or("")};
        const sdk::Header headers[] = {{"accept", "application/json"}};
        return host_.call(
            sdk::CallRequest{.target = "inventory", .method = "GET", .path = path, .headers = headers,
                             .timeout = 250ms, .trace = req.trace()},
            [responder = std::move(res)](sdk::Status s, const sdk::CallResponse& answer) {
              if (!s.ok()) {
                static_cast<void>(responder.respond(502, s.to_string()));
                return;
              }
              static_cast<void>(responder.respond(answer.status(), answer.body(), answer.content_type(),
                                                  {{"x-stock-source", answer.header("X-Source").value_or("?")}}));
            });
      }
      case kExtension: {
        const void* table = nullptr;
        const sdk::Status s = host_.get_extension("keel.storage/1", table);
        if (!s.ok()) return s;
        return res.respond(200, table == nullptr ? "null" : "found");
      }
      case kPublish: {
        const sdk::Status s = host_.publish("greeter.seen", req.body(), sdk::kApplicationJson, req.trace());
        if (!s.ok()) return s;
        return res.respond(204);
      }
      case kInspect: {
        std::string out;
        out.append("method=").append(req.method());
        out.append(" path=").append(req.path());
        out.append(" remote=").append(req.remote_address());
        out.append(" caller=").append(req.caller_plugin());
        out.append(" deadline=").append(req.deadline() ? "yes" : "no");
        out.append(" traceparent=").append(req.trace().traceparent);
        out.append(" tracestate=").append(req.trace().tracestate);
        for (sdk::Field f : req.path_params()) out.append(" param:").append(f.name).append("=").append(f.value);
        for (sdk::Field f : req.query_params()) out.append(" query:").append(f.name).append("=").append(f.value);
        out.append(" headers=").append(std::to_string(req.headers().size()));
        return res.respond(200, out);
      }
      case kMoved: {
        sdk::Responder kept = std::move(res);
        const sdk::Status from_empty = res.respond(200, "never sent");  // NOLINT(bugprone-use-after-move)
        return kept.respond(200, from_empty.to_string());
      }
      default:
        return sdk::Status::not_found("no such route");
    }
  }

  sdk::Status on_event(const sdk::Event& event) override {
    if (event.topic() == "orders.explode") throw std::logic_error("event exploded");
    host_.debug("event topic=" + std::string{event.topic()} + " id=" + std::string{event.event_id()} +
                " publisher=" + std::string{event.publisher()} + " attempt=" + std::to_string(event.delivery_attempt()) +
                " type=" + std::string{event.content_type()});
    return host_.publish("greeter.seen", event.payload(), event.content_type(), event.trace());
  }

  sdk::Health health() override { return sdk::Health::warn("cache cold"); }

 private:
  void join_workers() {
    std::vector<std::thread> workers;
    {
      std::lock_guard lock{workers_mutex_};
      workers.swap(workers_);
    }
    for (std::thread& t : workers) t.join();
  }

  sdk::Host& host_;
  std::string greeting_ = "hello";
  std::mutex workers_mutex_;
  std::vector<std::thread> workers_;
};

// Fails on purpose in the hook named by its config ({"fail": "<hook>"}).
class FaultyPlugin final : public sdk::Plugin {
 public:
  explicit FaultyPlugin(sdk::Host& host) : mode_{host.config_json()} {
    if (fails("create")) throw std::runtime_error("create exploded");
    if (fails("config")) throw sdk::Error{sdk::Status::invalid_argument("config: greeting must be a string")};
  }
  sdk::Status start() override {
    if (fails("start")) throw std::runtime_error("start exploded");
    return {};
  }
  sdk::Status stop() override {
    if (fails("stop")) return sdk::Status::unavailable("database already closed");
    return {};
  }
  sdk::Status on_request(const sdk::Request&, sdk::Responder) override { throw 42; }
  sdk::Health health() override {
    if (fails("health")) throw std::runtime_error("health exploded");
    return sdk::Health::pass("fine");
  }

 private:
  [[nodiscard]] bool fails(std::string_view hook) const { return mode_.find("\"" + std::string{hook} + "\"") != std::string::npos; }
  std::string mode_;
};

// Overrides nothing: the defaults must be safe.
class MinimalPlugin final : public sdk::Plugin {};

keel_plugin greeter_table() { return sdk::detail::plugin_table<GreeterPlugin>(greeter_manifest); }

std::string with_manifest_section(const std::string& path) {
  std::ifstream file{path, std::ios::binary};
  Elf64_Ehdr header{};
  file.read(reinterpret_cast<char*>(&header), sizeof header);
  if (!file || std::memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_ident[EI_CLASS] != ELFCLASS64) return {};
  std::vector<Elf64_Shdr> sections(header.e_shnum);
  file.seekg(static_cast<std::streamoff>(header.e_shoff));
  file.read(reinterpret_cast<char*>(sections.data()), static_cast<std::streamsize>(sections.size() * sizeof(Elf64_Shdr)));
  if (!file || header.e_shstrndx >= sections.size()) return {};
  const Elf64_Shdr& names = sections[header.e_shstrndx];
  std::string name_table(names.sh_size, '\0');
  file.seekg(static_cast<std::streamoff>(names.sh_offset));
  file.read(name_table.data(), static_cast<std::streamsize>(name_table.size()));
  for (const Elf64_Shdr& s : sections) {
    if (s.sh_name >= name_table.size() || std::string_view{name_table.c_str() + s.sh_name} != KEEL_MANIFEST_SECTION) continue;
    std::string bytes(s.sh_size, '\0');
    file.seekg(static_cast<std::streamoff>(s.sh_offset));
    file.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    return file ? bytes : std::string{};
  }
  return {};
}

}  // namespace

TEST_CASE("plugin table built for KEEL_PLUGIN fills every hook and points at the manifest", "[plugin_api][sdk]") {
  constexpr keel_plugin table = sdk::detail::plugin_table<GreeterPlugin>(greeter_manifest);
  STATIC_REQUIRE(table.struct_size == sizeof(keel_plugin));
  STATIC_REQUIRE(table.abi_version == KEEL_ABI_VERSION);
  CHECK(table.manifest == greeter_manifest);
  CHECK(table.create != nullptr);
  CHECK(table.destroy != nullptr);
  CHECK(table.start != nullptr);
  CHECK(table.stop != nullptr);
  CHECK(table.on_request != nullptr);
  CHECK(table.on_event != nullptr);
  CHECK(table.health != nullptr);
  STATIC_REQUIRE(sdk::detail::is_json_object_text("  {\"name\": \"x\"}\n"));
  STATIC_REQUIRE_FALSE(sdk::detail::is_json_object_text("[]"));
  STATIC_REQUIRE_FALSE(sdk::detail::is_json_object_text(""));
}

TEST_CASE("a plugin table from a newer minor loads and its extra members are ignored", "[plugin_api][sdk]") {
  // What a 1.1 plugin looks like to a 1.0 host: the 1.0 table followed by members it does not know.
  struct NewerTable {
    keel_plugin v1_0;
    void (*added_in_1_1)(void*);
    std::uint64_t also_added;
  };
  NewerTable newer{greeter_table(), nullptr, 0};
  newer.v1_0.struct_size = sizeof(NewerTable);
  newer.v1_0.abi_version = (1u << 16) | 1u;

  FakeHost host;
  REQUIRE(host.load(&newer.v1_0).ok());
  const auto response = host.request({.route_index = kGreet}).response();
  REQUIRE(response);
  CHECK(response->body == "hello world");
}

TEST_CASE("a different abi major is refused on both sides", "[plugin_api][sdk]") {
  SECTION("the host refuses a 2.0 plugin table") {
    keel_plugin table = greeter_table();
    table.abi_version = 2u << 16;
    FakeHost host;
    CHECK(host.load(&table).code() == sdk::StatusCode::kUnsupported);
    CHECK_FALSE(host.loaded());
  }
  SECTION("the SDK's create refuses a 2.0 host table and says why") {
    FakeHost recorder;  // only used for its log function and context
    keel_host_api api = recorder.api();
    api.abi_version = 2u << 16;
    const keel_plugin table = greeter_table();
    void* self = nullptr;
    CHECK(table.create(&api, recorder.ctx(), keel_host_bytes{"{}", 2}, &self) == KEEL_ERR_UNSUPPORTED);
    CHECK(self == nullptr);
    CHECK(recorder.count_logs(sdk::LogLevel::kError, "create refused: host abi major differs") == 1);
  }
}

TEST_CASE("manifest is readable from the .keel_manifest ELF section without running plugin code", "[plugin_api][sdk]") {
  const std::string section = with_manifest_section("/proc/self/exe");
  REQUIRE_FALSE(section.empty());
  // The section holds the NUL-terminated JSON text byte for byte (other test files may add theirs).
  const std::string_view expected{greeter_manifest, sizeof(greeter_manifest)};
  CHECK(section.find(expected) != std::string::npos);
  CHECK(expected.back() == '\0');
  CHECK(std::string_view{greeter_manifest}.find("\"name\": \"greeter\"") != std::string_view::npos);
}

TEST_CASE("sdk answers a request synchronously with path params, query and case-insensitive headers", "[plugin_api][sdk]") {
  FakeHost host;
  const keel_plugin table = greeter_table();
  REQUIRE(host.load(&table, R"({"greeting": "hi"})").ok());
  CHECK(host.count_logs(sdk::LogLevel::kInfo, "greeter started") == 1);

  SECTION("defaults and config") {
    auto pending = host.request({.route_index = kGreet, .path = "/api/greeter/greet/bob", .path_params = {{"name", "bob"}},
                                 .headers = {{"User-Agent", "catch2"}}});
    CHECK(pending.returned().ok());
    const auto response = pending.response();  // already complete: no wait needed
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->body == "hi bob");
    CHECK(response->content_type == "text/plain; charset=utf-8");
    CHECK(response->header("x-agent") == "catch2");
    CHECK(response->header("X-Request-Id") == "req-" + std::to_string(pending.responder_id()));
  }
  SECTION("query parameter") {
    auto pending = host.request({.route_index = kGreet, .path_params = {{"name", "zoé"}}, .query = {{"lang", "fr"}}});
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->body == "bonjour zoé");
    CHECK(response->header("x-agent") == "none");
  }
  SECTION("every request field reaches the plugin") {
    auto pending = host.request({.route_index = kInspect,
                                 .method = "GET",
                                 .path = "/api/greeter/inspect/a/b%20c",
                                 .path_params = {{"rest", "a/b c"}},
                                 .query = {{"x", "1"}, {"x", "2"}},
                                 .headers = {{"a", "1"}, {"b", "2"}, {"c", "3"}},
                                 .remote_address = "[::1]:4242",
                                 .caller_plugin = "orders",
                                 .deadline = std::chrono::steady_clock::now() + 1s,
                                 .traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                                 .tracestate = "congo=t61rcWkgMzE"});
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->body ==
          "method=GET path=/api/greeter/inspect/a/b%20c remote=[::1]:4242 caller=orders deadline=yes "
          "traceparent=00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 tracestate=congo=t61rcWkgMzE "
          "param:rest=a/b c query:x=1 query:x=2 headers=3");
  }
}

TEST_CASE("a responder completes later from another thread", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());
  async_gate().reset();

  auto pending = host.request({.route_index = kLater, .method = "POST", .path = "/api/greeter/later", .body = "payload"});
  CHECK(pending.returned().ok());
  CHECK_FALSE(pending.completed());  // the worker is held at the gate

  SECTION("the answer arrives through wait") {
    async_gate().open();
    const auto response = pending.wait(2s);
    REQUIRE(response);
    CHECK(response->status == 202);
    CHECK(response->body == "payload");
    CHECK(response->content_type == "application/octet-stream");
  }
  SECTION("a late answer after the host's timeout is refused with timeout") {
    REQUIRE(pending.expire());
    async_gate().open();
    REQUIRE(host.unload().ok());  // joins the worker
    CHECK_FALSE(pending.wait(10ms));
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "late respond refused status=timeout") == 1);
    CHECK(host.diagnostics().size() == 1);
  }
  SECTION("wait gives up after its timeout while the request is pending") {
    CHECK_FALSE(pending.wait(20ms));
    async_gate().open();
  }
}

TEST_CASE("a second completion is refused and logged", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());

  auto pending = host.request({.route_index = kTwice});
  CHECK(pending.returned().ok());
  const auto response = pending.response();
  REQUIRE(response);
  CHECK(response->body == R"({"n":1})");
  CHECK(response->content_type == "application/json");
  CHECK(pending.respond_calls() == 2);
  CHECK(host.count_logs(sdk::LogLevel::kWarn, "second completion status=already_completed") == 1);
  const auto diagnostics = host.diagnostics();
  REQUIRE(diagnostics.size() == 1);
  CHECK(diagnostics[0] == "responder completed twice responder=" + std::to_string(pending.responder_id()));
}

TEST_CASE("a handler error without a response retires the responder", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());

  auto pending = host.request({.route_index = kReject, .request_id = "r-77"});
  CHECK(pending.returned().code() == sdk::StatusCode::kInvalidArgument);
  CHECK_FALSE(pending.wait(10ms));
  // A 4xx: the message reaches the log at info (a 5xx at warn: see the unsupported members below).
  CHECK(host.count_logs(sdk::LogLevel::kInfo, "hook failed hook=on_request req=r-77 status=invalid_argument message=name too long") ==
        1);

  keel_response late{};
  late.struct_size = sizeof(keel_response);
  late.status = 200;
  CHECK(host.api().respond(host.ctx(), pending.responder_id(), &late) == KEEL_ERR_ALREADY_COMPLETED);
  CHECK(host.api().respond(host.ctx(), 9999, &late) == KEEL_ERR_NOT_FOUND);
}

TEST_CASE("a moved-from responder refuses to respond", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());
  const auto response = host.request({.route_index = kMoved}).response();
  REQUIRE(response);
  CHECK(response->body.rfind("invalid_argument: respond on an empty responder", 0) == 0);
  CHECK(host.diagnostics().empty());
}

TEST_CASE("a failing status is logged at warn when it answers 5xx and at info for 4xx", "[plugin_api][sdk]") {
  for (const auto code : {sdk::StatusCode::kInternal, sdk::StatusCode::kUnsupported, sdk::StatusCode::kBusy,
                          sdk::StatusCode::kTimeout, sdk::StatusCode::kUnavailable, sdk::StatusCode::kAlreadyCompleted,
                          sdk::StatusCode::kStorageFull, static_cast<sdk::StatusCode>(-99)}) {
    INFO(sdk::status_name(code));
    CHECK(sdk::http_status(code) >= 500);
    CHECK(sdk::detail::failure_level(sdk::Status{code, "x"}) == KEEL_LOG_WARN);
  }
  for (const auto code : {sdk::StatusCode::kInvalidArgument, sdk::StatusCode::kNotFound, sdk::StatusCode::kPermissionDenied,
                          sdk::StatusCode::kTooLarge, sdk::StatusCode::kConflict}) {
    INFO(sdk::status_name(code));
    CHECK(sdk::http_status(code) / 100 == 4);
    CHECK(sdk::detail::failure_level(sdk::Status{code, "x"}) == KEEL_LOG_INFO);
  }
  CHECK(sdk::http_status(sdk::StatusCode::kOk) == 200);
  CHECK(sdk::http_status(sdk::StatusCode::kStorageFull) == 507);
}

TEST_CASE("error_code and error_json give the host's own error body", "[plugin_api][sdk]") {
  for (std::int32_t c = 0; c >= -13; --c) {
    const auto code = static_cast<sdk::StatusCode>(c);
    INFO(sdk::status_name(code));
    // The SDK's name for each failure's body code is the host's name for its HTTP status.
    if (c < 0) CHECK(sdk::error_code(code) == keel::host::http::error_code_for(sdk::http_status(code)));
  }
  const sdk::Status refused = sdk::Status::invalid_argument("body.name: expected a \"string\"");
  CHECK(sdk::error_json(refused) ==
        R"({"error":{"code":"bad_request","message":"body.name: expected a \"string\""}})");
  CHECK(sdk::error_json(sdk::Status{sdk::StatusCode::kStorageFull, "full"}) ==
        R"({"error":{"code":"insufficient_storage","message":"full"}})");
}

TEST_CASE("an exception in a hook becomes KEEL_ERR_INTERNAL and one log line", "[plugin_api][sdk]") {
  FakeHost host;

  SECTION("on_request, std::exception") {
    REQUIRE(host.load<GreeterPlugin>().ok());
    auto pending = host.request({.route_index = kThrow, .request_id = "r-1"});
    CHECK(pending.returned().code() == sdk::StatusCode::kInternal);
    CHECK_FALSE(pending.completed());
    CHECK(host.count_logs(sdk::LogLevel::kError, "uncaught exception hook=on_request req=r-1 what=boom in handler") == 1);
    CHECK(host.logs().size() == 2);  // "greeter started" + the one error line
  }
  SECTION("on_request, non-std exception") {
    REQUIRE(host.load<FaultyPlugin>().ok());
    CHECK(host.request({.request_id = "r-2"}).returned().code() == sdk::StatusCode::kInternal);
    CHECK(host.count_logs(sdk::LogLevel::kError, "uncaught exception hook=on_request req=r-2 what=unknown") == 1);
  }
  SECTION("on_event") {
    REQUIRE(host.load<GreeterPlugin>().ok());
    CHECK(host.deliver({.topic = "orders.explode"}).code() == sdk::StatusCode::kInternal);
    CHECK(host.count_logs(sdk::LogLevel::kError, "uncaught exception hook=on_event what=event exploded") == 1);
  }
  SECTION("constructor (create)") {
    CHECK(host.load<FaultyPlugin>(R"({"fail": "create"})").code() == sdk::StatusCode::kInternal);
    CHECK_FALSE(host.loaded());
    CHECK(host.count_logs(sdk::LogLevel::kError, "uncaught exception hook=create what=create exploded") == 1);
  }
  SECTION("start: load fails and the plugin is destroyed") {
    CHECK(host.load<FaultyPlugin>(R"({"fail": "start"})").code() == sdk::StatusCode::kInternal);
    CHECK_FALSE(host.loaded());
    CHECK(host.self() == nullptr);
    CHECK(host.count_logs(sdk::LogLevel::kError, "uncaught exception hook=start what=start exploded") == 1);
  }
  SECTION("health reports fail") {
    REQUIRE(host.load<FaultyPlugin>(R"({"fail": "health"})").ok());
    const auto report = host.health();
    CHECK(report.state == sdk::HealthState::kFail);
    CHECK(report.detail.empty());
    CHECK(host.count_logs(sdk::LogLevel::kError, "uncaught exception hook=health what=health exploded") == 1);
  }
}

TEST_CASE("keel::sdk::Error and returned statuses keep their code and log their message", "[plugin_api][sdk]") {
  FakeHost host;

  SECTION("Error thrown by the constructor refuses the load with its code") {
    CHECK(host.load<FaultyPlugin>(R"({"fail": "config"})").code() == sdk::StatusCode::kInvalidArgument);
    CHECK(host.count_logs(sdk::LogLevel::kWarn,
                          "hook failed hook=create status=invalid_argument message=config: greeting must be a string") == 1);
  }
  SECTION("a failing stop is reported and destruction still happens") {
    REQUIRE(host.load<FaultyPlugin>(R"({"fail": "stop"})").ok());
    CHECK(host.unload().code() == sdk::StatusCode::kUnavailable);
    CHECK(host.self() == nullptr);
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "hook failed hook=stop status=unavailable message=database already closed") == 1);
  }
  SECTION("an Error built from a success status still reports a failure") {
    const sdk::Error error{sdk::Status::success()};
    CHECK(error.status().code() == sdk::StatusCode::kInternal);
  }
}

TEST_CASE("host members missing from a shorter host table report unsupported", "[plugin_api][sdk]") {
  FakeHost host;

  SECTION("a table without publish, call and get_extension") {
    host.hide_members_from(HostMember::kPublish);
    REQUIRE(host.load<GreeterPlugin>().ok());
    CHECK(host.request({.route_index = kPublish, .body = "{}"}).returned().code() == sdk::StatusCode::kUnsupported);
    CHECK(host.request({.route_index = kStock, .path_params = {{"item", "1"}}}).returned().code() ==
          sdk::StatusCode::kUnsupported);
    CHECK(host.request({.route_index = kExtension}).returned().code() == sdk::StatusCode::kUnsupported);
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "message=host lacks publish") == 1);  // 501: warn
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "message=host lacks call") == 1);  // 501: warn
    CHECK(host.count_logs(sdk::LogLevel::kWarn, "message=host lacks get_extension") == 1);  // 501: warn
    CHECK(host.published().empty());
    CHECK(host.calls().empty());
    // Members still inside struct_size keep working.
    CHECK(host.request({.route_index = kGreet}).response().has_value());
  }
  SECTION("a table with only the version prefix: nothing is called, nothing crashes") {
    host.hide_members_from(HostMember::kLog);
    REQUIRE(host.load<GreeterPlugin>().ok());
    auto pending = host.request({.route_index = kGreet});
    CHECK(pending.returned().code() == sdk::StatusCode::kUnsupported);
    CHECK(pending.respond_calls() == 0);
    CHECK(host.logs().empty());
  }
}

TEST_CASE("a plugin-to-plugin call completes later through the host with a move-only handler", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());
  const std::string traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

  SECTION("answered") {
    host.on_call([](const RecordedCall&) {
      CallReply reply;
      reply.status = 200;
      reply.body = R"({"stock":3})";
      reply.headers = {{"X-Source", "warehouse"}};
      return reply;
    });
    auto pending = host.request({.route_index = kStock, .path_params = {{"item", "42"}}, .traceparent = traceparent});
    CHECK(pending.returned().ok());
    CHECK_FALSE(pending.completed());  // completions never run inside call()
    const auto calls = host.calls();
    REQUIRE(calls.size() == 1);
    CHECK(calls[0].target == "inventory");
    CHECK(calls[0].method == "GET");
    CHECK(calls[0].path == "/stock/42");
    CHECK(calls[0].timeout == 250ms);
    CHECK(calls[0].traceparent == traceparent);
    REQUIRE(calls[0].headers.size() == 1);
    CHECK(calls[0].headers[0].name == "accept");

    std::thread host_thread{[&host] { CHECK(host.deliver_calls() == 1); }};
    host_thread.join();
    const auto response = pending.wait(2s);
    REQUIRE(response);
    CHECK(response->status == 200);
    CHECK(response->body == R"({"stock":3})");
    CHECK(response->content_type == "application/json");
    CHECK(response->header("x-stock-source") == "warehouse");
  }
  SECTION("timed out") {
    host.on_call([](const RecordedCall&) { return CallReply{.result = sdk::StatusCode::kTimeout}; });
    auto pending = host.request({.route_index = kStock, .path_params = {{"item", "1"}}});
    CHECK(host.deliver_calls() == 1);
    const auto response = pending.wait(2s);
    REQUIRE(response);
    CHECK(response->status == 502);
    CHECK(response->body == "timeout: call failed before the target answered");
  }
  SECTION("refused synchronously: the handler never runs and the status is returned") {
    host.on_call([](const RecordedCall&) { return CallReply{.refuse = sdk::StatusCode::kPermissionDenied}; });
    auto pending = host.request({.route_index = kStock, .path_params = {{"item", "1"}}});
    CHECK(pending.returned().code() == sdk::StatusCode::kPermissionDenied);
    CHECK(host.pending_calls() == 0);
    CHECK(host.count_logs(sdk::LogLevel::kInfo, "message=call refused target=inventory") == 1);  // 403: info
  }
  SECTION("unknown target") {
    CHECK(host.request({.route_index = kStock}).returned().code() == sdk::StatusCode::kNotFound);
  }
  SECTION("unload delivers pending completions as unavailable before destroy") {
    host.on_call([](const RecordedCall&) { return CallReply{}; });
    auto pending = host.request({.route_index = kStock, .path_params = {{"item", "1"}}});
    REQUIRE(host.pending_calls() == 1);
    REQUIRE(host.unload().ok());
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->status == 502);
    CHECK(response->body.rfind("unavailable", 0) == 0);
  }
}

TEST_CASE("events reach on_event with their metadata and publish is recorded", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());

  SECTION("delivered and republished with the trace context") {
    CHECK(host.deliver({.topic = "orders.placed",
                        .payload = R"({"id":7})",
                        .event_id = "evt-abc",
                        .publisher = "orders",
                        .delivery_attempt = 2,
                        .traceparent = "00-trace-span-01"})
              .ok());
    CHECK(host.count_logs(sdk::LogLevel::kDebug,
                          "event topic=orders.placed id=evt-abc publisher=orders attempt=2 type=application/json") == 1);
    const auto published = host.published();
    REQUIRE(published.size() == 1);
    CHECK(published[0].topic == "greeter.seen");
    CHECK(published[0].payload == R"({"id":7})");
    CHECK(published[0].content_type == "application/json");
    CHECK(published[0].traceparent == "00-trace-span-01");
  }
  SECTION("a refused publish surfaces as the hook's status") {
    host.set_publish_result(sdk::StatusCode::kPermissionDenied);
    CHECK(host.deliver({.topic = "orders.placed"}).code() == sdk::StatusCode::kPermissionDenied);
    CHECK(host.count_logs(sdk::LogLevel::kInfo, "message=publish refused topic=greeter.seen") == 1);  // 403: info
    CHECK(host.published().empty());
  }
  SECTION("publish from a request handler") {
    auto pending = host.request({.route_index = kPublish, .body = R"({"hello":1})", .traceparent = "00-t-s-01"});
    const auto response = pending.response();
    REQUIRE(response);
    CHECK(response->status == 204);
    REQUIRE(host.published().size() == 1);
    CHECK(host.published()[0].traceparent == "00-t-s-01");
  }
}

TEST_CASE("extensions are looked up by id", "[plugin_api][sdk]") {
  FakeHost host;
  static const int fake_storage_table = 1;
  host.add_extension("keel.storage/1", &fake_storage_table);
  REQUIRE(host.load<GreeterPlugin>().ok());
  const auto response = host.request({.route_index = kExtension}).response();
  REQUIRE(response);
  CHECK(response->body == "found");

  FakeHost bare;
  REQUIRE(bare.load<GreeterPlugin>().ok());
  CHECK(bare.request({.route_index = kExtension}).returned().code() == sdk::StatusCode::kNotFound);
}

TEST_CASE("health reports state and detail", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<GreeterPlugin>().ok());
  const auto report = host.health();
  CHECK(report.state == sdk::HealthState::kWarn);
  CHECK(report.detail == "cache cold");
}

TEST_CASE("default hooks of an empty plugin are safe", "[plugin_api][sdk]") {
  FakeHost host;
  REQUIRE(host.load<MinimalPlugin>().ok());
  CHECK(host.request({}).returned().code() == sdk::StatusCode::kUnsupported);
  CHECK(host.deliver({.topic = "orders.placed"}).code() == sdk::StatusCode::kUnsupported);
  CHECK(host.health().state == sdk::HealthState::kPass);
  CHECK(host.unload().ok());
  CHECK(host.request({}).returned().code() == sdk::StatusCode::kUnavailable);
}

TEST_CASE("status carries a code, a name and a message", "[plugin_api][sdk]") {
  CHECK(sdk::Status{}.ok());
  CHECK(sdk::Status::success().code() == sdk::StatusCode::kOk);
  CHECK(sdk::Status::unsupported().to_string() == "unsupported");
  CHECK(sdk::Status::busy("queue full depth=64").to_string() == "busy: queue full depth=64");
  CHECK_FALSE(sdk::Status::already_completed().ok());
  CHECK(sdk::status_name(static_cast<sdk::StatusCode>(-99)) == "unknown");
  CHECK(static_cast<std::int32_t>(sdk::StatusCode::kTooLarge) == KEEL_ERR_TOO_LARGE);
  CHECK(static_cast<std::int32_t>(sdk::StatusCode::kConflict) == KEEL_ERR_CONFLICT);
  CHECK(static_cast<std::int32_t>(sdk::StatusCode::kStorageFull) == KEEL_ERR_STORAGE_FULL);
  CHECK(static_cast<std::int32_t>(sdk::LogLevel::kCritical) == KEEL_LOG_CRITICAL);
}
