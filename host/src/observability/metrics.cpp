#include "observability/metrics.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <ctime>
#include <fstream>
#include <stdexcept>
#include <system_error>

#include <dirent.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

namespace keel::host::observability {
namespace {

using namespace std::string_view_literals;

bool name_char(char c, bool first, bool colon) noexcept {
  const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
  return alpha || (!first && c >= '0' && c <= '9');
}

bool valid_name(std::string_view name, bool colon) noexcept {
  if (name.empty()) return false;
  for (std::size_t i = 0; i < name.size(); ++i)
    if (!name_char(name[i], i == 0, colon)) return false;
  return true;
}

// Length of the well-formed UTF-8 sequence starting at s[i], or 0 (RFC 3629 §4: no overlong
// forms, no surrogates, nothing above U+10FFFF).
std::size_t utf8_length(std::string_view s, std::size_t i) noexcept {
  const auto byte = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned c = byte(i);
  std::size_t n = 0;
  unsigned lo = 0x80, hi = 0xBF;  // the range of the second byte
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c == 0xE0) n = 3, lo = 0xA0;
  else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
  else if (c == 0xED) n = 3, hi = 0x9F;
  else if (c == 0xF0) n = 4, lo = 0x90;
  else if (c >= 0xF1 && c <= 0xF3) n = 4;
  else if (c == 0xF4) n = 4, hi = 0x8F;
  else return 0;
  if (i + n > s.size() || byte(i + 1) < lo || byte(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k)
    if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return 0;
  return n;
}

// Label values escape \ " and line feed; HELP text escapes \ and line feed only.
void append_escaped(std::string& out, std::string_view text, bool quote) {
  std::size_t plain = 0;  // start of the run of bytes copied as they are
  for (std::size_t i = 0; i < text.size();) {
    const char c = text[i];
    std::string_view replacement;
    std::size_t step = 1;
    if (c == '\\') replacement = "\\\\"sv;
    else if (c == '\n') replacement = "\\n"sv;
    else if (c == '"' && quote) replacement = "\\\""sv;
    else if (static_cast<unsigned char>(c) >= 0x80) {
      step = utf8_length(text, i);
      if (step == 0) replacement = "\xEF\xBF\xBD"sv, step = 1;
    }
    if (!replacement.empty()) {
      out.append(text.data() + plain, i - plain);
      out += replacement;
      plain = i + step;
    }
    i += step;
  }
  out.append(text.data() + plain, text.size() - plain);
}

std::string_view type_name(MetricType type) noexcept {
  switch (type) {
    case MetricType::kCounter: return "counter";
    case MetricType::kGauge: return "gauge";
    case MetricType::kHistogram: return "histogram";
  }
  return "untyped";
}

// Reads a small file into `buf` with plain system calls (no allocation); -1 on failure.
long read_small_file(const char* path, char* buf, std::size_t cap) noexcept {
  const int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  std::size_t n = 0;
  while (n < cap) {
    const auto r = ::read(fd, buf + n, cap - n);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) {
      ::close(fd);
      return -1;
    }
    if (r == 0) break;
    n += static_cast<std::size_t>(r);
  }
  ::close(fd);
  return static_cast<long>(n);
}

// The "btime" line of /proc/stat: boot time in seconds since the epoch (proc(5)). It does not
// change while the system runs, so it is read once; 0 if it cannot be read.
std::uint64_t boot_time_seconds() noexcept {
  static const std::uint64_t btime = [] {
    try {
      std::ifstream in("/proc/stat");
      std::string line;
      while (std::getline(in, line)) {
        if (!line.starts_with("btime ")) continue;
        std::uint64_t v = 0;
        std::from_chars(line.data() + 6, line.data() + line.size(), v);
        return v;
      }
    } catch (...) {  // allocation failure: report no boot time rather than terminate
    }
    return std::uint64_t{0};
  }();
  return btime;
}

double seconds(const timespec& t) noexcept {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

}  // namespace

bool valid_metric_name(std::string_view name) noexcept { return valid_name(name, true); }
bool valid_label_name(std::string_view name) noexcept { return valid_name(name, false); }

void append_label_value(std::string& out, std::string_view value) { append_escaped(out, value, true); }

void Exposition::family(std::string_view name, MetricType type, std::string_view help) {
  if (!valid_metric_name(name)) throw std::invalid_argument("metrics: invalid metric name '" + std::string(name) + "'");
  for (const auto& [offset, length] : written_names_)
    if (std::string_view(out_).substr(offset, length) == name)
      throw std::invalid_argument("metrics: family '" + std::string(name) + "' written twice");
  name_.assign(name);
  help_.assign(help);
  type_ = type;
  open_ = true;
  written_ = false;
}

void Exposition::begin_sample(Labels labels, bool histogram) {
  if (!open_) throw std::invalid_argument("metrics: sample before family()");
  if (histogram != (type_ == MetricType::kHistogram))
    throw std::invalid_argument("metrics: wrong kind of sample for family '" + name_ + "'");
  for (auto l = labels.begin(); l != labels.end(); ++l) {
    if (!valid_label_name(l->name) || l->name.starts_with("__") || (histogram && l->name == "le"))
      throw std::invalid_argument("metrics: invalid label name '" + std::string(l->name) + "' in '" + name_ + "'");
    for (auto other = labels.begin(); other != l; ++other)
      if (other->name == l->name)
        throw std::invalid_argument("metrics: duplicate label '" + std::string(l->name) + "' in '" + name_ + "'");
  }
  if (written_) return;
  out_ += "# HELP "sv;
  out_ += name_;
  out_ += ' ';
  append_escaped(out_, help_, false);
  out_ += "\n# TYPE "sv;
  written_names_.emplace_back(out_.size(), name_.size());
  out_ += name_;
  out_ += ' ';
  out_ += type_name(type_);
  out_ += '\n';
  written_ = true;
}

void Exposition::write_sample(Labels labels, Number value) {
  begin_sample(labels, false);
  write_series({}, labels, {}, value);
}

void Exposition::histogram(Labels labels, std::span<const double> bounds, std::span<const std::uint64_t> counts,
                           double sum) {
  if (counts.size() > bounds.size() + 1)
    throw std::invalid_argument("metrics: more bucket counts than bounds in '" + name_ + "'");
  begin_sample(labels, true);
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= bounds.size(); ++i) {
    if (i < counts.size()) cumulative += counts[i];
    char le[64];
    std::string_view le_text = "+Inf"sv;
    if (i < bounds.size()) {
      // Plain decimal ("0.0005", "1", "2.5") as the client libraries write the usual bounds;
      // shortest form for a bound too long for that.
      auto r = std::to_chars(le, le + sizeof le, bounds[i], std::chars_format::fixed);
      if (r.ec != std::errc{}) r = std::to_chars(le, le + sizeof le, bounds[i]);
      le_text = std::string_view(le, static_cast<std::size_t>(r.ptr - le));
    }
    write_series("_bucket"sv, labels, le_text, Number::of_unsigned(cumulative));
  }
  write_series("_sum"sv, labels, {}, Number::of_double(sum));
  write_series("_count"sv, labels, {}, Number::of_unsigned(cumulative));
}

