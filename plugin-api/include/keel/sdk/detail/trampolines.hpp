#pragma once
// The noexcept C functions the host calls, one per keel_plugin hook, forwarding to the
// author's keel::sdk::Plugin subclass. Each catches every exception and turns it into a
// status code plus one log line through host->log; nothing unwinds into the host.
// Include <keel/sdk/plugin.hpp>, which includes this after defining Plugin.

#ifndef KEEL_SDK_PLUGIN_HPP_INCLUDED_
#error "include <keel/sdk/plugin.hpp> instead of keel/sdk/detail/trampolines.hpp"
#endif

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/detail/errors.hpp>
#include <keel/sdk/event.hpp>
#include <keel/sdk/host.hpp>
#include <keel/sdk/http.hpp>
#include <keel/sdk/status.hpp>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace keel::sdk::detail {

/// What `void* self` points to: the host reference, the Host given to the plugin, the plugin
/// object and the buffer behind health()'s detail. Members are destroyed in reverse order, so
/// the plugin goes before the Host it references.
struct Instance {
  Instance(HostRef host_ref, std::string config_json) noexcept : ref{host_ref}, host{host_ref, std::move(config_json)} {}

  HostRef ref;
  Host host;
  std::unique_ptr<Plugin> plugin;
  std::string health_detail;
};

template <class C>
keel_status create(const keel_host_api* api, keel_host_ctx* ctx, keel_host_bytes config, void** out_self) noexcept {
  if (api == nullptr || out_self == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  const HostRef ref{api, ctx};
  if (!KEEL_HAS_FIELD(api, keel_host_api, abi_version) || KEEL_ABI_MAJOR(api->abi_version) != KEEL_ABI_VERSION_MAJOR) {
    ref.log(KEEL_LOG_ERROR, "create refused: host abi major differs from the plugin's");
    return KEEL_ERR_UNSUPPORTED;
  }
  try {
    const std::string_view config_text = view(config);
    auto instance = std::make_unique<Instance>(ref, std::string{config_text.empty() ? std::string_view{"{}"} : config_text});
    if constexpr (std::is_constructible_v<C, Host&>) {
      instance->plugin = std::make_unique<C>(instance->host);
    } else {
      static_assert(std::is_default_constructible_v<C>,
                    "KEEL_PLUGIN: the class needs a constructor taking keel::sdk::Host& or a default constructor");
      instance->plugin = std::make_unique<C>();
    }
    *out_self = instance.release();
    return KEEL_OK;
  } catch (...) {
    return status_from_exception(ref, "create");
  }
}

inline void destroy(void* self) noexcept {
  // ~Plugin is implicitly noexcept; a destructor that throws terminates, as it would anywhere.
  delete static_cast<Instance*>(self);
}

inline keel_status start(void* self) noexcept {
  auto* instance = static_cast<Instance*>(self);
  if (instance == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  try {
    return report(instance->ref, "start", instance->plugin->start(), KEEL_LOG_WARN);
  } catch (...) {
    return status_from_exception(instance->ref, "start");
  }
}

inline keel_status stop(void* self) noexcept {
  auto* instance = static_cast<Instance*>(self);
  if (instance == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  try {
    return report(instance->ref, "stop", instance->plugin->stop(), KEEL_LOG_WARN);
  } catch (...) {
    return status_from_exception(instance->ref, "stop");
  }
}

inline keel_status on_request(void* self, const keel_request* request, keel_responder responder) noexcept {
  auto* instance = static_cast<Instance*>(self);
  if (instance == nullptr || request == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  const Request req = Access::request(request);
  try {
    const Status status = instance->plugin->on_request(req, Access::responder(instance->ref, responder));
    return report(instance->ref, "on_request", status, failure_level(status), req.request_id());
  } catch (...) {
    return status_from_exception(instance->ref, "on_request", req.request_id(), true);
  }
}

inline keel_status on_event(void* self, const keel_event* event) noexcept {
  auto* instance = static_cast<Instance*>(self);
  if (instance == nullptr || event == nullptr) return KEEL_ERR_INVALID_ARGUMENT;
  try {
    const Status status = instance->plugin->on_event(EventAccess::event(event));
    return report(instance->ref, "on_event", status, failure_level(status));
  } catch (...) {
    return status_from_exception(instance->ref, "on_event", {}, true);
  }
}

inline keel_health health(void* self, keel_plugin_bytes* out_detail) noexcept {
  auto* instance = static_cast<Instance*>(self);
  if (instance == nullptr) return KEEL_HEALTH_FAIL;
  keel_health state = KEEL_HEALTH_FAIL;
  try {
    Health result = instance->plugin->health();
    instance->health_detail = std::move(result.detail);
    state = static_cast<keel_health>(result.state);
  } catch (...) {
    static_cast<void>(status_from_exception(instance->ref, "health"));
    instance->health_detail.clear();
    state = KEEL_HEALTH_FAIL;
  }
  if (out_detail != nullptr) *out_detail = lend(instance->health_detail);
  return state;
}

/// Compile-time sanity check of a manifest literal: a '{' ... '}' object, optionally padded
/// with whitespace. The host does the real validation when it reads the file.
constexpr bool is_json_object_text(std::string_view text) noexcept {
  constexpr std::string_view kSpace = " \t\r\n";
  const auto first = text.find_first_not_of(kSpace);
  const auto last = text.find_last_not_of(kSpace);
  return first != std::string_view::npos && last != first && text[first] == '{' && text[last] == '}';
}

/// The keel_plugin table for `C`: every hook points at a trampoline above. constexpr, so the
/// table KEEL_PLUGIN defines is constant-initialised static data (no init-order questions).
/// @param manifest the NUL-terminated manifest (keel_manifest_data).
template <class C>
constexpr keel_plugin plugin_table(const char* manifest) noexcept {
  static_assert(std::is_base_of_v<Plugin, C>, "KEEL_PLUGIN: the class must derive from keel::sdk::Plugin");
  return keel_plugin{
      .struct_size = static_cast<std::uint32_t>(sizeof(keel_plugin)),
      .abi_version = KEEL_ABI_VERSION,
      .manifest = manifest,
      .create = &create<C>,
      .destroy = &destroy,
      .start = &start,
      .stop = &stop,
      .on_request = &on_request,
      .on_event = &on_event,
      .health = &health,
  };
}

}  // namespace keel::sdk::detail
