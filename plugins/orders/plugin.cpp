// orders' only ABI-facing file: the manifest and the exported entry point. The plugin itself
// is plain C++ in src/orders.hpp, unit-tested in tests/unit/plugins/orders.
#include "src/orders.hpp"

#include <keel/sdk/plugin.hpp>

KEEL_PLUGIN(orders::OrdersPlugin, ORDERS_MANIFEST);
