// isolation wire codec (host/src/isolation/wire.*): every encode_/decode_ pair round-trips, a
// payload cut anywhere fails the Reader instead of reading out of range, frame header limits.

#include "isolation/wire.hpp"

#include <array>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <sys/mman.h>

#include <catch2/catch.hpp>

using namespace keel::host::isolation;
using namespace std::literals;

namespace {

keel_host_bytes hb(std::string_view s) { return {s.empty() ? nullptr : s.data(), s.size()}; }
keel_plugin_bytes pb(std::string_view s) { return {s.empty() ? nullptr : s.data(), s.size()}; }
std::string str(keel_host_bytes b) { return b.len == 0 ? std::string() : std::string(b.ptr, b.len); }
std::string str(keel_plugin_bytes b) { return b.len == 0 ? std::string() : std::string(b.ptr, b.len); }

/// Decodes every strict prefix of `payload` with `decode`: each must leave the reader failed.
/// Run under ASan, this also proves no prefix is read past its end.
void check_truncations(const std::string& payload, const std::function<void(Reader&)>& decode) {
  for (std::size_t n = 0; n < payload.size(); ++n) {
    // A heap copy of exactly n bytes, so ASan sees a read past the end of the prefix.
    const std::string prefix = payload.substr(0, n);
    Reader r(prefix);
    decode(r);
    INFO("prefix of " << n << " of " << payload.size() << " bytes");
    CHECK_FALSE(r.ok());
    CHECK_FALSE(r.done());
  }
}

template <class Kv>
std::vector<std::pair<std::string, std::string>> pairs(const Kv* items, std::size_t count) {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t i = 0; i < count; ++i) out.emplace_back(str(items[i].name), str(items[i].value));
  return out;
}

using Pairs = std::vector<std::pair<std::string, std::string>>;

}  // namespace

TEST_CASE("isolation wire: writer and reader agree on little-endian integers, doubles and byte strings", "[isolation][wire]") {
  Writer w;
  w.u8(0xAB);
  w.u32(0x01020304u);
  w.u64(0x0102030405060708ull);
  w.i32(-2);
  w.i64(std::numeric_limits<std::int64_t>::min());
  w.f64(-0.0);
  w.f64(std::numeric_limits<double>::infinity());
  w.bytes("a\0b"sv);
  w.bytes(nullptr, 0);
  const auto& d = w.data();
  // The layout is the spec's, byte for byte: little-endian, u32 length before bytes.
  REQUIRE(d.substr(0, 5) == "\xAB\x04\x03\x02\x01"s);
  REQUIRE(d.substr(5, 8) == "\x08\x07\x06\x05\x04\x03\x02\x01"s);

  Reader r(d);
  CHECK(r.u8() == 0xAB);
  CHECK(r.u32() == 0x01020304u);
  CHECK(r.u64() == 0x0102030405060708ull);
  CHECK(r.i32() == -2);
  CHECK(r.i64() == std::numeric_limits<std::int64_t>::min());
  const double zero = r.f64();
  CHECK(zero == 0.0);
  CHECK(std::signbit(zero));
  CHECK(r.f64() == std::numeric_limits<double>::infinity());
  CHECK(r.bytes() == "a\0b"sv);
  CHECK(r.bytes().empty());
  CHECK(r.done());
  // Reading on after the end fails and keeps failing, with zero values.
  CHECK(r.u32() == 0);
  CHECK_FALSE(r.ok());
  CHECK(r.bytes().empty());
}

TEST_CASE("isolation wire: a NaN keeps its bit pattern across the wire", "[isolation][wire]") {
  const std::uint64_t bits = 0x7FF8'0000'DEAD'BEEFull;
  double nan = 0;
  std::memcpy(&nan, &bits, sizeof nan);
  Writer w;
  w.f64(nan);
  Reader r(w.data());
  const double back = r.f64();
  std::uint64_t back_bits = 0;
  std::memcpy(&back_bits, &back, sizeof back);
  CHECK(back_bits == bits);
}

