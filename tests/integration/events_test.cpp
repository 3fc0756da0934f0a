// The event bus end to end: the real keel binary, the events_pub / events_sub / events_sub_all
// fixture plugins (tests/integration/fixtures/events_*), real HTTP. In-memory ordering, topic
// patterns, refusals at the edge, back-pressure, retries and dead letters (memory and durable),
// the admin API (resubmit, discard, auth), transactional publish, and kill -9 with durable events.
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <csignal>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "admin_token.hpp"
#include "eventually.hpp"
#include "keel_host.hpp"
#include "load.hpp"
#include "raw_client.hpp"

using keel::test::fixture;
using keel::test::eventually;
using keel::test::KeelHost;
using keel::test::simple_request;
using keel::test::with_plugins;
using Json = nlohmann::json;

namespace {

constexpr const char* kAdmin = KEEL_TEST_ADMIN_TOML;
constexpr const char* kBearer = keel::test::kAdminBearer;

std::string text_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->body : std::string("<no response>"); }
int status_of(const std::optional<keel::test::RawResponse>& r) { return r ? r->status : 0; }

std::optional<keel::test::RawResponse> get(const KeelHost& h, const std::string& path, std::string_view headers = {}) {
  return simple_request(h.port(), "GET", path, {}, headers);
}
std::optional<keel::test::RawResponse> post(const KeelHost& h, const std::string& path, std::string_view body = {},
                                            std::string_view headers = {}) {
  return simple_request(h.port(), "POST", path, body, headers);
}

/// "0,1,...,n-1" with an optional prefix on every item.
std::string sequence(int n, const std::string& prefix = {}) {
  std::string out;
  for (int i = 0; i < n; ++i) out += (i == 0 ? "" : ",") + prefix + std::to_string(i);
  return out;
}

std::string count(const KeelHost& h, const std::string& sub, const std::string& topic = {}) {
  return text_of(get(h, "/api/" + sub + "/count" + (topic.empty() ? "" : "?topic=" + topic)));
}

/// The value of `key` in "a=1 b=2" text, or -1.
long field(const std::string& text, const std::string& key) {
  std::istringstream in(text);
  std::string word;
  while (in >> word)
    if (word.rfind(key + "=", 0) == 0) return std::stol(word.substr(key.size() + 1));
  return -1;
}

Json admin_json(const KeelHost& h, const std::string& path) {
  const auto r = get(h, path, kBearer);
  if (status_of(r) != 200) return Json::array();
  return Json::parse(r->body, nullptr, false);
}

/// The dead letter whose payload is `payload`, or null.
Json dead_letter(const KeelHost& h, const std::string& payload) {
  const auto list = admin_json(h, "/admin/events/dead-letters");
  if (list.is_array())
    for (const auto& d : list)
      if (d.value("payload", "") == payload) return d;
  return Json();
}

std::string dead_letter_path(const Json& d) {
  return "/admin/events/dead-letters/" + d.at("kind").get<std::string>() + "/" + d.at("publisher").get<std::string>() +
         "/" + d.at("subscriber").get<std::string>() + "/" + std::to_string(d.at("seq").get<std::int64_t>());
}

}  // namespace

TEST_CASE("events: 500 in-memory events reach the subscriber once each and in publish order", "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")}));
  REQUIRE(text_of(post(host, "/api/events_pub/memory/500")) == "500");
  CHECK(eventually([&] { return count(host, "events_sub", "demo.memory") == "500"; }));
  CHECK(text_of(get(host, "/api/events_sub/payloads?topic=demo.memory")) == sequence(500));
  CHECK(field(text_of(get(host, "/api/events_sub/duplicates")), "received_duplicates") == 0);
  CHECK(host.stop() == 0);
}

TEST_CASE("events: a subscriber gets the events of one stream one at a time", "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")},
                             "[server]\nworker_threads = 4\n[plugin.events_sub]\ndelay_ms = 5\n"));
  REQUIRE(text_of(post(host, "/api/events_pub/memory/20", "m")) == "20");
  REQUIRE(text_of(post(host, "/api/events_pub/durable/20", "d")) == "20");
  CHECK(eventually([&] { return count(host, "events_sub") == "40"; }));
  CHECK(text_of(get(host, "/api/events_sub/payloads?topic=demo.memory")) == sequence(20, "m"));
  CHECK(text_of(get(host, "/api/events_sub/payloads?topic=demo.durable")) == sequence(20, "d"));
  // docs/events.md "Guarantees": one event at a time per in-memory inbox and per durable
  // (publisher, subscriber) stream; the inbox and a stream may overlap with each other.
  CHECK(text_of(get(host, "/api/events_sub/overlap?topic=demo.memory")) == "1");
  CHECK(text_of(get(host, "/api/events_sub/overlap?topic=demo.durable")) == "1");
}

