// keel_bench_bare_server: the "no plugin layer" baseline for bench/http.sh (docs/benchmarks.md).
// A minimal Boost.Beast HTTP/1.1 server in the shape of Beast's awaitable examples: one thread,
// one co_spawn'ed coroutine per connection, keep-alive, http::request_parser + flat_buffer.
// Every request gets the bytes Keel's hello plugin sends for GET /api/hello/greet/bench, with the
// same header set (Date, Server, Content-Type, Content-Length, a 16-character X-Request-Id), so
// the difference to Keel is routing, the plugin ABI and Keel's own HTTP checks. A request with a
// body is answered like hello's POST /echo: the body back, with the request's Content-Type.
// Deliberately absent: timeouts, limits beyond Beast's defaults, logging, graceful drain.
//
//   keel_bench_bare_server [--listen 127.0.0.1:0] [--port-file FILE] [--pad N]
//
// --pad N adds an "X-Pad" header so the response is N bytes longer (N = 0 or N >= 10), for
// matching another server's response size exactly.

#include <array>
#include <charconv>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <exception>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;
constexpr auto kAsTuple = asio::as_tuple(asio::use_awaitable);

constexpr std::string_view kGreeting = R"({"greeting":"Hello, bench!"})";
constexpr std::string_view kJson = "application/json";

struct Options {
  std::string listen = "127.0.0.1:0";
  std::string port_file;
  std::size_t pad = 0;
};

// IMF-fixdate, recomputed at most once per second (Keel and nginx cache it the same way).
std::string_view http_date() {
  static std::time_t cached_second = 0;
  static std::array<char, 32> cached{};
  static std::size_t cached_len = 0;
  const std::time_t now = std::time(nullptr);
  if (now != cached_second) {
    std::tm tm{};
    gmtime_r(&now, &tm);
    cached_len = std::strftime(cached.data(), cached.size(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_second = now;
  }
  return {cached.data(), cached_len};
}

void append_number(std::string& out, std::uint64_t v) {
  char digits[24];
  const auto r = std::to_chars(digits, digits + sizeof digits, v);
  out.append(digits, r.ptr);
}

// Same length as Keel's generated X-Request-Id (16 hex digits); a counter is enough here.
void append_request_id(std::string& out) {
  static std::uint64_t counter = 0;
  static constexpr char kHex[] = "0123456789abcdef";
  auto v = ++counter;
  for (int i = 0; i < 16; ++i) {
    out += kHex[v & 0xF];
    v >>= 4;
  }
}

asio::awaitable<void> session(tcp::socket socket, const Options& opt) {
  boost::system::error_code ec;
  socket.set_option(tcp::no_delay(true), ec);  // as Keel does
  beast::flat_buffer buffer;
  std::string head;
  for (;;) {
    http::request_parser<http::string_body> parser;
    parser.body_limit(1024 * 1024);
    auto [rec, n] = co_await http::async_read(socket, buffer, parser, kAsTuple);
    if (rec) co_return;  // closed, or a malformed request: drop the connection
    const auto& req = parser.get();

    std::string_view body = kGreeting;
    std::string_view content_type = kJson;
    if (!req.body().empty()) {
      body = req.body();
      const auto it = req.find(http::field::content_type);
      content_type = it == req.end() ? std::string_view{} : std::string_view(it->value().data(), it->value().size());
    }

    head.clear();
    head += "HTTP/1.1 200 OK\r\nDate: ";
    head += http_date();
    head += "\r\nServer: keel\r\n";
    if (!content_type.empty()) {
      head += "Content-Type: ";
      head += content_type;
      head += "\r\n";
    }
    head += "Content-Length: ";
    append_number(head, body.size());
    head += "\r\nX-Request-Id: ";
    append_request_id(head);
    head += "\r\n";
    if (opt.pad >= 10) {
      head += "X-Pad: ";  // "X-Pad: " + value + CRLF is exactly opt.pad bytes
      head.append(opt.pad - 9, 'x');
      head += "\r\n";
    }
    const bool keep_alive = req.keep_alive();
    if (!keep_alive) head += "Connection: close\r\n";
    head += "\r\n";

    const std::array<asio::const_buffer, 2> buffers{asio::buffer(head), asio::buffer(body.data(), body.size())};
    auto [wec, wn] = co_await asio::async_write(socket, buffers, kAsTuple);
    if (wec) co_return;
    if (!keep_alive) {
      socket.shutdown(tcp::socket::shutdown_send, ec);
      co_return;
    }
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, const Options& opt) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kAsTuple);
    if (ec == asio::error::operation_aborted) co_return;
    if (ec) continue;
    asio::co_spawn(acceptor.get_executor(), session(std::move(socket), opt), asio::detached);
  }
}

void write_port_file(const std::string& file, std::uint16_t port) {
  // Temporary name + rename, so a poller never reads a half-written number (as keel does).
  const std::string tmp = file + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << port << '\n';
    if (!out) throw std::runtime_error("cannot write " + tmp);
  }
  std::filesystem::rename(tmp, file);
}

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr, "keel_bench_bare_server: %s\nusage: keel_bench_bare_server [--listen HOST:PORT] "
                       "[--port-file FILE] [--pad N]\n", why);
  std::exit(2);
}

Options parse_args(int argc, char** argv) {
  Options opt;
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (i + 1 >= argc) usage("missing value after an option");
    const std::string_view value = argv[++i];
    if (arg == "--listen") {
      opt.listen = value;
    } else if (arg == "--port-file") {
      opt.port_file = value;
    } else if (arg == "--pad") {
      const auto [end, err] = std::from_chars(value.data(), value.data() + value.size(), opt.pad);
      if (err != std::errc{} || end != value.data() + value.size() || (opt.pad != 0 && opt.pad < 10))
        usage("--pad takes 0 or a number >= 10");
    } else {
      usage("unknown option");
    }
  }
  return opt;
}

}  // namespace

int main(int argc, char** argv) {
  const Options opt = parse_args(argc, argv);
  try {
    const auto colon = opt.listen.rfind(':');
    if (colon == std::string::npos) usage("--listen wants HOST:PORT");
    const auto address = asio::ip::make_address(opt.listen.substr(0, colon));
    const auto port = static_cast<std::uint16_t>(std::stoul(opt.listen.substr(colon + 1)));

    asio::io_context ioc{1};
    tcp::acceptor acceptor(ioc, tcp::endpoint(address, port));
    asio::signal_set signals(ioc, SIGINT, SIGTERM);
    signals.async_wait([&](const boost::system::error_code&, int) { ioc.stop(); });
    asio::co_spawn(ioc, accept_loop(acceptor, opt), asio::detached);
    if (!opt.port_file.empty()) write_port_file(opt.port_file, acceptor.local_endpoint().port());
    ioc.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "keel_bench_bare_server: %s\n", e.what());
    return 1;
  }
  return 0;
}
