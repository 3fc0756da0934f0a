#include "cluster/messages.hpp"

#include <algorithm>

#include <keel/plugin.h>

#include "abi/topic.hpp"
#include "package/manifest.hpp"

namespace keel::host::cluster {
namespace {

using isolation::Reader;
using isolation::Writer;

// Headers are name/value pairs of at least two length fields each.
constexpr std::size_t kMinHeaderBytes = 8;

keel_plugin_bytes plugin_bytes(std::string_view s) { return {s.data(), s.size()}; }
std::string_view view(keel_plugin_bytes b) { return b.len == 0 ? std::string_view{} : std::string_view(b.ptr, b.len); }

bool version_ok(Reader& r, std::string& error) {
  const auto v = r.u32();
  if (!r.ok()) {
    error = "empty message";
    return false;
  }
  if (v != kClusterWireVersion) {
    error = "cluster wire version " + std::to_string(v) + " (this host speaks " + std::to_string(kClusterWireVersion) +
            "): run the same Keel version on every host";
    return false;
  }
  return true;
}

// Visible ASCII only: what a request-target or an address may hold (no space, no control).
bool visible(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}


// What the HTTP layer guarantees of a client's request, checked again: a message on NATS did
// not come through it, and its fields reach logs and plugins.
const char* ill_formed(const ForwardedRequest& f) {
  if (!http::valid_token(f.method)) return "the method is not an HTTP token";
  if (f.target.empty() || f.target.front() != '/' || !visible(f.target)) return "the target is not an origin-form path";
  if (!visible(f.remote_address)) return "the client address holds invisible characters";
  if (!f.caller.empty() && !package::valid_plugin_name(f.caller)) return "the calling plugin's name is not a plugin name";
  for (const auto& h : f.headers) {
    if (!http::valid_token(h.name)) return "a header field name is not an HTTP token";
    if (!http::valid_field_value(h.value)) return "a header field value holds CR, LF or NUL";
  }
  return nullptr;
}

}  // namespace

std::string encode_forwarded_request(const ForwardedRequest& f) {
  Writer w;
  w.u32(kClusterWireVersion);
  isolation::encode_context(w, f.context);
  w.bytes(f.origin);
  w.bytes(f.caller);
  w.bytes(f.method);
  w.bytes(f.target);
  w.bytes(f.remote_address);
  w.bytes(f.tracestate);
  w.u32(static_cast<std::uint32_t>(f.headers.size()));
  for (const auto& h : f.headers) {
    w.bytes(h.name);
    w.bytes(h.value);
  }
  w.bytes(f.body);
  return w.take();
}

bool decode_forwarded_request(std::string_view data, ForwardedRequest& out, std::string& error) {
  Reader r(data);
  if (!version_ok(r, error)) return false;
  out.context = isolation::decode_context(r);
  out.origin = r.bytes();
  out.caller = r.bytes();
  out.method = r.bytes();
  out.target = r.bytes();
  out.remote_address = r.bytes();
  out.tracestate = r.bytes();
  const auto n = r.count(kMinHeaderBytes);
  out.headers.clear();
  out.headers.reserve(n);
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) {
    const auto name = r.bytes();
    out.headers.push_back({name, r.bytes()});
  }
  out.body = r.bytes();
  if (!r.done()) {
    error = "malformed forwarded request";
    return false;
  }
  if (const char* why = ill_formed(out)) {
    error = why;
    return false;
  }
  return true;
}

std::string encode_forwarded_response(const http::Response& res,
                                      const std::vector<std::pair<std::string, std::string>>& extra,
                                      std::string_view node) {
  std::vector<keel_plugin_kv> kv;
  kv.reserve(res.headers.size() + extra.size());
  for (const auto* list : {&res.headers, &extra})
    for (const auto& [name, value] : *list) kv.push_back({plugin_bytes(name), plugin_bytes(value)});
  keel_response r{};
  r.struct_size = sizeof r;
  r.status = static_cast<std::int32_t>(res.status);
  r.headers = {kv.data(), kv.size()};
  r.content_type = plugin_bytes(res.content_type);
  r.body = plugin_bytes(res.body);
  Writer w;
  w.u32(kClusterWireVersion);
  w.bytes(node);
  isolation::encode_response(w, r);
  return w.take();
}

bool decode_forwarded_response(std::string_view data, http::Response& out, std::string& node, std::string& error) {
  Reader r(data);
  if (!version_ok(r, error)) return false;
  node = r.bytes();
  keel_response res{};
  std::vector<keel_plugin_kv> kv;
  isolation::decode_response(r, res, kv);
  if (!r.done() || res.status < 100 || res.status > 599) {
    error = "malformed forwarded response";
    return false;
  }
  out.clear();
  out.status = static_cast<unsigned>(res.status);
  out.content_type = view(res.content_type);
  out.body = view(res.body);
  for (std::size_t i = 0; i < res.headers.count; ++i)
    out.headers.emplace_back(view(res.headers.items[i].name), view(res.headers.items[i].value));
  return true;
}

std::string encode_forwarded_event(const ForwardedEvent& e) {
  Writer w;
  w.u32(kClusterWireVersion);
  w.bytes(e.origin);
  w.i64(e.published_unix_ns);
  for (const auto field : {e.event_id, e.topic, e.payload, e.content_type, e.publisher, e.traceparent, e.tracestate,
                           e.request_id})
    w.bytes(field);
  w.u32(static_cast<std::uint32_t>(e.here.size()));
  for (const auto name : e.here) w.bytes(name);
  return w.take();
}

bool decode_forwarded_event(std::string_view data, ForwardedEvent& out, std::string& error) {
  Reader r(data);
  if (!version_ok(r, error)) return false;
  out.origin = r.bytes();
  out.published_unix_ns = r.i64();
  for (auto* field : {&out.event_id, &out.topic, &out.payload, &out.content_type, &out.publisher, &out.traceparent,
                      &out.tracestate, &out.request_id})
    *field = r.bytes();
  const auto n = r.count(4);
  out.here.clear();
  for (std::uint32_t i = 0; i < n && r.ok(); ++i) out.here.push_back(r.bytes());
  if (!r.done()) {
    error = "malformed forwarded event";
    return false;
  }
  if (!abi::valid_topic(out.topic) || !package::valid_plugin_name(out.publisher) || !visible(out.event_id) ||
      !visible(out.request_id) || !std::all_of(out.here.begin(), out.here.end(), package::valid_plugin_name)) {
    error = "a forwarded event with a topic, a name or an id out of grammar";
    return false;
  }
  return true;
}

}  // namespace keel::host::cluster