TEST_CASE("events: a one-segment pattern skips deeper topics and a trailing hash pattern takes them",
          "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub"), fixture("events_sub_all")}));
  // demo.other.deep first: delivery is in order per subscriber, so once the later demo.memory
  // events reached events_sub, a deep event meant for it would have arrived before them.
  REQUIRE(status_of(post(host, "/api/events_pub/deep", "deep-1")) == 200);
  REQUIRE(text_of(post(host, "/api/events_pub/memory/3", "m")) == "3");
  REQUIRE(text_of(post(host, "/api/events_pub/durable/2", "d")) == "2");
  CHECK(eventually([&] { return count(host, "events_sub_all") == "6"; }));
  CHECK(eventually([&] { return count(host, "events_sub") == "5"; }));
  CHECK(count(host, "events_sub", "demo.other.deep") == "0");
  CHECK(text_of(get(host, "/api/events_sub_all/payloads?topic=demo.other.deep")) == "deep-1");
  CHECK(text_of(get(host, "/api/events_sub/payloads?topic=demo.memory")) == "m0,m1,m2");
  CHECK(text_of(get(host, "/api/events_sub_all/payloads?topic=demo.memory")) == "m0,m1,m2");
  CHECK(text_of(get(host, "/api/events_sub/payloads?topic=demo.durable")) == "d0,d1");
  CHECK(text_of(get(host, "/api/events_sub_all/payloads?topic=demo.durable")) == "d0,d1");
}

TEST_CASE("events: an undeclared topic is refused with 403 and an in-memory topic inside a transaction with 400",
          "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")}, KEEL_TEST_ADMIN_TOML));
  const auto undeclared = post(host, "/api/events_pub/undeclared");
  CHECK(status_of(undeclared) == 403);
  CHECK(text_of(undeclared).find("\"code\":") != std::string::npos);
  CHECK(host.process().wait_for_output("demo.nope", std::chrono::seconds(5)));
  CHECK(status_of(post(host, "/api/events_pub/memory-in-txn")) == 400);
  // Both refusals are counted: the undeclared one per publisher, the other on its topic.
  std::uint64_t undeclared_refused = 0, memory_refused = 0;
  for (const auto& t : admin_json(host, "/admin/events/topics")) {
    if (t.value("publisher", "") != "events_pub") continue;
    if (t["topic"].is_null()) undeclared_refused = t.value("refused", 0u);
    else if (t["topic"] == "demo.memory") memory_refused = t.value("refused", 0u);
  }
  CHECK(undeclared_refused == 1);
  CHECK(memory_refused == 1);
  // Neither refusal published anything.
  REQUIRE(text_of(post(host, "/api/events_pub/memory/1", "after")) == "1");
  CHECK(eventually([&] { return count(host, "events_sub") == "1"; }));
  CHECK(text_of(get(host, "/api/events_sub/payloads")) == "after0");
}

TEST_CASE("events: a full subscriber inbox refuses publishes with busy and every accepted event is delivered",
          "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")},
                             "[events]\nqueue_capacity = 5\n[plugin.events_sub]\ndelay_ms = 50\n"));
  const auto burst = text_of(post(host, "/api/events_pub/memory/100?busy=count"));
  INFO(burst);
  const long accepted = field(burst, "accepted"), busy = field(burst, "busy");
  CHECK(busy > 0);
  CHECK(accepted >= 5);
  CHECK(accepted + busy == 100);
  CHECK(eventually([&] { return count(host, "events_sub", "demo.memory") == std::to_string(accepted); }));
  // What was accepted arrives in order: payloads are increasing indexes of the burst.
  const auto payloads = text_of(get(host, "/api/events_sub/payloads?topic=demo.memory"));
  std::istringstream in(payloads);
  std::string item;
  long last = -1, seen = 0;
  bool increasing = true;
  while (std::getline(in, item, ',')) {
    const long v = std::stol(item);
    increasing = increasing && v > last;
    last = v;
    ++seen;
  }
  CHECK(seen == accepted);
  CHECK(increasing);
  // Without ?busy=count the route returns the first refusal: 503 at the edge.
  CHECK(status_of(post(host, "/api/events_pub/memory/100")) == 503);
  // Shutting down with events still queued for a slow subscriber is clean and bounded.
  CHECK(host.stop() == 0);
}

