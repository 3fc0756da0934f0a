#include "observability/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>
#include <system_error>

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

}  // namespace keel::host::observability
