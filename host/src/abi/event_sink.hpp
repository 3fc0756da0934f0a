#pragma once
// Where a plugin's publishes go, as the layers below events/ see it: storage/ hands a committed
// transaction's events to it without knowing the event bus (events::Bus implements it).

#include <keel/plugin.h>

#include <string>
#include <string_view>

namespace keel::host::abi {

class EventSink {
 public:
  virtual ~EventSink() = default;
  /// Publishes an event of `publisher`; `txn` (durable topics only) ties it to that storage
  /// transaction. KEEL_OK or a failure status with `error` saying why. Thread-safe.
  virtual keel_status publish(std::string_view publisher, const keel_publish_args& args, keel_txn txn,
                              std::string_view request_id, std::string& error) = 0;

 protected:
  EventSink() = default;
  EventSink(const EventSink&) = default;
  EventSink& operator=(const EventSink&) = default;
};

}  // namespace keel::host::abi
