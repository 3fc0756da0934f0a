// Several real keel hosts and a real nats-server (docs/cluster.md): a request that reaches a host
// for a plugin only another host loads is forwarded over NATS and answered as if served there;
// replicas share the load, a dead host's share moves to its replicas, and a lost NATS leaves the
// local routes serving while remote plugins answer 503.
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <keel/plugin.h>
#include <nats/nats.h>

#include "admin_token.hpp"
#include "isolation/wire.hpp"
#include "eventually.hpp"
#include "haproxy.hpp"
#include "keel_host.hpp"
#include "nats_server.hpp"
#include "prometheus.hpp"
#include "raw_client.hpp"
#include "shop.hpp"
#include "temp_dir.hpp"

using keel::test::eventually;
using keel::test::fixture;
using keel::test::KeelHost;
using keel::test::NatsServer;
using keel::test::simple_request;
using Json = nlohmann::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

keel::test::HostOptions member(const NatsServer& nats, const std::string& node, std::vector<fs::path> plugins,
                               const std::string& extra = {}) {
  auto o = keel::test::with_plugins(std::move(plugins), nats.cluster_toml(node) + extra);
  o.env = {keel::test::kAdminTokenEnv};
  return o;
}

int status_of_port(std::uint16_t port, const std::string& path) {
  const auto r = simple_request(port, "GET", path);
  return r ? r->status : 0;
}

int status_of(const KeelHost& host, const std::string& path) { return status_of_port(host.port(), path); }

double metric(const KeelHost& host, const std::string& name, const keel::test::prometheus::Labels& labels) {
  const auto r = simple_request(host.port(), "GET", "/metrics");
  REQUIRE(r);
  return keel::test::prometheus::parse(r->body).value(name, labels).value_or(0);
}

Json admin(const KeelHost& host, const std::string& path) {
  const auto r = simple_request(host.port(), "GET", path, {}, keel::test::kAdminBearer);
  REQUIRE(r);
  REQUIRE(r->status == 200);
  return Json::parse(r->body);
}

// A request NATS carries straight to `subject`, as a process other than a Keel host could send
// it: the raw reply, or empty when none came.
std::string raw_request(const NatsServer& nats, const std::string& subject, const std::string& payload) {
  natsConnection* nc = nullptr;
  REQUIRE(natsConnection_ConnectTo(&nc, nats.url().c_str()) == NATS_OK);
  natsMsg* reply = nullptr;
  const auto s = natsConnection_Request(&reply, nc, subject.c_str(), payload.data(), static_cast<int>(payload.size()), 5000);
  std::string out;
  if (s == NATS_OK) out.assign(natsMsg_GetData(reply), static_cast<std::size_t>(natsMsg_GetDataLength(reply)));
  else out = std::string("error: ") + natsStatus_GetText(s);
  natsMsg_Destroy(reply);
  natsConnection_Destroy(nc);
  return out;
}

}  // namespace

