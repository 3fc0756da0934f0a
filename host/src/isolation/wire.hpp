#pragma once
// The host <-> keel-plugin-runner wire format (docs/isolation.md "Frames"): length-prefixed
// frames over a Unix domain socket, each one message of the plugin ABI. Writer builds a
// payload, Reader parses one with bounds checks (a short or malformed payload makes ok() false,
// never reads out of range), and the encode_/decode_ helpers map the ABI's structs to bytes and
// back; decoded structs view into the frame they came from. Pure functions and value types:
// thread-safe as long as one Writer or Reader is not shared between threads.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <keel/plugin.h>
#include <keel/storage.h>

namespace keel::host::isolation {

/// Bumped when a frame's layout changes; host and runner refuse each other on a mismatch
/// (they are built together, so this guards against a stale runner binary).
inline constexpr std::uint32_t kWireVersion = 4;

/// u32 length (of what follows it) + u8 kind + u64 id.
inline constexpr std::size_t kHeaderBytes = 13;
/// Largest frame either side accepts (a request body, a result set); a longer one closes the
/// connection as corrupt.
inline constexpr std::uint32_t kMaxFrameBytes = 256u << 20;

/// What a frame of a kind the runner sends may carry at most, beyond the fields it names (the
/// context, a topic, headers): request ids, trace fields and names are far smaller.
inline constexpr std::uint32_t kEnvelopeBytes = 64u << 10;
/// A storage frame (SQL text and parameters, a key-value entry) and a result set sent back.
inline constexpr std::uint32_t kMaxStorageBytes = 64u << 20;
/// Parameters of one statement: SQLite's own limit (SQLITE_MAX_VARIABLE_NUMBER).
inline constexpr std::uint32_t kMaxSqlParams = 32766;

/// What a frame carries. Host -> runner kinds are < 32, runner -> host kinds >= 32; kReply
/// answers a request of either direction and carries the request's id.
enum class Kind : std::uint8_t {
  // host -> runner
  kHello = 1,       ///< no context; wire version, name, manifest, log level, threads, queue limit, respond and publish frame limits, response body limit; reply: status, ABI, error
  kCreate = 2,      ///< context, config JSON; reply: status
  kStart = 3,       ///< context; reply: status
  kStop = 4,        ///< context; reply: status
  kDestroy = 5,     ///< context; reply: empty; the runner exits when the host then closes the socket
  kRequest = 6,     ///< context, responder, may block, keel_request; reply: on_request's status
  kEvent = 7,       ///< context, keel_event; reply: on_event's status
  kHealth = 8,      ///< context; reply: keel_health, detail
  kCallDone = 9,    ///< context, call id, result, optional keel_call_response; no reply
  kPing = 10,       ///< no context; reply: empty, from the runner's reader thread
  kLogLevel = 11,   ///< no context; the plugin's logger level changed; no reply
  // runner -> host
  kLog = 32,           ///< context, level, message; no reply
  kRespond = 33,       ///< context, responder, keel_response; no reply (the runner checks what it can first)
  kPublish = 34,       ///< context, keel_publish_args; reply: status
  kCall = 35,          ///< context, call id, keel_call_args; reply: status
  kGetExtension = 36,  ///< context, extension id; reply: u8 available
  kSqlExec = 40,       ///< context, txn, sql, params, u8 want_rows; reply: status, result, rows, error
  kSqlPrepare = 41,    ///< context, sql; reply: status, keel_sql_info, error
  kTxnBegin = 42,      ///< context, parent; reply: status, txn, error
  kTxnCommit = 43,     ///< context, txn; reply: status, error
  kTxnRollback = 44,   ///< context, txn; reply: status, error
  kKvGet = 45,         ///< context, txn, key; reply: status, entry, error
  kKvPut = 46,         ///< context, txn, keel_kv_put_args; reply: status, version, error
  kKvDelete = 47,      ///< context, txn, key, expected version; reply: status, error
  kKvList = 48,        ///< context, txn, prefix, start_after, limit; reply: status, entries, u8 more, error
  kSqlPublish = 49,    ///< context, txn, keel_publish_args; reply: status, error
  kReply = 255,
};

/// The largest payload of each kind a runner may send the host (docs/isolation.md "Limits").
/// The host reads a larger frame as a broken stream and ends the runner; the runner checks the
/// same limits first and gives the plugin KEEL_ERR_TOO_LARGE (or cuts a log message) instead.
/// The two configured limits travel in the hello frame.
struct FrameLimits {
  std::uint32_t respond = kMaxFrameBytes - 9;  ///< a response: [server] max_body_bytes + an envelope
  std::uint32_t publish = kMaxFrameBytes - 9;  ///< an event: [events] max_payload_bytes + an envelope
  /// The largest response body the host takes ([server] max_body_bytes): respond has no reply,
  /// so the runner refuses a larger one itself, as the host would.
  std::uint64_t response_body = kMaxFrameBytes;
  /// The host's limits for a configuration (each capped at what a frame can carry).
  [[nodiscard]] static FrameLimits from(std::uint64_t max_body_bytes, std::uint64_t max_event_payload_bytes) noexcept;
  [[nodiscard]] std::uint32_t max_payload(Kind kind) const noexcept;
};

/// A kind's name for messages ("request", "sql_exec"); "unknown" for other values.
[[nodiscard]] std::string_view kind_name(Kind kind) noexcept;

/// The request a hook serves, carried on every message made while serving it, so the other
/// side continues the same request id, trace and deadline.
struct Context {
  std::string_view request_id;
  std::string_view traceparent;
  /// Nanoseconds left until the deadline (0 = none; at least 1 when it has passed already):
  /// relative, so the receiver needs no shared clock.
  std::int64_t remaining_ns = 0;
};

/// Appends little-endian fields to a payload.
class Writer {
 public:
  void u8(std::uint8_t v) { buf_.push_back(static_cast<char>(v)); }
  void u32(std::uint32_t v);
  void u64(std::uint64_t v);
  void i32(std::int32_t v) { u32(static_cast<std::uint32_t>(v)); }
  void i64(std::int64_t v) { u64(static_cast<std::uint64_t>(v)); }
  void f64(double v);
  /// u32 length, then the bytes.
  void bytes(std::string_view v);
  void bytes(const char* ptr, std::size_t len) { bytes(len == 0 ? std::string_view{} : std::string_view(ptr, len)); }
  /// The bytes as they are, without a length (fields another Writer encoded).
  void raw(std::string_view v) { buf_.append(v); }

