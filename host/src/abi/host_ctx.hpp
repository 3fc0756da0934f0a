#pragma once
// The ABI's opaque keel_host_ctx, completed: what a host function needs to find from the
// context a plugin passes back. One per plugin generation, owned by the plugin host. The types
// it points to are only named here: each layer that fills or reads a field includes its own.

#include <keel/plugin.h>

#include <string_view>

namespace keel::host::plugins {
struct Plugin;
}
namespace keel::host::storage {
class Database;
}
namespace keel::host::abi {
class EventSink;
}
namespace keel::host::isolation {
class Runner;
}

struct keel_host_ctx {
  keel::host::plugins::Plugin* plugin = nullptr;
  keel::host::storage::Database* storage = nullptr;  ///< the plugin's database; nullptr without ext:keel.storage/1
  keel::host::abi::EventSink* bus = nullptr;          ///< where the plugin's events go
  keel::host::isolation::Runner* runner = nullptr;    ///< the plugin's runner process (isolation = "process")
  std::string_view name;                              ///< the plugin's manifest name
};
