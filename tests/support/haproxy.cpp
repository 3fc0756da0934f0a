#include "haproxy.hpp"

#include <csignal>
#include <string>
#include <thread>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include "raw_client.hpp"

namespace keel::test {
namespace {

// A port nothing listens on right now (the kernel's choice for a socket bound to port 0).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

}  // namespace

HAProxy::HAProxy(const std::vector<std::uint16_t>& ports) : port_(free_port()) {
  std::string cfg =
      "global\n  maxconn 1024\n"
      "defaults\n  mode http\n  timeout connect 1s\n  timeout client 30s\n  timeout server 30s\n"
      "  retries 2\n  option redispatch\n"
      "frontend keel\n  bind 127.0.0.1:" + std::to_string(port_) + "\n  default_backend hosts\n"
      "backend hosts\n  balance roundrobin\n  option httpchk GET /readyz\n  http-check expect status 200\n"
      "  default-server inter 200ms fall 2 rise 2\n";
  for (std::size_t i = 0; i < ports.size(); ++i)
    cfg += "  server host" + std::to_string(i) + " 127.0.0.1:" + std::to_string(ports[i]) + " check\n";
  const auto file = dir_.write("haproxy.cfg", cfg);
  process_ = std::make_unique<Process>("/usr/sbin/haproxy", std::vector<std::string>{"-f", file.string(), "-db"},
                                       dir_.path() / "haproxy.log");
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    try {
      up = simple_request(port_, "GET", "/healthz").has_value();
    } catch (const std::exception&) {  // not listening yet
    }
    if (!up) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  INFO(process_->output());
  REQUIRE(up);
}

HAProxy::~HAProxy() {
  process_->signal(SIGTERM);
  if (!process_->wait(std::chrono::seconds(10))) {
    process_->signal(SIGKILL);
    (void)process_->wait(std::chrono::seconds(5));
  }
}

}  // namespace keel::test
