'use strict'
// Keel's benchmark routes on Node.js with Fastify and better-sqlite3: the peer that bench/http.sh's
// `peers` scenario measures Keel against (README.md beside this file says what matches and what
// differs). One process, one JavaScript thread, every database call synchronous on it: the same
// one-CPU setup as Keel's io_threads = 1.
//
//   node server.js [--listen HOST:PORT] [--port-file FILE] [--data-dir DIR]
//                  [--synchronous normal|full] [--layout one|split]
//
//   GET  /api/hello/greet/:name     {"greeting":"Hello, <name>!"} (plugins/hello)
//   POST /api/store/items           body = text; one autocommit insert; 201 with the id (store fixture)
//   GET  /api/store/items/:id       200 with the text, 404 (store fixture)
//   POST /api/catalog/products      create a product (plugins/catalog), 201 with Location
//   GET  /api/catalog/products/:id  one product
//   POST /api/orders/orders         place an order: stock reserved, prices from the product,
//                                   Idempotency-Key, 201 / 404 / 409 / 422 (plugins/orders)
//   GET  /api/orders/orders/:id     one order
//
// --layout one (default): the shop's tables in one database, a placement is one transaction.
// --layout split: catalog's and orders' tables in two databases, a placement is Keel's three
// transactions (pending order; reservation; placed order with its event), as its two plugins do.
//
// The port is written to --port-file (written to FILE.tmp, then renamed) once the socket listens;
// SIGTERM and SIGINT close the server and the databases.

const fs = require('node:fs')
const path = require('node:path')
const crypto = require('node:crypto')
const Database = require('better-sqlite3')
const Fastify = require('fastify')

// --- command line ------------------------------------------------------------------------------

function parseArgs(argv) {
  const out = { listen: '127.0.0.1:0', portFile: null, dataDir: null, synchronous: 'normal', layout: 'one' }
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]
    const [flag, inline] = a.includes('=') ? [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)] : [a, null]
    const value = () => {
      if (inline !== null) return inline
      if (i + 1 >= argv.length) usage(`${flag} needs a value`)
      return argv[++i]
    }
    switch (flag) {
      case '--listen': out.listen = value(); break
      case '--port-file': out.portFile = value(); break
      case '--data-dir': out.dataDir = value(); break
      case '--synchronous': out.synchronous = value(); break
      case '--layout': out.layout = value(); break
      case '-h': case '--help': usage(null); break
      default: usage(`unknown argument '${a}'`)
    }
  }
  if (!['normal', 'full'].includes(out.synchronous)) usage('--synchronous must be normal or full')
  if (!['one', 'split'].includes(out.layout)) usage('--layout must be one or split')
  if (!/^[^:]+:\d+$/.test(out.listen)) usage('--listen must be HOST:PORT')
  return out
}

function usage(error) {
  const text = fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 23).map(l => l.replace(/^\/\/ ?/, '')).join('\n')
  if (error) {
    process.stderr.write(`server.js: ${error}\n`)
    process.exit(2)
  }
  process.stdout.write(text + '\n')
  process.exit(0)
}

const args = parseArgs(process.argv.slice(2))
const dataDir = args.dataDir || fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'keel-peer-'))
fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 })

// --- databases -----------------------------------------------------------------------------------

// Opens <dataDir>/<name>.db the way Keel's SQLite engine opens a plugin's database
// (host/src/storage/sqlite): WAL, synchronous NORMAL (or FULL), foreign keys on. Migrations are
// the plugins' own, applied once each in order, with the version in PRAGMA user_version.
function openDatabase(name, migrations) {
  const db = new Database(path.join(dataDir, `${name}.db`))
  const mode = db.pragma('journal_mode = WAL', { simple: true })
  if (mode !== 'wal') throw new Error(`${name}.db: journal_mode is '${mode}', not 'wal'`)
  db.pragma(`synchronous = ${args.synchronous === 'full' ? 'FULL' : 'NORMAL'}`)
  db.pragma('foreign_keys = ON')
  const applied = db.pragma('user_version', { simple: true })
  for (const m of migrations) {
    if (m.version <= applied) continue
    db.transaction(() => {
      db.exec(m.sql)
      db.pragma(`user_version = ${m.version}`)
    })()
  }
  return db
}