TEST_CASE("events: failed deliveries are retried and dead-lettered after max_attempts for memory and durable topics",
          "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")},
                             std::string(kAdmin) + "[events]\nmax_attempts = 3\nretry_base_ms = 10\n"));
  REQUIRE(text_of(post(host, "/api/events_pub/memory/1", "fail:1-m")) == "1");
  REQUIRE(text_of(post(host, "/api/events_pub/durable/1", "fail:1-d")) == "1");
  REQUIRE(text_of(post(host, "/api/events_pub/memory/1", "fail:99-m")) == "1");
  REQUIRE(text_of(post(host, "/api/events_pub/durable/1", "fail:99-d")) == "1");
  // fail:1 fails once and is applied by the second attempt.
  for (const std::string payload : {"fail:1-m0", "fail:1-d0"}) {
    INFO(payload);
    CHECK(eventually([&] { return status_of(get(host, "/api/events_sub/attempt?payload=" + payload)) == 200; }));
    CHECK(text_of(get(host, "/api/events_sub/attempt?payload=" + payload)).rfind("2 ", 0) == 0);
    CHECK(text_of(get(host, "/api/events_sub/deliveries?payload=" + payload)) == "2");
  }
  // fail:99 fails three times and becomes a dead letter of its kind.
  const std::vector<std::pair<std::string, std::string>> dead_cases{{"fail:99-m0", "memory"}, {"fail:99-d0", "durable"}};
  for (const auto& [payload, kind] : dead_cases) {
    INFO(payload);
    CHECK(eventually([&] { return !dead_letter(host, payload).is_null(); }));
    const auto d = dead_letter(host, payload);
    REQUIRE_FALSE(d.is_null());
    CHECK(d.value("kind", "") == kind);
    CHECK(d.value("publisher", "") == "events_pub");
    CHECK(d.value("subscriber", "") == "events_sub");
    CHECK(d.value("attempts", 0) == 3);
    CHECK(d.value("topic", "") == (kind == "memory" ? "demo.memory" : "demo.durable"));
    CHECK(d.value("event_id", "").size() == 36);
    CHECK(d.contains("seq"));
    CHECK(text_of(get(host, "/api/events_sub/deliveries?payload=" + payload)) == "3");
    CHECK(status_of(get(host, "/api/events_sub/attempt?payload=" + payload)) == 404);
  }
  // The streams carry on past a dead letter.
  REQUIRE(text_of(post(host, "/api/events_pub/memory/1", "next-m")) == "1");
  REQUIRE(text_of(post(host, "/api/events_pub/durable/1", "next-d")) == "1");
  CHECK(eventually([&] { return status_of(get(host, "/api/events_sub/attempt?payload=next-d0")) == 200; }));
  CHECK(eventually([&] { return status_of(get(host, "/api/events_sub/attempt?payload=next-m0")) == 200; }));
  // The subscription counters saw it all (the delivered counter moves just after the handler
  // returns, so wait for it).
  std::uint64_t dead = 0, retried = 0, failed = 0, delivered = 0;
  bool fields = true;
  CHECK(eventually([&] {
    const auto subs = admin_json(host, "/admin/events/subscriptions");
    dead = retried = failed = delivered = 0;
    for (const auto& s : subs) {
      fields = fields && s.contains("lag") && s.contains("queued") && s.contains("publisher");
      if (s.value("subscriber", "") != "events_sub") continue;
      dead += s.value("dead_lettered", 0u);
      retried += s.value("retried", 0u);
      failed += s.value("failed", 0u);
      delivered += s.value("delivered", 0u);
    }
    return delivered == 4;
  }));
  CHECK(fields);
  CHECK(dead == 2);
  CHECK(failed == 8);   // 1 + 1 + 3 + 3
  CHECK(retried == 6);  // 1 + 1 + 2 + 2
  CHECK(delivered == 4);
  CHECK(host.stop() == 0);
}

