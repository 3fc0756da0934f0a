// The log tail behind GET /admin/logs[/stream]: recording only while a reader is open, filters,
// backlog, lines lost to the ring, the reader limit, and the sink feeding it.
#include <catch2/catch.hpp>

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "observability/log.hpp"
#include "observability/log_tail.hpp"

namespace obs = keel::host::observability;

namespace {

void record(std::string_view logger, std::string_view message, int level = 2, std::string_view request_id = {}) {
  const obs::LogContext ctx{request_id, "0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331"};
  obs::tail_record(1'700'000'000'123'456'000, level, logger, message, request_id.empty() ? nullptr : &ctx);
}

std::vector<std::string> messages(const std::vector<obs::TailLine>& lines) {
  std::vector<std::string> out;
  for (const auto& l : lines) out.push_back(l.message);
  return out;
}

obs::TailFilter only(std::string_view logger_plugin) {
  obs::TailFilter f;
  f.plugin = logger_plugin;
  return f;
}

}  // namespace

TEST_CASE("log tail: records only while a reader is open and wakes it once per read", "[log][tail]") {
  CHECK_FALSE(obs::tail_recording());
  std::atomic<int> wakes{0};
  auto reader = obs::TailReader::open(only("tail-a"), 0, [&wakes] { ++wakes; });
  REQUIRE(reader);
  CHECK(obs::tail_recording());
  record("plugin.tail-a", "one");
  record("plugin.tail-a", "two");
  record("plugin.other", "not for this reader");
  CHECK(wakes == 1);  // the second line finds the reader already woken
  std::vector<obs::TailLine> lines;
  std::uint64_t lost = 0;
  reader->read(lines, 100, lost);
  CHECK(messages(lines) == std::vector<std::string>{"one", "two"});
  CHECK(lost == 0);
  CHECK(lines[0].seq + 1 == lines[1].seq);
  CHECK(lines[0].level == 2);
  record("plugin.tail-a", "three");
  CHECK(wakes == 2);
  reader->close();
  CHECK_FALSE(obs::tail_recording());
  CHECK(obs::tail_snapshot({}, 100).empty());  // the last reader gone, the ring is emptied
  record("plugin.tail-a", "after close");  // the sink would not call this now; nobody is woken
  CHECK(wakes == 2);
  lines.clear();
  reader->read(lines, 100, lost);
  CHECK(lines.empty());
}

TEST_CASE("log tail: filters by level and plugin (logger or named fields or mount) and request id", "[log][tail]") {
  auto reader = obs::TailReader::open({}, 0, [] {});
  REQUIRE(reader);
  record("plugin.orders", "from the plugin", 1);
  record("trace", "span kind=call caller=orders target=catalog method=GET path=/products/1 status=200 duration_us=80", 2, "r1");
  record("plugins", "reloaded plugin=orders generation=2", 2);
  record("plugins", "reloaded plugin=orders-v2 generation=1", 2);  // another name with the same prefix
  record("access", "request method=GET target=/api/orders/orders/7 status=200 bytes=10 duration_us=90 peer=x", 2, "r1");
  record("access", "request method=GET target=/api/ordersx/1 status=200 bytes=10 duration_us=90 peer=x", 2, "r2");
  record("http", "something failed plugin='orders'", 4, "r2");

  const auto snapshot = [](obs::TailFilter f) { return obs::tail_snapshot(f, 100); };
  auto orders = only("orders");
  CHECK(snapshot(orders).size() == 4);  // the plugin's own line, the span, the reload, the quoted name
  orders.path_prefix = "/api/orders";
  CHECK(snapshot(orders).size() == 5);  // and its access line, not /api/ordersx
  obs::TailFilter catalog = only("catalog");
  CHECK(messages(snapshot(catalog)).size() == 1);  // named as the call's target
  obs::TailFilter warn;
  warn.min_level = obs::tail_level("warn");
  CHECK(messages(snapshot(warn)) == std::vector<std::string>{"something failed plugin='orders'"});
  obs::TailFilter r1;
  r1.request_id = "r1";
  const auto of_r1 = snapshot(r1);
  REQUIRE(of_r1.size() == 2);
  CHECK(of_r1[0].logger == "trace");
  CHECK(of_r1[1].logger == "access");
  CHECK(of_r1[1].trace_id == "0af7651916cd43dd8448eb211c80319c");
  CHECK(obs::tail_snapshot(r1, 1).size() == 1);  // the newest within the limit
  CHECK(obs::tail_snapshot(r1, 1)[0].logger == "access");
  CHECK(obs::tail_level("verbose") == -1);
  CHECK(obs::tail_level_name(3) == "warn");
}

