#pragma once
// Metrics for GET /metrics: a writer of the Prometheus text exposition format 0.0.4 and the
// process figures read from /proc/self. The writer appends to a caller-owned string (the
// response body, whose capacity is reused between scrapes) and allocates nothing else per
// sample. An Exposition is used by one thread. (This process's own numbers: platform/process_stats.hpp.)

#include <array>
#include <atomic>
#include <chrono>
#include <concepts>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel::host::observability {

/// The Content-Type of the text exposition format.
/// Upper bounds (seconds) of the host's latency histograms (HTTP, calls, forwarded requests); a
/// final +Inf bucket follows.
inline constexpr std::array<double, 14> kLatencyBuckets{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                        0.1,    0.25,  0.5,    1,     2.5,  5,    10};

/// A latency histogram over kLatencyBuckets in relaxed atomics: recorded on a request path
/// without a lock, read as a snapshot.
struct LatencyCounters {
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> buckets{};
  std::atomic<std::uint64_t> nanos{0};
  void observe(std::chrono::steady_clock::duration d) noexcept {
    const auto ns = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(d).count());
    nanos.fetch_add(ns, std::memory_order_relaxed);
    const double seconds = static_cast<double>(ns) / 1e9;
    std::size_t b = 0;
    while (b < kLatencyBuckets.size() && seconds > kLatencyBuckets[b]) ++b;
    buckets[b].fetch_add(1, std::memory_order_relaxed);
  }
  void snapshot(std::vector<std::uint64_t>& out, double& seconds) const {
    out.clear();
    for (const auto& b : buckets) out.push_back(b.load(std::memory_order_relaxed));
    seconds = static_cast<double>(nanos.load(std::memory_order_relaxed)) / 1e9;
  }
};

inline constexpr std::string_view kExpositionContentType = "text/plain; version=0.0.4; charset=utf-8";

enum class MetricType { kCounter, kGauge, kHistogram };

/// One label of a sample; the value is escaped (and invalid UTF-8 replaced) on output.
struct Label {
  std::string_view name;
  std::string_view value;
};
using Labels = std::initializer_list<Label>;

/// Writes metric families in the text exposition format 0.0.4
/// (https://prometheus.io/docs/instrumenting/exposition_formats/). A family is started with
/// family() and its samples follow; its # HELP and # TYPE lines are written with its first
/// sample, so a family without samples leaves nothing. Names that break the format (a metric or
/// label name outside [a-zA-Z_:][a-zA-Z0-9_:]* resp. [a-zA-Z_][a-zA-Z0-9_]*, a reserved "__"
/// label, a duplicate label, "le" on a histogram, a family written twice, a sample of the wrong
/// kind) are bugs in the caller and throw std::invalid_argument.
class Exposition {
 public:
  /// Appends to `out`, which must outlive this writer.
  explicit Exposition(std::string& out) noexcept : out_(out) {}

  /// Starts the family `name`; the samples that follow belong to it.
  void family(std::string_view name, MetricType type, std::string_view help);

  /// A counter or gauge sample of the current family. Integers are written exactly; doubles
  /// in the shortest form that reads back to the same value, "+Inf", "-Inf" or "NaN".
  template <std::integral T>
  void sample(Labels labels, T value) {
    if constexpr (std::is_signed_v<T>) write_sample(labels, Number::of_signed(static_cast<std::int64_t>(value)));
    else write_sample(labels, Number::of_unsigned(static_cast<std::uint64_t>(value)));
  }
  void sample(Labels labels, double value) { write_sample(labels, Number::of_double(value)); }

  /// One histogram series of the current (histogram) family: cumulative _bucket{le} samples
  /// ending with le="+Inf", then _sum and _count. `counts` are per-bucket (not cumulative):
  /// counts[i] observations fell in (bounds[i-1], bounds[i]], and counts[bounds.size()] above
  /// the last bound. A shorter `counts` means zeros for the missing buckets; a longer one throws.
  void histogram(Labels labels, std::span<const double> bounds, std::span<const std::uint64_t> counts, double sum);

 private:
  struct Number {
    enum class Kind { kUnsigned, kSigned, kDouble } kind;
    std::uint64_t u = 0;
    std::int64_t i = 0;
    double d = 0;
    static Number of_unsigned(std::uint64_t v) noexcept { return {Kind::kUnsigned, v, 0, 0}; }
    static Number of_signed(std::int64_t v) noexcept { return {Kind::kSigned, 0, v, 0}; }
    static Number of_double(double v) noexcept { return {Kind::kDouble, 0, 0, v}; }
  };
  void write_sample(Labels labels, Number value);
  void begin_sample(Labels labels, bool histogram);
  void write_series(std::string_view suffix, Labels labels, std::string_view le, Number value);
  void write_number(Number value);

  std::string& out_;
  std::string name_;  ///< the current family
  std::string help_;
  MetricType type_ = MetricType::kGauge;
  bool open_ = false;     ///< family() was called
  bool written_ = false;  ///< the current family's HELP and TYPE are out
  /// Where the names of the written families sit in out_ (offset, length), to refuse repeats.
  std::vector<std::pair<std::size_t, std::size_t>> written_names_;
};

/// Appends `value` to `out` escaped as a label value: backslash, double quote and line feed
/// become \\, \" and \n; bytes that are not UTF-8 become U+FFFD (Prometheus refuses them).
void append_label_value(std::string& out, std::string_view value);

/// True if `name` is a valid metric name: [a-zA-Z_:][a-zA-Z0-9_:]*.
[[nodiscard]] bool valid_metric_name(std::string_view name) noexcept;
/// True if `name` is a valid label name: [a-zA-Z_][a-zA-Z0-9_]*.
[[nodiscard]] bool valid_label_name(std::string_view name) noexcept;

}  // namespace keel::host::observability
