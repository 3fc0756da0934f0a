#pragma once
// catalog's manifest (docs/abi.md section 7): routes with their OpenAPI documentation, the
// storage permission and the schema migrations. A macro of adjacent string literals so that
// KEEL_PLUGIN (plugin.cpp) gets one literal and the unit tests can hand the same text to
// FakeHost and TestDatabase. The order of "routes" is catalog::Route's order.
// Applied migrations are never edited: schema changes are new, additive migrations.
// The raw strings use the delimiter j (R"j(...)j") because descriptions contain `)"`.

/// JSON Schema of a product as the API answers it.
#define CATALOG_PRODUCT_SCHEMA                                                                                              \
  R"j({"type": "object", "additionalProperties": false,)j"                                                                  \
  R"j( "required": ["id", "sku", "name", "description", "price_cents", "currency", "stock", "created_at", "updated_at"],)j" \
  R"j( "properties": {)j"                                                                                                   \
  R"j(   "id": {"type": "integer", "minimum": 1, "description": "assigned by catalog, never reused"},)j"                    \
  R"j(   "sku": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$", "description": "unique stock-keeping unit"},)j"     \
  R"j(   "name": {"type": "string", "minLength": 1, "maxLength": 200},)j"                                                   \
  R"j(   "description": {"type": "string", "maxLength": 2000},)j"                                                           \
  R"j(   "price_cents": {"type": "integer", "minimum": 0, "maximum": 9223372036854775807,)j"                                \
  R"j(                   "description": "price in minor units of currency (integer, never a float)"},)j"                    \
  R"j(   "currency": {"type": "string", "pattern": "^[A-Z]{3}$", "description": "ISO 4217 code, e.g. EUR"},)j"              \
  R"j(   "stock": {"type": "integer", "minimum": 0, "maximum": 1000000000, "description": "units available"},)j"            \
  R"j(   "created_at": {"type": "string", "format": "date-time"},)j"                                                        \
  R"j(   "updated_at": {"type": "string", "format": "date-time"}}})j"

/// The writable members of a product, shared by the POST and PATCH request schemas.
#define CATALOG_PRODUCT_INPUT_PROPERTIES                                                                                    \
  R"j({"sku": {"type": "string", "pattern": "^[A-Za-z0-9._-]{1,64}$"},)j"                                                   \
  R"j( "name": {"type": "string", "minLength": 1, "maxLength": 200},)j"                                                     \
  R"j( "description": {"type": "string", "maxLength": 2000, "default": ""},)j"                                              \
  R"j( "price_cents": {"type": "integer", "minimum": 0, "maximum": 9223372036854775807},)j"                                 \
  R"j( "currency": {"type": "string", "pattern": "^[A-Z]{3}$"},)j"                                                          \
  R"j( "stock": {"type": "integer", "minimum": 0, "maximum": 1000000000, "default": 0}})j"

/// JSON Schema of a reservation as the API answers it.
#define CATALOG_RESERVATION_SCHEMA                                                                                          \
  R"j({"type": "object", "additionalProperties": false, "required": ["reservation_id", "lines"],)j"                         \
  R"j( "properties": {"reservation_id": {"type": "string"},)j"                                                              \
  R"j(   "lines": {"type": "array", "items": {"type": "object", "additionalProperties": false,)j"                           \
  R"j(     "required": ["product_id", "sku", "name", "unit_price_cents", "currency", "quantity"],)j"                        \
  R"j(     "properties": {"product_id": {"type": "integer"}, "sku": {"type": "string"}, "name": {"type": "string"},)j"      \
  R"j(       "unit_price_cents": {"type": "integer", "description": "the product's price when it was reserved"},)j"         \
  R"j(       "currency": {"type": "string"}, "quantity": {"type": "integer", "minimum": 1}}}}}})j"