void Exposition::write_series(std::string_view suffix, Labels labels, std::string_view le, Number value) {
  out_ += name_;
  out_ += suffix;
  if (labels.size() > 0 || !le.empty()) {
    char sep = '{';
    for (const auto& l : labels) {
      out_ += sep;
      out_ += l.name;
      out_ += "=\""sv;
      append_escaped(out_, l.value, true);
      out_ += '"';
      sep = ',';
    }
    if (!le.empty()) {
      out_ += sep;
      out_ += "le=\""sv;
      out_ += le;
      out_ += '"';
    }
    out_ += '}';
  }
  out_ += ' ';
  write_number(value);
  out_ += '\n';
}

void Exposition::write_number(Number value) {
  char buf[64];
  std::to_chars_result r{buf, std::errc{}};
  switch (value.kind) {
    case Number::Kind::kUnsigned: r = std::to_chars(buf, buf + sizeof buf, value.u); break;
    case Number::Kind::kSigned: r = std::to_chars(buf, buf + sizeof buf, value.i); break;
    case Number::Kind::kDouble:
      // Go's strconv.ParseFloat (Prometheus' parser) reads "+Inf", "-Inf" and "NaN"; std::to_chars
      // would write "inf" and "nan", which it also reads, but the format documents these spellings.
      if (std::isnan(value.d)) {
        out_ += "NaN"sv;
        return;
      }
      if (std::isinf(value.d)) {
        out_ += value.d > 0 ? "+Inf"sv : "-Inf"sv;
        return;
      }
      r = std::to_chars(buf, buf + sizeof buf, value.d);  // shortest form that round-trips
      break;
  }
  out_.append(buf, static_cast<std::size_t>(r.ptr - buf));
}

