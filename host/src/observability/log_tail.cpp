#include "observability/log_tail.hpp"

#include <algorithm>
#include <atomic>
#include <mutex>

namespace keel::host::observability {

struct TailReader::State {
  TailFilter filter;
  std::uint64_t next = 1;  // the next sequence number to look at
  std::uint64_t lost = 0;  // matching lines overwritten before they were read
  std::uint64_t newest_at_open = 0;
  std::function<void()> wake;
  bool woken = false;  // wake was called since the last read()
  bool open = true;
};

namespace {

// The ring: line `seq` sits at lines[seq % kTailLines] until seq + kTailLines overwrites it.
struct Ring {
  std::mutex mutex;
  std::vector<TailLine> lines = std::vector<TailLine>(kTailLines);
  std::uint64_t newest = 0;  // sequence number of the newest line; 0 before the first
  std::vector<std::shared_ptr<TailReader::State>> readers;

  [[nodiscard]] std::uint64_t oldest() const noexcept { return newest >= kTailLines ? newest - kTailLines + 1 : 1; }
  [[nodiscard]] const TailLine& at(std::uint64_t seq) const noexcept { return lines[seq % kTailLines]; }
};

Ring& ring() {
  static auto* r = new Ring;  // never destroyed: threads may log during static destruction
  return *r;
}

std::atomic<bool> g_recording{false};

// Finds `key=value` among a message's space-separated fields ("span kind=call caller=orders ...").
bool field_value(std::string_view message, std::string_view key, std::string_view& value) noexcept {
  for (std::size_t at = 0; (at = message.find(key, at)) != std::string_view::npos; at += key.size()) {
    const auto end_key = at + key.size();
    if ((at != 0 && message[at - 1] != ' ') || end_key >= message.size() || message[end_key] != '=') continue;
    const auto start = end_key + 1;
    const auto stop = message.find(' ', start);
    value = message.substr(start, stop == std::string_view::npos ? std::string_view::npos : stop - start);
    return true;
  }
  return false;
}

bool names_plugin(std::string_view message, std::string_view plugin) noexcept {
  static constexpr std::string_view kKeys[] = {"plugin", "caller", "target", "publisher", "subscriber", "name"};
  for (const auto key : kKeys) {
    std::string_view value;
    if (!field_value(message, key, value)) continue;
    if (value.size() == plugin.size() + 2 && value.front() == '\'' && value.back() == '\'') value = value.substr(1, plugin.size());
    if (value == plugin) return true;
  }
  return false;
}

constexpr std::string_view kLevelNames[] = {"trace", "debug", "info", "warn", "error", "critical"};

}  // namespace

int tail_level(std::string_view name) noexcept {
  for (int i = 0; i < 6; ++i)
    if (kLevelNames[i] == name) return i;
  return -1;
}

std::string_view tail_level_name(int level) noexcept {
  return level >= 0 && level < 6 ? kLevelNames[level] : std::string_view("off");
}

bool TailFilter::matches(const TailLine& line) const noexcept {
  if (line.level < min_level) return false;
  if (!request_id.empty() && line.request_id != request_id) return false;
  if (plugin.empty()) return true;
  const std::string_view logger = line.logger;
  if (logger.starts_with("plugin.") && logger.substr(7) == plugin) return true;
  if (logger == "access") {
    std::string_view target;
    if (path_prefix.empty() || !field_value(line.message, "target", target) || !target.starts_with(path_prefix))
      return false;
    const auto rest = target.substr(path_prefix.size());
    return rest.empty() || rest[0] == '/' || rest[0] == '?';
  }
  return names_plugin(line.message, plugin);
}

bool tail_recording() noexcept { return g_recording.load(std::memory_order_relaxed); }

void tail_record(std::int64_t time_ns, int level, std::string_view logger, std::string_view message,
                 const LogContext* context) noexcept {
  auto& r = ring();
  std::lock_guard lock(r.mutex);
  auto& line = r.lines[(r.newest + 1) % kTailLines];
  if (line.seq != 0)  // the oldest line goes: a reader that wanted it and has not read it lost it
    for (const auto& reader : r.readers)
      if (reader->next <= line.seq && reader->filter.matches(line)) ++reader->lost;
  line.seq = 0;  // not a line until it is whole
  try {
    line.time_ns = time_ns;
    line.level = level;
    line.logger.assign(logger);
    if (message.size() > kTailMessageBytes) {
      line.message.assign(message.substr(0, kTailMessageBytes));
      line.message += " [...]";
    } else {
      line.message.assign(message);
    }
    line.request_id.assign(context != nullptr ? context->request_id : std::string_view{});
    line.trace_id.assign(context != nullptr ? context->trace_id : std::string_view{});
    line.span_id.assign(context != nullptr ? context->span_id : std::string_view{});
  } catch (...) {  // out of memory: the line is not kept
    return;
  }
  line.seq = ++r.newest;
  for (const auto& reader : r.readers) {
    if (reader->woken || !reader->filter.matches(line)) continue;
    reader->woken = true;
    try {
      reader->wake();
    } catch (...) {  // a wake only posts; if even that fails (out of memory), the next line tries again
      reader->woken = false;
    }
  }
}

std::vector<TailLine> tail_snapshot(const TailFilter& filter, std::size_t limit) {
  auto& r = ring();
  std::vector<TailLine> out;
  std::lock_guard lock(r.mutex);
  for (auto seq = r.newest; seq >= r.oldest() && seq != 0 && out.size() < limit; --seq) {
    const auto& line = r.at(seq);
    if (line.seq == seq && filter.matches(line)) out.push_back(line);
  }
  std::reverse(out.begin(), out.end());
  return out;
}

std::unique_ptr<TailReader> TailReader::open(TailFilter filter, std::size_t backlog, std::function<void()> wake) {
  auto state = std::make_shared<State>();
  state->filter = std::move(filter);
  state->wake = std::move(wake);
  state->open = false;  // until registered below
  std::unique_ptr<TailReader> reader(new TailReader(state));  // allocated first: nothing throws once registered
  auto& r = ring();
  {
    std::lock_guard lock(r.mutex);
    if (r.readers.size() >= kMaxTailReaders) return nullptr;  // `reader` is not open: its close() does nothing
    r.readers.reserve(kMaxTailReaders);
    // Start at the oldest of the last `backlog` matching lines, or after the newest.
    state->next = r.newest + 1;
    state->newest_at_open = r.newest;
    std::size_t found = 0;
    for (auto seq = r.newest; seq >= r.oldest() && seq != 0 && found < backlog; --seq) {
      const auto& line = r.at(seq);
      if (line.seq == seq && state->filter.matches(line)) {
        state->next = seq;
        ++found;
      }
    }
    state->open = true;
    r.readers.push_back(std::move(state));
    g_recording.store(true, std::memory_order_relaxed);
  }
  return reader;
}

TailReader::~TailReader() { close(); }

std::uint64_t TailReader::newest_at_open() const noexcept { return state_->newest_at_open; }

void TailReader::read(std::vector<TailLine>& out, std::size_t max_lines, std::uint64_t& lost) {
  auto& r = ring();
  std::lock_guard lock(r.mutex);
  auto& st = *state_;
  if (!st.open) return;
  lost += st.lost;
  st.lost = 0;
  st.next = std::max(st.next, r.oldest());
  for (std::size_t taken = 0; st.next <= r.newest && taken < max_lines; ++st.next) {
    const auto& line = r.at(st.next);
    if (line.seq == st.next && st.filter.matches(line)) {
      out.push_back(line);
      ++taken;
    }
  }
  st.woken = false;
}

void TailReader::close() noexcept {
  auto& r = ring();
  std::function<void()> wake;  // destroyed outside the lock
  std::lock_guard lock(r.mutex);
  auto& st = *state_;
  if (!st.open) return;
  st.open = false;
  wake.swap(st.wake);
  std::erase(r.readers, state_);
  if (r.readers.empty()) {  // nobody follows: stop recording and free what the ring held
    g_recording.store(false, std::memory_order_relaxed);
    for (auto& line : r.lines) line = TailLine{};
  }
}

}  // namespace keel::host::observability
