#pragma once
// The ABI's opaque keel_host_ctx, completed: what a host function needs to find from the
// context a plugin passes back. One per plugin, owned by the plugin host.

#include <keel/plugin.h>

namespace keel::host::plugins {
struct Plugin;
}
namespace keel::host::storage {
class Database;
}

struct keel_host_ctx {
  keel::host::plugins::Plugin* plugin = nullptr;
  keel::host::storage::Database* storage = nullptr;  ///< the plugin's database; nullptr without ext:keel.storage/1
};