// tests/integration/fixtures/store/fixture.cpp, manifest "migrations".
const STORE_MIGRATIONS = [
  { version: 1, sql: 'CREATE TABLE items (id INTEGER PRIMARY KEY, body TEXT NOT NULL);' },
  { version: 2, sql: 'CREATE TABLE blobs (id INTEGER PRIMARY KEY, data BLOB NOT NULL);' },
]

// plugins/catalog/src/manifest.hpp, migration 1.
const CATALOG_SQL = `
CREATE TABLE products (id INTEGER PRIMARY KEY AUTOINCREMENT, sku TEXT NOT NULL UNIQUE,
  name TEXT NOT NULL, description TEXT NOT NULL DEFAULT '', price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
  currency TEXT NOT NULL CHECK (length(currency) = 3), stock INTEGER NOT NULL CHECK (stock >= 0),
  created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE reservations (id TEXT PRIMARY KEY, created_at TEXT NOT NULL, released_at TEXT);
CREATE TABLE reservation_lines (reservation_id TEXT NOT NULL REFERENCES reservations (id),
  line INTEGER NOT NULL, product_id INTEGER NOT NULL, sku TEXT NOT NULL, name TEXT NOT NULL,
  unit_price_cents INTEGER NOT NULL, currency TEXT NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0),
  PRIMARY KEY (reservation_id, line));`

// plugins/orders/src/manifest.hpp, migration 1.
const ORDERS_SQL = `
CREATE TABLE orders (id INTEGER PRIMARY KEY AUTOINCREMENT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'placed', 'paid', 'shipped', 'cancelled', 'rejected')),
  reservation_id TEXT NOT NULL UNIQUE, idempotency_key TEXT UNIQUE,
  total_cents INTEGER CHECK (total_cents >= 0), currency TEXT CHECK (length(currency) = 3),
  release_due INTEGER NOT NULL DEFAULT 0 CHECK (release_due IN (0, 1)),
  rejection_status INTEGER, rejection TEXT, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE order_lines (order_id INTEGER NOT NULL REFERENCES orders (id), line INTEGER NOT NULL,
  product_id INTEGER NOT NULL, quantity INTEGER NOT NULL CHECK (quantity > 0), sku TEXT, name TEXT,
  unit_price_cents INTEGER, line_total_cents INTEGER, PRIMARY KEY (order_id, line));
CREATE INDEX orders_by_status ON orders (status, id);
CREATE INDEX orders_release_due ON orders (id) WHERE release_due = 1;`

// The outbox Keel keeps in a publisher's database for its durable topics (host/src/events/bus.cpp,
// _keel_outbox): orders.placed is written in the transaction that places the order. Nothing
// reads it here, as nothing subscribes to orders.placed in the benchmark's Keel either.
const OUTBOX_SQL = `
CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, event_id TEXT NOT NULL,
  topic TEXT NOT NULL, payload BLOB NOT NULL, content_type TEXT NOT NULL, published_ns INTEGER NOT NULL,
  traceparent TEXT NOT NULL, tracestate TEXT NOT NULL, request_id TEXT NOT NULL, target TEXT);`

const storeDb = openDatabase('store', STORE_MIGRATIONS)
let catalogDb, ordersDb
if (args.layout === 'one') {
  catalogDb = ordersDb = openDatabase('shop', [{ version: 1, sql: CATALOG_SQL + ORDERS_SQL + OUTBOX_SQL }])
} else {
  catalogDb = openDatabase('catalog', [{ version: 1, sql: CATALOG_SQL }])
  ordersDb = openDatabase('orders', [{ version: 1, sql: ORDERS_SQL + OUTBOX_SQL }])
}

// --- shared answers ------------------------------------------------------------------------------

// Keel's error body: {"error":{"code":..,"message":..}} plus "field" and any extra members.
function apiError(http, code, message, field, extra) {
  const error = { code, message }
  if (field) error.field = field
  if (extra) Object.assign(error, extra)
  return { http, error }
}

function sendError(reply, e) {
  return reply.code(e.http).send({ error: e.error })
}

const nowIso = () => new Date().toISOString() // RFC 3339 UTC with milliseconds, as the shop's timestamps

