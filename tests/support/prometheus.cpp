#include "prometheus.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <limits>
#include <map>
#include <set>
#include <system_error>

namespace keel::test::prometheus {
namespace {

bool metric_name_char(char c, bool first) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':' || (!first && c >= '0' && c <= '9');
}
bool label_name_char(char c, bool first) { return c != ':' && metric_name_char(c, first); }

// RFC 3629 well-formedness (no overlongs, surrogates or code points above U+10FFFF).
bool valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = 0;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) n = 1;
    else if (c >= 0xC2 && c <= 0xDF) n = 2;
    else if (c == 0xE0) n = 3, lo = 0xA0;
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) n = 3;
    else if (c == 0xED) n = 3, hi = 0x9F;
    else if (c == 0xF0) n = 4, lo = 0x90;
    else if (c >= 0xF1 && c <= 0xF3) n = 4;
    else if (c == 0xF4) n = 4, hi = 0x8F;
    else return false;
    if (i + n > s.size()) return false;
    for (std::size_t k = 1; k < n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80u) || b > (k == 1 ? hi : 0xBFu)) return false;
    }
    i += n;
  }
  return true;
}

// A float as Prometheus' parser (Go strconv.ParseFloat) reads it, limited to the spellings a
// writer should use: [+-]digits[.digits][(e|E)[+-]digits], +Inf, -Inf, NaN.
std::optional<double> parse_value(std::string_view s) {
  if (s == "+Inf") return std::numeric_limits<double>::infinity();
  if (s == "-Inf") return -std::numeric_limits<double>::infinity();
  if (s == "NaN") return std::numeric_limits<double>::quiet_NaN();
  std::size_t i = 0;
  const auto digits = [&] {
    const auto start = i;
    while (i < s.size() && s[i] >= '0' && s[i] <= '9') ++i;
    return i > start;
  };
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
  if (!digits()) return std::nullopt;
  if (i < s.size() && s[i] == '.') {
    ++i;
    if (!digits()) return std::nullopt;
  }
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '+' || s[i] == '-')) ++i;
    if (!digits()) return std::nullopt;
  }
  if (i != s.size()) return std::nullopt;
  const auto body = s.front() == '+' ? s.substr(1) : s;
  double v = 0;
  const auto [end, ec] = std::from_chars(body.data(), body.data() + body.size(), v);
  if (ec != std::errc{} || end != body.data() + body.size()) return std::nullopt;
  return v;
}

bool is_whole(double v) { return std::isfinite(v) && v >= 0 && std::floor(v) == v; }

class Parser {
 public:
  Scrape run(std::string_view text) {
    if (!text.empty() && text.back() != '\n') fail(0, "the last line must end with a line feed");
    std::size_t start = 0;
    while (start < text.size()) {
      const auto nl = text.find('\n', start);
      ++line_;
      this->line(text.substr(start, nl - start));
      start = nl + 1;
    }
    close_family();
    return std::move(out_);
  }

 private:
  [[noreturn]] static void fail(std::size_t line, const std::string& message) { throw ParseError(line, message); }
  [[noreturn]] void fail(const std::string& message) const { fail(line_, message); }

  void line(std::string_view l) {
    if (l.empty()) fail("blank line");
    if (l.find('\r') != std::string_view::npos) fail("carriage return in line");
    if (l.front() == '#') return comment(l);
    sample(l);
  }

  std::string_view metric_name(std::string_view& rest) const {
    std::size_t n = 0;
    while (n < rest.size() && metric_name_char(rest[n], n == 0)) ++n;
    if (n == 0) fail("expected a metric name at '" + std::string(rest.substr(0, 20)) + "'");
    const auto name = rest.substr(0, n);
    rest.remove_prefix(n);
    return name;
  }

  void comment(std::string_view l) {
    const bool help = l.starts_with("# HELP ");
    if (!help && !l.starts_with("# TYPE ")) fail("a comment other than '# HELP ' or '# TYPE '");
    auto rest = l.substr(7);
    const auto name = metric_name(rest);
    if (rest.empty() || rest.front() != ' ') fail("expected one space after the name in '" + std::string(l) + "'");
    rest.remove_prefix(1);
    Family& f = family_for_metadata(name);
    if (help) {
      if (has_help_) fail("second HELP for '" + f.name + "'");
      if (!valid_utf8(rest)) fail("HELP text is not UTF-8");
      for (std::size_t i = 0; i < rest.size(); ++i) {
        if (rest[i] != '\\') {
          f.help += rest[i];
          continue;
        }
        if (i + 1 >= rest.size() || (rest[i + 1] != '\\' && rest[i + 1] != 'n'))
          fail("bad escape in HELP text (only \\\\ and \\n)");
        f.help += rest[++i] == 'n' ? '\n' : '\\';
      }
      has_help_ = true;
    } else {
      if (has_type_) fail("second TYPE for '" + f.name + "'");
      static const std::set<std::string_view> kTypes{"counter", "gauge", "histogram", "summary", "untyped"};
      if (!kTypes.contains(rest)) fail("unknown type '" + std::string(rest) + "'");
      f.type = rest;
      has_type_ = true;
    }
  }

