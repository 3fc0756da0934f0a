#include "observability/metrics.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "prometheus.hpp"

namespace obs = keel::host::observability;
namespace prom = keel::test::prometheus;
using obs::MetricType;

namespace {

constexpr std::array<double, 3> kBounds{0.0005, 1, 2.5};

}  // namespace

TEST_CASE("exposition writes HELP and TYPE once per family, then its samples", "[observability][metrics]") {
  std::string out;
  obs::Exposition m(out);
  m.family("keel_things_total", MetricType::kCounter, "Things seen.");
  m.sample({{"plugin", "a"}}, std::uint64_t{3});
  m.sample({{"plugin", "b"}}, 0);
  m.family("keel_temperature", MetricType::kGauge, "A gauge without labels.");
  m.sample({}, -1.5);
  CHECK(out ==
        "# HELP keel_things_total Things seen.\n"
        "# TYPE keel_things_total counter\n"
        "keel_things_total{plugin=\"a\"} 3\n"
        "keel_things_total{plugin=\"b\"} 0\n"
        "# HELP keel_temperature A gauge without labels.\n"
        "# TYPE keel_temperature gauge\n"
        "keel_temperature -1.5\n");
  const auto scrape = prom::parse(out);
  CHECK(scrape.families.size() == 2);
  CHECK(scrape.value("keel_things_total", {{"plugin", "a"}}) == 3);
  CHECK(scrape.value("keel_temperature") == -1.5);
}

TEST_CASE("exposition leaves out a family without samples", "[observability][metrics]") {
  std::string out;
  obs::Exposition m(out);
  m.family("keel_empty", MetricType::kGauge, "Nothing to report.");
  m.family("keel_full", MetricType::kGauge, "Something.");
  m.sample({}, 1);
  CHECK(out.find("keel_empty") == std::string::npos);
  CHECK(prom::parse(out).family("keel_full") != nullptr);
  // A family that wrote nothing may be started again; one that wrote samples may not.
  CHECK_NOTHROW(m.family("keel_empty", MetricType::kGauge, "Nothing to report."));
  CHECK_THROWS_AS(m.family("keel_full", MetricType::kGauge, "Again."), std::invalid_argument);
}

