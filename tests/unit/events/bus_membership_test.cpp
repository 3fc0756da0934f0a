// events::Bus membership at run time: publishers and subscribers that join, change their
// declarations and leave while the bus runs (a plugin reloaded or dropped in), with real
// outboxes in storage::Database files and subscribers that record what they receive.

#include "events/bus.hpp"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include "common/timer_queue.hpp"
#include "common/worker_pool.hpp"
#include "../storage/storage_test_support.hpp"
#include "eventually.hpp"
#include "storage/database.hpp"
#include "temp_dir.hpp"

namespace ev = keel::host::events;
namespace kst = keel::host::storage;
using keel::test::eventually;

namespace {

keel_plugin_bytes bytes(std::string_view s) { return {s.data(), s.size()}; }

/// A subscriber that records "topic=payload" per delivery, in order.
struct Recorder {
  std::mutex mutex;
  std::vector<std::string> got;
  std::vector<std::string> snapshot() {
    std::lock_guard lock(mutex);
    return got;
  }
  std::size_t count(std::string_view topic) {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (const auto& g : got) n += g.starts_with(std::string(topic) + "=") ? 1 : 0;
    return n;
  }
};

struct Harness {
  keel::test::TempDir dir;
  keel::host::config::EventsConfig cfg = [] {
    keel::host::config::EventsConfig c;
    c.retry_base = std::chrono::milliseconds(5);
    return c;
  }();
  keel::host::WorkerPool pool{2, 4096};
  keel::host::TimerQueue timers;
  ev::Bus bus{cfg, pool, timers};
  std::map<std::string, std::shared_ptr<kst::Database>> dbs;
  std::map<std::string, std::unique_ptr<Recorder>> recorders;
  std::map<std::string, std::shared_ptr<keel::host::SerialQueue>> queues;

  ~Harness() { bus.stop(); }

  std::shared_ptr<kst::Database> db(const std::string& name) {
    auto& slot = dbs[name];
    if (!slot) {
      kst::Options o;
      o.file = dir.path() / (name + ".db");
      o.plugin = name;
      keel::test::storage::use_test_engine(o);  // the outbox on PostgreSQL in the "postgres:" variant
      slot = kst::open_database(std::move(o));
    }
    return slot;
  }

  void publisher(const std::string& name, std::vector<std::string> topics, std::vector<std::string> durable) {
    bus.set_publisher({name, std::move(topics), std::move(durable), db(name)});
  }

  Recorder& subscriber(const std::string& name, std::vector<std::string> patterns) {
    auto& rec = recorders[name];
    if (!rec) rec = std::make_unique<Recorder>();
    auto& queue = queues[name];
    if (!queue) queue = std::make_shared<keel::host::SerialQueue>(pool, 4096);
    Recorder* r = rec.get();
    bus.set_subscriber({name, std::move(patterns),
                        [r](const ev::EventRecord& e, std::uint32_t) {
                          std::lock_guard lock(r->mutex);
                          r->got.push_back(std::string(e.topic()) + "=" + std::string(e.payload()));
                          return KEEL_OK;
                        },
                        [queue](std::function<void()> job) { return queue->post(std::move(job)); }});
    return *r;
  }

  keel_status publish(const std::string& publisher, std::string_view topic, std::string_view payload) {
    keel_publish_args args{};
    args.struct_size = sizeof args;
    args.topic = bytes(topic);
    args.payload = bytes(payload);
    args.content_type = bytes("text/plain");
    std::string error;
    return bus.publish(publisher, args, KEEL_TXN_NONE, "", error);
  }

  void run() {
    bus.start();
    bus.begin_delivery();
  }
};

}  // namespace

TEST_CASE("bus: a subscriber that joins at run time gets new in-memory events and the durable backlog",
          "[events][bus]") {
  Harness h;
  h.publisher("orders", {"orders.placed", "orders.audit"}, {"orders.placed"});
  h.run();
  REQUIRE(h.publish("orders", "orders.placed", "before-1") == KEEL_OK);
  REQUIRE(h.publish("orders", "orders.audit", "lost") == KEEL_OK);  // in-memory, nobody listens yet

  auto& late = h.subscriber("mailer", {"orders.*"});
  REQUIRE(h.publish("orders", "orders.audit", "after-1") == KEEL_OK);
  REQUIRE(h.publish("orders", "orders.placed", "after-2") == KEEL_OK);
  CHECK(eventually([&] { return late.snapshot().size() == 3; }));
  const auto got = late.snapshot();
  CHECK(std::count(got.begin(), got.end(), "orders.placed=before-1") == 1);  // retained outbox, from cursor 0
  CHECK(std::count(got.begin(), got.end(), "orders.audit=after-1") == 1);
  CHECK(std::count(got.begin(), got.end(), "orders.placed=after-2") == 1);
  CHECK(std::count(got.begin(), got.end(), "orders.audit=lost") == 0);
}

