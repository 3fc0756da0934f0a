#include "greeter.hpp"

#include <string>

namespace cpp_plugin {

const char* compiler_name() noexcept {
#if defined(__clang__)
  return "clang";
#else
  return "gcc";
#endif
}

keel::sdk::Status Greeter::on_request(const keel::sdk::Request& req, keel::sdk::Responder res) {
  static_cast<void>(req);  // one route
  return res.json(200, std::string{R"({"from":")"} + compiler_name() + R"("})");
}

}  // namespace cpp_plugin
