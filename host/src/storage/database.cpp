#include "storage/database.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <stdexcept>

#include <sys/stat.h>

#include "observability/log.hpp"
#include "storage/engine_support.hpp"
#include "storage/offline.hpp"
#include "storage/postgres/postgres_database.hpp"
#include "storage/sqlite/sqlite_database.hpp"

namespace keel::host::storage {
namespace {

namespace fs = std::filesystem;

thread_local std::string tl_error;
thread_local bool tl_in_callback = false;

}  // namespace

const std::string& last_error() noexcept { return tl_error; }
std::string& error_text() noexcept { return tl_error; }
void clear_error() noexcept { tl_error.clear(); }

keel_status fail(keel_status status, std::string message) {
  tl_error = std::move(message);
  return status;
}

CallbackScope::CallbackScope() noexcept { tl_in_callback = true; }
CallbackScope::~CallbackScope() { tl_in_callback = false; }

keel_status enter_call() {
  tl_error.clear();
  if (tl_in_callback)
    return fail(KEEL_ERR_INVALID_ARGUMENT, "storage called from inside a row or entry callback; collect the rows first");
  return KEEL_OK;
}

std::int64_t now_unix_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void Counters::record(std::chrono::steady_clock::time_point start, keel_status st) noexcept {
  const auto ns = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start).count());
  statements_.fetch_add(1, std::memory_order_relaxed);
  nanos_.fetch_add(ns, std::memory_order_relaxed);
  const double seconds = static_cast<double>(ns) / 1e9;
  std::size_t b = 0;
  while (b < Stats::kBucketBounds.size() && seconds > Stats::kBucketBounds[b]) ++b;
  buckets_[b].fetch_add(1, std::memory_order_relaxed);
  if (st < 0) {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (st == KEEL_ERR_STORAGE_FULL) full_.fetch_add(1, std::memory_order_relaxed);
  }
}

Stats Counters::snapshot() const noexcept {
  Stats out;
  out.statements = statements_.load(std::memory_order_relaxed);
  out.errors = errors_.load(std::memory_order_relaxed);
  out.busy = busy_.load(std::memory_order_relaxed);
  out.full = full_.load(std::memory_order_relaxed);
  out.seconds_total = static_cast<double>(nanos_.load(std::memory_order_relaxed)) / 1e9;
  for (std::size_t i = 0; i < out.buckets.size(); ++i) out.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
  return out;
}

keel_status check_kv_key(std::string_view key) {
  if (key.empty()) return fail(KEEL_ERR_INVALID_ARGUMENT, "empty key");
  if (key.size() > KEEL_KV_MAX_KEY_BYTES)
    return fail(KEEL_ERR_INVALID_ARGUMENT, "key of " + std::to_string(key.size()) + " bytes exceeds " +
                                               std::to_string(KEEL_KV_MAX_KEY_BYTES));
  return KEEL_OK;
}

keel_status check_kv_put(const keel_kv_put_args& args, std::string_view& key) {
  if ((args.key.ptr == nullptr && args.key.len != 0) || (args.value.ptr == nullptr && args.value.len != 0))
    return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_put: key or value has a NULL pointer and a non-zero length");
  key = args.key.len == 0 ? std::string_view{} : std::string_view(args.key.ptr, args.key.len);
  if (auto st = check_kv_key(key); st < 0) return st;
  if (args.flags != 0) return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_put flags must be 0");
  if (args.ttl_ms < 0) return fail(KEEL_ERR_INVALID_ARGUMENT, "negative ttl_ms");
  if (args.expected_version < KEEL_KV_ANY_VERSION) return fail(KEEL_ERR_INVALID_ARGUMENT, "expected_version below -1");
  return KEEL_OK;
}

keel_status check_kv_version(const KvRow& row, std::int64_t expected, std::string_view what) {
  if (expected == KEEL_KV_ANY_VERSION) return KEEL_OK;
  if (expected == 0 && row.found)
    return fail(KEEL_ERR_CONFLICT, std::string(what) + ": the key exists (version " + std::to_string(row.version) +
                                       "), expected it absent");
  if (expected > 0 && (!row.found || row.version != expected))
    return fail(KEEL_ERR_CONFLICT, std::string(what) + ": expected version " + std::to_string(expected) + ", found " +
                                       (row.found ? "version " + std::to_string(row.version) : "no such key"));
  return KEEL_OK;
}

std::int64_t kv_expiry(std::int64_t now, std::int64_t ttl_ms) noexcept {
  // Saturate instead of overflowing (a huge ttl_ms would wrap to an already expired time).
  return ttl_ms <= 0 ? 0 : ttl_ms > INT64_MAX - now ? INT64_MAX : now + ttl_ms;
}

KvListing::KvListing(std::string_view prefix, std::string_view start_after, std::uint32_t max, keel_kv_entry_fn f,
                     void* u)
    : upper(prefix), fn(f), user(u), limit(std::min<std::uint32_t>(max, KEEL_KV_MAX_LIST)) {
  // Keys with the prefix form the range [prefix, successor): the prefix with its last byte
  // below 0xFF incremented and the 0xFF bytes after it dropped. All 0xFF: no upper bound.
  while (!upper.empty() && static_cast<unsigned char>(upper.back()) == 0xFF) upper.pop_back();
  if (!upper.empty()) upper.back() = static_cast<char>(static_cast<unsigned char>(upper.back()) + 1);
  lower = start_after > prefix ? start_after : prefix;
  exclusive = start_after >= prefix && !start_after.empty();
}