// A Keel-style request id: the client's X-Request-Id when it is 1..128 of [A-Za-z0-9._:-],
// otherwise 16 hex digits (a random prefix and a counter).
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/
const idPrefix = crypto.randomBytes(4).toString('hex')
let idCounter = 0
function genReqId(req) {
  const given = req.headers['x-request-id']
  if (given !== undefined && REQUEST_ID.test(given)) return given
  idCounter = (idCounter + 1) >>> 0
  return idPrefix + idCounter.toString(16).padStart(8, '0')
}

// --- input rules (plugins/shared/catalog_rules/validation.hpp) -----------------------------------

// JavaScript numbers are doubles: an "integer" here is a safe integer (12.0 and 1e3 are
// integers to JSON.parse; Keel's parser refuses them).
const isInt = v => Number.isSafeInteger(v)
const isObject = v => v !== null && typeof v === 'object' && !Array.isArray(v)
const SKU = /^[A-Za-z0-9._-]{1,64}$/
const CURRENCY = /^[A-Z]{3}$/
const codePoints = s => { let n = 0; for (const _ of s) n++; return n } // eslint-disable-line no-unused-vars
const CONTROL = /[\u0000-\u001f\u007f]/ // eslint-disable-line no-control-regex

const PRODUCT_CHECKS = {
  sku: v => typeof v !== 'string' ? 'must be a string' : v === '' ? 'must not be empty'
    : v.length > 64 ? 'must be at most 64 characters' : !SKU.test(v) ? "may contain only A-Z, a-z, 0-9, '-', '_' and '.'" : null,
  name: v => typeof v !== 'string' ? 'must be a string' : /^[ \t\r\n]*$/.test(v) ? 'must not be empty'
    : codePoints(v) > 200 ? 'must be at most 200 characters' : CONTROL.test(v) ? 'must not contain control characters' : null,
  description: v => typeof v !== 'string' ? 'must be a string' : codePoints(v) > 2000 ? 'must be at most 2000 characters' : null,
  price_cents: v => !isInt(v) || v < 0 ? 'must be an integer number of cents, 0 or more' : null,
  currency: v => typeof v !== 'string' || !CURRENCY.test(v) ? 'must be an ISO 4217 code of three upper-case letters, e.g. EUR' : null,
  stock: v => !isInt(v) || v < 0 || v > 1000000000 ? 'must be an integer from 0 to 1000000000' : null,
}
const PRODUCT_FIELDS = Object.keys(PRODUCT_CHECKS)

// A POST /products body: { value } or { field, message }.
function validateProduct(body) {
  for (const key of Object.keys(body)) {
    if (!PRODUCT_FIELDS.includes(key)) return { field: key, message: 'unknown field; expected one of sku, name, description, price_cents, currency, stock' }
  }
  for (const key of PRODUCT_FIELDS) {
    if (body[key] === undefined) continue
    const problem = PRODUCT_CHECKS[key](body[key])
    if (problem) return { field: key, message: problem }
  }
  for (const key of ['sku', 'name', 'price_cents', 'currency']) {
    if (body[key] === undefined) return { field: key, message: 'is required' }
  }
  return { value: { description: '', stock: 0, ...body } }
}

// A POST /orders body (catalog's reservation rules): { lines } or { field, message }.
function validateOrder(body) {
  for (const key of Object.keys(body)) {
    if (key !== 'items') return { field: key, message: 'unknown field; expected items' }
  }
  const items = body.items
  if (items === undefined) return { field: 'items', message: 'is required' }
  if (!Array.isArray(items) || items.length < 1 || items.length > 100) return { field: 'items', message: 'must be an array of 1 to 100 items' }
  const lines = []
  const seen = new Set()
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    const at = `items[${i}]`
    if (!isObject(item)) return { field: at, message: 'must be an object with product_id and quantity' }
    for (const key of Object.keys(item)) {
      if (key !== 'product_id' && key !== 'quantity') return { field: `${at}.${key}`, message: 'unknown field; expected product_id and quantity' }
    }
    const p = item.product_id
    if (!isInt(p) || p < 1) return { field: `${at}.product_id`, message: p === undefined ? 'is required' : 'must be a product id (an integer >= 1)' }
    const q = item.quantity
    if (!isInt(q) || q < 1 || q > 1000000000) return { field: `${at}.quantity`, message: q === undefined ? 'is required' : 'must be an integer from 1 to 1000000000' }
    if (seen.has(p)) return { field: `${at}.product_id`, message: `product ${p} appears twice; put its whole quantity on one line` }
    seen.add(p)
    lines.push({ product_id: p, quantity: q })
  }
  return { lines }
}

