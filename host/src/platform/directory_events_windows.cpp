// DirectoryEvents on Windows: ReadDirectoryChangesW on the directory, overlapped, with an event
// for its completion and a manual-reset event for wake(); WaitForMultipleObjects on both.
#include "platform/directory_events.hpp"

#include <windows.h>

#include <algorithm>
#include <cstddef>
#include <cwctype>
#include <stdexcept>

#include "platform/windows_error.hpp"

namespace keel::host::platform {
namespace {

constexpr DWORD kFilter = FILE_NOTIFY_CHANGE_FILE_NAME | FILE_NOTIFY_CHANGE_LAST_WRITE | FILE_NOTIFY_CHANGE_SIZE |
                          FILE_NOTIFY_CHANGE_ATTRIBUTES | FILE_NOTIFY_CHANGE_CREATION;

// Windows file names compare without case: "Hello.DLL" is a plugin too.
bool ends_with_ignoring_case(std::wstring_view name, std::wstring_view suffix) {
  if (name.size() < suffix.size()) return false;
  return std::equal(suffix.begin(), suffix.end(), name.end() - static_cast<std::ptrdiff_t>(suffix.size()),
                    [](wchar_t a, wchar_t b) { return std::towlower(static_cast<wint_t>(a)) == std::towlower(static_cast<wint_t>(b)); });
}

}  // namespace

struct DirectoryEvents::Impl {
  std::wstring suffix;
  HANDLE directory = INVALID_HANDLE_VALUE;
  HANDLE changed = nullptr;  // signalled when the read below completes
  HANDLE wake = nullptr;     // manual reset: stays set once woken
  OVERLAPPED overlapped{};
  alignas(DWORD) std::byte buffer[16384];
  std::string no_notices;

  bool armed = false;  // a read is pending

  // Starts the next asynchronous read of the directory's changes. If it cannot be (the directory
  // went away or cannot be read any more), the watcher polls from now on; false then.
  bool rearm_or_poll() {
    ::ResetEvent(changed);
    overlapped = OVERLAPPED{};
    overlapped.hEvent = changed;
    armed = ::ReadDirectoryChangesW(directory, buffer, sizeof buffer, FALSE, kFilter, nullptr, &overlapped, nullptr) != 0;
    if (!armed) {
      no_notices = "polling (ReadDirectoryChangesW: " + system_message(::GetLastError()) + ")";
      close_directory();
    }
    return armed;
  }

  void close_directory() {
    if (directory == INVALID_HANDLE_VALUE) return;
    DWORD ignored = 0;
    if (armed && ::CancelIoEx(directory, &overlapped)) ::GetOverlappedResult(directory, &overlapped, &ignored, TRUE);
    armed = false;
    ::CloseHandle(directory);
    directory = INVALID_HANDLE_VALUE;
  }
};

DirectoryEvents::DirectoryEvents(const std::filesystem::path& directory, std::string_view suffix, bool notify)
    : impl_(std::make_unique<Impl>()) {
  auto& s = *impl_;
  s.suffix.assign(suffix.begin(), suffix.end());  // ASCII: ".dll"
  s.wake = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
  s.changed = ::CreateEventW(nullptr, TRUE, FALSE, nullptr);
  if (s.wake == nullptr || s.changed == nullptr) {
    const auto error = system_message(::GetLastError());
    if (s.wake != nullptr) ::CloseHandle(s.wake);
    if (s.changed != nullptr) ::CloseHandle(s.changed);
    throw std::runtime_error("cannot watch the directory: CreateEventW: " + error);
  }
  if (!notify) {
    s.no_notices = "polling";
    return;
  }
  s.directory = ::CreateFileW(directory.c_str(), FILE_LIST_DIRECTORY,
                              FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, nullptr, OPEN_EXISTING,
                              FILE_FLAG_BACKUP_SEMANTICS | FILE_FLAG_OVERLAPPED, nullptr);
  if (s.directory == INVALID_HANDLE_VALUE)
    s.no_notices = "polling (cannot open the directory: " + system_message(::GetLastError()) + ")";
  // The first read is started by the first wait(): Windows cancels a thread's pending reads when
  // it exits, and the waiting thread is the watcher's own, not the one constructing this.
}

DirectoryEvents::~DirectoryEvents() {
  auto& s = *impl_;
  s.close_directory();
  if (s.changed != nullptr) ::CloseHandle(s.changed);
  if (s.wake != nullptr) ::CloseHandle(s.wake);
}

bool DirectoryEvents::notifies() const noexcept { return impl_->directory != INVALID_HANDLE_VALUE; }

std::string DirectoryEvents::mechanism() const { return notifies() ? "ReadDirectoryChangesW" : impl_->no_notices; }

DirectoryEvents::Wait DirectoryEvents::wait(std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  if (notifies() && !s.armed && !s.rearm_or_poll()) return Wait::kChanged;
  const HANDLE handles[2] = {s.wake, s.changed};
  const auto ms = static_cast<DWORD>(std::clamp<long long>(timeout.count(), 0, 1 << 30));
  const DWORD got = ::WaitForMultipleObjects(notifies() ? 2 : 1, handles, FALSE, ms);
  if (got == WAIT_OBJECT_0) return Wait::kWoken;
  if (got != WAIT_OBJECT_0 + 1) return Wait::kNothing;
  DWORD bytes = 0;
  const bool read = ::GetOverlappedResult(s.directory, &s.overlapped, &bytes, FALSE) != 0;
  s.armed = false;
  // No bytes: the system's buffer overflowed and the changes are lost; look again anyway.
  bool changed = !read || bytes == 0;
  const DWORD filled = std::min<DWORD>(bytes, sizeof s.buffer);
  constexpr DWORD kHeader = offsetof(FILE_NOTIFY_INFORMATION, FileName);
  for (DWORD offset = 0; read && offset <= filled && filled - offset >= kHeader;) {
    const auto* info = reinterpret_cast<const FILE_NOTIFY_INFORMATION*>(s.buffer + offset);
    if (info->FileNameLength > filled - offset - kHeader) {  // a record past the data: do not trust the rest
      changed = true;
      break;
    }
    const std::wstring_view name(info->FileName, info->FileNameLength / sizeof(WCHAR));
    if (ends_with_ignoring_case(name, s.suffix)) changed = true;
    if (info->NextEntryOffset == 0 || info->NextEntryOffset > filled - offset) break;
    offset += info->NextEntryOffset;
  }
  if (!s.rearm_or_poll()) changed = true;
  return changed ? Wait::kChanged : Wait::kNothing;
}

void DirectoryEvents::wake() noexcept { ::SetEvent(impl_->wake); }

}  // namespace keel::host::platform
