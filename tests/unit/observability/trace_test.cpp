#include <cinttypes>
#include <cstdio>
#include <random>
#include <set>
#include <string>

#include <catch2/catch.hpp>

#include "observability/hex.hpp"
#include "observability/trace.hpp"

using keel::host::observability::Span;
using keel::host::observability::valid_traceparent;

namespace {
constexpr std::string_view kExample = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
}

TEST_CASE("traceparent validation follows W3C Trace Context", "[trace]") {
  CHECK(valid_traceparent(kExample));
  CHECK(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00"));
  // A later version may append fields after a '-'.
  CHECK(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future"));
  CHECK(valid_traceparent("cc-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));

  CHECK_FALSE(valid_traceparent(""));
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));  // 00: exact length
  CHECK_FALSE(valid_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01x"));       // no '-' after
  CHECK_FALSE(valid_traceparent("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));        // forbidden version
  CHECK_FALSE(valid_traceparent("00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"));        // upper case
  CHECK_FALSE(valid_traceparent("00-00000000000000000000000000000000-00f067aa0ba902b7-01"));        // zero trace
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01"));        // zero parent
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0g"));        // flags not hex
  CHECK_FALSE(valid_traceparent("00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"));        // delimiter
  CHECK_FALSE(valid_traceparent("00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01"));        // shifted
  CHECK_FALSE(valid_traceparent(kExample.substr(0, 54)));
}

TEST_CASE("traceparent validation judges every byte at every id position like the plain rule", "[trace]") {
  // The ids are checked eight bytes at a time; compare with the character-by-character rule for
  // each of the 256 byte values in each of the 48 id positions.
  const auto lower_hex = [](unsigned char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); };
  std::string tp(kExample);
  for (const std::size_t pos : {3u, 36u}) {
    for (std::size_t i = 0; i < (pos == 3 ? 32u : 16u); ++i) {
      for (int b = 0; b < 256; ++b) {
        tp = kExample;
        tp[pos + i] = static_cast<char>(b);
        INFO("position " << pos + i << " byte " << b);
        CHECK(valid_traceparent(tp) == lower_hex(static_cast<unsigned char>(b)));
      }
    }
  }
  // A single non-zero digit anywhere makes an id non-zero.
  for (std::size_t i = 0; i < 32; ++i) {
    std::string zero_trace = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    zero_trace[3 + i] = 'a';
    CHECK(valid_traceparent(zero_trace));
  }
}

TEST_CASE("a span continues a valid incoming trace as its child", "[trace]") {
  const auto span = Span::start(kExample);
  CHECK(valid_traceparent(span.traceparent()));
  CHECK(span.trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(span.parent_id() == "00f067aa0ba902b7");
  CHECK(span.span_id() != "00f067aa0ba902b7");
  CHECK(span.traceparent().substr(0, 3) == "00-");
  CHECK(span.traceparent().substr(53) == "01");
  CHECK(span.traceparent().substr(36, 16) == span.span_id());

  // A child of the child: same trace, the first span as parent.
  const auto grandchild = Span::start(span.traceparent());
  CHECK(grandchild.trace_id() == span.trace_id());
  CHECK(grandchild.parent_id() == span.span_id());

  // A later version is continued, and re-emitted as version 00.
  const auto from_v1 = Span::start("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x");
  CHECK(from_v1.trace_id() == "4bf92f3577b34da6a3ce929d0e0e4736");
  CHECK(from_v1.traceparent().substr(0, 3) == "00-");
  CHECK(from_v1.traceparent().substr(53) == "00");
}

TEST_CASE("a span without a valid parent starts a new trace", "[trace]") {
  std::set<std::string> traces, spans;
  for (const auto* bad : {"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}) {
    const auto span = Span::start(bad);
    CHECK(valid_traceparent(span.traceparent()));
    CHECK(span.parent_id().empty());
    CHECK(span.traceparent().substr(53) == "01");
    traces.emplace(span.trace_id());
  }
  for (int i = 0; i < 1000; ++i) spans.emplace(Span::start(kExample).span_id());
  CHECK(traces.size() == 3);
  CHECK(spans.size() == 1000);
}

TEST_CASE("ids are written in lower-case hex exactly as printf writes them", "[trace]") {
  using keel::host::observability::write_hex;
  std::mt19937_64 random(7);
  std::vector<std::uint64_t> values = {0, 1, 9, 10, 15, 16, 0x0123456789abcdefull, 0xfedcba9876543210ull,
                                       0xffffffffffffffffull, 0xa0a0a0a0a0a0a0a0ull, 0x9999999999999999ull};
  for (int i = 0; i < 2000; ++i) values.push_back(random());
  for (const std::uint64_t v : values) {
    char expected[17];
    std::snprintf(expected, sizeof expected, "%016" PRIx64, v);
    for (int bytes = 1; bytes <= 8; ++bytes) {
      char out[18] = "################";
      write_hex(out, v, bytes);
      INFO("value " << expected << ", " << bytes << " bytes");
      CHECK(std::string_view(out, 2 * static_cast<std::size_t>(bytes)) == std::string_view(expected + 16 - 2 * bytes));
      CHECK(out[2 * bytes] == (bytes == 8 ? '\0' : '#'));  // nothing written past the digits
    }
  }
}
