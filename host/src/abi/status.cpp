#include "abi/status.hpp"

#include <keel/sdk/status.hpp>

namespace keel::host::abi {

unsigned http_status_for(keel_status status) noexcept { return sdk::http_status(static_cast<sdk::StatusCode>(status)); }

std::string_view status_name(keel_status status) noexcept {
  return sdk::status_name(static_cast<sdk::StatusCode>(status));
}

}  // namespace keel::host::abi