#define CATALOG_MANIFEST                                                                                                    \
  R"j({"name": "catalog", "version": "1.0.0", "abi": "1.0",)j"                                                              \
  R"j( "description": "shop product catalog: products with prices and stock, and stock reservations for orders",)j"         \
  R"j( "permissions": ["ext:keel.storage/1"],)j"                                                                            \
  R"j( "migrations": [)j"                                                                                                   \
  R"j(   {"version": 1, "description": "products, reservations and reservation lines",)j"                                   \
  R"j(    "sql": "CREATE TABLE products (id INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT NOT NULL UNIQUE,)j"                 \
  R"j( name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', price_cents INTEGER NOT NULL CHECK (price_cents >= 0),)j"  \
  R"j( currency TEXT NOT NULL CHECK (length(currency) = 3), stock INTEGER NOT NULL CHECK (stock >= 0),)j"                   \
  R"j( created_at TEXT NOT NULL, updated_at TEXT NOT NULL);)j"                                                              \
  R"j( CREATE TABLE reservations (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, released_at TEXT);)j"                      \
  R"j( CREATE TABLE reservation_lines (reservation_id TEXT NOT NULL REFERENCES reservations (id),)j"                        \
  R"j( line INTEGER NOT NULL, product_id INTEGER NOT NULL, sku TEXT NOT NULL, name TEXT NOT NULL,)j"                        \
  R"j( unit_price_cents INTEGER NOT NULL, currency TEXT NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0),)j"        \
  R"j( PRIMARY KEY (reservation_id, line));"}],)j"                                                                          \
  R"j( "routes": [)j"                                                                                                       \
  R"j(   {"method": "POST", "path": "/products", "summary": "create a product", "blocking": true,)j"                        \
  R"j(    "request": {"description": "the new product; description defaults to \"\", stock to 0",)j"                        \
  R"j(      "schema": {"type": "object", "additionalProperties": false,)j"                                                  \
  R"j(                 "required": ["sku", "name", "price_cents", "currency"], "properties": )j"                            \
  CATALOG_PRODUCT_INPUT_PROPERTIES R"j(}},)j"                                                                               \
  R"j(    "responses": {"201": {"description": "created; Location names the new product", "schema": )j"                     \
  CATALOG_PRODUCT_SCHEMA R"j(},)j"                                                                                          \
  R"j(      "400": {"description": "the body is not one JSON object"},)j"                                                   \
  R"j(      "409": {"description": "a product with this sku exists (code duplicate_sku)"},)j"                               \
  R"j(      "422": {"description": "a field is missing or invalid (code invalid_field; member field names it)"}}},)j"       \
  R"j(   {"method": "GET", "path": "/products", "summary": "list products by id, a page at a time", "storage": "read",)j"    \
  R"j(    "query": [{"name": "limit", "type": "integer", "description": "page size, 1..100, default 20"},)j"                \
  R"j(              {"name": "cursor", "description": "opaque: the next_cursor of the previous page"}],)j"                  \
  R"j(    "responses": {"200": {"description": "a page of products in id order", "schema": {"type": "object",)j"            \
  R"j(      "additionalProperties": false, "required": ["items", "next_cursor"], "properties": {)j"                         \
  R"j(        "items": {"type": "array", "items": )j" CATALOG_PRODUCT_SCHEMA R"j(},)j"                                      \
  R"j(        "next_cursor": {"type": ["string", "null"], "description": "null on the last page"}}}},)j"                    \
  R"j(      "422": {"description": "limit or cursor is invalid (code invalid_field)"}}},)j"                                 \
  R"j(   {"method": "GET", "path": "/products/{id}", "summary": "one product", "storage": "read",)j"                         \
  R"j(    "responses": {"200": {"description": "the product", "schema": )j" CATALOG_PRODUCT_SCHEMA R"j(},)j"                \
  R"j(      "404": {"description": "no such product"}}},)j"                                                                 \
  R"j(   {"method": "PATCH", "path": "/products/{id}", "summary": "change some fields of a product", "blocking": true,)j"   \
  R"j(    "request": {"description": "any of name, description, price_cents, currency, stock; sku cannot change",)j"        \
  R"j(      "schema": {"type": "object", "additionalProperties": false, "properties": )j"                                   \
  CATALOG_PRODUCT_INPUT_PROPERTIES R"j(}},)j"                                                                               \
  R"j(    "responses": {"200": {"description": "the product after the change", "schema": )j"                                \
  CATALOG_PRODUCT_SCHEMA R"j(},)j"                                                                                          \
  R"j(      "400": {"description": "the body is not one JSON object"},)j"                                                   \
  R"j(      "404": {"description": "no such product"},)j"                                                                   \
  R"j(      "422": {"description": "a field is invalid, or sku differs from the product's (code invalid_field)"}}},)j"      \
  R"j(   {"method": "DELETE", "path": "/products/{id}", "summary": "delete a product", "blocking": true,)j"                 \
  R"j(    "responses": {"204": {"description": "deleted"}, "404": {"description": "no such product"}}},)j"                  \
  R"j(   {"method": "POST", "path": "/reservations", "blocking": true,)j"                                                   \
  R"j(    "summary": "reserve stock for an order: all lines or none, idempotent per reservation_id",)j"                     \
  R"j(    "request": {"description": "the reservation; reservation_id is chosen by the caller (e.g. the order id)",)j"      \
  R"j(      "schema": {"type": "object", "additionalProperties": false, "required": ["reservation_id", "items"],)j"         \
  R"j(        "properties": {"reservation_id": {"type": "string", "pattern": "^[A-Za-z0-9._:-]{1,128}$"},)j"                \
  R"j(          "items": {"type": "array", "minItems": 1, "maxItems": 100, "items": {"type": "object",)j"                   \
  R"j(            "additionalProperties": false, "required": ["product_id", "quantity"],)j"                                 \
  R"j(            "properties": {"product_id": {"type": "integer", "minimum": 1},)j"                                        \
  R"j(              "quantity": {"type": "integer", "minimum": 1, "maximum": 1000000000}}}}}}},)j"                          \
  R"j(    "responses": {"201": {"description": "reserved (or the same reservation again), with prices", "schema": )j"       \
  CATALOG_RESERVATION_SCHEMA R"j(},)j"                                                                                      \
  R"j(      "400": {"description": "the body is not one JSON object"},)j"                                                   \
  R"j(      "404": {"description": "a product does not exist (code product_not_found; field names the item)"},)j"           \
  R"j(      "409": {"description": "insufficient_stock (nothing reserved),)j"                                               \
  R"j( or the reservation_id was used for other items (reservation_mismatch) or released (reservation_released)"},)j"       \
  R"j(      "422": {"description": "a field is missing or invalid (code invalid_field)"}}},)j"                              \
  R"j(   {"method": "DELETE", "path": "/reservations/{id}", "blocking": true,)j"                                            \
  R"j(    "summary": "release a reservation: its stock is put back once, however often this is called",)j"                  \
  R"j(    "responses": {"204": {"description": "released (now or before)"},)j"                                              \
  R"j(      "404": {"description": "no such reservation"}}}]})j"