TEST_CASE("events: a resubmitted dead letter is delivered again with the same event id and a discarded one is gone",
          "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")},
                             std::string(kAdmin) + "[events]\nmax_attempts = 3\nretry_base_ms = 10\n"));
  REQUIRE(text_of(post(host, "/api/events_pub/durable/1", "fail:99-r")) == "1");
  REQUIRE(text_of(post(host, "/api/events_pub/memory/1", "fail:99-q")) == "1");
  REQUIRE(text_of(post(host, "/api/events_pub/durable/1", "fail:99-z")) == "1");
  for (const std::string payload : {"fail:99-r0", "fail:99-q0", "fail:99-z0"}) {
    INFO(payload);
    REQUIRE(eventually([&] { return !dead_letter(host, payload).is_null(); }));
  }
  // From now on the subscriber accepts fail:K payloads: a resubmission succeeds.
  REQUIRE(status_of(post(host, "/api/events_sub/heal")) == 200);
  for (const std::string payload : {"fail:99-r0", "fail:99-q0"}) {
    INFO(payload);
    const auto d = dead_letter(host, payload);
    const auto id = d.value("event_id", "");
    const auto r = simple_request(host.port(), "POST", dead_letter_path(d) + "/resubmit", {}, kBearer);
    CHECK(status_of(r) == 200);
    INFO(text_of(r));
    CHECK(eventually([&] { return status_of(get(host, "/api/events_sub/attempt?payload=" + payload)) == 200; }));
    // Same event id; the attempt counter restarts at 1.
    CHECK(text_of(get(host, "/api/events_sub/attempt?payload=" + payload)) == "1 " + id);
    CHECK(text_of(get(host, "/api/events_sub/deliveries?payload=" + payload)) == "4");
    CHECK(dead_letter(host, payload).is_null());
    // Resubmitting it again finds nothing.
    CHECK(status_of(simple_request(host.port(), "POST", dead_letter_path(d) + "/resubmit", {}, kBearer)) == 404);
  }
  // Discard: gone from the list, never delivered, a second DELETE is 404.
  const auto z = dead_letter(host, "fail:99-z0");
  REQUIRE_FALSE(z.is_null());
  CHECK(status_of(simple_request(host.port(), "DELETE", dead_letter_path(z), {}, kBearer)) == 200);
  CHECK(dead_letter(host, "fail:99-z0").is_null());
  CHECK(status_of(simple_request(host.port(), "DELETE", dead_letter_path(z), {}, kBearer)) == 404);
  CHECK(status_of(get(host, "/api/events_sub/attempt?payload=fail:99-z0")) == 404);
  // Malformed paths.
  CHECK(status_of(simple_request(host.port(), "DELETE", "/admin/events/dead-letters/other/events_pub/events_sub/1", {},
                                 kBearer)) == 400);
  CHECK(status_of(simple_request(host.port(), "DELETE", "/admin/events/dead-letters/durable/events_pub/events_sub/x",
                                 {}, kBearer)) == 400);
  CHECK(status_of(simple_request(host.port(), "DELETE", "/admin/events/dead-letters/memory/events_pub/events_sub/999",
                                 {}, kBearer)) == 404);
  CHECK(host.stop() == 0);
}

TEST_CASE("events: durable events published in a rolled-back transaction are never delivered and committed ones once",
          "[events][integration]") {
  KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")}));
  REQUIRE(status_of(post(host, "/api/events_pub/txn/3/rollback", "r-")) == 200);
  REQUIRE(status_of(post(host, "/api/events_pub/txn/5/commit", "c-")) == 200);
  REQUIRE(status_of(post(host, "/api/events_pub/txn/2/rollback", "r2-")) == 200);
  // A marker after both: events of one publisher arrive in order, so once it is there, anything
  // committed before it is too.
  REQUIRE(text_of(post(host, "/api/events_pub/durable/1", "end-")) == "1");
  CHECK(eventually([&] { return status_of(get(host, "/api/events_sub/attempt?payload=end-0")) == 200; }));
  CHECK(text_of(get(host, "/api/events_sub/payloads?topic=demo.durable")) == sequence(5, "c-tx") + ",end-0");
  const auto dup = text_of(get(host, "/api/events_sub/duplicates"));
  CHECK(field(dup, "received_duplicates") == 0);
  CHECK(field(dup, "deliveries") == 6);
}