  Family& family_for_metadata(std::string_view name) {
    if (!out_.families.empty() && out_.families.back().name == name && !closed_) {
      if (!out_.families.back().samples.empty()) fail("HELP or TYPE after samples of '" + std::string(name) + "'");
      return out_.families.back();
    }
    close_family();
    if (seen_.contains(std::string(name))) fail("family '" + std::string(name) + "' appears in two groups");
    seen_.insert(std::string(name));
    out_.families.push_back(Family{std::string(name), {}, {}, {}});
    closed_ = false;
    has_help_ = has_type_ = false;
    return out_.families.back();
  }

  void sample(std::string_view l) {
    auto rest = l;
    const auto name = metric_name(rest);
    if (out_.families.empty() || closed_) fail("sample '" + std::string(name) + "' without HELP and TYPE");
    Family& f = out_.families.back();
    if (!has_help_ || !has_type_) fail("sample of '" + f.name + "' before both its HELP and TYPE");

    Sample s;
    s.name = name;
    if (!rest.empty() && rest.front() == '{') labels(rest, s);
    if (rest.empty() || rest.front() != ' ') fail("expected one space before the value");
    rest.remove_prefix(1);
    if (rest.find(' ') != std::string_view::npos) fail("extra field after the value (timestamps are not written)");
    const auto v = parse_value(rest);
    if (!v) fail("bad value '" + std::string(rest) + "'");
    s.value = *v;

    check_member(f, s);
    auto sorted = s.labels;
    std::sort(sorted.begin(), sorted.end());
    std::string key = s.name;
    for (const auto& [k, val] : sorted) key += '\0' + k + '\0' + val;
    if (!series_.insert(key).second) fail("duplicate series " + std::string(l.substr(0, l.rfind(' '))));
    f.samples.push_back(std::move(s));
  }

  void labels(std::string_view& rest, Sample& s) const {
    rest.remove_prefix(1);  // '{'
    if (!rest.empty() && rest.front() == '}') fail("empty label set '{}'");
    while (true) {
      std::size_t n = 0;
      while (n < rest.size() && label_name_char(rest[n], n == 0)) ++n;
      if (n == 0) fail("expected a label name");
      std::string label(rest.substr(0, n));
      rest.remove_prefix(n);
      if (label.starts_with("__")) fail("reserved label name '" + label + "'");
      for (const auto& [k, v] : s.labels)
        if (k == label) fail("label '" + label + "' twice");
      if (!rest.starts_with("=\"")) fail("expected =\" after label '" + label + "'");
      rest.remove_prefix(2);
      std::string value;
      bool closed = false;
      while (!rest.empty()) {
        const char c = rest.front();
        rest.remove_prefix(1);
        if (c == '"') {
          closed = true;
          break;
        }
        if (c != '\\') {
          value += c;
          continue;
        }
        if (rest.empty()) break;
        const char e = rest.front();
        rest.remove_prefix(1);
        if (e == '\\') value += '\\';
        else if (e == '"') value += '"';
        else if (e == 'n') value += '\n';
        else fail(std::string("bad escape \\") + e + " in label '" + label + "'");
      }
      if (!closed) fail("unterminated value of label '" + label + "'");
      if (!valid_utf8(value)) fail("value of label '" + label + "' is not UTF-8");
      s.labels.emplace_back(std::move(label), std::move(value));
      if (rest.starts_with(",}")) fail("trailing comma in label set");
      if (rest.starts_with(",")) {
        rest.remove_prefix(1);
        continue;
      }
      if (rest.starts_with("}")) {
        rest.remove_prefix(1);
        return;
      }
      fail("expected , or } after a label");
    }
  }

