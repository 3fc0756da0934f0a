#pragma once
// notifications' manifest (docs/abi.md section 7): the subscription to orders' events, the
// storage permission, the schema migrations and the one route with its OpenAPI documentation.
// A macro of adjacent string literals so that KEEL_PLUGIN (plugin.cpp) gets one literal and the
// unit tests can hand the same text to FakeHost and TestDatabase. The order of "routes" is
// notifications::Route's order. Applied migrations are never edited.

/// JSON Schema of a notification as the API answers it.
#define NOTIFICATIONS_SCHEMA                                                                                                \
  R"j({"type": "object", "additionalProperties": false,)j"                                                                  \
  R"j( "required": ["id", "order_id", "status", "message", "total_cents", "currency", "topic", "event_id",)j"              \
  R"j(              "published_at", "created_at"],)j"                                                                       \
  R"j( "properties": {"id": {"type": "integer", "minimum": 1, "description": "in the order events arrived"},)j"            \
  R"j(   "order_id": {"type": "integer", "minimum": 1}, "status": {"type": "string", "description": "the order's new status"},)j" \
  R"j(   "message": {"type": "string"}, "total_cents": {"type": ["integer", "null"]},)j"                                   \
  R"j(   "currency": {"type": ["string", "null"]}, "topic": {"type": "string", "description": "e.g. orders.placed"},)j"    \
  R"j(   "event_id": {"type": "string", "description": "the event's id; one notification per event"},)j"                  \
  R"j(   "published_at": {"type": "string", "format": "date-time"},)j"                                                      \
  R"j(   "created_at": {"type": "string", "format": "date-time"}}})j"

#define NOTIFICATIONS_MANIFEST                                                                                              \
  R"j({"name": "notifications", "version": "1.0.0", "abi": "1.0",)j"                                                        \
  R"j( "description": "shop notifications: one per order event, recorded once however often it is delivered",)j"          \
  R"j( "permissions": ["ext:keel.storage/1"],)j"                                                                            \
  R"j( "events": {"subscribes": ["orders.*"]},)j"                                                                           \
  R"j( "migrations": [)j"                                                                                                   \
  R"j(   {"version": 1, "description": "notifications",)j"                                                                  \
  R"j(    "sql": "CREATE TABLE notifications (id INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL UNIQUE,)j"       \
  R"j( topic TEXT NOT NULL, order_id INTEGER NOT NULL, status TEXT NOT NULL, total_cents INTEGER, currency TEXT,)j"         \
  R"j( message TEXT NOT NULL, published_at TEXT NOT NULL, created_at TEXT NOT NULL);)j"                                      \
  R"j( CREATE INDEX notifications_by_order ON notifications (order_id, id);"}],)j"                                          \
  R"j( "routes": [)j"                                                                                                       \
  R"j(   {"method": "GET", "path": "/notifications", "summary": "notifications in the order they arrived, a page at a time",)j" \
  R"j(    "blocking": true,)j"                                                                                              \
  R"j(    "query": [{"name": "order_id", "type": "integer", "description": "only this order's notifications"},)j"          \
  R"j(              {"name": "limit", "type": "integer", "description": "page size, 1..100, default 20"},)j"               \
  R"j(              {"name": "cursor", "description": "opaque: the next_cursor of the previous page"}],)j"                 \
  R"j(    "responses": {"200": {"description": "a page of notifications", "schema": {"type": "object",)j"                  \
  R"j(      "additionalProperties": false, "required": ["items", "next_cursor"], "properties": {)j"                         \
  R"j(        "items": {"type": "array", "items": )j" NOTIFICATIONS_SCHEMA R"j(},)j"                                        \
  R"j(        "next_cursor": {"type": ["string", "null"], "description": "null on the last page"}}}},)j"                    \
  R"j(      "422": {"description": "order_id, limit or cursor is invalid (code invalid_field)"}}}]})j"