int32_t KvListing::on_row(void* self, const keel_sql_value* v, const keel_host_bytes*, std::size_t) {
  auto& l = *static_cast<KvListing*>(self);
  if (l.stopped || l.seen == l.limit) {
    l.more = true;
    return 1;
  }
  ++l.seen;
  keel_kv_entry e{};
  e.struct_size = sizeof(keel_kv_entry);
  e.key = v[0].bytes;
  e.value = v[1].bytes;
  e.version = v[2].integer;
  e.expires_unix_ms = v[3].integer;
  l.stopped = l.fn(l.user, &e) != 0;
  return 0;
}

keel_status Database::kv_get(keel_txn txn, std::string_view key, keel_kv_entry* out) {
  if (auto st = enter_call(); st < 0) return st;
  if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_get needs an output entry");
  thread_local std::string key_copy, value_copy;
  KvRow found;
  const keel_sql_param p[2] = {{KEEL_SQL_BLOB, 0, 0, 0, {key.data(), key.size()}},
                               {KEEL_SQL_INTEGER, 0, now_unix_ms(), 0, {}}};
  auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
    *static_cast<KvRow*>(user) = {true, v[1].integer, v[2].integer};
    value_copy.assign(v[0].bytes.ptr != nullptr ? v[0].bytes.ptr : "", v[0].bytes.len);
    return 1;
  };
  const auto st = exec_host(txn, kKvGet, p, {sink, &found}, nullptr);
  if (st < 0) return st;
  if (!found.found) return fail(KEEL_ERR_NOT_FOUND, "no such key");
  key_copy.assign(key);
  out->reserved = 0;
  if (KEEL_HAS_FIELD(out, keel_kv_entry, key)) out->key = {key_copy.data(), key_copy.size()};
  if (KEEL_HAS_FIELD(out, keel_kv_entry, value)) out->value = {value_copy.data(), value_copy.size()};
  if (KEEL_HAS_FIELD(out, keel_kv_entry, version)) out->version = found.version;
  if (KEEL_HAS_FIELD(out, keel_kv_entry, expires_unix_ms)) out->expires_unix_ms = found.expires;
  return KEEL_OK;
}

keel_status Database::kv_list(keel_txn txn, std::string_view prefix, std::string_view start_after,
                              std::uint32_t limit, keel_kv_entry_fn fn, void* user, std::uint32_t* out_more) {
  if (auto st = enter_call(); st < 0) return st;
  if (fn == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_list needs an entry callback");
  if (limit == 0) return fail(KEEL_ERR_INVALID_ARGUMENT, "kv_list limit must be at least 1");
  KvListing listing{prefix, start_after, limit, fn, user};
  const auto& upper = listing.upper;
  const keel_sql_param p[6] = {{KEEL_SQL_BLOB, 0, 0, 0, {listing.lower.data(), listing.lower.size()}},
                               {KEEL_SQL_INTEGER, 0, listing.exclusive ? 1 : 0, 0, {}},
                               {KEEL_SQL_INTEGER, 0, upper.empty() ? 0 : 1, 0, {}},
                               {KEEL_SQL_BLOB, 0, 0, 0, {upper.data(), upper.size()}},
                               {KEEL_SQL_INTEGER, 0, now_unix_ms(), 0, {}},
                               {KEEL_SQL_INTEGER, 0, static_cast<std::int64_t>(listing.limit) + 1, 0, {}}};
  const auto st = exec_host(txn, kKvList, p, {&KvListing::on_row, &listing}, nullptr);
  if (st >= 0 && out_more != nullptr) *out_more = listing.more ? 1u : 0u;
  return st;
}

std::string Database::location() const { return describe_location(options_); }

std::unique_ptr<Database> open_database(Options options) {
  switch (options.engine) {
    case StorageEngine::kPostgres: return std::make_unique<PostgresDatabase>(std::move(options));
    case StorageEngine::kSqlite: break;
  }
  return std::make_unique<SqliteDatabase>(std::move(options));
}

void prepare_data_dir(const fs::path& data_dir) {
  const auto name = data_dir.string();
  if (::mkdir(name.c_str(), 0700) == 0) return;  // new: private from the start
  if (errno == ENOENT) {  // a parent is missing: make the parents as usual, then this one
    std::error_code ec;
    fs::create_directories(data_dir.parent_path(), ec);
    if (ec) throw std::runtime_error("cannot create data_dir " + name + ": " + ec.message());
    if (::mkdir(name.c_str(), 0700) == 0) return;
  }
  struct stat st {};
  if (errno != EEXIST || ::stat(name.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    throw std::runtime_error("cannot create data_dir " + name + ": " + std::strerror(errno));
  // An existing directory keeps its mode (it may be a mount point or shared on purpose); the
  // database files in it are 0600 whatever it is.
  if ((st.st_mode & 077) != 0)
    observability::logger("storage")->warn(
        "data_dir {} can be entered by other users (mode {:o}); the database files are private, but "
        "chmod 0700 the directory to hide their names and sizes too",
        name, st.st_mode & 07777);
}

}  // namespace keel::host::storage