  // Whether `s` may belong to family `f`, and its value fits the type.
  void check_member(const Family& f, const Sample& s) const {
    const auto& t = f.type;
    const bool le = s.label("le").has_value(), quantile = s.label("quantile").has_value();
    if (t == "histogram") {
      if (s.name == f.name + "_bucket") {
        if (!le) fail("histogram bucket without le");
        const auto bound = parse_value(*s.label("le"));
        if (!bound || std::isnan(*bound)) fail("le is not a number: '" + *s.label("le") + "'");
        if (!is_whole(s.value)) fail("bucket count is not a non-negative integer");
      } else if (s.name == f.name + "_count") {
        if (le) fail("le on _count");
        if (!is_whole(s.value)) fail("_count is not a non-negative integer");
      } else if (s.name == f.name + "_sum") {
        if (le) fail("le on _sum");
      } else {
        fail("sample '" + s.name + "' in histogram '" + f.name + "' (expected _bucket, _sum or _count)");
      }
      return;
    }
    if (t == "summary") {
      if (s.name == f.name) {
        if (!quantile) fail("summary sample without quantile");
      } else if (s.name == f.name + "_count" || s.name == f.name + "_sum") {
        if (quantile) fail("quantile on _sum or _count");
      } else {
        fail("sample '" + s.name + "' in summary '" + f.name + "'");
      }
      return;
    }
    if (s.name != f.name) fail("sample '" + s.name + "' in the group of '" + f.name + "'");
    if (t == "counter" && !(s.value >= 0)) fail("counter '" + s.name + "' is negative or NaN");
  }

  // End of a family's group: histogram series checks.
  void close_family() {
    if (out_.families.empty() || closed_) return;
    closed_ = true;
    const Family& f = out_.families.back();
    if (!has_help_ || !has_type_) fail("family '" + f.name + "' lacks HELP or TYPE");
    if (f.type != "histogram") return;
    struct Series {
      std::vector<std::pair<double, double>> buckets;  // (le, count) in written order
      std::optional<double> sum, count;
    };
    std::map<Labels, Series> series;
    for (const auto& s : f.samples) {
      Labels key;
      for (const auto& l : s.labels)
        if (l.first != "le") key.push_back(l);
      std::sort(key.begin(), key.end());
      auto& se = series[key];
      if (s.name == f.name + "_bucket") se.buckets.emplace_back(*parse_value(*s.label("le")), s.value);
      else if (s.name == f.name + "_sum") se.sum = s.value;
      else se.count = s.value;
    }
    for (const auto& [key, se] : series) {
      std::string id = f.name + "{";
      for (const auto& [k, v] : key) id += k + "=\"" + v + "\",";
      id += "}";
      if (se.buckets.empty()) fail(id + " has no buckets");
      for (std::size_t i = 1; i < se.buckets.size(); ++i) {
        if (!(se.buckets[i].first > se.buckets[i - 1].first)) fail(id + ": le not strictly increasing");
        if (se.buckets[i].second < se.buckets[i - 1].second) fail(id + ": bucket counts not cumulative");
      }
      if (!std::isinf(se.buckets.back().first)) fail(id + ": last bucket is not le=\"+Inf\"");
      if (!se.sum) fail(id + ": no _sum");
      if (!se.count) fail(id + ": no _count");
      if (*se.count != se.buckets.back().second) fail(id + ": _count differs from the +Inf bucket");
    }
  }

  Scrape out_;
  std::size_t line_ = 0;
  bool closed_ = true;  ///< the last family's group has ended (or there is none)
  bool has_help_ = false, has_type_ = false;
  std::set<std::string> seen_;
  std::set<std::string> series_;
};

bool includes(const Labels& labels, const Labels& subset) {
  return std::all_of(subset.begin(), subset.end(), [&](const auto& want) {
    return std::find(labels.begin(), labels.end(), want) != labels.end();
  });
}

}  // namespace

ParseError::ParseError(std::size_t l, const std::string& message)
    : std::runtime_error("exposition line " + std::to_string(l) + ": " + message), line(l) {}

std::optional<std::string> Sample::label(std::string_view n) const {
  for (const auto& [k, v] : labels)
    if (k == n) return v;
  return std::nullopt;
}

const Family* Scrape::family(std::string_view name) const {
  for (const auto& f : families)
    if (f.name == name) return &f;
  return nullptr;
}

std::optional<double> Scrape::value(std::string_view name, const Labels& labels) const {
  for (const auto& f : families)
    for (const auto& s : f.samples)
      if (s.name == name && s.labels.size() == labels.size() && includes(s.labels, labels)) return s.value;
  return std::nullopt;
}

double Scrape::sum(std::string_view name, const Labels& subset) const {
  double total = 0;
  for (const auto& f : families)
    for (const auto& s : f.samples)
      if (s.name == name && includes(s.labels, subset)) total += s.value;
  return total;
}

std::size_t Scrape::count(std::string_view name, const Labels& subset) const {
  std::size_t n = 0;
  for (const auto& f : families)
    for (const auto& s : f.samples)
      if (s.name == name && includes(s.labels, subset)) ++n;
  return n;
}

Scrape parse(std::string_view text) { return Parser().run(text); }

}  // namespace keel::test::prometheus
