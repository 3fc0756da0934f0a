// Hot reload through POST /admin/plugins/{name}/reload against the real keel binary: the
// "reloadable" fixture in three builds (reload_v1 answers "v1", reload_v2 answers "v2" and has
// one more route, reload_broken fails start()), swapped in the plugin directory the way the
// docs recommend (write elsewhere, rename into place) while client threads hammer the plugin.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <signal.h>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "plugin_status.hpp"
#include "prometheus.hpp"
#include "raw_client.hpp"

using keel::test::eventually;
using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::plugin_entry;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

constexpr const char* kBearer = keel::test::kAdminBearer;

keel::test::HostOptions reload_options(std::vector<fs::path> plugins) {
  auto o = with_plugins(std::move(plugins));
  o.env = {keel::test::kAdminTokenEnv};
  return o;
}

/// Puts `build`'s bytes at `target` as a deploy would: a copy next to it, then rename.
void deploy(const fs::path& build, const fs::path& target) {
  const auto tmp = target.parent_path() / (".deploy-" + target.filename().string());
  fs::copy_file(build, tmp, fs::copy_options::overwrite_existing);
  fs::rename(tmp, target);
}

std::pair<int, Json> reload(const KeelHost& host, const std::string& name) {
  const auto r = simple_request(host.port(), "POST", "/admin/plugins/" + name + "/reload", {}, kBearer);
  if (!r) return {0, nullptr};
  return {r->status, Json::parse(r->body, nullptr, false)};
}

std::string body_of(const KeelHost& host, const std::string& path) {
  const auto r = simple_request(host.port(), "GET", path);
  return r && r->status == 200 ? r->body : "status " + std::to_string(r ? r->status : 0);
}

std::size_t open_fds(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) ++n;
  return n;
}

/// Distinct files (inodes) mapped by the process whose path contains `needle`.
std::size_t mapped_files(pid_t pid, const std::string& needle) {
  std::ifstream maps("/proc/" + std::to_string(pid) + "/maps");
  std::set<std::string> inodes;
  for (std::string line; std::getline(maps, line);) {
    if (line.find(needle) == std::string::npos) continue;
    std::istringstream fields(line);
    std::string range, perms, offset, dev, inode;
    fields >> range >> perms >> offset >> dev >> inode;
    inodes.insert(dev + ":" + inode);
  }
  return inodes.size();
}

}  // namespace

