#include "nats_server.hpp"

#include <csignal>
#include <cstdlib>
#include <filesystem>

#include <unistd.h>

#include <catch2/catch.hpp>

namespace keel::test {
namespace {

constexpr std::string_view kListening = "Listening for client connections on 127.0.0.1:";
constexpr std::string_view kReady = "Server is ready";

// Debian installs it in /usr/sbin, which a user's PATH may lack.
std::string binary() {
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::string_view rest(path);
    while (!rest.empty()) {
      const auto colon = rest.find(':');
      const auto dir = rest.substr(0, colon);
      const auto candidate = std::filesystem::path(dir) / "nats-server";
      if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0) return candidate.string();
      if (colon == std::string_view::npos) break;
      rest.remove_prefix(colon + 1);
    }
  }
  return "/usr/sbin/nats-server";
}

}  // namespace

NatsServer::NatsServer(std::vector<std::string> args) : args_(std::move(args)) {
  launch("-1");  // a random free port, printed in the log
}

NatsServer::~NatsServer() {
  if (process_) stop();
}

void NatsServer::launch(const std::string& port_arg) {
  const auto log = dir_.path() / ("nats-" + std::to_string(++starts_) + ".log");
  std::vector<std::string> args{"-js", "-a", "127.0.0.1", "-p", port_arg, "-sd", (dir_.path() / "store").string()};
  args.insert(args.end(), args_.begin(), args_.end());
  process_ = std::make_unique<Process>(binary(), args, log);
  REQUIRE(process_->wait_for_output(std::string(kReady), std::chrono::seconds(20)));
  const auto out = process_->output();
  const auto at = out.find(kListening);
  REQUIRE(at != std::string::npos);
  port_ = static_cast<std::uint16_t>(std::stoi(out.substr(at + kListening.size(), 5)));
}

void NatsServer::stop() {
  process_->signal(SIGTERM);
  if (!process_->wait(std::chrono::seconds(15))) {
    process_->signal(SIGKILL);
    (void)process_->wait(std::chrono::seconds(5));
  }
  process_.reset();
}

void NatsServer::start() {
  REQUIRE_FALSE(process_);
  launch(std::to_string(port_));
}

std::string NatsServer::cluster_toml(const std::string& node, const std::string& extra) const {
  return "[cluster]\nnats_url = \"" + url() + "\"\nnode = \"" + node + "\"\nannounce_interval_ms = 200\n" + extra;
}

}  // namespace keel::test