TEST_CASE("cluster: a request for a plugin only another host loads is answered as if that host served it",
          "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  KeelHost b(member(nats, "b", {fixture("slow_handler")}));
  REQUIRE(eventually([&] { return status_of(b, "/api/no_op/ping") == 200; }, 10s));

  const std::string trace = "4bf92f3577b34da6a3ce929d0e0e4736";
  const auto r = simple_request(b.port(), "GET", "/api/no_op/query?b=2&a=%C3%A9+x", {},
                                "X-Request-Id: cluster-req-1\r\ntraceparent: 00-" + trace + "-00f067aa0ba902b7-01\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "b=2\na=\xC3\xA9 x\n");  // the query decoded on host a exactly as it would be locally
  CHECK(r->header("X-Request-Id") == "cluster-req-1");
  // Both hosts log the request under its id, in one trace.
  CHECK(a.process().wait_for_output("forwarded request served req=cluster-req-1 origin=b plugin=no_op", 5s));
  CHECK(b.process().wait_for_output("span kind=forward plugin=no_op peer=a status=200", 5s));
  CHECK(a.process().output().find("trace_id=" + trace) != std::string::npos);

  // Local routes answer locally; a plugin no host loads is 404 everywhere.
  CHECK(status_of(b, "/api/slow_handler/fast") == 200);
  CHECK(status_of(b, "/api/nobody/ping") == 404);
  CHECK(status_of(a, "/api/no_op/nothing-here") == 404);  // a's own plugin: a's own answer
  CHECK(status_of(b, "/api/no_op/nothing-here") == 404);  // forwarded, and a answers 404

  const auto ready = simple_request(b.port(), "GET", "/readyz");
  REQUIRE(ready);
  const auto cluster = Json::parse(ready->body)["cluster"];
  CHECK(cluster["node"] == "b");
  CHECK(cluster["link"] == "up");
  CHECK(cluster["nodes"] == 1);

  const auto view = admin(b, "/admin/cluster");
  CHECK(view["node"] == "b");
  REQUIRE(view["nodes"].size() == 1);
  CHECK(view["nodes"][0]["node"] == "a");
  CHECK(view["nodes"][0]["plugins"][0]["name"] == "no_op");
  CHECK(view["serving"] == Json::array({"slow_handler"}));

  // Counted once each answer is on its way, so a moment after the client has it.
  CHECK(eventually([&] { return metric(b, "keel_cluster_forwarded_requests_total", {{"plugin", "no_op"}, {"peer", "a"}}) >= 3; }));
  CHECK(eventually([&] { return metric(a, "keel_cluster_served_requests_total", {{"plugin", "no_op"}, {"origin", "b"}}) >= 3; }));
  CHECK(a.stop() == 0);
  CHECK(b.stop() == 0);
}

TEST_CASE("cluster: replicas share forwarded requests, and a host serves its own plugins itself",
          "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  KeelHost c(member(nats, "c", {fixture("no_op")}));
  KeelHost b(member(nats, "b", {fixture("slow_handler")}));
  REQUIRE(eventually([&] { return admin(b, "/admin/cluster")["nodes"].size() == 2; }, 10s));
  for (int i = 0; i < 60; ++i) REQUIRE(status_of(b, "/api/no_op/ping") == 200);
  const auto on_a = metric(a, "keel_cluster_served_requests_total", {{"plugin", "no_op"}, {"origin", "b"}});
  const auto on_c = metric(c, "keel_cluster_served_requests_total", {{"plugin", "no_op"}, {"origin", "b"}});
  CHECK(on_a + on_c == 60);
  CHECK(on_a > 0);  // one queue group: both replicas take a share
  CHECK(on_c > 0);
  for (int i = 0; i < 10; ++i) REQUIRE(status_of(a, "/api/no_op/ping") == 200);
  CHECK(metric(a, "keel_cluster_forwarded_requests_total", {{"plugin", "no_op"}, {"peer", "c"}}) == 0);
  CHECK(metric(c, "keel_cluster_served_requests_total", {{"plugin", "no_op"}, {"origin", "a"}}) == 0);
}

TEST_CASE("cluster: a killed host's requests go to its replica once its announcements stop and it rejoins when back",
          "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  KeelHost c(member(nats, "c", {fixture("no_op")}));
  KeelHost b(member(nats, "b", {fixture("slow_handler")}, "[http]\nrequest_timeout_ms = 2000\n"));
  REQUIRE(eventually([&] { return admin(b, "/admin/cluster")["nodes"].size() == 2; }, 10s));
  a.process().signal(SIGKILL);
  REQUIRE(a.process().wait(5s));
  // Its queue subscription ends with its connection; within a few announcement intervals b
  // forgets it too.
  REQUIRE(eventually([&] { return admin(b, "/admin/cluster")["nodes"].size() == 1; }, 10s));
  int ok = 0;
  for (int i = 0; i < 100; ++i) ok += status_of(b, "/api/no_op/ping") == 200 ? 1 : 0;
  CHECK(ok == 100);
  CHECK(b.process().output().find("cluster host gone node=a") != std::string::npos);
  // a comes back by itself (a new process with the same node name): it rejoins and takes a share.
  KeelHost again(member(nats, "a", {fixture("no_op")}));
  REQUIRE(eventually([&] { return admin(b, "/admin/cluster")["nodes"].size() == 2; }, 10s));
  CHECK(eventually([&] {
    (void)status_of(b, "/api/no_op/ping");
    return metric(again, "keel_cluster_served_requests_total", {{"plugin", "no_op"}, {"origin", "b"}}) > 0;
  }, 10s));
}

TEST_CASE("cluster: without NATS local routes serve, remote plugins answer 503, and forwarding resumes",
          "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  KeelHost b(member(nats, "b", {fixture("slow_handler")}));
  REQUIRE(eventually([&] { return status_of(b, "/api/no_op/ping") == 200; }, 10s));
  nats.stop();
  REQUIRE(eventually([&] { return status_of(b, "/api/no_op/ping") == 503; }, 10s));
  const auto r = simple_request(b.port(), "GET", "/api/no_op/ping");
  REQUIRE(r);
  CHECK(r->status == 503);
  CHECK(!r->header("Retry-After").empty());
  CHECK(r->body.find("no_op") != std::string::npos);
  CHECK(status_of(b, "/api/slow_handler/fast") == 200);
  const auto ready = simple_request(b.port(), "GET", "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 200);  // its own plugins still serve
  CHECK(Json::parse(ready->body)["cluster"]["link"] == "down");
  nats.start();  // same port: both hosts reconnect by themselves
  CHECK(eventually([&] { return status_of(b, "/api/no_op/ping") == 200; }, 15s));
  CHECK(b.process().output().find("cluster link reconnected") != std::string::npos);
}

TEST_CASE("cluster: hosts start without NATS and join when it comes and a lost link fails waiting requests at once",
          "[cluster][integration]") {
  NatsServer nats;
  nats.stop();  // its port is known, nothing listens there yet
  KeelHost a(member(nats, "a", {fixture("slow_handler")}));
  KeelHost b(member(nats, "b", {fixture("no_op")}));
  CHECK(status_of(b, "/api/no_op/ping") == 200);  // its own plugin serves meanwhile
  CHECK(status_of(b, "/api/slow_handler/fast") == 503);
  nats.start();
  REQUIRE(eventually([&] { return status_of(b, "/api/slow_handler/fast") == 200; }, 15s));
  // A request waiting for a's answer when the link goes: 502 at once, not at its deadline.
  std::optional<keel::test::RawResponse> waiting;
  std::thread client([&] { waiting = simple_request(b.port(), "GET", "/api/slow_handler/slow"); });
  std::this_thread::sleep_for(300ms);  // the request reached a, which sleeps 2 s in it
  nats.stop();
  client.join();
  REQUIRE(waiting);
  CHECK(waiting->status == 502);
  CHECK(waiting->body.find("link (NATS) was lost") != std::string::npos);
}

TEST_CASE("cluster: a forwarded request keeps its deadline", "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("slow_handler")}));
  KeelHost b(member(nats, "b", {fixture("no_op")}, "[http]\nrequest_timeout_ms = 300\n"));
  REQUIRE(eventually([&] { return status_of(b, "/api/slow_handler/fast") == 200; }, 10s));
  const auto r = simple_request(b.port(), "GET", "/api/slow_handler/slow");
  REQUIRE(r);
  CHECK(r->status == 504);
  // The serving host had the same deadline: its handler's late answer was refused there.
  CHECK(a.process().wait_for_output("slow responded rc=", 5s));
  CHECK(a.process().output().find("slow responded rc=0") == std::string::npos);
}

TEST_CASE("cluster: a host answers forwarded requests only for the plugins it loads",
          "[cluster][integration][attack]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  REQUIRE(eventually([&] { return admin(a, "/admin/cluster")["serving"].size() == 1; }, 10s));
  // A request on no_op's subject for another path (what a compromised peer could send): 404.
  keel::host::isolation::Writer w;
  w.u32(1);  // the cluster wire version
  keel::host::isolation::encode_context(w, {"forged-1", {}, 1'000'000'000});
  for (const char* field : {"mallory", "", "GET", "/api/other/secrets", "127.0.0.1:1", ""}) w.bytes(field);
  w.u32(0);  // no header fields
  w.bytes("");
  auto reply = raw_request(nats, "keel.http.no_op", w.data());
  CHECK(reply.find("only plugin 'no_op''s routes") != std::string::npos);
  // A message that is not a request at all: refused, and logged.
  reply = raw_request(nats, "keel.http.no_op", std::string("\x01\x00\x00\x00", 4) + "not a request");
  CHECK(reply.find("cannot read the forwarded request") != std::string::npos);
  // Nobody serves a plugin no host loads: the request finds no responder.
  CHECK(raw_request(nats, "keel.http.admin", "x").starts_with("error: "));
  CHECK(a.process().output().find("refused a forwarded request plugin=no_op") != std::string::npos);
}

TEST_CASE("cluster: NATS credentials are redacted and never logged", "[cluster][integration]") {
  const std::string password = "cluster-secret-password-1234";
  NatsServer nats({"--user", "keel", "--pass", password});
  KeelHost a(member(nats, "a", {fixture("no_op")}, "user = \"keel\"\npassword = \"" + password + "\"\n"));
  KeelHost b(member(nats, "b", {fixture("slow_handler")}, "user = \"keel\"\npassword = \"" + password + "\"\n"));
  REQUIRE(eventually([&] { return status_of(b, "/api/no_op/ping") == 200; }, 10s));
  const auto config = admin(a, "/admin/config");
  CHECK(config["cluster"]["password"] == "<redacted>");
  CHECK(config["cluster"]["user"] == "keel");
  for (auto* host : {&a, &b}) CHECK(host->process().output().find(password) == std::string::npos);
}

TEST_CASE("cluster: a host in no cluster says so on /admin/cluster and needs no NATS", "[cluster][integration]") {
  auto o = keel::test::with_plugins({fixture("no_op")});
  o.env = {keel::test::kAdminTokenEnv};
  KeelHost host(o);
  const auto view = admin(host, "/admin/cluster");
  CHECK(view["node"].is_null());
  CHECK(view["link"]["state"] == "off");
  CHECK(view["nodes"].empty());
  CHECK(admin(host, "/admin/events/jetstream")["enabled"] == false);
  const auto ready = simple_request(host.port(), "GET", "/readyz");
  REQUIRE(ready);
  CHECK_FALSE(Json::parse(ready->body).contains("cluster"));
  CHECK(status_of(host, "/api/elsewhere/ping") == 404);
}

TEST_CASE("cluster: a plugin calls a plugin on another host as it would a local one", "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op"), fixture("slow_handler"), fixture("blocking")}));
  // caller depends on no_op, which only a loads: in a cluster pre-flight leaves that to the call.
  KeelHost b(member(nats, "b", {fixture("caller")}));
  REQUIRE(eventually([&] { return status_of(b, "/api/caller/call/ping") == 200; }, 10s));
  const auto r = simple_request(b.port(), "GET", "/api/caller/call/ping", {}, "X-Request-Id: call-across-1\r\n");
  REQUIRE(r);
  CHECK(r->status == 200);
  CHECK(r->body == "pong");
  CHECK(a.process().wait_for_output("forwarded request served req=call-across-1 origin=b caller=caller plugin=no_op", 5s));
  // A call made outside any request (a plugin's own thread) is served too, with its span id as
  // its request id on both hosts.
  const auto served_pings = [&] {
    constexpr std::string_view kServed = "origin=b caller=caller plugin=no_op method=GET target=/api/no_op/ping status=200";
    const auto out = a.process().output();
    std::size_t n = 0;
    for (auto at = out.find(kServed); at != std::string::npos; at = out.find(kServed, at + 1)) ++n;
    return n;
  };
  const auto pings_before = served_pings();
  const auto detached = simple_request(b.port(), "GET", "/api/caller/detached");
  REQUIRE(detached);
  CHECK(detached->status == 200);
  CHECK(detached->body == "pong");
  CHECK(eventually([&] { return served_pings() == pings_before + 1; }, 5s));
  CHECK(a.process().output().find("refused a forwarded request") == std::string::npos);
  // The call's deadline travels: slow_handler sleeps 2 s, the call allows 200 ms.
  const auto late = simple_request(b.port(), "GET", "/api/caller/deadline");
  REQUIRE(late);
  CHECK(late->body == std::to_string(KEEL_ERR_TIMEOUT));
  // A plugin it did not declare (blocking, on a) is refused by the caller's host, before the
  // call is sent; the host serving the target logs the attempt too.
  const auto undeclared = simple_request(b.port(), "GET", "/api/caller/undeclared", {}, "X-Request-Id: undeclared-1\r\n");
  REQUIRE(undeclared);
  CHECK(undeclared->body == std::to_string(KEEL_ERR_PERMISSION_DENIED));
  // The host's log line may reach its output file a moment after the answer reached the client.
  CHECK(b.process().wait_for_output("call refused: 'blocking' is not a declared dependency of 'caller'", 5s));
  CHECK(a.process().wait_for_output("call refused by host b: its plugin 'caller' has not declared 'blocking' (served "
                                    "here) as a dependency method=GET path=/quick req=undeclared-1",
                                    5s));
  CHECK(metric(b, "keel_cluster_forwarded_requests_total", {{"plugin", "no_op"}, {"peer", "a"}}) >= 2);
}