TEST_CASE("bus: a publisher's new declarations apply to the next publish and dropped topics are refused",
          "[events][bus]") {
  Harness h;
  auto& sub = h.subscriber("mailer", {"orders.#"});
  h.publisher("orders", {"orders.placed"}, {});
  h.run();
  CHECK(h.publish("orders", "orders.paid", "x") == KEEL_ERR_PERMISSION_DENIED);
  CHECK(h.publish("orders", "orders.placed", "memory") == KEEL_OK);

  // Reloaded: orders.placed is durable now and orders.paid is new (durable too).
  h.publisher("orders", {"orders.placed", "orders.paid"}, {"orders.placed", "orders.paid"});
  CHECK(h.publish("orders", "orders.paid", "paid-1") == KEEL_OK);
  CHECK(h.publish("orders", "orders.placed", "durable") == KEEL_OK);
  CHECK(eventually([&] { return sub.snapshot().size() == 3; }));

  // Reloaded again without orders.paid: refused from now on.
  h.publisher("orders", {"orders.placed"}, {"orders.placed"});
  CHECK(h.publish("orders", "orders.paid", "paid-2") == KEEL_ERR_PERMISSION_DENIED);

  // The counters of every topic ever declared stay, with the durability declared last.
  std::map<std::string, ev::TopicStats> by_topic;
  for (const auto& t : h.bus.topics()) by_topic[t.topic] = t;
  CHECK(by_topic["orders.placed"].published == 2);
  CHECK(by_topic["orders.placed"].durable);
  CHECK(by_topic["orders.paid"].published == 1);
  CHECK(by_topic[""].refused == 2);  // the two undeclared publishes
}

TEST_CASE("bus: events committed under a topic no longer durable or declared are still delivered",
          "[events][bus]") {
  Harness h;
  h.publisher("orders", {"orders.placed", "orders.audit"}, {"orders.placed", "orders.audit"});
  h.run();
  for (int i = 0; i < 3; ++i) REQUIRE(h.publish("orders", "orders.audit", "a" + std::to_string(i)) == KEEL_OK);
  // The publisher stops declaring orders.audit durable (it is in-memory now), then drops it:
  // the outbox rows written before stay deliverable to whoever subscribes.
  h.publisher("orders", {"orders.placed", "orders.audit"}, {"orders.placed"});
  h.publisher("orders", {"orders.placed"}, {"orders.placed"});
  auto& sub = h.subscriber("auditor", {"orders.audit"});
  CHECK(eventually([&] { return sub.count("orders.audit") == 3; }));
  CHECK(sub.snapshot() == std::vector<std::string>{"orders.audit=a0", "orders.audit=a1", "orders.audit=a2"});

  // A later process (a new bus on the same database) still knows the topic.
  h.bus.stop();
  Harness again;
  again.dbs["orders"] = h.db("orders");
  again.publisher("orders", {"orders.placed"}, {});  // declares nothing durable now
  auto& other = again.subscriber("archiver", {"orders.#"});
  again.run();
  CHECK(eventually([&] { return other.count("orders.audit") == 3; }));
}

TEST_CASE("bus: changed patterns redirect the fan-out and a subscriber with no patterns gets nothing new",
          "[events][bus]") {
  Harness h;
  h.publisher("orders", {"orders.placed", "orders.paid", "orders.item.added"}, {"orders.paid"});
  auto& sub = h.subscriber("mailer", {"orders.placed"});
  h.run();
  REQUIRE(h.publish("orders", "orders.placed", "1") == KEEL_OK);
  REQUIRE(h.publish("orders", "orders.paid", "ignored") == KEEL_OK);
  CHECK(eventually([&] { return sub.count("orders.placed") == 1; }));

  h.subscriber("mailer", {"orders.#"});  // now everything under orders, at any depth
  REQUIRE(h.publish("orders", "orders.item.added", "2") == KEEL_OK);
  CHECK(eventually([&] { return sub.count("orders.item.added") == 1 && sub.count("orders.paid") == 1; }));
  // The durable stream started from its cursor: the orders.paid event published before the
  // change is delivered (once), as a restart with the new patterns would have.
  CHECK(sub.count("orders.paid") == 1);

  h.subscriber("mailer", {});
  REQUIRE(h.publish("orders", "orders.placed", "3") == KEEL_OK);
  REQUIRE(h.publish("orders", "orders.paid", "4") == KEEL_OK);
  auto& probe = h.subscriber("probe", {"orders.paid"});  // proves the durable publish went through
  CHECK(eventually([&] { return probe.count("orders.paid") == 2; }));
  CHECK(sub.snapshot().size() == 3);
  bool mailer_listed = false;
  for (const auto& st : h.bus.subscriptions()) mailer_listed = mailer_listed || st.subscriber == "mailer";
  CHECK_FALSE(mailer_listed);
}

