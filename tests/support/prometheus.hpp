#pragma once
// A strict parser of the Prometheus text exposition format 0.0.4, for tests of GET /metrics and
// of observability::Exposition. It enforces the format
// (https://prometheus.io/docs/instrumenting/exposition_formats/) and, beyond it, the canonical
// form Keel writes: no blank lines, single spaces, no timestamps, no comments other than
// # HELP and # TYPE, HELP and TYPE before every family's samples, no empty "{}", no trailing
// comma. Every violation throws ParseError naming the line.

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::test::prometheus {

using Labels = std::vector<std::pair<std::string, std::string>>;

struct Sample {
  std::string name;  ///< as written, e.g. "x_bucket"
  Labels labels;     ///< in written order, values unescaped
  double value = 0;
  /// The value of label `name`, or nullopt.
  [[nodiscard]] std::optional<std::string> label(std::string_view name) const;
};

struct Family {
  std::string name;
  std::string type;  ///< counter, gauge, histogram, summary or untyped
  std::string help;  ///< unescaped
  std::vector<Sample> samples;
};

struct Scrape {
  std::vector<Family> families;  ///< in written order

  [[nodiscard]] const Family* family(std::string_view name) const;
  /// The sample `name` whose labels are exactly `labels` (in any order), or nullopt.
  [[nodiscard]] std::optional<double> value(std::string_view name, const Labels& labels = {}) const;
  /// Sum of the samples `name` whose labels include all of `subset`; 0 if there are none.
  [[nodiscard]] double sum(std::string_view name, const Labels& subset = {}) const;
  /// Number of samples `name` whose labels include all of `subset`.
  [[nodiscard]] std::size_t count(std::string_view name, const Labels& subset = {}) const;
};

class ParseError : public std::runtime_error {
 public:
  ParseError(std::size_t line, const std::string& message);
  std::size_t line;  ///< 1-based; 0 for a problem of the whole text
};

/// Parses `text` strictly (see the top of this file). Histograms are checked too: per series,
/// _bucket samples with strictly increasing le ending at le="+Inf", cumulative (non-decreasing)
/// integer counts, and _sum and _count present with _count equal to the +Inf bucket.
/// Counter values are non-negative. No series (name and label set) appears twice.
[[nodiscard]] Scrape parse(std::string_view text);

}  // namespace keel::test::prometheus
