// DirectoryEvents on Linux: an inotify descriptor on the directory, an eventfd for wake(), poll(2).
#include "platform/directory_events.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <stdexcept>

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

namespace keel::host::platform {

struct DirectoryEvents::Impl {
  std::string suffix;
  int inotify = -1;
  int wake = -1;
  std::string no_notices;  // why there is no inotify, when there is none
};

DirectoryEvents::DirectoryEvents(const std::filesystem::path& directory, std::string_view suffix, bool notify)
    : impl_(std::make_unique<Impl>()) {
  impl_->suffix = suffix;
  impl_->wake = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl_->wake < 0) throw std::runtime_error(std::string("cannot watch the directory: eventfd: ") + std::strerror(errno));
  if (!notify) {
    impl_->no_notices = "polling";
    return;
  }
  impl_->inotify = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (impl_->inotify < 0) {
    impl_->no_notices = std::string("polling (inotify_init1: ") + std::strerror(errno) + ")";
    return;
  }
  constexpr std::uint32_t kMask = IN_CLOSE_WRITE | IN_MODIFY | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_CREATE | IN_ATTRIB;
  if (::inotify_add_watch(impl_->inotify, directory.c_str(), kMask) < 0) {
    impl_->no_notices = std::string("polling (inotify_add_watch: ") + std::strerror(errno) + ")";
    ::close(impl_->inotify);
    impl_->inotify = -1;
  }
}

DirectoryEvents::~DirectoryEvents() {
  if (impl_->inotify >= 0) ::close(impl_->inotify);
  if (impl_->wake >= 0) ::close(impl_->wake);
}

bool DirectoryEvents::notifies() const noexcept { return impl_->inotify >= 0; }

std::string DirectoryEvents::mechanism() const { return notifies() ? "inotify" : impl_->no_notices; }

DirectoryEvents::Wait DirectoryEvents::wait(std::chrono::milliseconds timeout) {
  auto& s = *impl_;
  pollfd fds[2] = {{s.wake, POLLIN, 0}, {s.inotify, POLLIN, 0}};
  const int n = ::poll(fds, s.inotify >= 0 ? 2 : 1, static_cast<int>(std::clamp<long long>(timeout.count(), 0, 1 << 30)));
  if (n > 0 && (fds[0].revents & POLLIN) != 0) return Wait::kWoken;
  if (n <= 0 || s.inotify < 0 || (fds[1].revents & POLLIN) == 0) return Wait::kNothing;
  alignas(inotify_event) char buf[8192];
  bool changed = false;
  for (;;) {  // drain what is queued; a notice about another file is not a change
    const auto len = ::read(s.inotify, buf, sizeof buf);
    if (len <= 0) break;
    for (ssize_t off = 0; off < len;) {
      const auto* ev = reinterpret_cast<const inotify_event*>(buf + off);
      const std::string_view name = ev->len > 0 ? std::string_view(ev->name) : std::string_view();
      if ((ev->mask & IN_Q_OVERFLOW) != 0 || name.ends_with(s.suffix)) changed = true;
      off += static_cast<ssize_t>(sizeof(inotify_event) + ev->len);
    }
  }
  return changed ? Wait::kChanged : Wait::kNothing;
}

void DirectoryEvents::wake() noexcept {
  const std::uint64_t one = 1;
  [[maybe_unused]] const auto written = ::write(impl_->wake, &one, sizeof one);
}

}  // namespace keel::host::platform
