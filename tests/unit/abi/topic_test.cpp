#include "abi/topic.hpp"

#include <array>
#include <string>
#include <string_view>

#include <catch2/catch.hpp>

namespace abi = keel::host::abi;

namespace {

struct MatchCase {
  std::string_view pattern;
  std::string_view topic;
  bool matches;
};

// Every topic here is valid (topic_matches' precondition); every pattern passes pattern_problem().
constexpr std::array kMatchCases{
    // Exact topics.
    MatchCase{"orders.placed", "orders.placed", true},
    MatchCase{"orders.placed", "orders.placed2", false},
    MatchCase{"orders.placed", "orders.place", false},
    MatchCase{"orders.placed", "orders.placed.eu", false},
    MatchCase{"orders.placed.eu", "orders.placed", false},
    MatchCase{"a.b", "b.a", false},
    // Prefix traps: a segment must match whole, not as a prefix of the topic's text.
    MatchCase{"order.*", "orders.placed", false},
    MatchCase{"orders.*", "order.placed", false},
    MatchCase{"order.#", "orders.placed", false},
    MatchCase{"orders.*", "orders_x.placed", false},
    MatchCase{"orders.pl", "orders.placed", false},
    MatchCase{"*.placed", "orders.placed_late", false},
    // "*" is exactly one segment.
    MatchCase{"orders.*", "orders.placed", true},
    MatchCase{"orders.*", "orders.item.added", false},
    MatchCase{"*.placed", "orders.placed", true},
    MatchCase{"*.placed", "billing.placed", true},
    MatchCase{"*.placed", "orders.eu.placed", false},
    MatchCase{"*.placed", "orders.cancelled", false},
    MatchCase{"*.*", "a.b", true},
    MatchCase{"*.*", "a.b.c", false},
    MatchCase{"a.*.c", "a.b.c", true},
    MatchCase{"a.*.c", "a.xyz_9.c", true},
    MatchCase{"a.*.c", "a.c", false},
    MatchCase{"a.*.c", "a.b.b.c", false},
    MatchCase{"a.*.c", "a.b.d", false},
    MatchCase{"a.*.c", "x.b.c", false},
    MatchCase{"*.*.*", "a.b", false},
    // A final "#" is zero or more segments.
    MatchCase{"#", "a.b", true},
    MatchCase{"#", "orders.item.added.eu", true},
    MatchCase{"orders.#", "orders.placed", true},
    MatchCase{"orders.#", "orders.item.added", true},
    MatchCase{"orders.#", "billing.placed", false},
    MatchCase{"orders.#", "billing.orders.placed", false},
    MatchCase{"a.b.#", "a.b", true},  // zero segments
    MatchCase{"a.b.#", "a.b.c", true},
    MatchCase{"a.b.#", "a.c", false},
    MatchCase{"a.b.c.#", "a.b", false},
    // "#" after "*".
    MatchCase{"*.#", "a.b", true},
    MatchCase{"*.#", "a.b.c.d", true},
    MatchCase{"a.*.#", "a.b", true},
    MatchCase{"a.*.#", "a.b.c", true},
    MatchCase{"a.*.#", "a.b.c.d", true},
    MatchCase{"a.*.#", "b.a.c", false},
    MatchCase{"*.b.#", "a.b", true},
    MatchCase{"*.b.#", "a.b.c", true},
    MatchCase{"*.b.#", "a.c.b", false},
    MatchCase{"*.*.#", "a.b", true},
    MatchCase{"a.*.*.#", "a.b", false},
    // Digits and underscores are ordinary segment characters.
    MatchCase{"v2.*", "v2.order_placed", true},
    MatchCase{"_._", "_._", true},
};

}  // namespace

TEST_CASE("topic_matches follows the pattern grammar", "[events]") {
  for (const auto& c : kMatchCases) {
    CAPTURE(c.pattern, c.topic);
    REQUIRE(abi::valid_topic(c.topic));
    REQUIRE_FALSE(abi::pattern_problem(c.pattern).has_value());
    CHECK(abi::topic_matches(c.pattern, c.topic) == c.matches);
  }
}

TEST_CASE("a topic used as a pattern matches only itself", "[events]") {
  for (const auto& a : kMatchCases) {
    for (const auto& b : kMatchCases) {
      CAPTURE(a.topic, b.topic);
      CHECK(abi::topic_matches(a.topic, b.topic) == (a.topic == b.topic));
    }
  }
}

TEST_CASE("patterns that pattern_problem rejects match no valid topic", "[events]") {
  constexpr std::array<std::string_view, 6> kTopics{"a.b", "a.b.c", "orders.placed", "orders.item.added", "x.y.z.w",
                                                    "_._"};
  for (const std::string_view pattern :
       {"", "*", "a", "orders", "#.a", "a.#.b", "a..b", ".a.b", "a.b.", "A.b", "a.b*", "a.#b", "a.**", "a.b c"}) {
    CAPTURE(pattern);
    REQUIRE(abi::pattern_problem(pattern).has_value());
    for (const auto topic : kTopics) {
      CAPTURE(topic);
      CHECK_FALSE(abi::topic_matches(pattern, topic));
    }
  }
}

TEST_CASE("valid_topic accepts two or more [a-z0-9_]+ segments", "[events]") {
  for (const std::string_view topic :
       {"a.b", "orders.placed", "a.b.c.d.e", "x1._", "0.9", "_._", "order_v2.placed_at"}) {
    CAPTURE(topic);
    CHECK(abi::valid_topic(topic));
  }
  for (const std::string_view topic : {"", ".", "a", "orders", "a.", ".a", "a..b", "a.b.", "Orders.placed", "a.B",
                                       "a.*", "a.#", "#", "a.b/1", "a b.c", "a-b.c", "a.b\n"}) {
    CAPTURE(topic);
    CHECK_FALSE(abi::valid_topic(topic));
  }
  CHECK_FALSE(abi::valid_topic(std::string_view{"a.\0b", 4}));
}

TEST_CASE("pattern_problem names what is wrong with a pattern", "[events]") {
  for (const std::string_view pattern : {"#", "a.b", "a.*", "*.b", "*.*", "a.#", "*.#", "a.*.#", "a.b.c.#", "x1._.*"}) {
    CAPTURE(pattern);
    CHECK_FALSE(abi::pattern_problem(pattern).has_value());
  }
  const std::string too_short = "matches no topic: topics have at least two segments, e.g. 'orders.*'";
  CHECK(abi::pattern_problem("orders") == too_short);
  CHECK(abi::pattern_problem("*") == too_short);
  CHECK(abi::pattern_problem("#.a") == std::string{"'#' may only be the last segment"});
  CHECK(abi::pattern_problem("a.#.#") == std::string{"'#' may only be the last segment"});
  CHECK(abi::pattern_problem("") == std::string{"empty segment"});
  CHECK(abi::pattern_problem("a..b") == std::string{"empty segment"});
  CHECK(abi::pattern_problem("a.b.") == std::string{"empty segment"});
  CHECK(abi::pattern_problem("a.pl*") == std::string{"segment 'pl*' is not [a-z0-9_]+, '*' or a final '#'"});
  CHECK(abi::pattern_problem("Orders.*") == std::string{"segment 'Orders' is not [a-z0-9_]+, '*' or a final '#'"});
}

TEST_CASE("topic_matches and valid_topic never throw", "[events]") {
  // noexcept is part of the contract: the bus calls these on its publish path.
  STATIC_REQUIRE(noexcept(abi::topic_matches(std::string_view{}, std::string_view{})));
  STATIC_REQUIRE(noexcept(abi::valid_topic(std::string_view{})));
}
