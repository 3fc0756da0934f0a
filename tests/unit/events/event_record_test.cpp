// events::EventRecord: one shared block per event, from the bus's pools or the heap.
#include "events/bus.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <thread>
#include <vector>

namespace ev = keel::host::events;

namespace {

constexpr std::string_view kTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

ev::EventRecord::Parts parts_with(std::string_view payload, std::string_view traceparent) {
  return {"0190f5a4-8c1e-7b3a-9d2f-000000000001", "orders.placed", payload, "application/json", "orders",
          traceparent, "vendor=1", "req-1"};
}

}  // namespace

TEST_CASE("event record: every field reads back, whatever the block it lives in", "[events]") {
  // Small events come from the 256-byte pool, larger ones from the 1 KiB pool, the largest from
  // the heap: each reads back the same.
  for (const std::size_t size : {std::size_t{10}, std::size_t{600}, std::size_t{5000}}) {
    const std::string payload(size, 'p');
    const ev::EventRecord e(parts_with(payload, kTraceparent), 42, 7);
    CHECK(e.event_id() == "0190f5a4-8c1e-7b3a-9d2f-000000000001");
    CHECK(e.topic() == "orders.placed");
    CHECK(e.payload() == payload);
    CHECK(e.content_type() == "application/json");
    CHECK(e.publisher() == "orders");
    CHECK(e.traceparent() == kTraceparent);
    CHECK(e.tracestate() == "vendor=1");
    CHECK(e.request_id() == "req-1");
    CHECK(e.published_unix_ns == 42);
    CHECK(e.seq == 7);
  }
}

TEST_CASE("event record: an invalid traceparent is dropped with its tracestate", "[events]") {
  for (const std::string_view bad : {"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", "garbage", ""}) {
    const ev::EventRecord e(parts_with("x", bad), 0, 0);
    CHECK(e.traceparent().empty());
    CHECK(e.tracestate().empty());
    CHECK(e.payload() == "x");
  }
}

TEST_CASE("event record: a later version's traceparent is kept in its version-00 form", "[events]") {
  const std::string later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-" + std::string(10000, 'z');
  const ev::EventRecord e(parts_with("x", later), 0, 0);
  CHECK(e.traceparent() == kTraceparent);
  CHECK(e.tracestate() == "vendor=1");
}

TEST_CASE("event record: copies share the block across threads until the last one goes", "[events]") {
  // Records made on one thread and released on others (publisher and subscribers): the blocks
  // go back to their pool, and every copy reads the same text while it lives.
  std::vector<ev::EventRecord> made;
  for (int i = 0; i < 5000; ++i) made.emplace_back(parts_with(std::to_string(i), kTraceparent), i, 0);
  std::vector<std::thread> readers;
  std::vector<int> wrong(3, 0);  // Catch's assertions are for the test's own thread
  for (std::size_t t = 0; t < wrong.size(); ++t) {
    readers.emplace_back([copies = made, &mismatches = wrong[t]] {  // each thread holds its own copies
      for (std::size_t i = 0; i < copies.size(); ++i)
        if (copies[i].payload() != std::to_string(i)) ++mismatches;
    });
  }
  made.clear();  // the readers' copies keep the blocks
  for (auto& r : readers) r.join();
  for (const int w : wrong) CHECK(w == 0);
  const ev::EventRecord after(parts_with("after", kTraceparent), 0, 0);
  CHECK(after.payload() == "after");
}
