// host/src/platform's interfaces, the same cases for every implementation: run natively on Linux
// (ctest "platform: ...") and under Wine for Windows (windows.platform). A plain program, not
// Catch2: Debian has no Catch2 for the mingw-w64 target. Prints each failed check; exits 1 if
// any failed.

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <string_view>
#include <thread>

#include "platform/code_copy.hpp"
#include "platform/directory_events.hpp"
#include "platform/file_stamp.hpp"
#include "platform/process_stats.hpp"
#include "platform/read_only_file.hpp"

namespace fs = std::filesystem;
namespace platform = keel::host::platform;
using Wait = platform::DirectoryEvents::Wait;
using namespace std::chrono_literals;

namespace {

// What differs by platform: the plugin suffix, and how the implementation names itself.
#ifdef _WIN32
constexpr const char* kSuffix = ".dll";
constexpr std::string_view kMechanism = "ReadDirectoryChangesW";
constexpr std::string_view kNoDirectory = "polling (cannot open the directory: ";
constexpr std::string_view kCopyMissing = "CopyFileW: ";
#else
constexpr const char* kSuffix = ".so";
constexpr std::string_view kMechanism = "inotify";
constexpr std::string_view kNoDirectory = "polling (inotify_add_watch: No such file or directory)";
constexpr std::string_view kCopyMissing = "cannot open it: No such file or directory";
#endif

int failures = 0;

void check(bool ok, const char* what, int line) {
  if (ok) return;
  std::printf("FAIL line %d: %s\n", line, what);
  ++failures;
}
#define CHECK(expr) check((expr), #expr, __LINE__)

// A fresh directory under the temp directory, removed at the end.
struct TempDir {
  fs::path path = fs::temp_directory_path() / ("keel-platform-test-" + std::to_string(std::random_device{}()));
  TempDir() { fs::create_directories(path); }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path write(const std::string& name, const std::string& content) const {
    std::ofstream(path / name, std::ios::binary) << content;
    return path / name;
  }
};

// Lets notices of what was done before pass (one write may give several, and Windows delivers
// some on the next read): returns once 300 ms went by with none, or after 5 s.
void settle(platform::DirectoryEvents& events) {
  const auto limit = std::chrono::steady_clock::now() + 5s;
  auto quiet_since = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < limit && std::chrono::steady_clock::now() - quiet_since < 300ms) {
    if (events.wait(50ms) != Wait::kNothing) quiet_since = std::chrono::steady_clock::now();
  }
}

bool changed_within(platform::DirectoryEvents& events, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (events.wait(100ms) == Wait::kChanged) return true;
  }
  return false;
}

void directory_events_notice_plugin_files() {
  TempDir dir;
  platform::DirectoryEvents events(dir.path, kSuffix, true);
  CHECK(events.notifies());
  CHECK(events.mechanism() == kMechanism);
  CHECK(events.wait(20ms) == Wait::kNothing);
  dir.write("notes.txt", "not a plugin");
  CHECK(!changed_within(events, 300ms));
  const auto plugin = dir.write(std::string("a") + kSuffix, "v1");
  CHECK(changed_within(events, 5s));
  dir.write("b.tmp", "v2");
  settle(events);
  fs::rename(dir.path / "b.tmp", plugin);
  CHECK(changed_within(events, 5s));
  settle(events);
  fs::remove(plugin);
  CHECK(changed_within(events, 5s));
#ifdef _WIN32
  settle(events);
  dir.write("UPPER.DLL", "case does not matter on Windows");
  CHECK(changed_within(events, 5s));
#endif
}

void directory_events_wake() {
  TempDir dir;
  for (const bool notify : {true, false}) {
    platform::DirectoryEvents events(dir.path, kSuffix, notify);
    CHECK(events.notifies() == notify);
    std::thread waker([&events] {
      std::this_thread::sleep_for(50ms);
      events.wake();
    });
    const auto started = std::chrono::steady_clock::now();
    CHECK(events.wait(30s) == Wait::kWoken);
    CHECK(std::chrono::steady_clock::now() - started < 20s);
    waker.join();
    CHECK(events.wait(0ms) == Wait::kWoken);
  }
}

void directory_events_missing_directory() {
  TempDir dir;
  platform::DirectoryEvents events(dir.path / "missing", kSuffix, true);
  CHECK(!events.notifies());
  CHECK(events.mechanism().starts_with(kNoDirectory));
  CHECK(events.wait(10ms) == Wait::kNothing);
}

