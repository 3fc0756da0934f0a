// Fuzz target: the frames a runner sends the host (isolation/wire.*), read as the host reads a
// runner's socket (isolation/connection.cpp: header, per-kind limit) and each payload as
// serve_host_api.cpp decodes it. The input is a stream of frames. Property, a trap when broken:
// every frame and every payload the host accepts encodes back, from what was decoded, to the
// very bytes it came as: no two byte strings mean the same message.

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "isolation/wire.hpp"

namespace {

using namespace keel::host::isolation;

void check(bool property) {
  if (!property) __builtin_trap();
}

// A payload's fields in order, as serve_host_api.cpp reads them: c context, 4 u32, 8 u64,
// f a flag (0 or 1), s bytes, R keel_response, P keel_publish_args, A keel_call_args,
// Q SQL parameters. The host takes a payload only when every byte of it was read.
struct Layout {
  Kind kind;
  std::string_view fields;
};
constexpr Layout kLayouts[] = {
    {Kind::kLog, "c4s"},        {Kind::kRespond, "c8R"},     {Kind::kPublish, "cP"},       {Kind::kCall, "c8A"},
    {Kind::kGetExtension, "cs"}, {Kind::kSqlExec, "c8sQf"},   {Kind::kSqlPrepare, "cs"},    {Kind::kTxnBegin, "c8"},
    {Kind::kTxnCommit, "c8"},    {Kind::kTxnRollback, "c8"},  {Kind::kKvGet, "c8s"},        {Kind::kKvPut, "c84ss88"},
    {Kind::kKvDelete, "c8s8"},   {Kind::kKvList, "c8ss4"},    {Kind::kSqlPublish, "c8P"},
};

// Reads one field and writes what was read the way the encoders write it.
void reencode(char field, Reader& r, Writer& w) {
  switch (field) {
    case 'c': encode_context(w, decode_context(r)); break;
    case '4': w.u32(r.u32()); break;
    case '8': w.u64(r.u64()); break;
    case 'f': w.u8(r.flag() ? 1 : 0); break;
    case 's': w.bytes(r.bytes()); break;
    case 'R': {
      keel_response res{};
      std::vector<keel_plugin_kv> kv;
      decode_response(r, res, kv);
      encode_response(w, res);
      break;
    }
    case 'P': {
      keel_publish_args args{};
      decode_publish(r, args);
      encode_publish(w, args);
      break;
    }
    case 'A': {
      keel_call_args args{};
      std::vector<keel_plugin_kv> kv;
      decode_call_args(r, args, kv);
      encode_call_args(w, args);
      break;
    }
    case 'Q': {
      std::vector<keel_sql_param> params;
      decode_sql_params(r, params);
      encode_sql_params(w, params.data(), params.size());
      break;
    }
    default: __builtin_trap();  // a layout above names a field this function does not know
  }
}

void check_payload(Kind kind, std::string_view payload) {
  for (const auto& layout : kLayouts) {
    if (layout.kind != kind) continue;
    Reader r(payload);
    Writer w;
    for (const char field : layout.fields) reencode(field, r, w);
    if (r.done()) check(w.data() == payload);
    return;
  }
  // Any other kind is not the runner's to send: the host logs it and reads on.
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // The limits of a host with the default [http] max_body_bytes and [events] max_payload_bytes.
  const auto limits = FrameLimits::from(1u << 20, 1u << 20);
  std::string_view in(reinterpret_cast<const char*>(data), size);
  while (in.size() >= kHeaderBytes) {
    char header[kHeaderBytes];
    std::memcpy(header, in.data(), kHeaderBytes);
    std::uint32_t length = 0;
    Kind kind{};
    std::uint64_t id = 0;
    // A bad header or a frame over its kind's limit ends the connection, as does a frame cut short.
    if (!parse_header(header, length, kind, id) || length > limits.max_payload(kind)) return 0;
    if (in.size() - kHeaderBytes < length) return 0;
    const auto payload = in.substr(kHeaderBytes, length);
    check(frame_bytes(kind, id, payload) == in.substr(0, kHeaderBytes + length));
    check_payload(kind, payload);
    in.remove_prefix(kHeaderBytes + length);
  }
  return 0;
}
