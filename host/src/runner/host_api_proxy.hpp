#pragma once
// The keel_host_api table the runner gives the plugin's create(): every function turns into one
// runner -> host frame (docs/isolation.md) and, where the frame has a reply, waits for it.
// Arguments the wire cannot carry (NULL pointers, short structs) are refused here, with the
// status the in-process host returns. Every function is [any-thread] and never throws.

#include <keel/plugin.h>

namespace keel::host::runner {

/// The runner's host table (static storage, struct_size = sizeof(keel_host_api)).
[[nodiscard]] const keel_host_api& host_api_table() noexcept;

}  // namespace keel::host::runner
