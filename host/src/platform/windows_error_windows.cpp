#include "platform/windows_error.hpp"

#include <windows.h>

namespace keel::host::platform {

std::string system_message(std::uint32_t code) {
  // The wide text, converted to UTF-8: FormatMessageA would answer in the ANSI code page, which
  // is not UTF-8 on a non-English Windows and would break the JSON the message may end up in.
  wchar_t* text = nullptr;
  const DWORD n = ::FormatMessageW(
      FORMAT_MESSAGE_ALLOCATE_BUFFER | FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, nullptr, code,
      MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), reinterpret_cast<LPWSTR>(&text), 0, nullptr);
  std::string message;
  if (n > 0 && text != nullptr) {
    const int size = ::WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(n), nullptr, 0, nullptr, nullptr);
    if (size > 0) {
      message.resize(static_cast<std::size_t>(size));
      ::WideCharToMultiByte(CP_UTF8, 0, text, static_cast<int>(n), message.data(), size, nullptr, nullptr);
    }
  }
  if (text != nullptr) ::LocalFree(text);
  // Windows ends its messages with ".\r\n": the callers' sentences go on after them.
  while (!message.empty() && (message.back() == '\n' || message.back() == '\r' || message.back() == '.'))
    message.pop_back();
  return message.empty() ? "error " + std::to_string(code) : message;
}

}  // namespace keel::host::platform