TEST_CASE("log tail: a backlog of earlier matching lines and lines lost to the ring", "[log][tail]") {
  auto keep = obs::TailReader::open({}, 0, [] {});  // recording on while lines are made
  for (int i = 0; i < 10; ++i) record("plugin.tail-b", "b" + std::to_string(i));
  auto reader = obs::TailReader::open(only("tail-b"), 3, [] {});
  REQUIRE(reader);
  std::vector<obs::TailLine> lines;
  std::uint64_t lost = 0;
  reader->read(lines, 100, lost);
  CHECK(messages(lines) == std::vector<std::string>{"b7", "b8", "b9"});

  // More than the ring holds before the next read: the overwritten ones are counted as lost.
  for (std::size_t i = 0; i < obs::kTailLines + 5; ++i) record("plugin.tail-b", "c" + std::to_string(i));
  lines.clear();
  reader->read(lines, 10, lost);
  CHECK(lost == 5);
  CHECK(lines.size() == 10);
  CHECK(lines.front().message == "c5");
  lines.clear();
  lost = 0;
  reader->read(lines, obs::kTailLines, lost);
  CHECK(lost == 0);
  CHECK(lines.size() == obs::kTailLines - 10);
  CHECK(lines.back().message == "c" + std::to_string(obs::kTailLines + 4));

  // Lines the reader does not want are not counted as lost when the ring moves past them.
  auto narrow = obs::TailReader::open(only("tail-nobody"), 0, [] {});
  for (std::size_t i = 0; i < obs::kTailLines + 5; ++i) record("plugin.tail-other", "d");
  lines.clear();
  lost = 0;
  narrow->read(lines, 10, lost);
  CHECK(lines.empty());
  CHECK(lost == 0);

  // A long message is cut and marked.
  record("plugin.tail-b", std::string(obs::kTailMessageBytes + 100, 'x'));
  lines.clear();
  reader->read(lines, 10, lost);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].message.size() == obs::kTailMessageBytes + 6);
  CHECK(lines[0].message.ends_with(" [...]"));
}

TEST_CASE("log tail: at most kMaxTailReaders readers at once", "[log][tail]") {
  std::vector<std::unique_ptr<obs::TailReader>> readers;
  for (std::size_t i = 0; i < obs::kMaxTailReaders; ++i) {
    readers.push_back(obs::TailReader::open({}, 0, [] {}));
    REQUIRE(readers.back());
  }
  CHECK_FALSE(obs::TailReader::open({}, 0, [] {}));
  readers.pop_back();  // destroying a reader closes it
  CHECK(obs::TailReader::open({}, 0, [] {}));
}

TEST_CASE("log tail: the log sink feeds it what the loggers write with the line's ids", "[log][tail]") {
  auto reader = obs::TailReader::open(only("tail-c"), 0, [] {});
  REQUIRE(reader);
  auto log = obs::logger("plugin.tail-c");
  {
    const obs::LogContext ctx{"req-tail-c", "", ""};
    const obs::LogScope scope(ctx);
    log->warn("disk {} is full", "d1");
  }
  log->debug("below the level: never made");
  std::vector<obs::TailLine> lines;
  std::uint64_t lost = 0;
  reader->read(lines, 10, lost);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].message == "disk d1 is full");
  CHECK(lines[0].level == 3);
  CHECK(lines[0].logger == "plugin.tail-c");
  CHECK(lines[0].request_id == "req-tail-c");
  CHECK(lines[0].time_ns > 0);
}
