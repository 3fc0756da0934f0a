#pragma once
// The plugin class of cpp_plugin: GET /hi answers {"from":"clang"} (or "gcc", whichever
// compiler built it). Stateless, so on_request may run concurrently.

#include <keel/sdk/plugin.hpp>

namespace cpp_plugin {

/// Which compiler built this file: "clang" or "gcc".
[[nodiscard]] const char* compiler_name() noexcept;

class Greeter final : public keel::sdk::Plugin {
 public:
  keel::sdk::Status on_request(const keel::sdk::Request& req, keel::sdk::Responder res) override;
};

}  // namespace cpp_plugin
