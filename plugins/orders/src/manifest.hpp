#pragma once
// orders' manifest (docs/abi.md section 7): routes with their OpenAPI documentation, the
// dependency on catalog (which also grants Host::call to it), the durable topics, the config
// keys and the schema migrations. A macro of adjacent string literals so that KEEL_PLUGIN
// (plugin.cpp) gets one literal and the unit tests can hand the same text to FakeHost and
// TestDatabase. The order of "routes" is orders::Route's order.
// Applied migrations are never edited: schema changes are new, additive migrations.
// The raw strings use the delimiter j (R"j(...)j") because descriptions contain `)"`.

/// JSON Schema of one order line as the API (and the orders.placed event) shows it.
#define ORDERS_LINE_SCHEMA                                                                                                  \
  R"j({"type": "object", "additionalProperties": false,)j"                                                                  \
  R"j( "required": ["product_id", "sku", "name", "unit_price_cents", "quantity", "line_total_cents"],)j"                    \
  R"j( "properties": {"product_id": {"type": "integer", "minimum": 1}, "sku": {"type": ["string", "null"]},)j"              \
  R"j(   "name": {"type": ["string", "null"]},)j"                                                                           \
  R"j(   "unit_price_cents": {"type": ["integer", "null"],)j"                                                               \
  R"j(                        "description": "catalog's price when the order was placed; null until then"},)j"             \
  R"j(   "quantity": {"type": "integer", "minimum": 1, "maximum": 1000000000},)j"                                           \
  R"j(   "line_total_cents": {"type": ["integer", "null"], "description": "unit_price_cents * quantity"}}})j"

/// JSON Schema of an order as the API answers it.
#define ORDERS_ORDER_SCHEMA                                                                                                 \
  R"j({"type": "object", "additionalProperties": false,)j"                                                                  \
  R"j( "required": ["id", "status", "lines", "total_cents", "currency", "rejection", "created_at", "updated_at"],)j"        \
  R"j( "properties": {"id": {"type": "integer", "minimum": 1},)j"                                                           \
  R"j(   "status": {"enum": ["pending", "placed", "paid", "shipped", "cancelled", "rejected"]},)j"                          \
  R"j(   "lines": {"type": "array", "items": )j" ORDERS_LINE_SCHEMA R"j(},)j"                                               \
  R"j(   "total_cents": {"type": ["integer", "null"], "description": "sum of the line totals; null until placed"},)j"       \
  R"j(   "currency": {"type": ["string", "null"], "description": "ISO 4217 code of every line; null until placed"},)j"     \
  R"j(   "rejection": {"type": ["object", "null"], "description": "for a rejected order: the error it was refused with"},)j" \
  R"j(   "created_at": {"type": "string", "format": "date-time"},)j"                                                        \
  R"j(   "updated_at": {"type": "string", "format": "date-time"}}})j"

/// Responses shared by the three state transitions.
#define ORDERS_TRANSITION_RESPONSES                                                                                         \
  R"j({"200": {"description": "the order after the change", "schema": )j" ORDERS_ORDER_SCHEMA R"j(},)j"                    \
  R"j(  "400": {"description": "the body is neither empty nor one JSON object"},)j"                                         \
  R"j(  "404": {"description": "no such order"},)j"                                                                         \
  R"j(  "409": {"description": "the order's status does not allow this change (code invalid_transition)"},)j"              \
  R"j(  "422": {"description": "the body has a member (code invalid_field)"}})j"