TEST_CASE("cluster: a call to another host keeps the caller's dependency version range", "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op_v2")}));  // no_op 2.0.0; caller needs >=1.0.0 <2.0.0
  KeelHost b(member(nats, "b", {fixture("caller")}));
  REQUIRE(eventually([&] { return admin(b, "/admin/cluster")["nodes"].size() == 1; }, 10s));
  const auto r = simple_request(b.port(), "GET", "/api/caller/call/ping");
  REQUIRE(r);
  CHECK(r->status == 502);
  CHECK(r->body == "call failed rc=" + std::to_string(KEEL_ERR_NOT_FOUND));
  CHECK(b.process().wait_for_output("call refused: 'caller' depends on 'no_op' >=1.0.0 <2.0.0 but the hosts serving "
                                    "it announce version 2.0.0",
                                    5s));
  CHECK(a.process().output().find("forwarded request served") == std::string::npos);  // nothing was sent
}

TEST_CASE("cluster: the callee's host checks a call's permission itself", "[cluster][integration][attack]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  KeelHost b(member(nats, "b", {fixture("caller")}));
  REQUIRE(eventually([&] { return status_of(b, "/api/caller/call/ping") == 200; }, 10s));
  // A call that claims to come from plugin "mallory" on host b, which b never announced.
  const auto forged = [&](const char* caller) {
    keel::host::isolation::Writer w;
    w.u32(1);
    keel::host::isolation::encode_context(w, {"forged-call-1", {}, 1'000'000'000});
    for (const char* field : {"b", caller, "GET", "/ping", "", ""}) w.bytes(field);
    w.u32(0);
    w.bytes("");
    return raw_request(nats, "keel.http.no_op", w.data());
  };
  CHECK(forged("mallory").find("has not declared plugin 'no_op' as a dependency") != std::string::npos);
  CHECK(a.process().wait_for_output("call refused: host b did not announce 'mallory' as a plugin that may call 'no_op'", 5s));
  // The same call from a plugin b did announce with no_op as a dependency goes through.
  CHECK(forged("caller").find("pong") != std::string::npos);
}

TEST_CASE("cluster: behind HAProxy every host answers every plugin, and a killed host drops out",
          "[cluster][integration]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("no_op")}));
  KeelHost b(member(nats, "b", {fixture("slow_handler")}));
  REQUIRE(eventually([&] { return status_of(a, "/api/slow_handler/fast") == 200 && status_of(b, "/api/no_op/ping") == 200; },
                     10s));
  keel::test::HAProxy proxy({a.port(), b.port()});
  // Round robin: each plugin's requests land on both hosts, one of which forwards them.
  for (int i = 0; i < 20; ++i) {
    REQUIRE(status_of_port(proxy.port(), "/api/no_op/ping") == 200);
    REQUIRE(status_of_port(proxy.port(), "/api/slow_handler/fast") == 200);
  }
  CHECK(metric(b, "keel_cluster_forwarded_requests_total", {{"plugin", "no_op"}, {"peer", "a"}}) >= 5);
  CHECK(metric(a, "keel_cluster_forwarded_requests_total", {{"plugin", "slow_handler"}, {"peer", "b"}}) >= 5);
  // a dies: HAProxy's /readyz checks take it out, b's directory forgets it; b's own plugin then
  // answers every time.
  a.process().signal(SIGKILL);
  REQUIRE(a.process().wait(5s));
  REQUIRE(eventually([&] { return admin(b, "/admin/cluster")["nodes"].empty(); }, 10s));
  std::this_thread::sleep_for(600ms);  // three failed checks at 200 ms: a is down for HAProxy
  int ok = 0;
  for (int i = 0; i < 50; ++i) ok += status_of_port(proxy.port(), "/api/slow_handler/fast") == 200 ? 1 : 0;
  CHECK(ok == 50);
  CHECK(status_of_port(proxy.port(), "/api/no_op/ping") == 404);  // no host loads it any more
}

namespace {

// How many events of `topic` the events_sub-style `plugin` on `host` applied (-1: no answer).
int received(const KeelHost& host, const std::string& plugin, const std::string& topic = "demo.memory") {
  const auto r = simple_request(host.port(), "GET", "/api/" + plugin + "/count?topic=" + topic);
  return r && r->status == 200 ? std::stoi(r->body) : -1;
}

}  // namespace

TEST_CASE("cluster: an in-memory event reaches each subscribing plugin once, on whichever host it runs",
          "[cluster][integration][events]") {
  NatsServer nats;
  // events_pub and events_sub_all on a; events_sub on b and c (replicas); events_sub_all also on c.
  KeelHost a(member(nats, "a", {fixture("events_pub"), fixture("events_sub_all")}));
  KeelHost b(member(nats, "b", {fixture("events_sub")}));
  KeelHost c(member(nats, "c", {fixture("events_sub"), fixture("events_sub_all")}));
  REQUIRE(eventually([&] { return admin(a, "/admin/cluster")["nodes"].size() == 2 &&
                                  admin(b, "/admin/cluster")["nodes"].size() == 2 &&
                                  admin(c, "/admin/cluster")["nodes"].size() == 2; }, 10s));
  std::this_thread::sleep_for(500ms);  // two announcement rounds: every host has its event subscriptions
  const auto r = simple_request(a.port(), "POST", "/api/events_pub/memory/40");
  REQUIRE(r);
  REQUIRE(r->status == 200);
  // events_sub (b or c, one replica per event) gets all 40, each once.
  REQUIRE(eventually([&] { return received(b, "events_sub") + received(c, "events_sub") == 40; }, 10s));
  CHECK(received(b, "events_sub") > 0);
  CHECK(received(c, "events_sub") > 0);
  // events_sub_all got them on a, where they were published: c's replica gets none.
  CHECK(eventually([&] { return received(a, "events_sub_all") == 40; }, 10s));
  std::this_thread::sleep_for(300ms);
  CHECK(received(c, "events_sub_all") == 0);
  CHECK(received(b, "events_sub") + received(c, "events_sub") == 40);
  CHECK(metric(a, "keel_cluster_events_total", {{"direction", "sent"}}) == 40);
}

namespace {

std::string duplicates(const KeelHost& host, const std::string& plugin) {
  const auto r = simple_request(host.port(), "GET", "/api/" + plugin + "/duplicates");
  REQUIRE(r);
  return r->body;
}

}  // namespace

TEST_CASE("cluster: durable events reach another host's subscribers through JetStream, none lost when NATS restarts",
          "[cluster][integration][events]") {
  NatsServer nats;
  // events_pub and events_sub_all on a (a local subscriber, as on one host); events_sub on b only.
  KeelHost a(member(nats, "a", {fixture("events_pub"), fixture("events_sub_all")}));
  KeelHost b(member(nats, "b", {fixture("events_sub")}));
  REQUIRE(eventually([&] { return admin(a, "/admin/cluster")["durable_events"]["ready"] == true &&
                                  admin(b, "/admin/cluster")["durable_events"]["consumers"].size() == 1; }, 10s));
  auto publish = [&](int n) {
    const auto r = simple_request(a.port(), "POST", "/api/events_pub/durable/" + std::to_string(n));
    return r && r->status == 200;
  };
  REQUIRE(publish(30));
  REQUIRE(eventually([&] { return received(b, "events_sub", "demo.durable") == 30; }, 15s));
  // NATS goes away mid-traffic: the outbox keeps what the relay could not hand over, JetStream
  // keeps what it acknowledged, and everything arrives once NATS is back.
  REQUIRE(publish(20));
  nats.stop();
  REQUIRE(publish(20));  // committed in a's outbox; nothing can leave now
  nats.start();
  REQUIRE(publish(10));
  CHECK(eventually([&] { return received(b, "events_sub", "demo.durable") == 80; }, 30s));
  CHECK(eventually([&] { return received(a, "events_sub_all", "demo.durable") == 80; }, 10s));
  // Redelivered perhaps, applied once: first_delivery in the subscriber keeps it so.
  CHECK(duplicates(b, "events_sub").starts_with("received_duplicates=0 "));
  std::this_thread::sleep_for(500ms);
  CHECK(received(b, "events_sub", "demo.durable") == 80);
  const auto view = admin(a, "/admin/cluster")["durable_events"];
  CHECK(view["relayed"].get<int>() >= 80);
  // Lag on both sides: nothing left for the relay on a, nothing pending for b's consumer, and the
  // stream holds the 80 events (JetStream's numbers are read every announce interval).
  CHECK(eventually([&] {
    const auto js = admin(a, "/admin/events/jetstream");
    return js["enabled"] == true && js["relay"].size() == 1 && js["relay"][0]["publisher"] == "events_pub" &&
           js["relay"][0]["lag"] == 0 && js["durable_events"]["messages"].get<int>() == 80;
  }, 10s));
  CHECK(eventually([&] {
    const auto consumers = admin(b, "/admin/events/jetstream")["durable_events"]["consumers"];
    return consumers.size() == 1 && consumers[0]["plugin"] == "events_sub" && consumers[0]["pending"] == 0 &&
           consumers[0]["ack_pending"] == 0;
  }, 10s));
}

TEST_CASE("cluster: a failing durable event on another host is retried before the rest of its batch, then dead-lettered",
          "[cluster][integration][events]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {fixture("events_pub")}));
  KeelHost b(member(nats, "b", {fixture("events_sub")}, "\n[events]\nretry_base_ms = 20\nmax_attempts = 3\n"));
  REQUIRE(eventually([&] { return admin(a, "/admin/cluster")["durable_events"]["ready"] == true &&
                                  admin(b, "/admin/cluster")["durable_events"]["consumers"].size() == 1; }, 10s));
  const auto post = [&](const std::string& path, const std::string& body) {
    const auto r = simple_request(a.port(), "POST", "/api/events_pub/" + path, body);
    return r && r->status == 200;
  };
  // One transaction of 20 events, each failing its first attempt: one relayed batch, one fetched
  // batch on b, every event retried there before the next one is handled.
  REQUIRE(post("txn/20/commit", "fail:1-"));
  REQUIRE(eventually([&] { return received(b, "events_sub", "demo.durable") == 20; }, 15s));
  std::string expected;
  for (int i = 0; i < 20; ++i) expected += (i == 0 ? "" : ",") + std::string("fail:1-tx") + std::to_string(i);
  const auto payloads = simple_request(b.port(), "GET", "/api/events_sub/payloads?topic=demo.durable");
  REQUIRE(payloads);
  CHECK(payloads->body == expected);
  // An event that always fails is dead-lettered on b after max_attempts; what follows it flows on.
  REQUIRE(post("durable/1", "fail:99-"));
  REQUIRE(post("durable/2", "after-"));
  CHECK(eventually([&] { return received(b, "events_sub", "demo.durable") == 22; }, 15s));
  const auto deliveries = simple_request(b.port(), "GET", "/api/events_sub/deliveries?payload=fail:99-0");
  REQUIRE(deliveries);
  CHECK(deliveries->body == "3");
  const auto dead = admin(b, "/admin/events/dead-letters");
  REQUIRE(dead.is_array());
  CHECK(std::count_if(dead.begin(), dead.end(), [](const Json& d) { return d.value("payload", "") == "fail:99-0"; }) == 1);
  const auto after = simple_request(b.port(), "GET", "/api/events_sub/payloads?topic=demo.durable");
  REQUIRE(after);
  CHECK(after->body == expected + ",after-0,after-1");
}

TEST_CASE("cluster: the README quickstart works on every host and through HAProxy with the shop split over three hosts",
          "[cluster][integration][shop]") {
  NatsServer nats;
  KeelHost a(member(nats, "a", {keel::test::example_plugin("catalog"), keel::test::example_plugin("hello")}));
  KeelHost b(member(nats, "b", {keel::test::example_plugin("orders"), keel::test::example_plugin("hello")}));
  KeelHost c(member(nats, "c", {keel::test::example_plugin("notifications")}));
  REQUIRE(eventually([&] {
    return admin(a, "/admin/cluster")["nodes"].size() == 2 && admin(b, "/admin/cluster")["nodes"].size() == 2 &&
           admin(c, "/admin/cluster")["nodes"].size() == 2 &&
           admin(c, "/admin/cluster")["durable_events"]["consumers"].size() == 1;
  }, 15s));
  keel::test::HAProxy proxy({a.port(), b.port(), c.port()});
  const auto json_post = [](std::uint16_t port, const std::string& path, const std::string& body,
                            const std::string& headers = {}) {
    const auto r = simple_request(port, "POST", path, body, "Content-Type: application/json\r\n" + headers);
    REQUIRE(r);
    return std::pair(r->status, Json::parse(r->body.empty() ? "null" : r->body, nullptr, false));
  };
  const auto json_get = [](std::uint16_t port, const std::string& path) {
    const auto r = simple_request(port, "GET", path);
    REQUIRE(r);
    return std::pair(r->status, Json::parse(r->body, nullptr, false));
  };
  // The quickstart, each step on another host: none of them loads all three plugins.
  const auto product = json_post(c.port(), "/api/catalog/products",
                                 R"({"sku":"MUG-1","name":"Mug","price_cents":1250,"currency":"EUR","stock":5})");
  REQUIRE(product.first == 201);
  CHECK(product.second["id"] == 1);
  const auto order = json_post(a.port(), "/api/orders/orders", R"({"items":[{"product_id":1,"quantity":2}]})",
                               "Idempotency-Key: quickstart-order-1\r\n");
  REQUIRE(order.first == 201);  // on b, which calls catalog on a
  CHECK(order.second["status"] == "placed");
  CHECK(order.second["total_cents"] == 2500);
  CHECK(order.second["lines"][0]["sku"] == "MUG-1");
  const auto paid = json_post(proxy.port(), "/api/orders/orders/1/pay", "");
  CHECK(paid.first == 200);
  CHECK(paid.second["status"] == "paid");
  CHECK(json_post(proxy.port(), "/api/orders/orders/1/pay", "").first == 409);
  // The order's durable events travel from b's outbox through JetStream to notifications on c.
  CHECK(eventually([&] { return json_get(b.port(), "/api/notifications/notifications?order_id=1").second["items"].size() == 2; },
                   15s));
  const auto notes = json_get(proxy.port(), "/api/notifications/notifications?order_id=1").second["items"];
  REQUIRE(notes.size() == 2);
  CHECK(notes[0]["status"] == "placed");
  CHECK(notes[1]["status"] == "paid");
  CHECK(json_get(c.port(), "/api/catalog/products/1").second["stock"] == 3);
  for (const auto port : {a.port(), b.port(), c.port(), proxy.port()}) {
    const auto hi = json_get(port, "/api/hello/greet/Ada");
    CHECK(hi.first == 200);
    CHECK(hi.second["greeting"] == "Hello, Ada!");
  }
}

TEST_CASE("cluster: 20 clients through HAProxy while the orders host is killed and restarted lose and double nothing",
          "[cluster][integration][shop]") {
  NatsServer nats;
  keel::test::TempDir b_data;
  auto b_options = member(nats, "b", {keel::test::example_plugin("orders"), keel::test::example_plugin("hello")});
  b_options.data_dir = b_data.path();
  KeelHost a(member(nats, "a", {keel::test::example_plugin("catalog"), keel::test::example_plugin("hello")}));
  auto b = std::make_unique<KeelHost>(b_options);
  KeelHost c(member(nats, "c", {keel::test::example_plugin("notifications")}));
  REQUIRE(eventually([&] {
    return admin(a, "/admin/cluster")["nodes"].size() == 2 && admin(c, "/admin/cluster")["nodes"].size() == 2 &&
           admin(c, "/admin/cluster")["durable_events"]["consumers"].size() == 1;
  }, 15s));
  keel::test::HAProxy proxy({a.port(), c.port()});  // b's port changes when it restarts
  constexpr std::int64_t kInitialStock = 100000;
  const auto product = keel::test::shop::http(proxy.port(), "POST", "/api/catalog/products",
                                 R"({"sku":"MUG-1","name":"Mug","price_cents":100,"currency":"EUR","stock":100000})");
  REQUIRE(product.status == 201);
  const auto mug = product.json["id"].get<std::int64_t>();

  std::mutex mutex;
  std::map<std::int64_t, std::int64_t> acknowledged;  // order id -> quantity, for every 201
  std::set<std::int64_t> paid;                        // orders whose pay answered 200
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int client = 0; client < 20; ++client) {
    clients.emplace_back([&, client] {
      for (int n = 0; !stop.load() && n < 1000; ++n) {
        const std::int64_t quantity = 1 + (n + client) % 3;
        const auto key = "c" + std::to_string(client) + "-" + std::to_string(n);
        const auto body = Json{{"items", {{{"product_id", mug}, {"quantity", quantity}}}}}.dump();
        keel::test::shop::Answer placed;
        for (int attempt = 0; attempt < 100 && !stop.load(); ++attempt) {  // a client retries with its key
          placed = keel::test::shop::http(proxy.port(), "POST", "/api/orders/orders", body, key);
          if (placed.status == 201 || (placed.status >= 400 && placed.status < 500)) break;
          std::this_thread::sleep_for(50ms);
        }
        if (placed.status != 201) continue;
        const auto id = placed.json["id"].get<std::int64_t>();
        {
          std::lock_guard lock(mutex);
          acknowledged[id] = quantity;
        }
        if (n % 2 != 0) continue;
        if (keel::test::shop::http(proxy.port(), "POST", "/api/orders/orders/" + std::to_string(id) + "/pay").status == 200) {
          std::lock_guard lock(mutex);
          paid.insert(id);
        }
      }
    });
  }
  const auto placed_at_least = [&](std::size_t n) {
    return eventually([&] {
      std::lock_guard lock(mutex);
      return acknowledged.size() >= n;
    }, 60s);
  };
  const bool before_kill = placed_at_least(40);
  b->process().signal(SIGKILL);
  CHECK(b->process().wait(10s) == 128 + SIGKILL);
  b.reset();
  std::this_thread::sleep_for(500ms);  // orders has no host for a moment: clients see 503 and retry
  b = std::make_unique<KeelHost>(b_options);  // the same data: its outbox and orders survive
  std::size_t at_restart = 0;
  {
    std::lock_guard lock(mutex);
    at_restart = acknowledged.size();
  }
  const bool after_restart = placed_at_least(at_restart + 40);
  stop = true;
  for (auto& t : clients) t.join();
  REQUIRE(before_kill);
  REQUIRE(after_restart);

  keel::test::shop::check_nothing_lost(proxy.port(), acknowledged, paid, mug, kInitialStock);
}