TEST_CASE("reload: 50 swaps under load drop no request and never serve stale code", "[reload]") {
  KeelHost host(reload_options({fixture("reload_v1")}));
  const auto target = host.plugin_dir() / "reload_v1.so";
  REQUIRE(body_of(host, "/api/reloadable/version") == "v1");

  std::atomic<bool> stop{false};
  std::mutex mutex;
  std::map<std::string, int> answers;  // body -> count; failures as "status N"
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t) {
    clients.emplace_back([&, t] {
      const std::string path = t == 0 ? "/api/reloadable/slow" : "/api/reloadable/version";
      while (!stop.load()) {
        const auto b = body_of(host, path);
        std::lock_guard lock(mutex);
        ++answers[b];
      }
    });
  }
  std::size_t fds_after_first = 0, mapped_max = 0;
  std::string last;
  for (int i = 1; i <= 50; ++i) {
    last = i % 2 == 1 ? "v2" : "v1";
    deploy(fixture(last == "v2" ? "reload_v2" : "reload_v1"), target);
    const auto [status, body] = reload(host, "reloadable");
    INFO("reload " << i << ": " << body.dump());
    REQUIRE(status == 200);
    CHECK(body["generation"] == i + 1);
    CHECK(body["version"] == (last == "v2" ? "2.0.0" : "1.0.0"));
    // Right after the reload answered, every new request gets the new code.
    CHECK(body_of(host, "/api/reloadable/version") == last);
    if (i == 1) fds_after_first = open_fds(host.process().pid());
    mapped_max = std::max(mapped_max, mapped_files(host.process().pid(), "memfd:keel:reloadable"));
  }
  stop = true;
  for (auto& c : clients) c.join();

  INFO("answers: " << Json(answers).dump());
  int total = 0;
  for (const auto& [body, n] : answers) {
    CHECK((body == "v1" || body == "v2"));  // no failure, nothing but the two versions
    total += n;
  }
  CHECK(answers["v1"] > 0);
  CHECK(answers["v2"] > 0);
  CHECK(total > 100);
  CHECK(body_of(host, "/api/reloadable/version") == last);
  // The old generation is unmapped when its drain ends: one copy mapped at a time, and the
  // descriptors do not grow with the number of reloads.
  CHECK(mapped_max == 1);
  CHECK(mapped_files(host.process().pid(), "memfd:keel:reloadable") == 1);
  CHECK(open_fds(host.process().pid()) <= fds_after_first + 8);

  const auto entry = plugin_entry(host, "reloadable");
  CHECK(entry["generation"] == 51);
  CHECK(entry["reloads"]["succeeded"] == 50);
  const auto metrics = simple_request(host.port(), "GET", "/metrics");
  REQUIRE(metrics);
  const auto scrape = keel::test::prometheus::parse(metrics->body);
  CHECK(scrape.value("keel_plugin_generation", {{"plugin", "reloadable"}}) == 51);
  CHECK(scrape.value("keel_plugin_reloads_total", {{"plugin", "reloadable"}, {"result", "succeeded"}}) == 50);
  CHECK(scrape.value("keel_plugin_drain_duration_seconds_count", {{"plugin", "reloadable"}}) == 50);
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: a broken, truncated or foreign build is refused and the old one keeps serving", "[reload]") {
  KeelHost host(reload_options({fixture("reload_v1")}));
  const auto target = host.plugin_dir() / "reload_v1.so";

  deploy(fixture("reload_broken"), target);
  auto [status, body] = reload(host, "reloadable");
  CHECK(status == 422);
  const auto message = body["error"]["message"].get<std::string>();
  CHECK(message.find("start() failed") != std::string::npos);
  CHECK(message.find("version 1.0.0 (generation 1) keeps serving") != std::string::npos);
  CHECK(body_of(host, "/api/reloadable/version") == "v1");

  // Half a file (a copy caught mid-write) is never loaded.
  {
    const auto whole = fs::file_size(fixture("reload_v2"));
    std::ifstream in(fixture("reload_v2"), std::ios::binary);
    std::string bytes(whole / 2, '\0');
    in.read(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    std::ofstream(target, std::ios::binary | std::ios::trunc).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  CHECK(reload(host, "reloadable").first == 422);
  CHECK(body_of(host, "/api/reloadable/version") == "v1");

  // A file that now holds another plugin.
  deploy(fixture("no_op"), target);
  auto [foreign, foreign_body] = reload(host, "reloadable");
  CHECK(foreign == 422);
  CHECK(foreign_body["error"]["message"].get<std::string>().find("now declares plugin 'no_op'") != std::string::npos);

  const auto entry = plugin_entry(host, "reloadable");
  CHECK(entry["generation"] == 1);
  CHECK(entry["state"] == "started");
  CHECK(entry["reloads"]["refused"] == 3);
  CHECK(entry["reloads"]["last_error"].get<std::string>().find("no_op") != std::string::npos);

  // Fixed: the next reload works, and the route table follows the new manifest.
  CHECK(body_of(host, "/api/reloadable/v2-only") == "status 404");
  deploy(fixture("reload_v2"), target);
  CHECK(reload(host, "reloadable").first == 200);
  CHECK(body_of(host, "/api/reloadable/v2-only") == "v2");
  CHECK_FALSE(plugin_entry(host, "reloadable")["reloads"].contains("last_error"));
  CHECK(reload(host, "nope").first == 404);
  CHECK(simple_request(host.port(), "POST", "/admin/plugins/reloadable/reload")->status == 401);
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: durable events keep flowing, once each, while their subscriber is reloaded", "[reload]") {
  KeelHost host(reload_options({fixture("events_pub"), fixture("events_sub")}));
  auto count = [&] {
    const auto r = simple_request(host.port(), "GET", "/api/events_sub/count?topic=demo.durable");
    return r && r->status == 200 ? std::stoi(r->body) : -1;
  };
  std::atomic<bool> stop{false};
  std::atomic<int> published{0};
  std::thread publisher([&] {
    while (!stop.load()) {
      const auto r = simple_request(host.port(), "POST", "/api/events_pub/durable/5", "p" + std::to_string(published.load()));
      if (r && r->status == 200) published += 5;
    }
  });
  for (int i = 0; i < 5; ++i) {
    REQUIRE(reload(host, "events_sub").first == 200);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  stop = true;
  publisher.join();
  CHECK(published.load() > 0);
  CHECK(eventually([&] { return count() == published.load(); }));
  const auto dup = simple_request(host.port(), "GET", "/api/events_sub/duplicates");
  REQUIRE(dup);
  CHECK(dup->body.starts_with("received_duplicates=0 "));
  CHECK(plugin_entry(host, "events_sub")["generation"] == 6);
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: changed events declarations apply without a restart, under load, stranding no event",
          "[reload][events]") {
  KeelHost host(reload_options({fixture("events_pub"), fixture("events_sub")}));
  const auto pub_file = host.plugin_dir() / "events_pub.so";
  const auto sub_file = host.plugin_dir() / "events_sub.so";
  auto count = [&](const std::string& topic) { return body_of(host, "/api/events_sub/count?topic=" + topic); };
  auto post = [&](const std::string& path) {
    const auto r = simple_request(host.port(), "POST", path);
    return r ? r->status : 0;
  };
  auto admin = [&](const std::string& action) {
    const auto r = simple_request(host.port(), "POST", "/admin/plugins/events_sub/" + action, {}, kBearer);
    return r ? r->status : 0;
  };
  // Durable events all along, from another thread: every publish succeeds and each event
  // arrives once, whatever is reloaded meanwhile.
  std::atomic<bool> stop{false};
  std::atomic<int> published{0}, failed{0};
  std::thread publisher([&] {
    while (!stop.load()) {
      const auto r = simple_request(host.port(), "POST", "/api/events_pub/durable/5", "p" + std::to_string(published.load()));
      (r && r->status == 200 ? published : failed) += r && r->status == 200 ? 5 : 1;
    }
  });

  // demo.other.deep is not matched by demo.*; the subscriber's next build subscribes to demo.#.
  REQUIRE(post("/api/events_pub/deep") == 200);
  deploy(fixture("events_sub_wide"), sub_file);
  REQUIRE(reload(host, "events_sub").first == 200);
  REQUIRE(post("/api/events_pub/deep") == 200);
  CHECK(eventually([&] { return count("demo.other.deep") == "1"; }));

  // The publisher's next build declares a new durable topic, and it flows at once.
  CHECK(post("/api/events_pub/extra/3") == 404);
  deploy(fixture("events_pub_v2"), pub_file);
  const auto [v2_status, v2_body] = reload(host, "events_pub");
  INFO(v2_body.dump());
  REQUIRE(v2_status == 200);
  REQUIRE(post("/api/events_pub/extra/3") == 200);
  CHECK(eventually([&] { return count("demo.extra") == "3"; }));

  // Events committed on demo.extra while the subscriber is away, then a build without the
  // topic: they are still delivered when the subscriber comes back.
  REQUIRE(admin("disable") == 200);
  REQUIRE(post("/api/events_pub/extra/2") == 200);
  deploy(fixture("events_pub"), pub_file);
  REQUIRE(reload(host, "events_pub").first == 200);
  CHECK(post("/api/events_pub/extra/1") == 404);
  REQUIRE(admin("enable") == 200);
  CHECK(eventually([&] { return count("demo.extra") == "5"; }));

  stop = true;
  publisher.join();
  CHECK(failed.load() == 0);
  CHECK(published.load() > 0);
  // The backlog of a publisher that ran flat out drains at the subscriber's pace (slow under the
  // sanitizers and a runner process): wait for all of it, not for a pace.
  CHECK(eventually([&] { return count("demo.durable") == std::to_string(published.load()); }, std::chrono::seconds(60)));
  CHECK(count("demo.other.deep") == "1");  // the first one was published before the subscription
  const auto dup = simple_request(host.port(), "GET", "/api/events_sub/duplicates");
  REQUIRE(dup);
  CHECK(dup->body.starts_with("received_duplicates=0 "));
  CHECK(plugin_entry(host, "events_pub")["generation"] == 3);
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: a dependency reloads under its dependent's load, and a version outside its range is refused",
          "[reload]") {
  KeelHost host(reload_options({fixture("no_op"), fixture("caller")}));
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 3; ++t) {
    clients.emplace_back([&] {
      while (!stop.load()) {
        const auto r = simple_request(host.port(), "GET", "/api/caller/call/ping");
        (r && r->status == 200 && r->body == "pong" ? ok : failed)++;
      }
    });
  }
  for (int i = 0; i < 10; ++i) REQUIRE(reload(host, "no_op").first == 200);  // the same file: a new generation
  // caller requires no_op >=1.0.0 <2.0.0.
  deploy(fixture("no_op_v2"), host.plugin_dir() / "no_op.so");
  auto [status, body] = reload(host, "no_op");
  CHECK(status == 409);
  CHECK(body["error"]["message"].get<std::string>().find("outside the range '>=1.0.0 <2.0.0' that plugin 'caller' requires") !=
        std::string::npos);
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  stop = true;
  for (auto& c : clients) c.join();
  CHECK(failed.load() == 0);
  CHECK(ok.load() > 0);
  CHECK(plugin_entry(host, "no_op")["generation"] == 11);
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: a new version that closes a longer dependency cycle is refused", "[reload]") {
  // chain_a -> chain_b -> chain_m run; chain_m 2.0.0 depends on chain_a: chain_m -> chain_a ->
  // chain_b -> chain_m. No plugin of the cycle depends on chain_m's new version directly.
  KeelHost host(reload_options({fixture("chain_m"), fixture("chain_a"), fixture("chain_b")}));
  REQUIRE(plugin_entry(host, "chain_a")["state"] == "started");
  deploy(fixture("chain_m_v2"), host.plugin_dir() / "chain_m.so");
  auto [status, body] = reload(host, "chain_m");
  CHECK(status == 409);
  const auto message = body["error"]["message"].get<std::string>();
  CHECK(message.find("dependency cycle: ") != std::string::npos);
  CHECK(message.find("chain_m -> chain_a") != std::string::npos);
  CHECK(message.find("version 1.0.0 (generation 1) keeps serving") != std::string::npos);
  const auto m = plugin_entry(host, "chain_m");
  CHECK(m["state"] == "started");
  CHECK(m["version"] == "1.0.0");
  CHECK(m["generation"] == 1);
  CHECK(plugin_entry(host, "chain_a")["state"] == "started");
  CHECK(plugin_entry(host, "chain_b")["state"] == "started");
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: a plugin reloads next to another file that was refused for declaring its name", "[reload]") {
  KeelHost host(reload_options({fixture("dup_name_a"), fixture("dup_name_b")}));
  REQUIRE(plugin_entry(host, "dup")["state"] == "started");  // the first file; dup_name_b.so was refused
  const auto [status, body] = reload(host, "dup");
  INFO(body.dump());
  CHECK(status == 200);
  CHECK(plugin_entry(host, "dup")["generation"] == 2);
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: the watched plugin directory starts, reloads and stops plugins as files come and go", "[reload]") {
  auto o = reload_options({fixture("reload_v1")});
  o.config_toml = "[plugins]\nwatch_debounce_ms = 100\nwatch_rescan_ms = 300\n";
  KeelHost host(o);
  const auto target = host.plugin_dir() / "reload_v1.so";
  REQUIRE(body_of(host, "/api/reloadable/version") == "v1");

  deploy(fixture("reload_v2"), target);  // changed: a new generation, no admin call
  CHECK(eventually([&] { return body_of(host, "/api/reloadable/version") == "v2"; }));
  CHECK(plugin_entry(host, "reloadable")["generation"] == 2);

  fs::remove(target);  // removed: drained and stopped
  CHECK(eventually([&] { return body_of(host, "/api/reloadable/version") == "status 404"; }));
  auto entry = plugin_entry(host, "reloadable");
  CHECK(entry["state"] == "stopped");
  CHECK(entry["reason"].get<std::string>().find("was removed") != std::string::npos);

  deploy(fixture("reload_v1"), host.plugin_dir() / "again.so");  // back, under another file name
  CHECK(eventually([&] { return body_of(host, "/api/reloadable/version") == "v1"; }));
  CHECK(plugin_entry(host, "reloadable")["generation"] == 3);

  deploy(fixture("no_op"), host.plugin_dir() / "no_op.so");  // a plugin the host has not seen
  CHECK(eventually([&] { return body_of(host, "/api/no_op/ping") == "pong"; }));

  // Plugins with events join the bus at run time: a subscriber, then a publisher it hears.
  deploy(fixture("events_sub"), host.plugin_dir() / "events_sub.so");
  CHECK(eventually([&] { return body_of(host, "/api/events_sub/count") == "0"; }));
  deploy(fixture("events_pub"), host.plugin_dir() / "events_pub.so");
  CHECK(eventually([&] {
    const auto r = simple_request(host.port(), "POST", "/api/events_pub/durable/3", "new");
    return r && r->status == 200;
  }));
  CHECK(eventually([&] { return body_of(host, "/api/events_sub/count?topic=demo.durable") == "3"; }));
  REQUIRE(simple_request(host.port(), "POST", "/api/events_pub/memory/2")->status == 200);
  CHECK(eventually([&] { return body_of(host, "/api/events_sub/count?topic=demo.memory") == "2"; }));

  CHECK(kill(host.process().pid(), SIGHUP) == 0);  // SIGHUP: the same pass, on demand
  CHECK(host.process().wait_for_output("SIGHUP: configuration ", std::chrono::seconds(5)));
  CHECK(body_of(host, "/api/reloadable/version") == "v1");
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: SIGHUP applies plugin settings, refuses an invalid config and names what needs a restart",
          "[reload]") {
  auto o = reload_options({keel::test::example_plugin("hello")});
  o.config_toml = "[plugin.hello]\ngreeting = \"Hello\"\n";
  KeelHost host(o);
  const auto file = host.config_file();
  auto rewrite = [&](const std::string& from, const std::string& to) {
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const auto at = text.find(from);
    REQUIRE(at != std::string::npos);
    text.replace(at, from.size(), to);
    std::ofstream(file, std::ios::trunc) << text;
  };
  auto hup = [&] { REQUIRE(kill(host.process().pid(), SIGHUP) == 0); };
  REQUIRE(body_of(host, "/api/hello/greet/ada").find("Hello, ada!") != std::string::npos);

  rewrite("greeting = \"Hello\"", "greeting = \"Hi\"");
  hup();
  CHECK(eventually([&] { return body_of(host, "/api/hello/greet/ada").find("Hi, ada!") != std::string::npos; }));
  CHECK(plugin_entry(host, "hello")["generation"] == 2);

  rewrite("greeting = \"Hi\"", "greeting = 42");  // the manifest says string: this version refuses it
  hup();
  CHECK(host.process().wait_for_output("invalid config for the new version", std::chrono::seconds(10)));
  CHECK(body_of(host, "/api/hello/greet/ada").find("Hi, ada!") != std::string::npos);

  rewrite("greeting = 42", "greeting = \"Hey\"\nnot a toml line");
  hup();
  CHECK(host.process().wait_for_output("has errors; the running configuration stays", std::chrono::seconds(10)));
  CHECK(body_of(host, "/api/hello/greet/ada").find("Hi, ada!") != std::string::npos);

  rewrite("greeting = \"Hey\"\nnot a toml line", "greeting = \"Hey\"\nenabled = false");
  hup();
  CHECK(eventually([&] { return body_of(host, "/api/hello/greet/ada") == "status 404"; }));
  CHECK(plugin_entry(host, "hello")["state"] == "disabled");
  rewrite("enabled = false", "enabled = true");
  hup();
  CHECK(eventually([&] { return body_of(host, "/api/hello/greet/ada").find("Hey, ada!") != std::string::npos; }));
  CHECK(host.stop() == 0);
}

TEST_CASE("reload: the drain does not wait for an answer nobody awaits any more", "[reload]") {
  auto o = reload_options({fixture("async_responder")});
  o.config_toml = "[server]\ndrain_timeout_ms = 30000\n[plugin.async_responder]\nrequest_timeout_ms = 200\n";
  KeelHost host(o);
  // Deferred and never answered: the client got its 504, the responder stays open in the plugin.
  CHECK(body_of(host, "/api/async_responder/never") == "status 504");
  REQUIRE(reload(host, "async_responder").first == 200);
  // The drain ended well before [server] drain_timeout_ms (30 s), in the lowest buckets.
  const auto metrics = simple_request(host.port(), "GET", "/metrics");
  REQUIRE(metrics);
  const auto scrape = keel::test::prometheus::parse(metrics->body);
  CHECK(scrape.value("keel_plugin_drain_duration_seconds_bucket", {{"plugin", "async_responder"}, {"le", "10"}}) == 1);
  CHECK(host.stop() == 0);
}