TEST_CASE("bus: membership changes while publishers hammer it lose and duplicate nothing", "[events][bus]") {
  Harness h;
  h.publisher("orders", {"orders.placed"}, {"orders.placed"});
  auto& sub = h.subscriber("mailer", {"orders.*"});
  h.run();
  std::atomic<bool> stop{false};
  std::atomic<int> published{0}, failed{0};
  std::thread writer([&] {
    for (int i = 0; !stop.load() && i < 100000; ++i)
      (h.publish("orders", "orders.placed", std::to_string(i)) == KEEL_OK ? published : failed)++;
  });
  for (int i = 0; i < 200; ++i) {
    // Alternate the declarations and the patterns, as reloads of both plugins would.
    h.publisher("orders", i % 2 == 0 ? std::vector<std::string>{"orders.placed", "orders.extra"}
                                     : std::vector<std::string>{"orders.placed"},
                {"orders.placed"});
    h.subscriber("mailer", i % 2 == 0 ? std::vector<std::string>{"orders.#"} : std::vector<std::string>{"orders.*"});
  }
  stop = true;
  writer.join();
  CHECK(failed.load() == 0);
  CHECK(eventually([&] { return sub.count("orders.placed") == static_cast<std::size_t>(published.load()); }));
  const auto got = sub.snapshot();
  CHECK(got.size() == static_cast<std::size_t>(published.load()));
  for (std::size_t i = 0; i < got.size(); ++i) {
    INFO("delivery " << i);
    REQUIRE(got[i] == "orders.placed=" + std::to_string(i));  // in commit order, once each
  }
}

TEST_CASE("bus: a durable declaration without a database is refused and changes nothing", "[events][bus]") {
  Harness h;
  h.publisher("orders", {"orders.placed"}, {});
  h.run();
  CHECK_THROWS_WITH(h.bus.set_publisher({"orders", {"orders.placed"}, {"orders.placed"}, nullptr}),
                    Catch::Contains("plugin 'orders' declares durable topics but has no database"));
  CHECK(h.publish("orders", "orders.placed", "still in-memory") == KEEL_OK);
}

TEST_CASE("bus: durable events published by many threads at once are each committed once, in each thread's order",
          "[events][bus]") {
  // Publishes outside a transaction that meet share one outbox transaction (group commit); each
  // publish still returns only after its own row is committed.
  Harness h;
  h.publisher("orders", {"orders.placed"}, {"orders.placed"});
  auto& sub = h.subscriber("mailer", {"orders.*"});
  h.run();
  constexpr int kThreads = 6, kEach = 300;
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kEach; ++i)
        if (h.publish("orders", "orders.placed", std::to_string(t) + "-" + std::to_string(i)) != KEEL_OK) ++failed;
    });
  }
  for (auto& t : threads) t.join();
  CHECK(failed.load() == 0);
  REQUIRE(eventually([&] { return sub.count("orders.placed") >= kThreads * kEach; }));
  const auto got = sub.snapshot();
  CHECK(got.size() == static_cast<std::size_t>(kThreads * kEach));
  std::vector<int> next(kThreads, 0);
  for (const auto& g : got) {
    const auto dash = g.find('-');
    const int t = std::stoi(g.substr(std::string_view("orders.placed=").size()));
    const int i = std::stoi(g.substr(dash + 1));
    INFO(g);
    REQUIRE(i == next[static_cast<std::size_t>(t)]);  // once each, in the order the thread published
    ++next[static_cast<std::size_t>(t)];
  }
}

TEST_CASE("bus: a durable publish from a read-only run is refused, never written by a group commit", "[events][bus]") {
  Harness h;
  h.publisher("orders", {"orders.placed"}, {"orders.placed"});
  h.run();
  kst::ReadOnlyScope run;  // as a "storage": "read" route of the publisher runs
  run.begin(*h.db("orders"), /*reserve_reader=*/false);
  if (!run.active()) return;  // PostgreSQL: such routes are not read-only runs
  CHECK(h.publish("orders", "orders.placed", "x") == KEEL_ERR_PERMISSION_DENIED);
  run.end();
  CHECK(h.publish("orders", "orders.placed", "y") == KEEL_OK);
}
