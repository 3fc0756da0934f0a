// plugins::ResponderTable: the ids a plugin answers requests with (plugins/responders.hpp).

#include "plugins/responders.hpp"

#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

namespace kp = keel::host::plugins;
namespace http = keel::host::http;

namespace {

http::Response answer(unsigned status, std::string body) {
  http::Response r;
  r.status = status;
  r.body = std::move(body);
  return r;
}

}  // namespace

TEST_CASE("responders: a synchronous answer lands in the server's response and frees the id", "[plugins][responders]") {
  kp::ResponderTable table;
  http::Response target;
  const auto id = table.acquire_sync(&target);
  CHECK(table.pending() == 1);
  CHECK(table.complete(id, answer(201, "made")) == KEEL_OK);
  CHECK(target.status == 201);
  CHECK(target.body == "made");
  CHECK(table.pending() == 0);
  CHECK(table.finish_sync(id, false) == nullptr);  // answered before on_request returned: final
  CHECK(table.complete(id, answer(200, "again")) == KEEL_ERR_ALREADY_COMPLETED);
  CHECK(target.body == "made");
}

TEST_CASE("responders: ids are never reused, so a stale or foreign id is told apart", "[plugins][responders]") {
  kp::ResponderTable table;
  http::Response a, b;
  const auto first = table.acquire_sync(&a);
  REQUIRE(table.complete(first, answer(200, "1")) == KEEL_OK);
  const auto second = table.acquire_sync(&b);  // the freed slot again, with a new sequence
  CHECK(second != first);
  CHECK((second & 0xFFFFFFu) == (first & 0xFFFFFFu));
  CHECK(table.complete(first, answer(200, "stale")) == KEEL_ERR_ALREADY_COMPLETED);
  CHECK(b.status == 200);
  CHECK(b.body.empty());
  CHECK(table.complete(second + (1u << 24) * 1000, answer(200, "never issued")) == KEEL_ERR_NOT_FOUND);
  CHECK(table.complete(0x00FFFFFFu, answer(200, "no such slot")) == KEEL_ERR_NOT_FOUND);
  CHECK(table.complete(second, answer(204, "")) == KEEL_OK);
  CHECK(b.status == 204);
}

TEST_CASE("responders: a handler that returns without answering defers the answer", "[plugins][responders]") {
  kp::ResponderTable table;
  http::Response target;
  const auto id = table.acquire_sync(&target);
  auto reply = table.finish_sync(id, /*failed=*/false);
  REQUIRE(reply != nullptr);
  CHECK(table.pending() == 1);
  CHECK(table.complete(id, answer(202, "later")) == KEEL_OK);
  CHECK(target.body.empty());  // not the server's response object any more
  CHECK(reply->take().body == "later");
  CHECK(table.pending() == 0);
}

TEST_CASE("responders: a failed handler's id is released at once", "[plugins][responders]") {
  kp::ResponderTable table;
  http::Response target;
  const auto id = table.acquire_sync(&target);
  CHECK(table.finish_sync(id, /*failed=*/true) == nullptr);
  CHECK(table.pending() == 0);
  CHECK(table.complete(id, answer(200, "late")) == KEEL_ERR_ALREADY_COMPLETED);
}

TEST_CASE("responders: an answer after the client's deadline is refused as a timeout", "[plugins][responders]") {
  kp::ResponderTable table;
  auto reply = std::make_shared<http::AsyncReply>();
  const auto id = table.acquire_async(reply);
  CHECK(table.pending() == 1);
  REQUIRE(reply->expire());
  CHECK(table.pending() == 0);  // nobody awaits it: a drain need not wait for it
  CHECK(table.complete(id, answer(200, "too late")) == KEEL_ERR_TIMEOUT);
}

TEST_CASE("responders: a stopped plugin's pending requests are answered 503", "[plugins][responders]") {
  kp::ResponderTable table;
  auto r1 = std::make_shared<http::AsyncReply>();
  auto r2 = std::make_shared<http::AsyncReply>();
  const auto a = table.acquire_async(r1);
  const auto b = table.acquire_async(r2);
  http::Response sync_target;
  const auto c = table.acquire_sync(&sync_target);
  table.abandon_all();
  CHECK(table.pending() == 0);
  for (auto* r : {r1.get(), r2.get()}) {
    const auto res = r->take();
    CHECK(res.status == 503);
    CHECK(res.body.find("plugin stopped before answering") != std::string::npos);
  }
  for (auto id : {a, b, c}) CHECK(table.complete(id, answer(200, "after stop")) == KEEL_ERR_ALREADY_COMPLETED);
}

TEST_CASE("responders: concurrent answers each land once", "[plugins][responders]") {
  kp::ResponderTable table;
  constexpr int kRequests = 2000;
  std::vector<std::shared_ptr<http::AsyncReply>> replies;
  std::vector<keel_responder> ids;
  for (int i = 0; i < kRequests; ++i) {
    replies.push_back(std::make_shared<http::AsyncReply>());
    ids.push_back(table.acquire_async(replies.back()));
  }
  std::atomic<int> ok{0}, again{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {  // every thread answers every id: exactly one wins each
      for (int i = 0; i < kRequests; ++i) {
        const auto st = table.complete(ids[static_cast<std::size_t>(i)], answer(200, std::to_string(i)));
        (st == KEEL_OK ? ok : again)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  CHECK(ok.load() == kRequests);
  CHECK(again.load() == 3 * kRequests);
  CHECK(table.pending() == 0);
  for (int i = 0; i < kRequests; ++i) CHECK(replies[static_cast<std::size_t>(i)]->take().body == std::to_string(i));
}
