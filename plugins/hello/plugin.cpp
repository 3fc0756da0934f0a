// hello's only ABI-facing file: the manifest and the exported entry point. The plugin itself
// is plain C++ in src/hello.hpp, unit-tested in tests/unit/plugins/hello.
#include "src/hello.hpp"

#include <keel/sdk/plugin.hpp>

KEEL_PLUGIN(hello::HelloPlugin, HELLO_MANIFEST);