// tests/fuzz/wire found a want_rows byte of 2 taken as 1: two encodings of one message.
TEST_CASE("isolation wire: a flag is 0 or 1, any other value fails the reader", "[isolation][wire]") {
  Writer w;
  w.u8(0);
  w.u8(1);
  w.u8(2);
  Reader r(w.data());
  CHECK_FALSE(r.flag());
  CHECK(r.flag());
  CHECK(r.ok());
  static_cast<void>(r.flag());
  CHECK_FALSE(r.ok());
}

TEST_CASE("isolation wire: reader refuses lengths and counts that cannot fit", "[isolation][wire]") {
  SECTION("a byte string longer than the rest") {
    Writer w;
    w.u32(100);
    w.u8('x');
    Reader r(w.data());
    CHECK(r.bytes().empty());
    CHECK_FALSE(r.ok());
  }
  SECTION("a count of items that cannot all be present") {
    Writer w;
    w.u32(0xFFFFFFFFu);
    w.u64(0);
    Reader r(w.data());
    CHECK(r.count(8) == 0);
    CHECK_FALSE(r.ok());
  }
  SECTION("a count that fits") {
    Writer w;
    w.u32(2);
    w.u64(0);
    w.u64(0);
    Reader r(w.data());
    CHECK(r.count(8) == 2);
    CHECK(r.ok());
  }
  SECTION("a huge kv list count does not allocate for it") {
    Writer w;
    w.u32(0);  // route index
    w.bytes("GET");
    w.bytes("/");
    w.u32(0x7FFFFFFFu);  // path params: far more than the payload holds
    Reader r(w.data());
    keel_request req{};
    std::vector<keel_host_kv> kv;
    decode_request(r, req, kv);
    CHECK_FALSE(r.ok());
    CHECK(kv.empty());
  }
  SECTION("more sql parameters than SQLite takes, all present, are refused before any is decoded") {
    Writer w;
    w.u32(kMaxSqlParams + 1);
    for (std::uint32_t i = 0; i <= kMaxSqlParams; ++i) w.i32(KEEL_SQL_NULL);
    Reader r(w.data());
    std::vector<keel_sql_param> params;
    decode_sql_params(r, params);
    CHECK_FALSE(r.ok());
    CHECK(params.capacity() == 0);  // nothing reserved for them
  }
  SECTION("exactly kMaxSqlParams parameters decode") {
    Writer w;
    w.u32(kMaxSqlParams);
    for (std::uint32_t i = 0; i < kMaxSqlParams; ++i) w.i32(KEEL_SQL_NULL);
    Reader r(w.data());
    std::vector<keel_sql_param> params;
    decode_sql_params(r, params);
    CHECK(r.done());
    CHECK(params.size() == kMaxSqlParams);
  }
}

TEST_CASE("isolation wire: each kind a runner sends has its limit, the configured ones from the config",
          "[isolation][wire]") {
  const auto l = FrameLimits::from(1u << 20, 4096);
  CHECK(l.max_payload(Kind::kRespond) == (1u << 20) + kEnvelopeBytes);
  CHECK(l.response_body == (1u << 20));  // exactly max_body_bytes: the runner checks it, respond has no reply
  CHECK(l.max_payload(Kind::kCall) == (1u << 20) + kEnvelopeBytes);
  CHECK(l.max_payload(Kind::kPublish) == 4096 + kEnvelopeBytes);
  CHECK(l.max_payload(Kind::kSqlPublish) == 4096 + kEnvelopeBytes);
  CHECK(l.max_payload(Kind::kLog) == (16u << 10) + kEnvelopeBytes);
  CHECK(l.max_payload(Kind::kSqlExec) == kMaxStorageBytes + kEnvelopeBytes);
  CHECK(l.max_payload(Kind::kKvPut) == kMaxStorageBytes + kEnvelopeBytes);
  for (const auto k : {Kind::kGetExtension, Kind::kTxnBegin, Kind::kTxnCommit, Kind::kTxnRollback, Kind::kKvGet,
                       Kind::kKvDelete, Kind::kKvList})
    CHECK(l.max_payload(k) == kEnvelopeBytes);
  CHECK(l.max_payload(Kind::kReply) == 2 * kEnvelopeBytes);
  CHECK(l.max_payload(static_cast<Kind>(200)) == kEnvelopeBytes);  // a kind nobody sends
  // An unbounded max_body_bytes is capped at what a frame carries.
  const auto unbounded = FrameLimits::from(std::uint64_t{1} << 62, std::uint64_t{1} << 62);
  CHECK(unbounded.max_payload(Kind::kRespond) == kMaxFrameBytes - 9);
  CHECK(unbounded.max_payload(Kind::kPublish) == kMaxFrameBytes - 9);
}

