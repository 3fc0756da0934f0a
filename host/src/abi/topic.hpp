#pragma once
// The topic grammar of the event bus (docs/abi.md §7.2 "events") and subscription matching: a
// topic is two or more dot-separated [a-z0-9_]+ segments ("orders.placed"); a pattern may also
// use "*" (exactly one segment) and, as its last segment, "#" (zero or more segments). The
// manifest checks use the same functions. Pure functions; thread-safe.

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace keel::host::abi {

/// True when `topic` is a publishable topic: [a-z0-9_]+(\.[a-z0-9_]+)+, e.g. "orders.placed".
/// No allocation.
[[nodiscard]] bool valid_topic(std::string_view topic) noexcept;

/// What is wrong with the subscription pattern `pattern`, or nothing when it is valid. Segments
/// are [a-z0-9_]+, "*" (exactly one segment) or, as the last segment only, "#" (zero or more
/// segments). Topics have at least two segments, so a pattern without "#" needs two as well:
///   "orders.*"  matches "orders.placed", not "orders.item.added"
///   "orders.#"  matches "orders.placed" and "orders.item.added"
///   "*.placed"  matches "orders.placed"
///   "#"         matches every topic
/// The message is a phrase for "'<pattern>' is not a topic pattern: <message>".
[[nodiscard]] std::optional<std::string> pattern_problem(std::string_view pattern);

/// True when `topic` (already valid: dot-separated [a-z0-9_]+ segments) matches `pattern`
/// (segments, "*" = exactly one segment, a final "#" = zero or more segments), per the grammar
/// of pattern_problem(). A pattern that pattern_problem() rejects matches no valid topic.
/// No allocation.
[[nodiscard]] bool topic_matches(std::string_view pattern, std::string_view topic) noexcept;

/// True when any of `patterns` matches `topic` (topic_matches()). No allocation.
[[nodiscard]] bool matches_any(const std::vector<std::string>& patterns, std::string_view topic) noexcept;

}  // namespace keel::host::abi