TEST_CASE("exposition escapes label values and HELP text", "[observability][metrics]") {
  std::string out;
  obs::Exposition m(out);
  m.family("keel_escapes", MetricType::kGauge, "Back\\slash and\nnewline, \"quotes\" stay.");
  const std::string_view tricky = "a\\b\"c\nd";
  m.sample({{"v", tricky}}, 1);
  m.sample({{"v", "Zo\xC3\xAB \xE2\x82\xAC \xF0\x9F\x98\x80"}}, 2);  // UTF-8 passes through
  m.sample({{"v", "bad\xFF\xC3"}}, 3);                                   // invalid bytes do not
  m.sample({{"v", "\xED\xA0\x80"}}, 4);                                  // a UTF-16 surrogate
  m.sample({{"v", "\xC0\xAF"}}, 5);                                      // an overlong '/'
  m.sample({{"v", ""}}, 6);
  CHECK(out.find("# HELP keel_escapes Back\\\\slash and\\nnewline, \"quotes\" stay.\n") != std::string::npos);
  CHECK(out.find("keel_escapes{v=\"a\\\\b\\\"c\\nd\"} 1\n") != std::string::npos);
  const auto scrape = prom::parse(out);
  CHECK(scrape.family("keel_escapes")->help == "Back\\slash and\nnewline, \"quotes\" stay.");
  CHECK(scrape.value("keel_escapes", {{"v", std::string(tricky)}}) == 1);
  CHECK(scrape.value("keel_escapes", {{"v", "Zo\xC3\xAB \xE2\x82\xAC \xF0\x9F\x98\x80"}}) == 2);
  CHECK(scrape.value("keel_escapes", {{"v", "bad\xEF\xBF\xBD\xEF\xBF\xBD"}}) == 3);
  CHECK(scrape.value("keel_escapes", {{"v", "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}}) == 4);
  CHECK(scrape.value("keel_escapes", {{"v", "\xEF\xBF\xBD\xEF\xBF\xBD"}}) == 5);
  CHECK(scrape.value("keel_escapes", {{"v", ""}}) == 6);
}

TEST_CASE("exposition writes integers exactly and doubles so that they read back", "[observability][metrics]") {
  std::string out;
  obs::Exposition m(out);
  m.family("keel_numbers", MetricType::kGauge, "Numbers.");
  m.sample({{"n", "u64max"}}, std::numeric_limits<std::uint64_t>::max());
  m.sample({{"n", "i64min"}}, std::numeric_limits<std::int64_t>::min());
  m.sample({{"n", "tenth"}}, 0.1);
  m.sample({{"n", "tiny"}}, 1e-300);
  m.sample({{"n", "huge"}}, 1.7976931348623157e308);
  m.sample({{"n", "inf"}}, std::numeric_limits<double>::infinity());
  m.sample({{"n", "-inf"}}, -std::numeric_limits<double>::infinity());
  m.sample({{"n", "nan"}}, std::numeric_limits<double>::quiet_NaN());
  m.sample({{"n", "zero"}}, 0.0);
  m.sample({{"n", "whole"}}, 1712345678.0);
  CHECK(out.find("{n=\"u64max\"} 18446744073709551615\n") != std::string::npos);
  CHECK(out.find("{n=\"i64min\"} -9223372036854775808\n") != std::string::npos);
  CHECK(out.find("{n=\"tenth\"} 0.1\n") != std::string::npos);
  CHECK(out.find("{n=\"inf\"} +Inf\n") != std::string::npos);
  CHECK(out.find("{n=\"-inf\"} -Inf\n") != std::string::npos);
  CHECK(out.find("{n=\"nan\"} NaN\n") != std::string::npos);
  CHECK(out.find("{n=\"zero\"} 0\n") != std::string::npos);
  CHECK(out.find("{n=\"whole\"} 1712345678\n") != std::string::npos);
  const auto scrape = prom::parse(out);
  CHECK(scrape.value("keel_numbers", {{"n", "tiny"}}) == 1e-300);
  CHECK(scrape.value("keel_numbers", {{"n", "huge"}}) == 1.7976931348623157e308);
  CHECK(std::isnan(*scrape.value("keel_numbers", {{"n", "nan"}})));

  SECTION("random doubles round-trip bit for bit") {
    std::mt19937_64 rng(42);
    std::uniform_real_distribution<double> exponent(-300, 300), mantissa(-1, 1);
    std::vector<double> values;
    std::string random_out;
    obs::Exposition r(random_out);
    r.family("keel_random", MetricType::kGauge, "Random.");
    for (int i = 0; i < 2000; ++i) {
      values.push_back(mantissa(rng) * std::pow(10.0, exponent(rng)));
      r.sample({{"i", std::to_string(i)}}, values.back());
    }
    const auto parsed = prom::parse(random_out);
    for (int i = 0; i < 2000; ++i)
      REQUIRE(parsed.value("keel_random", {{"i", std::to_string(i)}}) == values[static_cast<std::size_t>(i)]);
  }
}

TEST_CASE("exposition writes histograms with cumulative buckets ending at +Inf", "[observability][metrics]") {
  std::string out;
  obs::Exposition m(out);
  m.family("keel_latency_seconds", MetricType::kHistogram, "Latency.");
  const std::array<std::uint64_t, 4> counts{2, 0, 5, 1};
  m.histogram({{"plugin", "a"}}, kBounds, counts, 7.25);
  CHECK(out ==
        "# HELP keel_latency_seconds Latency.\n"
        "# TYPE keel_latency_seconds histogram\n"
        "keel_latency_seconds_bucket{plugin=\"a\",le=\"0.0005\"} 2\n"
        "keel_latency_seconds_bucket{plugin=\"a\",le=\"1\"} 2\n"
        "keel_latency_seconds_bucket{plugin=\"a\",le=\"2.5\"} 7\n"
        "keel_latency_seconds_bucket{plugin=\"a\",le=\"+Inf\"} 8\n"
        "keel_latency_seconds_sum{plugin=\"a\"} 7.25\n"
        "keel_latency_seconds_count{plugin=\"a\"} 8\n");

  SECTION("fewer counts than buckets means zeros; no labels; small bounds in plain decimal") {
    const std::array<double, 2> small{0.00005, 0.0001};
    m.family("keel_other_seconds", MetricType::kHistogram, "Other.");
    m.histogram({}, small, std::span<const std::uint64_t>{}, 0);
    CHECK(out.find("keel_other_seconds_bucket{le=\"0.00005\"} 0\n") != std::string::npos);
    CHECK(out.find("keel_other_seconds_bucket{le=\"+Inf\"} 0\n") != std::string::npos);
    CHECK(out.find("keel_other_seconds_count 0\n") != std::string::npos);
  }
  SECTION("more counts than buckets is a bug") {
    const std::array<std::uint64_t, 5> too_many{};
    CHECK_THROWS_AS(m.histogram({{"plugin", "b"}}, kBounds, too_many, 0), std::invalid_argument);
  }
  CHECK_NOTHROW(prom::parse(out));
}

TEST_CASE("exposition refuses names and calls that would break the format", "[observability][metrics]") {
  std::string out;
  obs::Exposition m(out);
  CHECK_THROWS_AS(m.sample({}, 1), std::invalid_argument);  // no family yet
  CHECK_THROWS_AS(m.family("", MetricType::kGauge, "x"), std::invalid_argument);
  CHECK_THROWS_AS(m.family("9lives", MetricType::kGauge, "x"), std::invalid_argument);
  CHECK_THROWS_AS(m.family("has-dash", MetricType::kGauge, "x"), std::invalid_argument);
  CHECK_THROWS_AS(m.family("has space", MetricType::kGauge, "x"), std::invalid_argument);
  CHECK_NOTHROW(m.family("ns:sub_name0", MetricType::kGauge, "colons are allowed in metric names"));
  CHECK_THROWS_AS(m.sample({{"a:b", "x"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(m.sample({{"0a", "x"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(m.sample({{"__name__", "x"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(m.sample({{"a", "x"}, {"a", "y"}}, 1), std::invalid_argument);
  CHECK_THROWS_AS(m.histogram({}, kBounds, {}, 0), std::invalid_argument);  // not a histogram family
  m.family("keel_h", MetricType::kHistogram, "h");
  CHECK_THROWS_AS(m.sample({}, 1), std::invalid_argument);  // a histogram takes histogram()
  CHECK_THROWS_AS(m.histogram({{"le", "1"}}, kBounds, {}, 0), std::invalid_argument);
  CHECK(out.empty());  // nothing half-written
  CHECK(obs::valid_metric_name("a_b:c9"));
  CHECK(obs::valid_label_name("_a9"));
  CHECK_FALSE(obs::valid_label_name("a:b"));
}

TEST_CASE("the strict exposition parser refuses malformed text", "[observability][metrics]") {
  const std::string head = "# HELP x X.\n# TYPE x gauge\n";
  const std::string hist = "# HELP h H.\n# TYPE h histogram\n";
  struct Bad {
    const char* why;
    std::string text;
  };
  const std::vector<Bad> bad{
      {"no final line feed", head + "x 1"},
      {"blank line", head + "\nx 1\n"},
      {"other comment", "# hello\n" + head + "x 1\n"},
      {"sample without TYPE", "# HELP x X.\nx 1\n"},
      {"sample without HELP", "# TYPE x gauge\nx 1\n"},
      {"sample without metadata", "x 1\n"},
      {"unknown type", "# HELP x X.\n# TYPE x meter\nx 1\n"},
      {"TYPE twice", head + "# TYPE x gauge\nx 1\n"},
      {"TYPE after samples", head + "x{a=\"1\"} 1\n# TYPE x gauge\n"},
      {"family in two groups", head + "x 1\n# HELP y Y.\n# TYPE y gauge\ny 1\n# HELP x X.\n# TYPE x gauge\n"},
      {"sample of another family", head + "y 1\n"},
      {"bad metric name", "# HELP 1x X.\n# TYPE 1x gauge\n1x 1\n"},
      {"bad label name", head + "x{a-b=\"1\"} 1\n"},
      {"reserved label", head + "x{__a=\"1\"} 1\n"},
      {"duplicate label", head + "x{a=\"1\",a=\"2\"} 1\n"},
      {"unquoted label value", head + "x{a=1} 1\n"},
      {"bad escape", head + "x{a=\"\\t\"} 1\n"},
      {"unterminated value", head + "x{a=\"1} 1\n"},
      {"trailing comma", head + "x{a=\"1\",} 1\n"},
      {"empty braces", head + "x{} 1\n"},
      {"invalid UTF-8 value", head + "x{a=\"\xFF\"} 1\n"},
      {"two spaces", head + "x  1\n"},
      {"timestamp", head + "x 1 1712345678000\n"},
      {"bad value", head + "x one\n"},
      {"lowercase inf", head + "x inf\n"},
      {"duplicate series", head + "x{a=\"1\",b=\"2\"} 1\nx{b=\"2\",a=\"1\"} 2\n"},
      {"negative counter", "# HELP c C.\n# TYPE c counter\nc -1\n"},
      {"carriage return", head + "x 1\r\n"},
      {"bucket without le", hist + "h_bucket 1\nh_sum 0\nh_count 1\n"},
      {"no +Inf bucket", hist + "h_bucket{le=\"1\"} 1\nh_sum 0\nh_count 1\n"},
      {"not cumulative", hist + "h_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n"},
      {"le not increasing",
       hist + "h_bucket{le=\"2\"} 1\nh_bucket{le=\"1\"} 1\nh_bucket{le=\"+Inf\"} 1\nh_sum 0\nh_count 1\n"},
      {"count differs from +Inf", hist + "h_bucket{le=\"+Inf\"} 2\nh_sum 0\nh_count 1\n"},
      {"no _count", hist + "h_bucket{le=\"+Inf\"} 1\nh_sum 0\n"},
      {"no _sum", hist + "h_bucket{le=\"+Inf\"} 1\nh_count 1\n"},
      {"fractional bucket count", hist + "h_bucket{le=\"+Inf\"} 1.5\nh_sum 0\nh_count 1.5\n"},
      {"plain sample in a histogram", hist + "h 1\n"},
      {"le on _sum", hist + "h_bucket{le=\"+Inf\"} 1\nh_sum{le=\"1\"} 0\nh_count 1\n"},
  };
  for (const auto& b : bad) {
    INFO(b.why);
    CHECK_THROWS_AS(prom::parse(b.text), prom::ParseError);
  }
  // And what the format allows, in the form Keel writes it.
  const auto ok = prom::parse(head + "x{a=\"q\\\"\\\\\\n\"} -1.5e-3\n" + hist +
                              "h_bucket{k=\"v\",le=\"0.5\"} 1\nh_bucket{k=\"v\",le=\"+Inf\"} 3\nh_sum{k=\"v\"} 2.5\n"
                              "h_count{k=\"v\"} 3\n# HELP meta_only M.\n# TYPE meta_only counter\n");
  CHECK(ok.value("x", {{"a", "q\"\\\n"}}) == -1.5e-3);
  CHECK(ok.value("h_count", {{"k", "v"}}) == 3);
  CHECK(ok.sum("h_bucket", {{"k", "v"}}) == 4);
  CHECK(prom::parse("").families.empty());
}
