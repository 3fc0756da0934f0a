#include "app/admin_guard.hpp"

#include <algorithm>
#include <atomic>

#include "app/admin.hpp"
#include "observability/log.hpp"

namespace keel::host::app {
namespace {

// One warn line per this interval at most; the lines held back are counted in the next one.
constexpr auto kLogInterval = std::chrono::seconds(10);

std::atomic<std::uint64_t> g_refused{0};
std::atomic<std::uint64_t> g_throttled{0};

}  // namespace

std::uint32_t FailedAttempts::blocked_for(std::string_view client, const Limits& limits, Clock::time_point now) {
  const std::lock_guard lock(mutex_);
  const auto it = entries_.find(std::string(client));
  if (it == entries_.end()) return 0;
  const auto end = it->second.window_start + limits.window;
  if (now >= end) {
    entries_.erase(it);
    return 0;
  }
  if (it->second.failures < limits.max_failures) return 0;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - now).count();
  return static_cast<std::uint32_t>(std::max<std::int64_t>(1, (left + 999) / 1000));
}

void FailedAttempts::record_failure(std::string_view client, const Limits& limits, Clock::time_point now) {
  const std::lock_guard lock(mutex_);
  auto it = entries_.find(std::string(client));
  if (it != entries_.end() && now >= it->second.window_start + limits.window) {
    it->second = Entry{now, 0};
  } else if (it == entries_.end()) {
    if (entries_.size() >= capacity_) make_room(limits, now);
    it = entries_.emplace(std::string(client), Entry{now, 0}).first;
  }
  if (it->second.failures < limits.max_failures) ++it->second.failures;
}

std::size_t FailedAttempts::size() const {
  const std::lock_guard lock(mutex_);
  return entries_.size();
}

// Called with the table full: drop every expired entry; if none was, the oldest window goes.
void FailedAttempts::make_room(const Limits& limits, Clock::time_point now) {
  std::erase_if(entries_, [&](const auto& e) { return now >= e.second.window_start + limits.window; });
  if (entries_.size() < capacity_ || entries_.empty()) return;
  const auto oldest = std::min_element(entries_.begin(), entries_.end(), [](const auto& a, const auto& b) {
    return a.second.window_start < b.second.window_start;
  });
  entries_.erase(oldest);
}

std::string_view client_of(std::string_view remote_address) noexcept {
  if (remote_address.empty()) return "unix";
  const auto colon = remote_address.rfind(':');
  // "[::1]:80": the last colon is the port's only if it follows the bracket.
  if (remote_address.front() == '[') {
    const auto bracket = remote_address.find(']');
    return bracket == std::string_view::npos ? remote_address : remote_address.substr(0, bracket + 1);
  }
  return colon == std::string_view::npos ? remote_address : remote_address.substr(0, colon);
}

AdminAuthStats admin_auth_stats() noexcept {
  return {g_refused.load(std::memory_order_relaxed), g_throttled.load(std::memory_order_relaxed)};
}

AdminGuard::AdminGuard(const config::AdminConfig& admin) : settings_(settings_of(admin)) {}

std::shared_ptr<const AdminGuard::Settings> AdminGuard::settings_of(const config::AdminConfig& admin) {
  auto s = std::make_shared<Settings>();
  s->tokens = admin.tokens();
  s->limits = {admin.max_failed_attempts, admin.failed_attempts_window};
  return s;
}

bool AdminGuard::update(const config::AdminConfig& admin) {
  auto next = settings_of(admin);
  const bool changed = settings_.load()->tokens != next->tokens;
  settings_.publish(std::move(next));
  return changed;
}

AdminGuard::Result AdminGuard::check(const http::Request& req) {
  const auto& s = settings_.current();
  if (s.tokens.empty()) return {Verdict::kOff, 0};
  const auto now = FailedAttempts::Clock::now();
  const auto client = client_of(req.remote_address);
  if (const auto wait = failures_.blocked_for(client, s.limits, now); wait != 0) {
    g_throttled.fetch_add(1, std::memory_order_relaxed);
    log_refusal(Verdict::kThrottled, req, client);
    return {Verdict::kThrottled, wait};
  }
  constexpr std::string_view kBearer = "Bearer ";
  const auto auth = req.header("authorization");
  const auto presented = auth.size() > kBearer.size() && auth.substr(0, kBearer.size()) == kBearer
                             ? auth.substr(kBearer.size())
                             : std::string_view{};
  // Every accepted token is compared, each in constant time, whatever the earlier ones gave.
  bool ok = false;
  for (const auto& token : s.tokens) ok |= constant_time_equals(presented, token);
  if (ok) return {Verdict::kAllowed, 0};
  failures_.record_failure(client, s.limits, now);
  g_refused.fetch_add(1, std::memory_order_relaxed);
  log_refusal(Verdict::kRefused, req, client);
  return {Verdict::kRefused, 0};
}

void AdminGuard::log_refusal(Verdict verdict, const http::Request& req, std::string_view client) {
  std::uint64_t held_back = 0;
  {
    const std::lock_guard lock(log_mutex_);
    auto& limit = verdict == Verdict::kThrottled ? throttled_log_ : refused_log_;
    const auto now = FailedAttempts::Clock::now();
    if (limit.last != FailedAttempts::Clock::time_point{} && now - limit.last < kLogInterval) {
      ++limit.held_back;
      return;
    }
    limit.last = now;
    held_back = limit.held_back;
    limit.held_back = 0;
  }
  // Never the token: the path, the client and the request id only.
  auto log = observability::logger("admin");
  if (verdict == Verdict::kThrottled)
    log->warn("admin request refused: too many failed attempts from this address, answered 429 path={} from={} "
              "req={} not_logged_since_last={}",
              req.path, client, req.request_id, held_back);
  else
    log->warn("admin request refused: missing or wrong bearer token path={} from={} req={} not_logged_since_last={}",
              req.path, req.remote_address, req.request_id, held_back);
}

}  // namespace keel::host::app
