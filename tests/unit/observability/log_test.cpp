#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "observability/log.hpp"
#include "temp_dir.hpp"

namespace obs = keel::host::observability;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> lines_of(const fs::path& file) {
  std::ifstream in(file);
  std::vector<std::string> out;
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

std::string content_of(const fs::path& file) {
  std::ifstream in(file);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// Every test leaves logging as the process had it: text on standard error.
struct RestoreLogging {
  ~RestoreLogging() {
    obs::shutdown();
    obs::init({});
  }
};

}  // namespace

TEST_CASE("the log file rotates by size, keeps max_files and only whole lines", "[log]") {
  const RestoreLogging restore;
  const keel::test::TempDir dir;
  const auto file = dir.path() / "keel.log";
  const auto before = obs::log_stats();
  obs::init({"info", obs::LogFormat::kText, file, 2000, 2});
  auto log = obs::logger("test.rotation");
  for (int i = 0; i < 300; ++i) log->info("line {:04} {}", i, std::string(60, 'x'));
  obs::shutdown();

  CHECK(fs::exists(file));
  CHECK(fs::exists(dir.path() / "keel.log.1"));
  CHECK(fs::exists(dir.path() / "keel.log.2"));
  CHECK_FALSE(fs::exists(dir.path() / "keel.log.3"));
  for (const auto* name : {"keel.log", "keel.log.1", "keel.log.2"}) {
    const auto text = content_of(dir.path() / name);
    CHECK(text.size() <= 2000);
    REQUIRE_FALSE(text.empty());
    CHECK(text.back() == '\n');
    for (const auto& line : lines_of(dir.path() / name)) {
      CHECK(line.rfind("20", 0) == 0);  // starts with the timestamp: no torn lines
      CHECK(line.find("[test.rotation] line ") != std::string::npos);
    }
  }
  const auto newest = lines_of(file);
  REQUIRE_FALSE(newest.empty());
  CHECK(newest.back().find("line 0299") != std::string::npos);
  CHECK(obs::log_stats().rotations > before.rotations);
}

TEST_CASE("JSON lines carry the request id and trace of the thread's scope", "[log]") {
  const RestoreLogging restore;
  const keel::test::TempDir dir;
  const auto file = dir.path() / "keel.json.log";
  obs::init({"info", obs::LogFormat::kJson, file, 0, 5});
  auto log = obs::logger("test.json");
  log->info("outside");
  {
    const obs::LogScope scope({"req-1", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"});
    log->warn("inside \"quoted\"");
  }
  obs::shutdown();
  const auto lines = lines_of(file);
  REQUIRE(lines.size() == 2);
  const auto outside = nlohmann::json::parse(lines[0]);
  CHECK(outside["msg"] == "outside");
  CHECK(outside["logger"] == "test.json");
  CHECK_FALSE(outside.contains("request_id"));
  const auto inside = nlohmann::json::parse(lines[1]);
  CHECK(inside["msg"] == "inside \"quoted\"");
  CHECK(inside["level"] == "warning");
  CHECK(inside["request_id"] == "req-1");
  CHECK(inside["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(inside["span_id"] == "00f067aa0ba902b7");
}

TEST_CASE("text lines end with the scope's ids", "[log]") {
  const RestoreLogging restore;
  const keel::test::TempDir dir;
  const auto file = dir.path() / "keel.txt.log";
  obs::init({"info", obs::LogFormat::kText, file, 0, 5});
  {
    const obs::LogScope scope({"req-2", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"});
    obs::logger("test.text")->info("hello");
  }
  obs::shutdown();
  const auto lines = lines_of(file);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("info  [test.text] hello req=req-2 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 span_id=00f067aa0ba902b7") !=
        std::string::npos);
}

TEST_CASE("a failing log write is counted and never reaches the caller", "[log]") {
  if (!fs::exists("/dev/full")) return;
  const RestoreLogging restore;
  const auto before = obs::log_stats();
  obs::init({"info", obs::LogFormat::kText, "/dev/full", 0, 5});
  auto log = obs::logger("test.full");
  for (int i = 0; i < 50; ++i) CHECK_NOTHROW(log->error("cannot be written {}", i));
  obs::shutdown();
  CHECK(obs::log_stats().write_errors >= before.write_errors + 50);
}

TEST_CASE("the log file's directory is created, an unopenable file is refused with its name", "[log]") {
  const RestoreLogging restore;
  const keel::test::TempDir dir;
  obs::init({"info", obs::LogFormat::kText, dir.path() / "new" / "dir" / "keel.log", 0, 5});
  CHECK(fs::exists(dir.path() / "new" / "dir" / "keel.log"));
  const auto not_a_dir = dir.write("plain-file", "x");
  try {
    obs::init({"info", obs::LogFormat::kText, not_a_dir / "keel.log", 0, 5});
    FAIL("init accepted a file below a regular file");
  } catch (const std::runtime_error& e) {
    CHECK(std::string(e.what()).find("plain-file/keel.log") != std::string::npos);
  }
}

TEST_CASE("an access entry is written as the line the access logger would write, in order with the others",
          "[log]") {
  const RestoreLogging restore;
  const keel::test::TempDir dir;
  for (const auto format : {obs::LogFormat::kText, obs::LogFormat::kJson}) {
    const auto file = dir.path() / (format == obs::LogFormat::kJson ? "access.json.log" : "access.txt.log");
    obs::init({"info", format, file, 0, 5});
    obs::logger("test.before")->info("first");
    obs::log_access({"GET", "/api/hello/greet/x?y=\"z\"", "127.0.0.1:5000", {}, 200, 182, 37,
                     {"req-3", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"}});
    obs::log_access({"POST", "/api/orders/orders", "[::1]:6000", "b7ad6b7169203331", 201, 99, 1250, {"req-4", {}, {}}});
    obs::logger("test.after")->info("last");
    obs::shutdown();
    const auto lines = lines_of(file);
    REQUIRE(lines.size() == 4);
    if (format == obs::LogFormat::kText) {
      CHECK(lines[0].find("[test.before] first") != std::string::npos);
      CHECK(lines[1].find(" info  [access] request method=GET target=/api/hello/greet/x?y=\"z\" status=200 bytes=182 "
                          "duration_us=37 peer=127.0.0.1:5000 req=req-3 trace_id=4bf92f3577b34da6a3ce929d0e0e4736 "
                          "span_id=00f067aa0ba902b7") != std::string::npos);
      CHECK(lines[2].find(" info  [access] request method=POST target=/api/orders/orders status=201 bytes=99 "
                          "duration_us=1250 peer=[::1]:6000 parent_id=b7ad6b7169203331 req=req-4") != std::string::npos);
      CHECK(lines[2].find("trace_id") == std::string::npos);
      CHECK(lines[3].find("[test.after] last") != std::string::npos);
    } else {
      const auto one = nlohmann::json::parse(lines[1]);
      CHECK(one["logger"] == "access");
      CHECK(one["level"] == "info");
      CHECK(one["msg"] == "request method=GET target=/api/hello/greet/x?y=\"z\" status=200 bytes=182 duration_us=37 "
                          "peer=127.0.0.1:5000");
      CHECK(one["request_id"] == "req-3");
      CHECK(one["span_id"] == "00f067aa0ba902b7");
      CHECK(one["thread"].is_number());
      CHECK(nlohmann::json::parse(lines[2])["msg"].get<std::string>().ends_with(" parent_id=b7ad6b7169203331"));
      CHECK(nlohmann::json::parse(lines[3])["msg"] == "last");
    }
  }
  // After shutdown (no writer thread) an entry is written at once.
  const auto file = dir.path() / "sync.log";
  obs::init({"info", obs::LogFormat::kText, file, 0, 5});
  obs::shutdown();
  obs::log_access({"GET", "/x", "127.0.0.1:1", {}, 404, 10, 1, {}});
  const auto lines = lines_of(file);
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].find("request method=GET target=/x status=404") != std::string::npos);
}