TEST_CASE("isolation wire: context round-trips, empty and full", "[isolation][wire]") {
  SECTION("full") {
    const Context c{"req-42", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", 1'500'000'000};
    Writer w;
    encode_context(w, c);
    Reader r(w.data());
    const auto back = decode_context(r);
    CHECK(r.done());
    CHECK(back.request_id == c.request_id);
    CHECK(back.traceparent == c.traceparent);
    CHECK(back.remaining_ns == c.remaining_ns);
    check_truncations(w.data(), [](Reader& t) { static_cast<void>(decode_context(t)); });
  }
  SECTION("empty: no request, no deadline") {
    Writer w;
    encode_context(w, Context{});
    CHECK(w.data().size() == 4 + 4 + 8);
    Reader r(w.data());
    const auto back = decode_context(r);
    CHECK(r.done());
    CHECK(back.request_id.empty());
    CHECK(back.traceparent.empty());
    CHECK(back.remaining_ns == 0);
  }
}

TEST_CASE("isolation wire: request round-trips with path params, query and headers", "[isolation][wire]") {
  const keel_host_kv params[] = {{hb("id"), hb("42")}, {hb("rest"), hb("a/b")}};
  const keel_host_kv query[] = {{hb("q"), hb("x y")}, {hb("q"), hb("")}, {hb("flag"), hb({})}};
  const keel_host_kv headers[] = {{hb("Host"), hb("example")}, {hb("X-Bin"), hb("\0\1"sv)}};
  keel_request req{};
  req.struct_size = sizeof req;
  req.route_index = 3;
  req.method = hb("POST");
  req.path = hb("/api/orders/42/a/b");
  req.path_params = {params, 2};
  req.query = {query, 3};
  req.headers = {headers, 2};
  req.body = hb("body\0with nul"sv);
  req.remote_address = hb("127.0.0.1:5555");
  req.caller_plugin = hb("caller");
  req.tracestate = hb("k=v");
  Writer w;
  encode_request(w, req);

  Reader r(w.data());
  keel_request back{};
  std::vector<keel_host_kv> kv;
  decode_request(r, back, kv);
  REQUIRE(r.done());
  CHECK(back.struct_size == sizeof(keel_request));
  CHECK(back.route_index == 3);
  CHECK(str(back.method) == "POST");
  CHECK(str(back.path) == "/api/orders/42/a/b");
  CHECK(pairs(back.path_params.items, back.path_params.count) == Pairs{{"id", "42"}, {"rest", "a/b"}});
  CHECK(pairs(back.query.items, back.query.count) == Pairs{{"q", "x y"}, {"q", ""}, {"flag", ""}});
  CHECK(pairs(back.headers.items, back.headers.count) == Pairs{{"Host", "example"}, {"X-Bin", "\0\1"s}});
  CHECK(str(back.body) == "body\0with nul"s);
  CHECK(str(back.remote_address) == "127.0.0.1:5555");
  CHECK(str(back.caller_plugin) == "caller");
  CHECK(str(back.tracestate) == "k=v");
  // The context carries these: the struct's own members stay empty.
  CHECK(back.request_id.len == 0);
  CHECK(back.traceparent.len == 0);
  CHECK(back.deadline_mono_ns == 0);
  check_truncations(w.data(), [](Reader& t) {
    keel_request x{};
    std::vector<keel_host_kv> k;
    decode_request(t, x, k);
  });
}

TEST_CASE("isolation wire: request with no lists decodes to NULL item pointers", "[isolation][wire]") {
  keel_request req{};
  req.struct_size = sizeof req;
  req.method = hb("GET");
  req.path = hb("/");
  Writer w;
  encode_request(w, req);
  Reader r(w.data());
  keel_request back{};
  std::vector<keel_host_kv> kv;
  decode_request(r, back, kv);
  REQUIRE(r.done());
  CHECK(back.path_params.items == nullptr);
  CHECK(back.path_params.count == 0);
  CHECK(back.query.items == nullptr);
  CHECK(back.headers.items == nullptr);
  CHECK(back.body.ptr == nullptr);
  CHECK(back.body.len == 0);
}

TEST_CASE("isolation wire: response round-trips with headers", "[isolation][wire]") {
  const keel_plugin_kv headers[] = {{pb("ETag"), pb("7")}, {pb("X-Empty"), pb("")}};
  keel_response res{};
  res.struct_size = sizeof res;
  res.status = 201;
  res.headers = {headers, 2};
  res.content_type = pb("application/json");
  res.body = pb("{\"id\":7}");
  Writer w;
  encode_response(w, res);
  Reader r(w.data());
  keel_response back{};
  std::vector<keel_plugin_kv> kv;
  decode_response(r, back, kv);
  REQUIRE(r.done());
  CHECK(back.struct_size == sizeof(keel_response));
  CHECK(back.status == 201);
  CHECK(pairs(back.headers.items, back.headers.count) == Pairs{{"ETag", "7"}, {"X-Empty", ""}});
  CHECK(str(back.content_type) == "application/json");
  CHECK(str(back.body) == "{\"id\":7}");
  check_truncations(w.data(), [](Reader& t) {
    keel_response x{};
    std::vector<keel_plugin_kv> k;
    decode_response(t, x, k);
  });
}

TEST_CASE("isolation wire: event round-trips", "[isolation][wire]") {
  keel_event ev{};
  ev.struct_size = sizeof ev;
  ev.delivery_attempt = 3;
  ev.topic = hb("orders.placed");
  ev.payload = hb("\0payload\0"sv);
  ev.content_type = hb("application/octet-stream");
  ev.event_id = hb("0190aabbccdd");
  ev.publisher = hb("orders");
  ev.timestamp_unix_ns = 1'700'000'000'123'456'789;
  ev.traceparent = hb("00-aa-bb-01");
  ev.tracestate = hb({});
  Writer w;
  encode_event(w, ev);
  Reader r(w.data());
  keel_event back{};
  decode_event(r, back);
  REQUIRE(r.done());
  CHECK(back.struct_size == sizeof(keel_event));
  CHECK(back.delivery_attempt == 3);
  CHECK(str(back.topic) == "orders.placed");
  CHECK(str(back.payload) == "\0payload\0"s);
  CHECK(str(back.content_type) == "application/octet-stream");
  CHECK(str(back.event_id) == "0190aabbccdd");
  CHECK(str(back.publisher) == "orders");
  CHECK(back.timestamp_unix_ns == 1'700'000'000'123'456'789);
  CHECK(str(back.traceparent) == "00-aa-bb-01");
  CHECK(back.tracestate.len == 0);
  check_truncations(w.data(), [](Reader& t) {
    keel_event x{};
    decode_event(t, x);
  });
}

TEST_CASE("isolation wire: publish args round-trip", "[isolation][wire]") {
  keel_publish_args a{};
  a.struct_size = sizeof a;
  a.flags = 0;
  a.topic = pb("demo.durable");
  a.payload = pb("{}");
  a.content_type = pb("application/json");
  a.traceparent = pb("00-11-22-01");
  a.tracestate = pb("s=1");
  Writer w;
  encode_publish(w, a);
  Reader r(w.data());
  keel_publish_args back{};
  decode_publish(r, back);
  REQUIRE(r.done());
  CHECK(back.struct_size == sizeof(keel_publish_args));
  CHECK(back.flags == 0);
  CHECK(str(back.topic) == "demo.durable");
  CHECK(str(back.payload) == "{}");
  CHECK(str(back.content_type) == "application/json");
  CHECK(str(back.traceparent) == "00-11-22-01");
  CHECK(str(back.tracestate) == "s=1");
  check_truncations(w.data(), [](Reader& t) {
    keel_publish_args x{};
    decode_publish(t, x);
  });
}

TEST_CASE("isolation wire: call args and call response round-trip", "[isolation][wire]") {
  SECTION("call args") {
    const keel_plugin_kv headers[] = {{pb("Accept"), pb("text/plain")}};
    keel_call_args a{};
    a.struct_size = sizeof a;
    a.timeout_ms = 250;
    a.target_plugin = pb("no_op");
    a.method = pb("GET");
    a.path = pb("/query?a=1");
    a.headers = {headers, 1};
    a.body = pb("");
    a.traceparent = pb("00-33-44-01");
    a.tracestate = pb({});
    Writer w;
    encode_call_args(w, a);
    Reader r(w.data());
    keel_call_args back{};
    std::vector<keel_plugin_kv> kv;
    decode_call_args(r, back, kv);
    REQUIRE(r.done());
    CHECK(back.struct_size == sizeof(keel_call_args));
    CHECK(back.timeout_ms == 250);
    CHECK(str(back.target_plugin) == "no_op");
    CHECK(str(back.method) == "GET");
    CHECK(str(back.path) == "/query?a=1");
    CHECK(pairs(back.headers.items, back.headers.count) == Pairs{{"Accept", "text/plain"}});
    CHECK(back.body.len == 0);
    CHECK(str(back.traceparent) == "00-33-44-01");
    CHECK(back.tracestate.len == 0);
    check_truncations(w.data(), [](Reader& t) {
      keel_call_args x{};
      std::vector<keel_plugin_kv> k;
      decode_call_args(t, x, k);
    });
  }
  SECTION("call response") {
    const keel_host_kv headers[] = {{hb("Content-Length"), hb("4")}, {hb("X-A"), hb("1")}};
    keel_call_response res{};
    res.struct_size = sizeof res;
    res.status = 404;
    res.headers = {headers, 2};
    res.content_type = hb("text/plain");
    res.body = hb("gone");
    Writer w;
    encode_call_response(w, res);
    Reader r(w.data());
    keel_call_response back{};
    std::vector<keel_host_kv> kv;
    decode_call_response(r, back, kv);
    REQUIRE(r.done());
    CHECK(back.struct_size == sizeof(keel_call_response));
    CHECK(back.status == 404);
    CHECK(pairs(back.headers.items, back.headers.count) == Pairs{{"Content-Length", "4"}, {"X-A", "1"}});
    CHECK(str(back.content_type) == "text/plain");
    CHECK(str(back.body) == "gone");
    check_truncations(w.data(), [](Reader& t) {
      keel_call_response x{};
      std::vector<keel_host_kv> k;
      decode_call_response(t, x, k);
    });
  }
}

TEST_CASE("isolation wire: sql params of every type round-trip, embedded NULs and empty values included", "[isolation][wire]") {
  std::vector<keel_sql_param> in(9);
  in[0].type = KEEL_SQL_NULL;
  in[1].type = KEEL_SQL_INTEGER;
  in[1].integer = std::numeric_limits<std::int64_t>::min();
  in[2].type = KEEL_SQL_INTEGER;
  in[2].integer = std::numeric_limits<std::int64_t>::max();
  in[3].type = KEEL_SQL_REAL;
  in[3].real = -1.5e300;
  in[4].type = KEEL_SQL_TEXT;
  in[4].bytes = pb("a\0b\0"sv);
  in[5].type = KEEL_SQL_TEXT;  // empty text: not NULL
  in[5].bytes = pb({});
  in[6].type = KEEL_SQL_BLOB;
  in[6].bytes = pb("\0\xff\0"sv);
  in[7].type = KEEL_SQL_BLOB;  // empty blob: not NULL
  in[7].bytes = pb({});
  in[8].type = 99;  // unknown: carried as a bare type for the host to refuse
  Writer w;
  encode_sql_params(w, in.data(), in.size());
  Reader r(w.data());
  std::vector<keel_sql_param> out;
  decode_sql_params(r, out);
  REQUIRE(r.done());
  REQUIRE(out.size() == in.size());
  CHECK(out[0].type == KEEL_SQL_NULL);
  CHECK(out[1].type == KEEL_SQL_INTEGER);
  CHECK(out[1].integer == std::numeric_limits<std::int64_t>::min());
  CHECK(out[2].integer == std::numeric_limits<std::int64_t>::max());
  CHECK(out[3].type == KEEL_SQL_REAL);
  CHECK(out[3].real == -1.5e300);
  CHECK(out[4].type == KEEL_SQL_TEXT);
  CHECK(str(out[4].bytes) == "a\0b\0"s);
  CHECK(out[5].type == KEEL_SQL_TEXT);
  CHECK(out[5].bytes.len == 0);
  CHECK(out[6].type == KEEL_SQL_BLOB);
  CHECK(str(out[6].bytes) == "\0\xff\0"s);
  CHECK(out[7].type == KEEL_SQL_BLOB);
  CHECK(out[7].bytes.len == 0);
  CHECK(out[8].type == 99);
  check_truncations(w.data(), [](Reader& t) {
    std::vector<keel_sql_param> x;
    decode_sql_params(t, x);
  });

  SECTION("no parameters") {
    Writer empty;
    encode_sql_params(empty, nullptr, 0);
    Reader er(empty.data());
    decode_sql_params(er, out);
    CHECK(er.done());
    CHECK(out.empty());
  }
}

TEST_CASE("isolation wire: sql values of every type round-trip", "[isolation][wire]") {
  std::vector<keel_sql_value> in(7);
  in[0].type = KEEL_SQL_NULL;
  in[1].type = KEEL_SQL_INTEGER;
  in[1].integer = -7;
  in[2].type = KEEL_SQL_REAL;
  in[2].real = 0.1;
  in[3].type = KEEL_SQL_TEXT;
  in[3].bytes = hb("x\0y"sv);
  in[4].type = KEEL_SQL_TEXT;
  in[4].bytes = hb({});
  in[5].type = KEEL_SQL_BLOB;
  in[5].bytes = hb("\0"sv);
  in[6].type = KEEL_SQL_BLOB;
  in[6].bytes = hb({});
  Writer w;
  for (const auto& v : in) encode_sql_value(w, v);
  Reader r(w.data());
  std::vector<keel_sql_value> out;
  for (std::size_t i = 0; i < in.size(); ++i) out.push_back(decode_sql_value(r));
  REQUIRE(r.done());
  CHECK(out[0].type == KEEL_SQL_NULL);
  CHECK(out[1].type == KEEL_SQL_INTEGER);
  CHECK(out[1].integer == -7);
  CHECK(out[2].type == KEEL_SQL_REAL);
  CHECK(out[2].real == 0.1);
  CHECK(out[3].type == KEEL_SQL_TEXT);
  CHECK(str(out[3].bytes) == "x\0y"s);
  CHECK(out[4].type == KEEL_SQL_TEXT);
  CHECK(out[4].bytes.len == 0);
  CHECK(out[5].type == KEEL_SQL_BLOB);
  CHECK(str(out[5].bytes) == "\0"s);
  CHECK(out[6].type == KEEL_SQL_BLOB);
  CHECK(out[6].bytes.len == 0);
  // A NULL is one byte on the wire; an empty TEXT is a type and a zero length.
  Writer one;
  encode_sql_value(one, in[0]);
  CHECK(one.data().size() == 1);
  Writer two;
  encode_sql_value(two, in[4]);
  CHECK(two.data().size() == 5);
  check_truncations(w.data(), [&](Reader& t) {
    for (std::size_t i = 0; i < in.size(); ++i) static_cast<void>(decode_sql_value(t));
  });
}

TEST_CASE("isolation wire: kv entry round-trips", "[isolation][wire]") {
  keel_kv_entry e{};
  e.struct_size = sizeof e;
  e.key = hb("user:\0001"sv);
  e.value = hb({});
  e.version = 12;
  e.expires_unix_ms = 1'800'000'000'000;
  Writer w;
  encode_kv_entry(w, e);
  Reader r(w.data());
  keel_kv_entry back{};
  decode_kv_entry(r, back);
  REQUIRE(r.done());
  CHECK(str(back.key) == "user:\0001"s);
  CHECK(back.value.len == 0);
  CHECK(back.version == 12);
  CHECK(back.expires_unix_ms == 1'800'000'000'000);
  check_truncations(w.data(), [](Reader& t) {
    keel_kv_entry x{};
    decode_kv_entry(t, x);
  });
}

TEST_CASE("isolation wire: frame_bytes writes the header the spec describes", "[isolation][wire]") {
  const auto f = frame_bytes(Kind::kRequest, 0x1122334455667788ull, "xyz");
  REQUIRE(f.size() == kHeaderBytes + 3);
  CHECK(f.substr(0, 4) == "\x0c\x00\x00\x00"s);  // 1 kind + 8 id + 3 payload
  CHECK(static_cast<unsigned char>(f[4]) == 6);
  CHECK(f.substr(5, 8) == "\x88\x77\x66\x55\x44\x33\x22\x11"s);
  CHECK(f.substr(13) == "xyz");

  char header[kHeaderBytes];
  std::memcpy(header, f.data(), kHeaderBytes);
  std::uint32_t len = 0;
  Kind kind = Kind::kReply;
  std::uint64_t id = 0;
  REQUIRE(parse_header(header, len, kind, id));
  CHECK(len == 3);
  CHECK(kind == Kind::kRequest);
  CHECK(id == 0x1122334455667788ull);

  const auto empty = frame_bytes(Kind::kReply, 0, {});
  CHECK(empty.size() == kHeaderBytes);
}

TEST_CASE("isolation wire: parse_header accepts lengths 9..kMaxFrameBytes only", "[isolation][wire]") {
  auto header_with = [](std::uint32_t length, std::uint8_t kind) {
    Writer w;
    w.u32(length);
    w.u8(kind);
    w.u64(5);
    std::array<char, kHeaderBytes> h{};
    std::memcpy(h.data(), w.data().data(), kHeaderBytes);
    return h;
  };
  std::uint32_t len = 0;
  Kind kind = Kind::kReply;
  std::uint64_t id = 0;
  auto parse = [&](std::uint32_t length) {
    const auto h = header_with(length, 33);
    char raw[kHeaderBytes];
    std::memcpy(raw, h.data(), kHeaderBytes);
    return parse_header(raw, len, kind, id);
  };
  CHECK_FALSE(parse(0));
  CHECK_FALSE(parse(8));  // shorter than kind + id
  REQUIRE(parse(9));
  CHECK(len == 0);
  CHECK(kind == Kind::kRespond);
  CHECK(id == 5);
  REQUIRE(parse(kMaxFrameBytes));
  CHECK(len == kMaxFrameBytes - 9);
  CHECK_FALSE(parse(kMaxFrameBytes + 1));
  CHECK_FALSE(parse(0xFFFFFFFFu));
}

TEST_CASE("isolation wire: frame_bytes refuses a payload beyond the frame limit", "[isolation][wire]") {
  // Untouched anonymous pages: a valid range to point at without committing 256 MiB.
  const std::size_t size = kMaxFrameBytes;
  void* mem = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  const std::string_view huge(static_cast<const char*>(mem), size);
  CHECK_THROWS_AS(frame_bytes(Kind::kReply, 1, huge.substr(0, kMaxFrameBytes - 8)), std::length_error);
  CHECK_THROWS_AS(frame_bytes(Kind::kReply, 1, huge), std::length_error);
  // The largest payload that fits: its frame's length field is exactly kMaxFrameBytes.
  {
    const auto f = frame_bytes(Kind::kReply, 1, huge.substr(0, kMaxFrameBytes - 9));
    CHECK(f.size() == kMaxFrameBytes + 4);
    char header[kHeaderBytes];
    std::memcpy(header, f.data(), kHeaderBytes);
    std::uint32_t len = 0;
    Kind kind = Kind::kHello;
    std::uint64_t id = 0;
    CHECK(parse_header(header, len, kind, id));
    CHECK(len == kMaxFrameBytes - 9);
  }
  ::munmap(mem, size);
}

TEST_CASE("isolation wire: every kind has its spec name", "[isolation][wire]") {
  CHECK(kind_name(Kind::kHello) == "hello");
  CHECK(kind_name(Kind::kCallDone) == "call_done");
  CHECK(kind_name(Kind::kLogLevel) == "log_level");
  CHECK(kind_name(Kind::kGetExtension) == "get_extension");
  CHECK(kind_name(Kind::kSqlExec) == "sql_exec");
  CHECK(kind_name(Kind::kSqlPublish) == "sql_publish");
  CHECK(kind_name(Kind::kReply) == "reply");
  CHECK(kind_name(static_cast<Kind>(77)) == "unknown");
}