void file_stamps() {
  TempDir dir;
  const auto file = dir.write(std::string("a") + kSuffix, "one");
  const auto first = platform::file_stamp(file);
  CHECK(first && first->size == 3);
  CHECK(platform::file_stamp(file) == first);
  dir.write("b.tmp", "two");
  fs::rename(dir.path / "b.tmp", file);
  const auto second = platform::file_stamp(file);
  CHECK(second && second->size == 3);
  CHECK(second && first && second->identity != first->identity);
  CHECK(!platform::file_stamp(dir.path / "missing"));
}

void read_only_files() {
  TempDir dir;
  const auto file = dir.write("data", "0123456789");
  auto opened = platform::ReadOnlyFile::open(file);
  CHECK(std::holds_alternative<platform::ReadOnlyFile>(opened));
  if (auto* reader = std::get_if<platform::ReadOnlyFile>(&opened)) {
    CHECK(reader->size() == 10);
    char out[4] = {};
    CHECK(reader->read_at(6, out, 4) && std::string_view(out, 4) == "6789");
    CHECK(!reader->read_at(8, out, 4));
    // Opened for reading, the file can still be renamed and deleted (shared for deletion).
    std::error_code ec;
    fs::rename(file, dir.path / "renamed", ec);
    CHECK(!ec);
    fs::remove(dir.path / "renamed", ec);
    CHECK(!ec);
  }
  const auto missing = platform::ReadOnlyFile::open(dir.path / "missing");
  CHECK(std::holds_alternative<std::string>(missing) && std::get<std::string>(missing).starts_with("cannot open: "));
}

// All of `file`, read through ReadOnlyFile; "<unreadable>" if it cannot be.
std::string contents(const fs::path& file) {
  auto opened = platform::ReadOnlyFile::open(file);
  auto* reader = std::get_if<platform::ReadOnlyFile>(&opened);
  if (reader == nullptr) return "<unreadable>";
  std::string out(reader->size(), '\0');
  return reader->read_at(0, out.data(), out.size()) ? out : "<unreadable>";
}

void code_copies() {
  TempDir dir;
  const auto original = dir.write(std::string("p") + kSuffix, "code v1");
  auto made = platform::CodeCopy::make(original, "p", dir.path / "private");
  auto* copy = std::get_if<platform::CodeCopy>(&made);
  CHECK(copy != nullptr);
  if (copy == nullptr) return;
  CHECK(copy->held() && !copy->path().empty());
  CHECK(contents(copy->path()) == "code v1");
  // The plugin directory's file may be rewritten and deleted; the copy does not change.
  dir.write(original.filename().string(), "code v2, longer");
  CHECK(contents(copy->path()) == "code v1");
  fs::remove(original);
  CHECK(contents(copy->path()) == "code v1");
  // Nobody changes the copy: appending, truncating or deleting it fails or changes nothing.
  { std::ofstream(copy->path(), std::ios::binary | std::ios::app) << "tampered"; }
  { std::ofstream(copy->path(), std::ios::binary | std::ios::trunc) << "x"; }
  std::error_code ec;
  fs::remove(copy->path(), ec);
  CHECK(contents(copy->path()) == "code v1");
  const auto path = copy->path();
  copy->reset();
  CHECK(!copy->held() && copy->path().empty());
#ifdef _WIN32
  CHECK(!fs::exists(path));  // the file copy is deleted once let go
#endif
  const auto missing = platform::CodeCopy::make(dir.path / "missing", "m", dir.path / "private");
  CHECK(std::holds_alternative<std::string>(missing) && std::get<std::string>(missing).starts_with(kCopyMissing));
}

void process_stats() {
  const auto st = platform::read_process_stats();
  CHECK(st.has_value());
  if (!st) return;
  CHECK(st->threads >= 1);
  CHECK(st->resident_bytes > 0);
#ifndef _WIN32
  CHECK(st->virtual_bytes >= st->resident_bytes);  // on Windows: the private commit, not the address space
#endif
  CHECK(st->cpu_seconds >= 0);
  CHECK(st->uptime_seconds >= 0);
  CHECK(st->open_fds.has_value());
#ifndef _WIN32
  CHECK(st->open_fds && *st->open_fds >= 3);  // at least stdin, stdout, stderr (Wine counts no handles)
#endif
  if (st->max_fds && st->open_fds) CHECK(*st->max_fds >= *st->open_fds);
  // Started before now, and the start time agrees with the uptime within clock-tick rounding.
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(st->start_time_seconds <= now);
  CHECK(std::abs(now - st->uptime_seconds - st->start_time_seconds) < 2.0);
}

}  // namespace

int main() {
  directory_events_notice_plugin_files();
  directory_events_wake();
  directory_events_missing_directory();
  file_stamps();
  read_only_files();
  code_copies();
  process_stats();
  std::printf("%s: %d failed check(s)\n", failures == 0 ? "ok" : "FAIL", failures);
  return failures == 0 ? 0 : 1;
}