  [[nodiscard]] const std::string& data() const noexcept { return buf_; }
  [[nodiscard]] std::string take() noexcept { return std::move(buf_); }

 private:
  std::string buf_;
};

/// Reads the fields a Writer wrote, in the same order. Reading past the end or a length that
/// does not fit marks the reader failed: later reads return zero values and ok() is false.
class Reader {
 public:
  explicit Reader(std::string_view data) noexcept : data_(data) {}
  std::uint8_t u8() noexcept;
  std::uint32_t u32() noexcept;
  std::uint64_t u64() noexcept;
  std::int32_t i32() noexcept { return static_cast<std::int32_t>(u32()); }
  std::int64_t i64() noexcept { return static_cast<std::int64_t>(u64()); }
  double f64() noexcept;
  /// A u8 that is 0 or 1; any other value fails the reader (a message has one encoding).
  bool flag() noexcept;
  /// A view into the data; valid while the data is.
  std::string_view bytes() noexcept;
  /// A count of items of at least `min_item_bytes` each; fails when that many cannot fit.
  std::uint32_t count(std::size_t min_item_bytes) noexcept;

  [[nodiscard]] bool ok() const noexcept { return ok_; }
  /// Marks the data malformed (a field out of range): later reads return zero values.
  void fail() noexcept { ok_ = false; }
  /// True when every byte was read and nothing failed.
  [[nodiscard]] bool done() const noexcept { return ok_ && pos_ == data_.size(); }

 private:
  bool take(std::size_t n) noexcept;
  std::string_view data_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

/// A complete frame as read from the socket: its payload follows the header in `bytes`.
struct Frame {
  Kind kind = Kind::kReply;
  std::uint64_t id = 0;
  std::string payload;
  [[nodiscard]] Reader reader() const noexcept { return Reader(payload); }
};

/// Header + payload, ready to send. Throws std::length_error beyond kMaxFrameBytes.
[[nodiscard]] std::string frame_bytes(Kind kind, std::uint64_t id, std::string_view payload);
/// Parses a header: the payload length, kind and id. False when the length exceeds the maximum.
[[nodiscard]] bool parse_header(const char (&header)[kHeaderBytes], std::uint32_t& payload_len, Kind& kind,
                                std::uint64_t& id) noexcept;

// --- the ABI's structs -------------------------------------------------------------------
// The encoders read every byte view and list they are given: a NULL pointer with a non-zero
// length or count (which keel/plugin.h forbids) must be refused before encoding.

void encode_context(Writer& w, const Context& c);
[[nodiscard]] Context decode_context(Reader& r) noexcept;

void encode_kv_list(Writer& w, const keel_host_kv* items, std::size_t count);
void encode_kv_list(Writer& w, const keel_plugin_kv* items, std::size_t count);


/// keel_request without struct_size, deadline and trace (the Context carries those).
void encode_request(Writer& w, const keel_request& req);
/// Fills `req` (struct_size = this build's) viewing into the reader's data; `kv` holds the
/// pairs of its three lists (filled here: the lists point into it).
void decode_request(Reader& r, keel_request& req, std::vector<keel_host_kv>& kv);

void encode_response(Writer& w, const keel_response& res);
void decode_response(Reader& r, keel_response& res, std::vector<keel_plugin_kv>& kv);

void encode_event(Writer& w, const keel_event& ev);
void decode_event(Reader& r, keel_event& ev);

void encode_publish(Writer& w, const keel_publish_args& args);
void decode_publish(Reader& r, keel_publish_args& args);

void encode_call_args(Writer& w, const keel_call_args& args);
void decode_call_args(Reader& r, keel_call_args& args, std::vector<keel_plugin_kv>& kv);

void encode_call_response(Writer& w, const keel_call_response& res);
void decode_call_response(Reader& r, keel_call_response& res, std::vector<keel_host_kv>& kv);

void encode_sql_params(Writer& w, const keel_sql_param* params, std::size_t count);
/// More than kMaxSqlParams parameters fail the reader (no allocation for them).
void decode_sql_params(Reader& r, std::vector<keel_sql_param>& out);

/// One value of a result row (u8 type, then the value); also used for kv entries' fields.
void encode_sql_value(Writer& w, const keel_sql_value& v);
[[nodiscard]] keel_sql_value decode_sql_value(Reader& r) noexcept;

void encode_kv_entry(Writer& w, const keel_kv_entry& e);
void decode_kv_entry(Reader& r, keel_kv_entry& e) noexcept;

}  // namespace keel::host::isolation