TEST_CASE("events: kill -9 while durable events are being published loses no acknowledged event",
          "[events][integration]") {
  keel::test::TempDir data;
  std::mutex mutex;
  std::set<std::string> acknowledged;  // payloads
  {
    auto opts = with_plugins({fixture("events_pub"), fixture("events_sub")}, "[server]\nworker_threads = 4\n");
    opts.data_dir = data.path();
    KeelHost host(opts);
    keel::test::WriteLoop writers(
        host.port(), "/api/events_pub/durable/1", 3,
        [](int t, int i) { return "w" + std::to_string(t) + "-" + std::to_string(i) + "-"; },
        [&](const std::string& body, const keel::test::RawResponse& r) {
          if (r.status != 200) return;
          std::lock_guard lock(mutex);
          acknowledged.insert(body + "0");
        });
    REQUIRE(host.kill_at_random(std::chrono::milliseconds(300), std::chrono::milliseconds(800)) == 128 + SIGKILL);
    writers.stop();
  }
  REQUIRE(acknowledged.size() > 10);
  auto opts = with_plugins({fixture("events_pub"), fixture("events_sub")});
  opts.data_dir = data.path();
  KeelHost again(opts);
  std::size_t missing = acknowledged.size();
  const bool all = eventually([&] {
    const auto payloads = text_of(get(again, "/api/events_sub/payloads?topic=demo.durable"));
    std::set<std::string> got;
    std::istringstream in(payloads);
    std::string item;
    while (std::getline(in, item, ',')) got.insert(item);
    missing = 0;
    for (const auto& p : acknowledged) missing += got.count(p) == 0 ? 1 : 0;
    return missing == 0;
  });
  INFO(acknowledged.size() << " acknowledged events, " << missing << " missing");
  CHECK(all);
  CHECK(missing == 0);
  // At least once, but applied exactly once: redeliveries (if the kill caused any) were deduped.
  const auto dup = text_of(get(again, "/api/events_sub/duplicates"));
  INFO(dup);
  CHECK(field(dup, "received_duplicates") == 0);
  CHECK(field(dup, "deliveries") >= static_cast<long>(acknowledged.size()));
}

TEST_CASE("events: the admin API needs the configured bearer token and is off without one", "[events][integration]") {
  {
    KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")}, kAdmin));
    REQUIRE(text_of(post(host, "/api/events_pub/durable/2")) == "2");
    const auto none = get(host, "/admin/events/topics");
    CHECK(status_of(none) == 401);
    CHECK(status_of(get(host, "/admin/events/topics", "Authorization: Bearer wrong\r\n")) == 401);
    CHECK(status_of(get(host, "/admin/events/topics", "Authorization: Basic c2VjcmV0\r\n")) == 401);
    CHECK(status_of(get(host, "/admin/events/dead-letters", "Authorization: Bearer " KEEL_TEST_ADMIN_TOKEN "x\r\n")) == 401);
    CHECK(status_of(simple_request(host.port(), "DELETE", "/admin/events/dead-letters/durable/events_pub/events_sub/1",
                                   {}, "Authorization: Bearer nope\r\n")) == 401);
    const auto ok = get(host, "/admin/events/topics", kBearer);
    REQUIRE(status_of(ok) == 200);
    const auto topics = Json::parse(ok->body, nullptr, false);
    REQUIRE(topics.is_array());
    bool durable_seen = false, memory_seen = false;
    for (const auto& t : topics) {
      if (t.value("topic", "") == "demo.durable") {
        durable_seen = true;
        CHECK(t.value("durable", false));
        CHECK(t.value("published", 0u) == 2);
      }
      if (t.value("topic", "") == "demo.memory") {
        memory_seen = true;
        CHECK_FALSE(t.value("durable", true));
      }
    }
    CHECK(durable_seen);
    CHECK(memory_seen);
    CHECK(eventually([&] { return count(host, "events_sub") == "2"; }));
    for (const std::string path : {"/admin/events/subscriptions", "/admin/events/dead-letters"}) {
      const auto r = get(host, path, kBearer);
      CHECK(status_of(r) == 200);
      CHECK(Json::parse(text_of(r), nullptr, false).is_array());
    }
  }
  {
    KeelHost host(with_plugins({fixture("events_pub"), fixture("events_sub")}));
    CHECK(status_of(get(host, "/admin/events/topics")) == 404);
    CHECK(status_of(get(host, "/admin/events/topics", kBearer)) == 404);
  }
}
