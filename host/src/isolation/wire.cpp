#include "isolation/wire.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "abi/bytes.hpp"
#include "abi/limits.hpp"

namespace keel::host::isolation {
namespace {

using abi::view;
// A decoded empty field is {NULL, 0} (abi::host_bytes and plugin_bytes hand out no pointer for
// empty bytes).
constexpr auto host_view = abi::host_bytes;
constexpr auto plugin_view = abi::plugin_bytes;

// Every list item is at least two empty byte fields (two u32 lengths).
constexpr std::size_t kMinPairBytes = 8;

}  // namespace

std::string_view kind_name(Kind kind) noexcept {
  switch (kind) {
    case Kind::kHello: return "hello";
    case Kind::kCreate: return "create";
    case Kind::kStart: return "start";
    case Kind::kStop: return "stop";
    case Kind::kDestroy: return "destroy";
    case Kind::kRequest: return "request";
    case Kind::kEvent: return "event";
    case Kind::kHealth: return "health";
    case Kind::kCallDone: return "call_done";
    case Kind::kPing: return "ping";
    case Kind::kLogLevel: return "log_level";
    case Kind::kLog: return "log";
    case Kind::kRespond: return "respond";
    case Kind::kPublish: return "publish";
    case Kind::kCall: return "call";
    case Kind::kGetExtension: return "get_extension";
    case Kind::kSqlExec: return "sql_exec";
    case Kind::kSqlPrepare: return "sql_prepare";
    case Kind::kTxnBegin: return "txn_begin";
    case Kind::kTxnCommit: return "txn_commit";
    case Kind::kTxnRollback: return "txn_rollback";
    case Kind::kKvGet: return "kv_get";
    case Kind::kKvPut: return "kv_put";
    case Kind::kKvDelete: return "kv_delete";
    case Kind::kKvList: return "kv_list";
    case Kind::kSqlPublish: return "sql_publish";
    case Kind::kReply: return "reply";
  }
  return "unknown";
}

FrameLimits FrameLimits::from(std::uint64_t max_body_bytes, std::uint64_t max_event_payload_bytes) noexcept {
  constexpr std::uint64_t kCap = kMaxFrameBytes - 9;
  FrameLimits l;
  l.respond = static_cast<std::uint32_t>(std::min(kCap, std::min(max_body_bytes, kCap) + kEnvelopeBytes));
  l.publish = static_cast<std::uint32_t>(std::min(kCap, std::min(max_event_payload_bytes, kCap) + kEnvelopeBytes));
  l.response_body = max_body_bytes;
  return l;
}

std::uint32_t FrameLimits::max_payload(Kind kind) const noexcept {
  switch (kind) {
    case Kind::kRespond: return respond;
    case Kind::kPublish:
    case Kind::kSqlPublish: return publish;
    case Kind::kCall: return respond;  // a call's body is a request body like any other
    case Kind::kSqlExec:
    case Kind::kSqlPrepare:
    case Kind::kKvPut: return kMaxStorageBytes + kEnvelopeBytes;
    case Kind::kLog: return static_cast<std::uint32_t>(abi::kMaxLogMessageBytes) + kEnvelopeBytes;
    case Kind::kReply: return 2 * kEnvelopeBytes;  // a hook's status, a health detail (cut to one envelope)
    // get_extension, transactions, kv get, delete and list: ids, a key, a prefix. A kind only
    // the host sends, or none does, is no larger from a runner: it is refused once read.
    default: return kEnvelopeBytes;
  }
}

// --- Writer / Reader ---------------------------------------------------------------------

void Writer::u32(std::uint32_t v) {
  char b[4];
  for (int i = 0; i < 4; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  buf_.append(b, 4);
}

void Writer::u64(std::uint64_t v) {
  char b[8];
  for (int i = 0; i < 8; ++i) b[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
  buf_.append(b, 8);
}

void Writer::f64(double v) {
  std::uint64_t bits = 0;
  static_assert(sizeof bits == sizeof v);
  std::memcpy(&bits, &v, sizeof bits);
  u64(bits);
}

void Writer::bytes(std::string_view v) {
  if (v.size() > kMaxFrameBytes) throw std::length_error("field larger than a frame");
  u32(static_cast<std::uint32_t>(v.size()));
  buf_.append(v);
}

bool Reader::take(std::size_t n) noexcept {
  if (!ok_ || data_.size() - pos_ < n) {
    ok_ = false;
    return false;
  }
  return true;
}

std::uint8_t Reader::u8() noexcept {
  if (!take(1)) return 0;
  return static_cast<std::uint8_t>(data_[pos_++]);
}

std::uint32_t Reader::u32() noexcept {
  if (!take(4)) return 0;
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= static_cast<std::uint32_t>(static_cast<unsigned char>(data_[pos_ + static_cast<std::size_t>(i)])) << (8 * i);
  pos_ += 4;
  return v;
}

std::uint64_t Reader::u64() noexcept {
  if (!take(8)) return 0;
  std::uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(static_cast<unsigned char>(data_[pos_ + static_cast<std::size_t>(i)])) << (8 * i);
  pos_ += 8;
  return v;
}

double Reader::f64() noexcept {
  const auto bits = u64();
  double v = 0;
  std::memcpy(&v, &bits, sizeof v);
  return v;
}

bool Reader::flag() noexcept {
  const auto v = u8();
  if (v > 1) ok_ = false;
  return v == 1;
}

std::string_view Reader::bytes() noexcept {
  const auto n = u32();
  if (!take(n)) return {};
  const auto out = data_.substr(pos_, n);
  pos_ += n;
  return out;
}

std::uint32_t Reader::count(std::size_t min_item_bytes) noexcept {
  const auto n = u32();
  if (!ok_ || (min_item_bytes != 0 && n > (data_.size() - pos_) / min_item_bytes)) {
    ok_ = false;
    return 0;
  }
  return n;
}

// --- frames --------------------------------------------------------------------------------

std::string frame_bytes(Kind kind, std::uint64_t id, std::string_view payload) {
  if (payload.size() > kMaxFrameBytes - 9) throw std::length_error("frame larger than kMaxFrameBytes");
  Writer w;
  w.u32(static_cast<std::uint32_t>(payload.size() + 9));
  w.u8(static_cast<std::uint8_t>(kind));
  w.u64(id);
  auto out = w.take();
  out.append(payload);
  return out;
}

bool parse_header(const char (&header)[kHeaderBytes], std::uint32_t& payload_len, Kind& kind,
                  std::uint64_t& id) noexcept {
  Reader r(std::string_view(header, kHeaderBytes));
  const auto len = r.u32();
  kind = static_cast<Kind>(r.u8());
  id = r.u64();
  if (len < 9 || len > kMaxFrameBytes) return false;
  payload_len = len - 9;
  return true;
}

// --- ABI structs ---------------------------------------------------------------------------

void encode_context(Writer& w, const Context& c) {
  w.bytes(c.request_id);
  w.bytes(c.traceparent);
  w.i64(c.remaining_ns);
}

Context decode_context(Reader& r) noexcept {
  Context c;
  c.request_id = r.bytes();
  c.traceparent = r.bytes();
  c.remaining_ns = r.i64();
  return c;
}

void encode_kv_list(Writer& w, const keel_host_kv* items, std::size_t count) {
  w.u32(static_cast<std::uint32_t>(count));
  for (std::size_t i = 0; i < count; ++i) {
    w.bytes(view(items[i].name));
    w.bytes(view(items[i].value));
  }
}

void encode_kv_list(Writer& w, const keel_plugin_kv* items, std::size_t count) {
  w.u32(static_cast<std::uint32_t>(count));
  for (std::size_t i = 0; i < count; ++i) {
    w.bytes(view(items[i].name));
    w.bytes(view(items[i].value));
  }
}

namespace {

// Reads a list written by encode_kv_list into `out` and returns where it starts and how long it
// is: pointers are taken only once every list of a struct is read (a later list may move `out`).
struct Span {
  std::size_t first = 0, count = 0;
};

template <class Item, class View>
Span read_pairs(Reader& r, std::vector<Item>& out, View make_view) {
  const auto n = r.count(kMinPairBytes);
  const Span span{out.size(), n};
  for (std::uint32_t i = 0; i < n; ++i) {
    const auto name = r.bytes();
    const auto value = r.bytes();
    out.push_back({make_view(name), make_view(value)});
  }
  return span;
}

template <class List, class Item>
List list_of(std::vector<Item>& items, Span span) {
  return {span.count == 0 ? nullptr : items.data() + span.first, span.count};
}

}  // namespace

void encode_request(Writer& w, const keel_request& req) {
  w.u32(req.route_index);
  w.bytes(view(req.method));
  w.bytes(view(req.path));
  encode_kv_list(w, req.path_params.items, req.path_params.count);
  encode_kv_list(w, req.query.items, req.query.count);
  encode_kv_list(w, req.headers.items, req.headers.count);
  w.bytes(view(req.body));
  w.bytes(view(req.remote_address));
  w.bytes(view(req.caller_plugin));
  w.bytes(view(req.tracestate));
}

void decode_request(Reader& r, keel_request& req, std::vector<keel_host_kv>& kv) {
  req = keel_request{};
  req.struct_size = sizeof(keel_request);
  req.route_index = r.u32();
  req.method = host_view(r.bytes());
  req.path = host_view(r.bytes());
  kv.clear();
  const auto params = read_pairs(r, kv, host_view);
  const auto query = read_pairs(r, kv, host_view);
  const auto headers = read_pairs(r, kv, host_view);
  req.path_params = list_of<keel_host_kv_list>(kv, params);
  req.query = list_of<keel_host_kv_list>(kv, query);
  req.headers = list_of<keel_host_kv_list>(kv, headers);
  req.body = host_view(r.bytes());
  req.remote_address = host_view(r.bytes());
  req.caller_plugin = host_view(r.bytes());
  req.tracestate = host_view(r.bytes());
}

void encode_response(Writer& w, const keel_response& res) {
  w.i32(res.status);
  encode_kv_list(w, res.headers.items, res.headers.count);
  w.bytes(view(res.content_type));
  w.bytes(view(res.body));
}

void decode_response(Reader& r, keel_response& res, std::vector<keel_plugin_kv>& kv) {
  res = keel_response{};
  res.struct_size = sizeof(keel_response);
  res.status = r.i32();
  kv.clear();
  res.headers = list_of<keel_plugin_kv_list>(kv, read_pairs(r, kv, plugin_view));
  res.content_type = plugin_view(r.bytes());
  res.body = plugin_view(r.bytes());
}

void encode_event(Writer& w, const keel_event& ev) {
  w.u32(ev.delivery_attempt);
  w.bytes(view(ev.topic));
  w.bytes(view(ev.payload));
  w.bytes(view(ev.content_type));
  w.bytes(view(ev.event_id));
  w.bytes(view(ev.publisher));
  w.i64(ev.timestamp_unix_ns);
  w.bytes(view(ev.traceparent));
  w.bytes(view(ev.tracestate));
}

void decode_event(Reader& r, keel_event& ev) {
  ev = keel_event{};
  ev.struct_size = sizeof(keel_event);
  ev.delivery_attempt = r.u32();
  ev.topic = host_view(r.bytes());
  ev.payload = host_view(r.bytes());
  ev.content_type = host_view(r.bytes());
  ev.event_id = host_view(r.bytes());
  ev.publisher = host_view(r.bytes());
  ev.timestamp_unix_ns = r.i64();
  ev.traceparent = host_view(r.bytes());
  ev.tracestate = host_view(r.bytes());
}

void encode_publish(Writer& w, const keel_publish_args& args) {
  w.u32(args.flags);
  w.bytes(view(args.topic));
  w.bytes(view(args.payload));
  w.bytes(view(args.content_type));
  w.bytes(view(args.traceparent));
  w.bytes(view(args.tracestate));
}

void decode_publish(Reader& r, keel_publish_args& args) {
  args = keel_publish_args{};
  args.struct_size = sizeof(keel_publish_args);
  args.flags = r.u32();
  args.topic = plugin_view(r.bytes());
  args.payload = plugin_view(r.bytes());
  args.content_type = plugin_view(r.bytes());
  args.traceparent = plugin_view(r.bytes());
  args.tracestate = plugin_view(r.bytes());
}

void encode_call_args(Writer& w, const keel_call_args& args) {
  w.u32(args.timeout_ms);
  w.bytes(view(args.target_plugin));
  w.bytes(view(args.method));
  w.bytes(view(args.path));
  encode_kv_list(w, args.headers.items, args.headers.count);
  w.bytes(view(args.body));
  w.bytes(view(args.traceparent));
  w.bytes(view(args.tracestate));
}

void decode_call_args(Reader& r, keel_call_args& args, std::vector<keel_plugin_kv>& kv) {
  args = keel_call_args{};
  args.struct_size = sizeof(keel_call_args);
  args.timeout_ms = r.u32();
  args.target_plugin = plugin_view(r.bytes());
  args.method = plugin_view(r.bytes());
  args.path = plugin_view(r.bytes());
  kv.clear();
  args.headers = list_of<keel_plugin_kv_list>(kv, read_pairs(r, kv, plugin_view));
  args.body = plugin_view(r.bytes());
  args.traceparent = plugin_view(r.bytes());
  args.tracestate = plugin_view(r.bytes());
}

void encode_call_response(Writer& w, const keel_call_response& res) {
  w.i32(res.status);
  encode_kv_list(w, res.headers.items, res.headers.count);
  w.bytes(view(res.content_type));
  w.bytes(view(res.body));
}

void decode_call_response(Reader& r, keel_call_response& res, std::vector<keel_host_kv>& kv) {
  res = keel_call_response{};
  res.struct_size = sizeof(keel_call_response);
  res.status = r.i32();
  kv.clear();
  res.headers = list_of<keel_host_kv_list>(kv, read_pairs(r, kv, host_view));
  res.content_type = host_view(r.bytes());
  res.body = host_view(r.bytes());
}

void encode_sql_params(Writer& w, const keel_sql_param* params, std::size_t count) {
  w.u32(static_cast<std::uint32_t>(count));
  for (std::size_t i = 0; i < count; ++i) {
    const auto& p = params[i];
    w.i32(p.type);
    switch (p.type) {
      case KEEL_SQL_INTEGER: w.i64(p.integer); break;
      case KEEL_SQL_REAL: w.f64(p.real); break;
      case KEEL_SQL_TEXT:
      case KEEL_SQL_BLOB: w.bytes(view(p.bytes)); break;
      default: break;  // NULL, or a type the host will refuse: nothing more to carry
    }
  }
}

void decode_sql_params(Reader& r, std::vector<keel_sql_param>& out) {
  out.clear();
  // Each parameter is at least its type on the wire but a whole keel_sql_param decoded: the
  // count is checked against SQLite's limit before anything is reserved for it.
  const auto n = r.count(4);
  if (n > kMaxSqlParams) {
    r.fail();
    return;
  }
  out.reserve(n);
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    keel_sql_param p{};
    p.type = r.i32();
    switch (p.type) {
      case KEEL_SQL_INTEGER: p.integer = r.i64(); break;
      case KEEL_SQL_REAL: p.real = r.f64(); break;
      case KEEL_SQL_TEXT:
      case KEEL_SQL_BLOB: p.bytes = plugin_view(r.bytes()); break;
      default: break;
    }
    out.push_back(p);
  }
}

void encode_sql_value(Writer& w, const keel_sql_value& v) {
  w.u8(static_cast<std::uint8_t>(v.type));
  switch (v.type) {
    case KEEL_SQL_INTEGER: w.i64(v.integer); break;
    case KEEL_SQL_REAL: w.f64(v.real); break;
    case KEEL_SQL_TEXT:
    case KEEL_SQL_BLOB: w.bytes(view(v.bytes)); break;
    default: break;
  }
}

keel_sql_value decode_sql_value(Reader& r) noexcept {
  keel_sql_value v{};
  v.type = r.u8();
  switch (v.type) {
    case KEEL_SQL_INTEGER: v.integer = r.i64(); break;
    case KEEL_SQL_REAL: v.real = r.f64(); break;
    case KEEL_SQL_TEXT:
    case KEEL_SQL_BLOB: v.bytes = host_view(r.bytes()); break;
    default: break;
  }
  return v;
}

void encode_kv_entry(Writer& w, const keel_kv_entry& e) {
  w.bytes(view(e.key));
  w.bytes(view(e.value));
  w.i64(e.version);
  w.i64(e.expires_unix_ms);
}

void decode_kv_entry(Reader& r, keel_kv_entry& e) noexcept {
  e.key = host_view(r.bytes());
  e.value = host_view(r.bytes());
  e.version = r.i64();
  e.expires_unix_ms = r.i64();
}

}  // namespace keel::host::isolation
