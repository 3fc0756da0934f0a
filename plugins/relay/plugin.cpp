// relay's only ABI-facing file: the manifest and the exported entry point. The plugin itself
// is plain C++ in src/relay.hpp, unit-tested in tests/unit/plugins/relay.
#include "src/relay.hpp"

#include <keel/sdk/plugin.hpp>

KEEL_PLUGIN(relay::RelayPlugin, RELAY_MANIFEST);
