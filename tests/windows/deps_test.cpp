// The host's dependencies as built for Windows (docs/windows.md "Build"), run under Wine: each
// does, on the target, the kind of thing the host does with it. SQLiteCpp and SQLite (from
// Debian's source package): a WAL database in a file, a transaction, a read back. spdlog and fmt,
// toml++, CLI11, nlohmann_json (Debian's headers): a formatted log line, a config table, options,
// a JSON document. Boost.Asio and Beast: an HTTP/1.1 request over loopback TCP between two
// coroutines. Boost.DLL: a plugin .dll loaded and its entry point called.
//   keel_windows_deps_test PLUGIN.dll
// Prints a line per check; exits 1 if any failed.

#include <cstdio>
#include <filesystem>
#include <random>
#include <sstream>
#include <string>

#include <CLI/CLI.hpp>
#include <SQLiteCpp/SQLiteCpp.h>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/dll/shared_library.hpp>
#include <keel/plugin.h>
#include <sqlite3.h>
#include <nlohmann/json.hpp>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <toml++/toml.h>

namespace fs = std::filesystem;
namespace asio = boost::asio;
namespace http = boost::beast::http;

namespace {

int failures = 0;

void report(bool ok, const std::string& what) {
  std::printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
  if (!ok) ++failures;
}

template <typename Check>
void run(const std::string& what, Check&& check) {
  try {
    report(check(), what);
  } catch (const std::exception& e) {
    report(false, what + ": " + e.what());
  }
}

bool sqlite_wal(const fs::path& dir) {
  const auto file = dir / "data.db";
  {
    SQLite::Database db(file.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
    const std::string mode = db.execAndGet("PRAGMA journal_mode=WAL").getString();
    if (mode != "wal") return false;
    db.exec("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL)");
    SQLite::Transaction tx(db);
    SQLite::Statement insert(db, "INSERT INTO items (name) VALUES (?)");
    for (const char* name : {"a", "b", "c"}) {
      insert.bind(1, name);
      insert.exec();
      insert.reset();
    }
    tx.commit();
  }
  SQLite::Database again(file.string(), SQLite::OPEN_READONLY);
  return again.execAndGet("SELECT group_concat(name, ',') FROM items").getString() == "a,b,c";
}

bool spdlog_fmt() {
  std::ostringstream out;
  auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out);
  spdlog::logger log("deps", sink);
  // Windows' default end of line is "\r\n"; the host's log lines end in "\n" everywhere.
  log.set_formatter(std::make_unique<spdlog::pattern_formatter>("%l %v", spdlog::pattern_time_type::local, "\n"));
  log.info("plugin loaded name={} generation={}", "hello", 2);
  log.flush();
  return out.str() == "info plugin loaded name=hello generation=2\n";
}

bool toml_cli_json() {
  const auto config = toml::parse("[server]\nlisten = \"127.0.0.1:0\"\nworkers = 2\n");
  const bool parsed = config["server"]["listen"].value_or(std::string()) == "127.0.0.1:0" &&
                      config["server"]["workers"].value_or(0) == 2;
  CLI::App app("keel");
  std::string file;
  app.add_option("--config", file);
  const char* argv[] = {"keel", "--config", "keel.toml"};
  app.parse(3, argv);
  const auto json = nlohmann::json::parse(R"({"name":"hello","routes":[1,2]})");
  return parsed && file == "keel.toml" && json["routes"].size() == 2;
}

bool asio_beast_loopback() {
  asio::io_context io;
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto port = acceptor.local_endpoint().port();
  std::string answer;
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    auto socket = co_await acceptor.async_accept(asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    http::request<http::string_body> request;
    co_await http::async_read(socket, buffer, request, asio::use_awaitable);
    http::response<http::string_body> response(http::status::ok, 11);
    response.body() = "hello from " + std::string(request.target());
    response.prepare_payload();
    co_await http::async_write(socket, response, asio::use_awaitable);
  }, asio::detached);
  asio::co_spawn(io, [&]() -> asio::awaitable<void> {
    asio::ip::tcp::socket socket(io);
    co_await socket.async_connect({asio::ip::make_address("127.0.0.1"), port}, asio::use_awaitable);
    http::request<http::string_body> request(http::verb::get, "/api/hello", 11);
    request.set(http::field::host, "127.0.0.1");
    co_await http::async_write(socket, request, asio::use_awaitable);
    boost::beast::flat_buffer buffer;
    http::response<http::string_body> response;
    co_await http::async_read(socket, buffer, response, asio::use_awaitable);
    answer = response.body();
  }, asio::detached);
  io.run_for(std::chrono::seconds(20));
  return answer == "hello from /api/hello";
}

bool dll_entry(const fs::path& plugin) {
  boost::dll::shared_library library(fs::absolute(plugin), boost::dll::load_mode::default_mode);
  const auto entry = library.get<const keel_plugin*()>(KEEL_PLUGIN_ENTRY_SYMBOL);
  const keel_plugin* table = entry();
  return table != nullptr && KEEL_ABI_MAJOR(table->abi_version) == KEEL_ABI_VERSION_MAJOR;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: keel_windows_deps_test PLUGIN.dll\n");
    return 2;
  }
  const auto dir = fs::temp_directory_path() / ("keel-deps-test-" + std::to_string(std::random_device{}()));
  fs::create_directories(dir);
  run("SQLiteCpp + SQLite " SQLITE_VERSION ": a WAL database, a transaction, read back", [&] { return sqlite_wal(dir); });
  run("spdlog + fmt: a formatted line through a sink", [] { return spdlog_fmt(); });
  run("toml++, CLI11, nlohmann_json: a config table, options, a document", [] { return toml_cli_json(); });
  run("Boost.Asio + Beast: HTTP/1.1 over loopback TCP", [] { return asio_beast_loopback(); });
  run("Boost.DLL: " + std::string(argv[1]) + " loaded, entry point called", [&] { return dll_entry(argv[1]); });
  std::error_code ec;
  fs::remove_all(dir, ec);
  return failures == 0 ? 0 : 1;
}
