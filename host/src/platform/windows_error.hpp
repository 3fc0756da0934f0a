#pragma once
// The text of a Windows error code (GetLastError()), for error messages. Windows only.

#include <cstdint>
#include <string>

namespace keel::host::platform {

// "The system cannot find the file specified" for 2; "error <code>" when Windows has no text.
std::string system_message(std::uint32_t code);

}  // namespace keel::host::platform
