// notifications' only ABI-facing file: the manifest and the exported entry point. The plugin
// itself is plain C++ in src/notifications.hpp, unit-tested in tests/unit/plugins/notifications.
#include "src/notifications.hpp"

#include <keel/sdk/plugin.hpp>

KEEL_PLUGIN(notifications::NotificationsPlugin, NOTIFICATIONS_MANIFEST);
