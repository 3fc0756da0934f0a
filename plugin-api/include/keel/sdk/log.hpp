#pragma once
// keel::sdk::LogLevel: severities for Host::log, in spdlog's order (the host owns the sinks).

#include <keel/plugin.h>

#include <cstdint>

namespace keel::sdk {

/// Log severity; values equal the ABI's KEEL_LOG_* constants and spdlog's level order.
enum class LogLevel : std::int32_t {
  kTrace = KEEL_LOG_TRACE,        ///< payloads
  kDebug = KEEL_LOG_DEBUG,        ///< per request or event
  kInfo = KEEL_LOG_INFO,          ///< lifecycle only, never per request
  kWarn = KEEL_LOG_WARN,          ///< a peer or input misbehaved
  kError = KEEL_LOG_ERROR,        ///< the plugin dropped work it owned
  kCritical = KEEL_LOG_CRITICAL,  ///< the plugin cannot continue
  kOff = KEEL_LOG_OFF,            ///< only reported by Host::log_enabled's threshold; never logged
};

}  // namespace keel::sdk
