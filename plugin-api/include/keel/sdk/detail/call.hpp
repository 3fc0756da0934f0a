#pragma once
// Completion plumbing for Host::call: the heap state that carries a C++ callable through the
// C callback's user_data, and the noexcept trampoline the host invokes exactly once.

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/detail/errors.hpp>
#include <keel/sdk/http.hpp>
#include <keel/sdk/status.hpp>

#include <functional>
#include <memory>
#include <utility>

namespace keel::sdk::detail {

/// What travels through user_data: the host reference (for logging) and the handler.
template <class F>
struct CallState {
  HostRef host;
  F on_complete;
};

/// The keel_call_callback for a handler of type F. Takes ownership of the state, runs the
/// handler once with (Status, const CallResponse&), catches everything, frees the state.
template <class F>
void call_complete(void* user_data, keel_status result, const keel_call_response* response) noexcept {
  std::unique_ptr<CallState<F>> state{static_cast<CallState<F>*>(user_data)};
  if (!state) return;
  try {
    const CallResponse view = Access::call_response(result >= 0 ? response : nullptr);
    Status status = result >= 0 ? Status{} : make_status(result, "call failed before the target answered");
    std::invoke(state->on_complete, std::move(status), view);
  } catch (...) {
    (void)status_from_exception(state->host, "call_completion");
  }
}

}  // namespace keel::sdk::detail