std::optional<ProcessStats> read_process_stats() noexcept {
  // proc(5), /proc/[pid]/stat: "pid (comm) state ppid ...". comm may hold spaces and ')', so
  // the fields are counted from the last ')'; field 3 (state) is the first after it.
  char buf[4096];
  const long n = read_small_file("/proc/self/stat", buf, sizeof buf);
  if (n <= 0) return std::nullopt;
  std::string_view text(buf, static_cast<std::size_t>(n));
  const auto paren = text.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  text.remove_prefix(paren + 1);

  std::uint64_t utime = 0, stime = 0, threads = 0, start_ticks = 0, vsize = 0, rss_pages = 0;
  int field = 2;
  while (!text.empty() && field < 24) {
    while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
    const auto end = std::min(text.find(' '), text.size());
    const auto token = text.substr(0, end);
    text.remove_prefix(end);
    ++field;
    std::uint64_t* target = nullptr;
    switch (field) {
      case 14: target = &utime; break;
      case 15: target = &stime; break;
      case 20: target = &threads; break;
      case 22: target = &start_ticks; break;
      case 23: target = &vsize; break;
      case 24: target = &rss_pages; break;
      default: break;
    }
    if (target) std::from_chars(token.data(), token.data() + token.size(), *target);
  }
  if (field < 24) return std::nullopt;

  const long ticks = ::sysconf(_SC_CLK_TCK);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (ticks <= 0 || page <= 0) return std::nullopt;
  const double hz = static_cast<double>(ticks);

  ProcessStats st;
  st.cpu_seconds = static_cast<double>(utime + stime) / hz;
  st.threads = threads;
  st.virtual_bytes = vsize;
  st.resident_bytes = rss_pages * static_cast<std::uint64_t>(page);
  const double started_after_boot = static_cast<double>(start_ticks) / hz;
  // starttime counts from boot on CLOCK_BOOTTIME, so the uptime does not follow wall-clock steps.
  timespec now{};
  if (::clock_gettime(CLOCK_BOOTTIME, &now) == 0)
    st.uptime_seconds = std::max(0.0, seconds(now) - started_after_boot);
  if (const auto btime = boot_time_seconds(); btime > 0) {
    st.start_time_seconds = static_cast<double>(btime) + started_after_boot;
  } else if (::clock_gettime(CLOCK_REALTIME, &now) == 0) {
    st.start_time_seconds = seconds(now) - st.uptime_seconds;
  }

  if (DIR* dir = ::opendir("/proc/self/fd")) {
    std::uint64_t fds = 0;
    while (const dirent* e = ::readdir(dir))
      if (e->d_name[0] != '.') ++fds;
    ::closedir(dir);
    st.open_fds = fds > 0 ? fds - 1 : 0;  // not counting the descriptor opendir() itself held
  }
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) st.max_fds = limit.rlim_cur;
  return st;
}

}  // namespace keel::host::observability