const IDEMPOTENCY_KEY = /^[\x21-\x7e]{1,255}$/
const POSITIVE_ID = /^[1-9][0-9]{0,18}$/ // catalog's parse_id; values above 2^53 are not found here

// --- catalog (plugins/catalog/src/catalog.hpp) ---------------------------------------------------

const PRODUCT_COLUMNS = 'id, sku, name, description, price_cents, currency, stock, created_at, updated_at'
const catalogSql = {
  insertProduct: catalogDb.prepare('INSERT INTO products (sku, name, description, price_cents, currency, stock, created_at, updated_at) ' +
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
  product: catalogDb.prepare(`SELECT ${PRODUCT_COLUMNS} FROM products WHERE id = ?`),
  reservation: catalogDb.prepare('SELECT released_at FROM reservations WHERE id = ?'),
  reservationLines: catalogDb.prepare('SELECT product_id, sku, name, unit_price_cents, currency, quantity FROM reservation_lines ' +
    'WHERE reservation_id = ? ORDER BY line'),
  insertReservation: catalogDb.prepare('INSERT INTO reservations (id, created_at) VALUES (?, ?)'),
  takeStock: catalogDb.prepare('UPDATE products SET stock = stock - ?, updated_at = ? WHERE id = ? AND stock >= ?'),
  insertReservationLine: catalogDb.prepare('INSERT INTO reservation_lines (reservation_id, line, product_id, sku, name, unit_price_cents, currency, ' +
    'quantity) VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
  putBack: catalogDb.prepare('UPDATE products SET stock = stock + ?, updated_at = ? WHERE id = ?'),
  released: catalogDb.prepare('UPDATE reservations SET released_at = ? WHERE id = ?'),
}

function insufficientStock(i, product, requested) {
  return apiError(409, 'insufficient_stock',
    `product ${product.id} (sku ${product.sku}) has ${product.stock} in stock, ${requested} requested`, `items[${i}].quantity`,
    { product_id: product.id, sku: product.sku, available: product.stock, requested })
}

// Checks every line against the products (inside a transaction of catalog's database, so nothing
// changes the stock before writeReservation). { lines } (the products as reserved) or
// { refusal } (404 product_not_found, 409 insufficient_stock, for the first line that fails).
function checkReservation(items) {
  const lines = []
  for (let i = 0; i < items.length; i++) {
    const item = items[i]
    const p = catalogSql.product.get(item.product_id)
    if (!p) {
      return { refusal: apiError(404, 'product_not_found', `product ${item.product_id} does not exist`, `items[${i}].product_id`, { product_id: item.product_id }) }
    }
    if (p.stock < item.quantity) return { refusal: insufficientStock(i, p, item.quantity) }
    lines.push({ product_id: p.id, sku: p.sku, name: p.name, unit_price_cents: p.price_cents, currency: p.currency, quantity: item.quantity })
  }
  return { lines }
}

// Records the reservation and takes its stock (catalog's SQL, in the same transaction).
function writeReservation(reservationId, lines, now) {
  catalogSql.insertReservation.run(reservationId, now)
  for (let i = 0; i < lines.length; i++) {
    const l = lines[i]
    // One writer, and the stock was read in this transaction: the guard cannot fail here.
    if (catalogSql.takeStock.run(l.quantity, now, l.product_id, l.quantity).changes === 0) throw new Error('stock changed under a transaction')
    catalogSql.insertReservationLine.run(reservationId, i, l.product_id, l.sku, l.name, l.unit_price_cents, l.currency, l.quantity)
  }
}

// catalog's POST /reservations as one transaction of catalog's database (the split layout's
// step 2): idempotent per reservation id, like the plugin.
const reserveTransaction = catalogDb.transaction((reservationId, items) => {
  const existing = catalogSql.reservation.get(reservationId)
  if (existing) {
    if (existing.released_at !== null) return { refusal: apiError(409, 'reservation_released', `reservation ${reservationId} was released; use a new reservation_id`, 'reservation_id') }
    const lines = catalogSql.reservationLines.all(reservationId)
    const same = lines.length === items.length && items.every(it => lines.some(l => l.product_id === it.product_id && l.quantity === it.quantity))
    if (!same) return { refusal: apiError(409, 'reservation_mismatch', `reservation ${reservationId} exists with other items`, 'reservation_id') }
    return { lines }
  }
  const checked = checkReservation(items)
  if (checked.lines) writeReservation(reservationId, checked.lines, nowIso())
  return checked
})

// catalog's DELETE /reservations/{id}: the stock goes back once.
const releaseTransaction = catalogDb.transaction(reservationId => {
  const existing = catalogSql.reservation.get(reservationId)
  if (!existing || existing.released_at !== null) return
  const now = nowIso()
  for (const l of catalogSql.reservationLines.all(reservationId)) catalogSql.putBack.run(l.quantity, now, l.product_id)
  catalogSql.released.run(now, reservationId)
})

// --- orders (plugins/orders/src/orders.hpp, store.hpp, order.hpp) --------------------------------

const ORDER_COLUMNS = 'id, status, reservation_id, total_cents, currency, release_due, rejection_status, rejection, created_at, updated_at'
const ordersSql = {
  findByKey: ordersDb.prepare('SELECT id FROM orders WHERE idempotency_key = ?').pluck(),
  insertPending: ordersDb.prepare("INSERT INTO orders (status, reservation_id, idempotency_key, created_at, updated_at) VALUES ('pending', ?, ?, ?, ?)"),
  setReservationId: ordersDb.prepare('UPDATE orders SET reservation_id = ? WHERE id = ?'),
  insertLine: ordersDb.prepare('INSERT INTO order_lines (order_id, line, product_id, quantity) VALUES (?, ?, ?, ?)'),
  priceLine: ordersDb.prepare('UPDATE order_lines SET sku = ?, name = ?, unit_price_cents = ?, line_total_cents = ? WHERE order_id = ? AND line = ?'),
  place: ordersDb.prepare("UPDATE orders SET status = 'placed', total_cents = ?, currency = ?, updated_at = ? WHERE id = ? AND status = 'pending'"),
  reject: ordersDb.prepare("UPDATE orders SET status = 'rejected', rejection_status = ?, rejection = ?, release_due = ?, updated_at = ? " +
    "WHERE id = ? AND status = 'pending'"),
  setReleaseDue: ordersDb.prepare('UPDATE orders SET release_due = ? WHERE id = ?'),
  order: ordersDb.prepare(`SELECT ${ORDER_COLUMNS} FROM orders WHERE id = ?`),
  lines: ordersDb.prepare('SELECT order_id, product_id, quantity, sku, name, unit_price_cents, line_total_cents FROM order_lines WHERE order_id = ? ORDER BY line'),
  outbox: ordersDb.prepare('INSERT INTO outbox (event_id, topic, payload, content_type, published_ns, traceparent, tracestate, request_id) ' +
    'VALUES (?, ?, ?, ?, ?, ?, ?, ?)'),
}

function loadOrder(id) {
  const o = ordersSql.order.get(id)
  if (!o) return null
  o.lines = ordersSql.lines.all(id)
  return o
}

// The API's JSON for an order (ORDERS_ORDER_SCHEMA), members in the plugin's order.
function orderJson(o) {
  return {
    id: o.id,
    status: o.status,
    lines: o.lines.map(l => ({
      product_id: l.product_id, sku: l.sku, name: l.name, unit_price_cents: l.unit_price_cents,
      quantity: l.quantity, line_total_cents: l.line_total_cents,
    })),
    total_cents: o.total_cents,
    currency: o.currency,
    rejection: o.rejection === null ? null : JSON.parse(o.rejection),
    created_at: o.created_at,
    updated_at: o.updated_at,
  }
}

// The payload of orders.placed (order.hpp, event_payload).
function placedEvent(o) {
  return JSON.stringify({
    order_id: o.id, status: 'placed', previous_status: 'pending', total_cents: o.total_cents, currency: o.currency,
    lines: orderJson(o).lines, occurred_at: o.updated_at,
  })
}

// Prices the requested lines from the reservation (order.hpp, price): one currency, a total that
// fits int64 (here: a safe integer). { lines, total, currency } or { error }.
function price(requested, reserved) {
  let total = 0
  let currency = null
  const lines = []
  for (let i = 0; i < requested.length; i++) {
    const r = reserved[i]
    if (i === 0) currency = r.currency
    if (r.currency !== currency) {
      return { error: apiError(422, 'mixed_currency', `product ${r.product_id} is priced in ${r.currency}, the first line in ${currency}; place one order per currency`, `items[${i}].product_id`) }
    }
    const lineTotal = r.unit_price_cents * r.quantity
    total += lineTotal
    if (!Number.isSafeInteger(lineTotal) || !Number.isSafeInteger(total)) {
      return { error: apiError(422, 'total_too_large', 'the order total exceeds 9223372036854775807 cents', `items[${i}].quantity`) }
    }
    lines.push({ ...requested[i], sku: r.sku, name: r.name, unit_price_cents: r.unit_price_cents, line_total_cents: lineTotal })
  }
  return { lines, total, currency }
}

const randomToken = () => crypto.randomBytes(8).toString('hex')

// Step 1 of both layouts: the pending order with its lines and its reservation id.
function insertPending(key, lines, now) {
  const token = randomToken()
  const id = Number(ordersSql.insertPending.run(token, key, now, now).lastInsertRowid)
  const reservationId = `order-${id}-${token}`
  ordersSql.setReservationId.run(reservationId, id)
  for (let i = 0; i < lines.length; i++) ordersSql.insertLine.run(id, i, lines[i].product_id, lines[i].quantity)
  return { id, reservationId }
}

// pending -> placed, with orders.placed in the outbox; returns the order as stored.
function placeOrder(id, priced, requestId) {
  for (let i = 0; i < priced.lines.length; i++) {
    const l = priced.lines[i]
    ordersSql.priceLine.run(l.sku, l.name, l.unit_price_cents, l.line_total_cents, id, i)
  }
  ordersSql.place.run(priced.total, priced.currency, nowIso(), id)
  const placed = loadOrder(id)
  ordersSql.outbox.run(crypto.randomUUID(), 'orders.placed', placedEvent(placed), 'application/json',
    process.hrtime.bigint(), '', '', requestId)
  return placed
}

// An answer of the placement: { http, body, replayed } or an error { http, error }.
const placedAnswer = (order, replayed) => ({ http: 201, body: orderJson(order), replayed, id: order.id })
const storedRejection = o => ({ http: o.rejection_status ?? 409, error: JSON.parse(o.rejection ?? '{}') })

// A request with the Idempotency-Key of order `id`: the same items (in order) get that order,
// other items 422 idempotency_key_reused.
function replay(id, lines) {
  const order = loadOrder(id)
  const same = order.lines.length === lines.length &&
    lines.every((l, i) => order.lines[i].product_id === l.product_id && order.lines[i].quantity === l.quantity)
  if (!same) {
    return apiError(422, 'idempotency_key_reused', `this Idempotency-Key was used for order ${id} with other items; use a new key for a new order`)
  }
  if (order.status === 'rejected') return storedRejection(order)
  if (order.status === 'pending') return null // split layout only: the caller drives it on
  return placedAnswer(order, true)
}

// --layout one: the whole placement in one transaction of the one database.
const placeOne = ordersDb.transaction((key, lines, requestId) => {
  if (key !== null) {
    const existing = ordersSql.findByKey.get(key)
    if (existing !== undefined) return replay(existing, lines)
  }
  const now = nowIso()
  const { id, reservationId } = insertPending(key, lines, now)
  const checked = checkReservation(lines)
  const priced = checked.refusal ? null : price(lines, checked.lines)
  const refusal = checked.refusal || priced.error
  if (refusal) {
    // Nothing is reserved: in one transaction the lines are priced before the stock is taken.
    // The order keeps the answer for a retry with its Idempotency-Key.
    ordersSql.reject.run(refusal.http, JSON.stringify(refusal.error), 0, nowIso(), id)
    return refusal
  }
  writeReservation(reservationId, checked.lines, now)
  return placedAnswer(placeOrder(id, priced, requestId), false)
})

// --layout split: Keel's three steps, each its own transaction, on two databases.
const pendingTransaction = ordersDb.transaction((key, lines) => {
  if (key !== null) {
    const existing = ordersSql.findByKey.get(key)
    if (existing !== undefined) {
      const answer = replay(existing, lines)
      if (answer !== null) return { answer }
      const o = ordersSql.order.get(existing)
      return { id: existing, reservationId: o.reservation_id, replayed: true }
    }
  }
  return insertPending(key, lines, nowIso())
})

const finishTransaction = ordersDb.transaction((id, lines, reservation, requestId, replayed) => {
  const order = loadOrder(id)
  if (order.status === 'rejected') return storedRejection(order)
  if (order.status !== 'pending') return placedAnswer(order, replayed)
  if (reservation.refusal) {
    ordersSql.reject.run(reservation.refusal.http, JSON.stringify(reservation.refusal.error), 0, nowIso(), id)
    return reservation.refusal
  }
  const priced = price(lines, reservation.lines)
  if (priced.error) {
    // catalog holds stock for lines that cannot form one order: rejected with release_due set,
    // released by the caller after this commit.
    ordersSql.reject.run(priced.error.http, JSON.stringify(priced.error.error), 1, nowIso(), id)
    return { ...priced.error, release: order.reservation_id }
  }
  return placedAnswer(placeOrder(id, priced, requestId), replayed)
})

function placeSplit(key, lines, requestId) {
  const pending = pendingTransaction(key, lines)
  if (pending.answer) return pending.answer
  const reservation = reserveTransaction(pending.reservationId, lines)
  const answer = finishTransaction(pending.id, lines, reservation, requestId, pending.replayed === true)
  if (answer.release) {
    releaseTransaction(answer.release)
    ordersSql.setReleaseDue.run(0, pending.id)
  }
  return answer
}

const placeOrderRequest = args.layout === 'one' ? placeOne : placeSplit

// --- store fixture -------------------------------------------------------------------------------

const storeSql = {
  insert: storeDb.prepare('INSERT INTO items (body) VALUES (?)'),
  get: storeDb.prepare('SELECT body FROM items WHERE id = ?').pluck(),
}
const INTEGER = /^-?[0-9]+$/ // from_chars: optional minus sign, digits only

// --- HTTP ----------------------------------------------------------------------------------------

const app = Fastify({ logger: false, genReqId, bodyLimit: 1048576 })

app.setNotFoundHandler((request, reply) => {
  reply.header('x-request-id', request.id)
  return sendError(reply, apiError(404, 'not_found', `no route for ${request.method} ${request.url.split('?')[0]}`))
})
app.setErrorHandler((err, request, reply) => {
  reply.header('x-request-id', request.id)
  const status = err.statusCode >= 400 && err.statusCode < 500 ? err.statusCode : 500
  if (status === 400 && err.code && err.code.startsWith('FST_ERR_CTP_')) {
    return sendError(reply, apiError(400, 'malformed_json', 'request body: not valid JSON'))
  }
  if (status >= 500) process.stderr.write(`server.js: ${err.stack || err}\n`)
  return sendError(reply, apiError(status, status >= 500 ? 'internal' : 'bad_request', status >= 500 ? 'internal error' : err.message))
})

// The JSON routes take a JSON object; anything else is Keel's 400 malformed_json.
function jsonObject(request, reply) {
  if (isObject(request.body)) return request.body
  sendError(reply, apiError(400, 'malformed_json', 'request body: the body must be a JSON object'))
  return null
}

// hello (plugins/hello): GET /greet/{name}[?greeting=...].
app.get('/api/hello/greet/:name', (request, reply) => {
  const greeting = request.query.greeting || 'Hello'
  reply.header('x-request-id', request.id).header('content-type', 'application/json')
  reply.send(`{"greeting":${JSON.stringify(`${greeting}, ${request.params.name}!`)}}`)
})

// The store fixture's routes take any body as text, whatever its Content-Type (an encapsulated
// context with its own body parser).
app.register(async store => {
  store.removeAllContentTypeParsers()
  store.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => done(null, body))

  store.post('/api/store/items', (request, reply) => {
    const info = storeSql.insert.run(typeof request.body === 'string' ? request.body : '')
    reply.header('x-request-id', request.id).code(201).header('content-type', 'text/plain; charset=utf-8')
    reply.send(String(info.lastInsertRowid))
  })

  store.get('/api/store/items/:id', (request, reply) => {
    reply.header('x-request-id', request.id)
    const text = request.params.id
    if (!INTEGER.test(text)) return sendError(reply, apiError(400, 'bad_request', "plugin 'store' failed: invalid_argument"))
    const body = storeSql.get.get(BigInt(text))
    reply.header('content-type', 'text/plain; charset=utf-8')
    if (body === undefined) return reply.code(404).send('no such item')
    return reply.send(body)
  })
})

app.post('/api/catalog/products', (request, reply) => {
  reply.header('x-request-id', request.id)
  const body = jsonObject(request, reply)
  if (!body) return
  const input = validateProduct(body)
  if (!input.value) return sendError(reply, apiError(422, 'invalid_field', `${input.field}: ${input.message}`, input.field))
  const p = input.value
  const now = nowIso()
  let id
  try {
    id = Number(catalogSql.insertProduct.run(p.sku, p.name, p.description, p.price_cents, p.currency, p.stock, now, now).lastInsertRowid)
  } catch (e) {
    if (e.code === 'SQLITE_CONSTRAINT_UNIQUE' && e.message.includes('sku')) {
      return sendError(reply, apiError(409, 'duplicate_sku', `a product with sku ${p.sku} exists`, 'sku'))
    }
    throw e
  }
  reply.code(201).header('location', `${request.url.split('?')[0].replace(/\/+$/, '')}/${id}`)
  return reply.send({ id, sku: p.sku, name: p.name, description: p.description, price_cents: p.price_cents, currency: p.currency, stock: p.stock, created_at: now, updated_at: now })
})

app.get('/api/catalog/products/:id', (request, reply) => {
  reply.header('x-request-id', request.id)
  const product = POSITIVE_ID.test(request.params.id) ? catalogSql.product.get(Number(request.params.id)) : undefined
  if (!product) return sendError(reply, apiError(404, 'not_found', 'no such product'))
  return reply.send(product)
})

app.post('/api/orders/orders', (request, reply) => {
  reply.header('x-request-id', request.id)
  const body = jsonObject(request, reply)
  if (!body) return
  const input = validateOrder(body)
  if (!input.lines) return sendError(reply, apiError(422, 'invalid_field', `${input.field}: ${input.message}`, input.field))
  let key = request.headers['idempotency-key']
  if (key === undefined) {
    key = null
  } else if (!IDEMPOTENCY_KEY.test(key)) {
    return sendError(reply, apiError(400, 'invalid_idempotency_key', 'Idempotency-Key must be 1 to 255 visible ASCII characters'))
  }
  const answer = placeOrderRequest(key, input.lines, request.id)
  if (answer.error) return sendError(reply, answer)
  if (answer.replayed) reply.header('idempotent-replayed', 'true')
  reply.code(answer.http).header('location', `${request.url.split('?')[0].replace(/\/+$/, '')}/${answer.id}`)
  return reply.send(answer.body)
})

app.get('/api/orders/orders/:id', (request, reply) => {
  reply.header('x-request-id', request.id)
  const order = POSITIVE_ID.test(request.params.id) ? loadOrder(Number(request.params.id)) : null
  if (!order) return sendError(reply, apiError(404, 'not_found', 'no such order'))
  return reply.send(orderJson(order))
})

// --- start and stop ------------------------------------------------------------------------------

let closing = false
function shutdown() {
  if (closing) return
  closing = true
  app.close().finally(() => {
    for (const db of new Set([storeDb, catalogDb, ordersDb])) db.close()
    process.exit(0)
  })
}
process.on('SIGTERM', shutdown)
process.on('SIGINT', shutdown)

const colon = args.listen.lastIndexOf(':')
app.listen({ host: args.listen.slice(0, colon), port: Number(args.listen.slice(colon + 1)) }).then(() => {
  const port = app.server.address().port
  if (args.portFile) {
    fs.writeFileSync(`${args.portFile}.tmp`, `${port}\n`)
    fs.renameSync(`${args.portFile}.tmp`, args.portFile)
  } else {
    process.stdout.write(`listening on http://127.0.0.1:${port} (layout ${args.layout}, data ${dataDir})\n`)
  }
}, err => {
  process.stderr.write(`server.js: cannot listen on ${args.listen}: ${err.message}\n`)
  process.exit(1)
})