#define ORDERS_MANIFEST                                                                                                     \
  R"j({"name": "orders", "version": "1.0.0", "abi": "1.0",)j"                                                               \
  R"j( "description": "shop orders: placed against catalog's prices and stock, then paid, shipped or cancelled",)j"        \
  R"j( "dependencies": [{"name": "catalog", "version": ">=1.0.0 <2.0.0"}],)j"                                               \
  R"j( "permissions": ["ext:keel.storage/1"],)j"                                                                            \
  R"j( "events": {"publishes": ["orders.placed", "orders.paid", "orders.shipped", "orders.cancelled"],)j"                  \
  R"j(            "durable": ["orders.placed", "orders.paid", "orders.shipped", "orders.cancelled"]},)j"                   \
  R"j( "config": {)j"                                                                                                       \
  R"j(   "catalog_timeout_ms": {"type": "integer", "default": 5000,)j"                                                      \
  R"j(     "description": "deadline of each call to catalog, 1..600000; a placement whose call times out answers 504"},)j"  \
  R"j(   "recovery_interval_ms": {"type": "integer", "default": 10000,)j"                                                   \
  R"j(     "description": "how often pending orders and unconfirmed stock releases are retried, 100..3600000"}},)j"         \
  R"j( "migrations": [)j"                                                                                                   \
  R"j(   {"version": 1, "description": "orders and order lines",)j"                                                         \
  R"j(    "sql": "CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT,)j"                                             \
  R"j( status TEXT NOT NULL CHECK (status IN ('pending', 'placed', 'paid', 'shipped', 'cancelled', 'rejected')),)j"         \
  R"j( reservation_id TEXT NOT NULL UNIQUE, idempotency_key TEXT UNIQUE,)j"                                                 \
  R"j( total_cents INTEGER CHECK (total_cents >= 0), currency TEXT CHECK (length(currency) = 3),)j"                         \
  R"j( release_due INTEGER NOT NULL DEFAULT 0 CHECK (release_due IN (0, 1)),)j"                                             \
  R"j( rejection_status INTEGER, rejection TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);)j"                    \
  R"j( CREATE TABLE order_lines (order_id INTEGER NOT NULL REFERENCES orders (id), line INTEGER NOT NULL,)j"               \
  R"j( product_id INTEGER NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0), sku TEXT, name TEXT,)j"                 \
  R"j( unit_price_cents INTEGER, line_total_cents INTEGER, PRIMARY KEY (order_id, line));)j"                                \
  R"j( CREATE INDEX orders_by_status ON orders (status, id);)j"                                                             \
  R"j( CREATE INDEX orders_release_due ON orders (id) WHERE release_due = 1;"}],)j"                                         \
  R"j( "routes": [)j"                                                                                                       \
  R"j(   {"method": "POST", "path": "/orders", "blocking": true,)j"                                                         \
  R"j(    "summary": "place an order: prices and stock come from catalog, the stock is reserved there",)j"                  \
  R"j(    "request": {"description": "the products and quantities; send an Idempotency-Key header to retry safely",)j"     \
  R"j(      "schema": {"type": "object", "additionalProperties": false, "required": ["items"],)j"                           \
  R"j(        "properties": {"items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object",)j"      \
  R"j(          "additionalProperties": false, "required": ["product_id", "quantity"],)j"                                   \
  R"j(          "properties": {"product_id": {"type": "integer", "minimum": 1},)j"                                          \
  R"j(            "quantity": {"type": "integer", "minimum": 1, "maximum": 1000000000}}}}}}},)j"                            \
  R"j(    "responses": {"201": {"description": "placed (or, with Idempotent-Replayed: true, the order an earlier)j"         \
  R"j( request with the same Idempotency-Key placed); Location names it", "schema": )j" ORDERS_ORDER_SCHEMA R"j(},)j"       \
  R"j(      "400": {"description": "the body is not one JSON object, or the Idempotency-Key header is malformed"},)j"       \
  R"j(      "404": {"description": "a product does not exist (catalog's product_not_found; field names the item)"},)j"       \
  R"j(      "409": {"description": "not enough stock (catalog's insufficient_stock; field names the item)"},)j"             \
  R"j(      "422": {"description": "a field is missing or invalid (invalid_field), the lines have different currencies)j"  \
  R"j( (mixed_currency), the total exceeds int64 (total_too_large), or the Idempotency-Key was used for)j"                  \
  R"j( other items (idempotency_key_reused)"},)j"                                                                           \
  R"j(      "502": {"description": "catalog answered something orders cannot use (catalog_error); the order stays)j"        \
  R"j( pending and is retried"},)j"                                                                                         \
  R"j(      "503": {"description": "catalog is not available (catalog_unavailable); the order stays pending"},)j"           \
  R"j(      "504": {"description": "catalog did not answer in time (catalog_timeout); the order stays pending"}}},)j"       \
  R"j(   {"method": "GET", "path": "/orders", "summary": "list orders by id, a page at a time", "storage": "read",)j"        \
  R"j(    "query": [{"name": "limit", "type": "integer", "description": "page size, 1..100, default 20"},)j"                \
  R"j(              {"name": "cursor", "description": "opaque: the next_cursor of the previous page"},)j"                  \
  R"j(              {"name": "status", "description": "only orders in this status"}],)j"                                   \
  R"j(    "responses": {"200": {"description": "a page of orders in id order", "schema": {"type": "object",)j"              \
  R"j(      "additionalProperties": false, "required": ["items", "next_cursor"], "properties": {)j"                         \
  R"j(        "items": {"type": "array", "items": )j" ORDERS_ORDER_SCHEMA R"j(},)j"                                         \
  R"j(        "next_cursor": {"type": ["string", "null"], "description": "null on the last page"}}}},)j"                    \
  R"j(      "422": {"description": "limit, cursor or status is invalid (code invalid_field)"}}},)j"                         \
  R"j(   {"method": "GET", "path": "/orders/{id}", "summary": "one order", "storage": "read",)j"                             \
  R"j(    "responses": {"200": {"description": "the order", "schema": )j" ORDERS_ORDER_SCHEMA R"j(},)j"                    \
  R"j(      "404": {"description": "no such order"}}},)j"                                                                   \
  R"j(   {"method": "POST", "path": "/orders/{id}/pay", "blocking": true,)j"                                                \
  R"j(    "summary": "mark a placed order paid; publishes orders.paid", "responses": )j"                                    \
  ORDERS_TRANSITION_RESPONSES R"j(},)j"                                                                                     \
  R"j(   {"method": "POST", "path": "/orders/{id}/ship", "blocking": true,)j"                                               \
  R"j(    "summary": "mark a paid order shipped; publishes orders.shipped", "responses": )j"                                \
  ORDERS_TRANSITION_RESPONSES R"j(},)j"                                                                                     \
  R"j(   {"method": "POST", "path": "/orders/{id}/cancel", "blocking": true,)j"                                             \
  R"j(    "summary": "cancel a placed or paid order: its stock goes back to catalog; publishes orders.cancelled",)j"        \
  R"j(    "responses": )j" ORDERS_TRANSITION_RESPONSES R"j(}]})j"
