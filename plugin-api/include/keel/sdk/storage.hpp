#pragma once
// keel::sdk::Database: the plugin's own SQL database and key-value store (extension
// "keel.storage/1", keel/storage.h), wrapped in C++ types.
//
//   keel::sdk::Database db{host};                         // in the plugin constructor
//   auto tx = db.begin();                                 // RAII: rolls back unless committed
//   if (!tx) return tx.status();
//   KEEL_TRY(tx->exec("INSERT INTO notes (body) VALUES (?)", {body}));
//   KEEL_TRY(tx->commit());
//   std::optional<std::int64_t> count;
//   KEEL_TRY(db.query_value("SELECT count(*) FROM notes", {}, count));
//   db.query("SELECT id, body FROM notes WHERE id > ?", {after}, [&](const keel::sdk::Row& row) {
//     ids.push_back(row.get<std::int64_t>("id"));
//   });
//
// Every call blocks until the database answers: use it from routes marked "blocking": true,
// from event handlers or from your own threads. Calls are noexcept and return a Status whose
// message carries the database's own text (e.g. "UNIQUE constraint failed: notes.slug").
// Database, Transaction and Kv are cheap handles; share them across threads freely (one
// Transaction is used by one thread at a time).

#include <keel/plugin.h>
#include <keel/sdk/detail/convert.hpp>
#include <keel/sdk/host.hpp>
#include <keel/sdk/status.hpp>
#include <keel/storage.h>

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <initializer_list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace keel::sdk {

/// Bytes to bind as a BLOB (a plain string binds as TEXT).
struct Blob {
  std::string_view bytes;
};

/// The type of a stored value (SQLite is dynamically typed: it is per value, not per column).
enum class SqlType : std::int32_t {
  kNull = KEEL_SQL_NULL,
  kInteger = KEEL_SQL_INTEGER,
  kReal = KEEL_SQL_REAL,
  kText = KEEL_SQL_TEXT,
  kBlob = KEEL_SQL_BLOB,
};

/// One statement parameter. Converts implicitly from nullptr / std::nullopt (NULL), integers and
/// bool (INTEGER), floating point (REAL), strings (TEXT), Blob (BLOB) and std::optional of those.
/// Strings are borrowed, not copied: keep them alive until the call returns.
class Param {
 public:
  Param(std::nullptr_t) noexcept : p_{KEEL_SQL_NULL, 0, 0, 0, {}} {}
  Param(std::nullopt_t) noexcept : p_{KEEL_SQL_NULL, 0, 0, 0, {}} {}
  template <std::integral T>
  Param(T v) noexcept : p_{KEEL_SQL_INTEGER, 0, static_cast<std::int64_t>(v), 0, {}} {}
  template <std::floating_point T>
  Param(T v) noexcept : p_{KEEL_SQL_REAL, 0, 0, static_cast<double>(v), {}} {}
  Param(std::string_view v) noexcept : p_{KEEL_SQL_TEXT, 0, 0, 0, detail::lend(v)} {}
  Param(const char* v) noexcept : Param(std::string_view{v}) {}
  Param(const std::string& v) noexcept : Param(std::string_view{v}) {}
  Param(Blob v) noexcept : p_{KEEL_SQL_BLOB, 0, 0, 0, detail::lend(v.bytes)} {}
  template <class T>
  Param(const std::optional<T>& v) noexcept : Param(v ? Param(*v) : Param(nullptr)) {}

  [[nodiscard]] const keel_sql_param& c() const noexcept { return p_; }

 private:
  keel_sql_param p_;
};

/// One result row, valid only inside the query callback that received it. Typed access throws
/// keel::sdk::Error (kInternal, naming the column and both types) on a mismatch; the SDK turns
/// that into the failing Status of query(). Use std::optional<T> for nullable columns.
class Row {
 public:
  Row(const keel_sql_value* values, const keel_host_bytes* names, std::size_t count) noexcept
      : values_{values}, names_{names}, count_{count} {}

  [[nodiscard]] std::size_t size() const noexcept { return count_; }
  [[nodiscard]] std::string_view name(std::size_t i) const noexcept { return i < count_ ? detail::view(names_[i]) : std::string_view{}; }
  [[nodiscard]] SqlType type(std::size_t i) const { return static_cast<SqlType>(at(i).type); }
  [[nodiscard]] bool is_null(std::size_t i) const { return at(i).type == KEEL_SQL_NULL; }

  /// Column i as T: std::int64_t (or any integral type, range-checked), bool, double (INTEGER
  /// widens), std::string / std::string_view (TEXT or BLOB; a view is valid inside the callback
  /// only), or std::optional of those (NULL gives std::nullopt).
  template <class T>
  [[nodiscard]] T get(std::size_t i) const {
    const keel_sql_value& v = at(i);
    if constexpr (is_optional<T>::value) {
      if (v.type == KEEL_SQL_NULL) return std::nullopt;
      return get<typename T::value_type>(i);
    } else if constexpr (std::is_same_v<T, bool>) {
      expect(i, v.type == KEEL_SQL_INTEGER, "INTEGER");
      return v.integer != 0;
    } else if constexpr (std::is_integral_v<T>) {
      expect(i, v.type == KEEL_SQL_INTEGER, "INTEGER");
      if (!std::in_range<T>(v.integer)) fail(i, "an integer out of range for the requested type");
      return static_cast<T>(v.integer);
    } else if constexpr (std::is_floating_point_v<T>) {
      expect(i, v.type == KEEL_SQL_REAL || v.type == KEEL_SQL_INTEGER, "REAL");
      return static_cast<T>(v.type == KEEL_SQL_REAL ? v.real : static_cast<double>(v.integer));
    } else if constexpr (std::is_same_v<T, std::string_view> || std::is_same_v<T, std::string>) {
      expect(i, v.type == KEEL_SQL_TEXT || v.type == KEEL_SQL_BLOB, "TEXT");
      return T{detail::view(v.bytes)};
    } else {
      static_assert(sizeof(T) == 0, "Row::get<T>: T must be integral, bool, floating point, std::string, std::string_view or std::optional of those");
    }
  }

  /// Column named `column` as T (see get(i)); throws if no column has that name.
  template <class T>
  [[nodiscard]] T get(std::string_view column) const {
    for (std::size_t i = 0; i < count_; ++i)
      if (detail::view(names_[i]) == column) return get<T>(i);
    throw Error{detail::make_status(KEEL_ERR_INTERNAL, std::string{"no column named '"}.append(column).append("' in the result"))};
  }

 private:
  template <class T>
  struct is_optional : std::false_type {};
  template <class T>
  struct is_optional<std::optional<T>> : std::true_type {};

  const keel_sql_value& at(std::size_t i) const {
    if (i >= count_) fail(i, "a column index past the end of the row");
    return values_[i];
  }
  void expect(std::size_t i, bool ok, std::string_view wanted) const {
    if (ok) return;
    std::string what{"a value of type "};
    what.append(type_name(values_[i].type)).append(" where ").append(wanted).append(" was requested");
    fail(i, what);
  }
  static std::string_view type_name(keel_sql_type t) noexcept {
    switch (t) {
      case KEEL_SQL_NULL: return "NULL";
      case KEEL_SQL_INTEGER: return "INTEGER";
      case KEEL_SQL_REAL: return "REAL";
      case KEEL_SQL_TEXT: return "TEXT";
      case KEEL_SQL_BLOB: return "BLOB";
      default: return "unknown";
    }
  }
  [[noreturn]] void fail(std::size_t i, std::string_view what) const {
    std::string message{"column "};
    if (i < count_) message.append("'").append(detail::view(names_[i])).append("'");
    else detail::append_decimal(message, i);
    message.append(" holds ").append(what);
    throw Error{detail::make_status(KEEL_ERR_INTERNAL, message)};
  }

  const keel_sql_value* values_;
  const keel_host_bytes* names_;
  std::size_t count_;
};

/// What a statement did.
struct ExecResult {
  std::int64_t changes = 0;         ///< rows inserted, updated or deleted
  std::int64_t last_insert_id = 0;  ///< rowid of the last inserted row
  std::int64_t rows = 0;            ///< rows returned
};

/// One key-value entry (copied out of the host).
struct KvEntry {
  std::string key;
  std::string value;
  std::int64_t version = 0;          ///< grows by one per put; use it for compare-and-set
  std::int64_t expires_unix_ms = 0;  ///< 0 = never
};

/// Options of Kv::put.
struct KvPut {
  static constexpr std::int64_t kAnyVersion = KEEL_KV_ANY_VERSION;
  /// kAnyVersion: overwrite; 0: create only (kConflict if present); > 0: compare-and-set.
  std::int64_t expected_version = kAnyVersion;
  std::chrono::milliseconds ttl{0};  ///< > 0: expires after this long
};

class Transaction;

namespace detail {

/// The extension table, the plugin's ctx and a transaction id (0 = autocommit): everything a
/// storage call needs. Shared by Database and Transaction.
class StorageRef {
 public:
  StorageRef() noexcept = default;
  StorageRef(const keel_storage_api* api, keel_host_ctx* ctx, keel_txn txn, Status unavailable) noexcept
      : api_{api}, ctx_{ctx}, txn_{txn}, unavailable_{std::move(unavailable)} {}

  [[nodiscard]] bool available() const noexcept { return api_ != nullptr; }
  [[nodiscard]] const Status& unavailable_status() const noexcept { return unavailable_; }
  [[nodiscard]] const keel_storage_api* api() const noexcept { return api_; }
  [[nodiscard]] keel_host_ctx* ctx() const noexcept { return ctx_; }
  [[nodiscard]] keel_txn txn() const noexcept { return txn_; }

  /// Status for a host result code, with the host's error_message() as the message.
  [[nodiscard]] Status result(keel_status rc) const noexcept {
    if (rc >= 0) return {};
    return make_status(rc, view(api_->error_message(ctx_)));
  }

  template <class OnRow>
  Status run(std::string_view sql, std::span<const Param> params, OnRow* on_row, ExecResult* out) const noexcept {
    if (api_ == nullptr) return unavailable_;
    // Parameters go to the host as a contiguous keel_sql_param array: on the stack up to 16.
    keel_sql_param small[16];
    std::vector<keel_sql_param> large;
    keel_sql_param* array = small;
    if (params.size() > 16) {
      try {
        large.resize(params.size());
      } catch (...) {
        return make_status(KEEL_ERR_INTERNAL, "out of memory binding parameters");
      }
      array = large.data();
    }
    for (std::size_t i = 0; i < params.size(); ++i) array[i] = params[i].c();
    keel_sql_result result{};
    result.struct_size = static_cast<std::uint32_t>(sizeof(keel_sql_result));
    struct Context {
      OnRow* on_row;
      std::exception_ptr error;
    } context{on_row, nullptr};
    keel_sql_row_fn fn = nullptr;
    if constexpr (!std::is_same_v<OnRow, std::nullptr_t>) {
      fn = [](void* user, const keel_sql_value* values, const keel_host_bytes* names, std::size_t count) -> std::int32_t {
        auto& c = *static_cast<Context*>(user);
        try {
          const Row row{values, names, count};
          if constexpr (std::is_same_v<std::invoke_result_t<OnRow&, const Row&>, bool>) {
            return (*c.on_row)(row) ? 0 : 1;
          } else {
            (*c.on_row)(row);
            return 0;
          }
        } catch (...) {
          // Exceptions never cross the ABI: stop here and report after exec returns.
          c.error = std::current_exception();
          return 1;
        }
      };
    }
    const keel_status rc = api_->exec(ctx_, txn_, lend(sql), params.empty() ? nullptr : array, params.size(), fn,
                                            &context, &result);
    if (context.error) {
      try {
        std::rethrow_exception(context.error);
      } catch (const Error& e) {
        return e.status();
      } catch (const std::exception& e) {
        return make_status(KEEL_ERR_INTERNAL, e.what());
      } catch (...) {
        return make_status(KEEL_ERR_INTERNAL, "the row callback threw");
      }
    }
    if (rc < 0) return result_of(rc);
    if (out != nullptr) *out = ExecResult{result.changes, result.last_insert_id, result.rows};
    return {};
  }

 private:
  [[nodiscard]] Status result_of(keel_status rc) const noexcept { return result(rc); }

  const keel_storage_api* api_ = nullptr;
  keel_host_ctx* ctx_ = nullptr;
  keel_txn txn_ = KEEL_TXN_NONE;
  Status unavailable_;
};

}  // namespace detail

/// SQL and key-value operations, in autocommit mode (Database) or inside a transaction
/// (Transaction). Not used directly.
class SqlOps {
 public:
  /// Runs one statement; rows, if any, are discarded.
  Status exec(std::string_view sql, std::initializer_list<Param> params = {}, ExecResult* out = nullptr) const noexcept {
    return ref_.run<std::nullptr_t>(sql, std::span<const Param>{params.begin(), params.size()}, nullptr, out);
  }
  /// Same with a parameter list built at run time.
  Status exec(std::string_view sql, std::span<const Param> params, ExecResult* out = nullptr) const noexcept {
    return ref_.run<std::nullptr_t>(sql, params, nullptr, out);
  }

  /// Runs one statement and calls on_row(const Row&) for each row; on_row may return bool
  /// (false stops early). An exception thrown by on_row stops the query and becomes its Status.
  template <class F>
  Status query(std::string_view sql, std::initializer_list<Param> params, F&& on_row, ExecResult* out = nullptr) const noexcept {
    return ref_.run(sql, std::span<const Param>{params.begin(), params.size()}, &on_row, out);
  }
  template <class F>
  Status query(std::string_view sql, std::span<const Param> params, F&& on_row, ExecResult* out = nullptr) const noexcept {
    return ref_.run(sql, params, &on_row, out);
  }

  /// The first column of the first row as T (see Row::get), or std::nullopt without rows.
  template <class T>
  Status query_value(std::string_view sql, std::initializer_list<Param> params, std::optional<T>& out) const noexcept {
    out.reset();
    return query(sql, params, [&](const Row& row) {
      out = row.get<T>(0);
      return false;
    });
  }

  /// Reads one key: ok with `out` set, or ok with std::nullopt when absent or expired.
  Status kv_get(std::string_view key, std::optional<KvEntry>& out) const noexcept {
    out.reset();
    if (!ref_.available()) return ref_.unavailable_status();
    keel_kv_entry e{};
    e.struct_size = static_cast<std::uint32_t>(sizeof(keel_kv_entry));
    const keel_status rc = ref_.api()->kv_get(ref_.ctx(), ref_.txn(), detail::lend(key), &e);
    if (rc == KEEL_ERR_NOT_FOUND) return {};
    if (rc < 0) return ref_.result(rc);
    try {
      out = KvEntry{std::string{detail::view(e.key)}, std::string{detail::view(e.value)}, e.version, e.expires_unix_ms};
    } catch (...) {
      return detail::make_status(KEEL_ERR_INTERNAL, "out of memory copying a kv entry");
    }
    return {};
  }

  /// Writes one key (see KvPut); `new_version` receives the entry's version afterwards.
  /// @return ok; kConflict when expected_version does not match; kStorageFull; kBusy.
  Status kv_put(std::string_view key, std::string_view value, KvPut options = {},
                std::int64_t* new_version = nullptr) const noexcept {
    if (!ref_.available()) return ref_.unavailable_status();
    keel_kv_put_args args{};
    args.struct_size = static_cast<std::uint32_t>(sizeof(keel_kv_put_args));
    args.key = detail::lend(key);
    args.value = detail::lend(value);
    args.expected_version = options.expected_version;
    args.ttl_ms = static_cast<std::int64_t>(options.ttl.count());
    return ref_.result(ref_.api()->kv_put(ref_.ctx(), ref_.txn(), &args, new_version));
  }

  /// Deletes one key. @return ok; kNotFound when absent; kConflict on a version mismatch.
  Status kv_delete(std::string_view key, std::int64_t expected_version = KvPut::kAnyVersion) const noexcept {
    if (!ref_.available()) return ref_.unavailable_status();
    return ref_.result(ref_.api()->kv_delete(ref_.ctx(), ref_.txn(), detail::lend(key), expected_version));
  }

  /// Up to `limit` live entries with keys starting with `prefix`, after `start_after`, in key
  /// byte order. `more` is set when entries follow: pass out.back().key as the next start_after.
  Status kv_list(std::string_view prefix, std::string_view start_after, std::uint32_t limit, std::vector<KvEntry>& out,
                 bool* more = nullptr) const noexcept {
    out.clear();
    if (!ref_.available()) return ref_.unavailable_status();
    struct Sink {
      std::vector<KvEntry>* out;
      bool failed = false;
    } sink{&out};
    auto fn = [](void* user, const keel_kv_entry* e) -> std::int32_t {
      auto& s = *static_cast<Sink*>(user);
      try {
        s.out->push_back(KvEntry{std::string{detail::view(e->key)}, std::string{detail::view(e->value)}, e->version,
                                 e->expires_unix_ms});
        return 0;
      } catch (...) {
        s.failed = true;
        return 1;
      }
    };
    std::uint32_t has_more = 0;
    const keel_status rc = ref_.api()->kv_list(ref_.ctx(), ref_.txn(), detail::lend(prefix), detail::lend(start_after),
                                               limit, fn, &sink, &has_more);
    if (rc < 0) return ref_.result(rc);
    if (sink.failed) return detail::make_status(KEEL_ERR_INTERNAL, "out of memory listing kv entries");
    if (more != nullptr) *more = has_more != 0;
    return {};
  }

 protected:
  SqlOps() noexcept = default;
  explicit SqlOps(detail::StorageRef ref) noexcept : ref_{std::move(ref)} {}
  detail::StorageRef ref_;
};

/// Either a value or the Status explaining why there is none.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) noexcept : value_{std::move(value)} {}
  Result(Status status) noexcept : status_{std::move(status)} {}
  [[nodiscard]] bool ok() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return ok(); }
  /// The failure (success when ok()).
  [[nodiscard]] const Status& status() const noexcept { return status_; }
  T& operator*() noexcept { return *value_; }
  T* operator->() noexcept { return &*value_; }

 private:
  std::optional<T> value_;
  Status status_;
};

/// An open transaction (or savepoint). Move-only; rolls back when destroyed unless commit()
/// or rollback() ran. The whole transaction holds the plugin's single writer: keep it short.
class Transaction : public SqlOps {
 public:
  Transaction(Transaction&& other) noexcept : SqlOps{std::move(other.ref_)}, open_{std::exchange(other.open_, false)} {}
  Transaction& operator=(Transaction&& other) noexcept {
    if (this != &other) {
      static_cast<void>(rollback());
      ref_ = std::move(other.ref_);
      open_ = std::exchange(other.open_, false);
    }
    return *this;
  }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() { static_cast<void>(rollback()); }

  /// Makes the changes durable (or, for a savepoint, merges them into the parent).
  Status commit() noexcept {
    if (!open_) return detail::make_status(KEEL_ERR_NOT_FOUND, "transaction already finished");
    open_ = false;
    return ref_.result(ref_.api()->commit(ref_.ctx(), ref_.txn()));
  }
  /// Undoes the changes (for a savepoint: only those made since it began).
  Status rollback() noexcept {
    if (!open_) return {};
    open_ = false;
    return ref_.result(ref_.api()->rollback(ref_.ctx(), ref_.txn()));
  }
  /// A nested savepoint: its own commit/rollback, inside this transaction.
  Result<Transaction> savepoint() const noexcept { return begin_under(ref_, ref_.txn()); }

  /// Publishes an event of a durable topic (manifest "events.durable") as part of this
  /// transaction: it is delivered, at least once, if and only if the transaction commits.
  /// @return ok; kInvalidArgument for an in-memory topic (publish it with Host::publish after
  /// the commit); kPermissionDenied for an undeclared topic; kUnsupported on an older host.
  Status publish(std::string_view topic, std::string_view payload, std::string_view content_type = kApplicationJson,
                 TraceContext trace = {}) const noexcept {
    if (!KEEL_HAS_FN(ref_.api(), keel_storage_api, publish))
      return detail::make_status(KEEL_ERR_UNSUPPORTED, "host lacks transactional publish");
    keel_publish_args args{};
    args.struct_size = static_cast<std::uint32_t>(sizeof(keel_publish_args));
    args.topic = detail::lend(topic);
    args.payload = detail::lend(payload);
    args.content_type = detail::lend(content_type);
    args.traceparent = detail::lend(trace.traceparent);
    args.tracestate = detail::lend(trace.tracestate);
    return ref_.result(ref_.api()->publish(ref_.ctx(), ref_.txn(), &args));
  }
  [[nodiscard]] bool open() const noexcept { return open_; }
  /// The ABI id, e.g. to publish an event in this transaction.
  [[nodiscard]] keel_txn id() const noexcept { return ref_.txn(); }

 private:
  friend class Database;
  explicit Transaction(detail::StorageRef ref) noexcept : SqlOps{std::move(ref)}, open_{true} {}

  static Result<Transaction> begin_under(const detail::StorageRef& ref, keel_txn parent) noexcept {
    if (!ref.available()) return ref.unavailable_status();
    keel_txn id = KEEL_TXN_NONE;
    const keel_status rc = ref.api()->begin(ref.ctx(), parent, &id);
    if (rc < 0) return ref.result(rc);
    return Transaction{detail::StorageRef{ref.api(), ref.ctx(), id, {}}};
  }

  bool open_ = false;
};

/// Deduplicates event deliveries (durable topics are at-least-once): records `event_id` in the
/// key-value store (key "keel.delivered/<id>", kept for `remember`) and sets `first` to true the
/// first time, false for a redelivery. Call it inside the transaction that applies the event,
/// so the record and the effect commit together: a redelivered event then changes nothing.
///
///   auto tx = db.begin();  bool first = false;
///   KEEL_TRY(keel::sdk::first_delivery(*tx, event.event_id(), first));
///   if (first) { ...apply the event... }
///   KEEL_TRY(tx->commit());
inline Status first_delivery(const SqlOps& ops, std::string_view event_id, bool& first,
                             std::chrono::milliseconds remember = std::chrono::hours(24 * 7)) noexcept {
  first = false;
  try {
    std::string key{"keel.delivered/"};
    key.append(event_id);
    const Status st = ops.kv_put(key, {}, KvPut{0, remember});
    if (st.code() == StatusCode::kConflict) return {};
    if (!st.ok()) return st;
    first = true;
    return {};
  } catch (...) {
    return detail::make_status(KEEL_ERR_INTERNAL, "out of memory");
  }
}

/// The plugin's database. Construct it from the Host (in the plugin constructor); it needs
/// "ext:keel.storage/1" in the manifest permissions. Without it every call returns the reason.
class Database : public SqlOps {
 public:
  explicit Database(const Host& host) noexcept : SqlOps{open(host)} {}

  /// True when the host gave this plugin a database.
  [[nodiscard]] bool available() const noexcept { return ref_.available(); }
  /// Why not, when !available().
  [[nodiscard]] const Status& status() const noexcept { return ref_.unavailable_status(); }

  /// Starts a transaction (waits up to the host's busy timeout for the writer).
  Result<Transaction> begin() const noexcept { return Transaction::begin_under(ref_, KEEL_TXN_NONE); }

  /// Compiles `sql` without running it: checks it and tells its shape.
  Status prepare(std::string_view sql, keel_sql_info& info) const noexcept {
    if (!ref_.available()) return ref_.unavailable_status();
    info = keel_sql_info{};
    info.struct_size = static_cast<std::uint32_t>(sizeof(keel_sql_info));
    return ref_.result(ref_.api()->prepare(ref_.ctx(), detail::lend(sql), &info));
  }

 private:
  static detail::StorageRef open(const Host& host) noexcept {
    const void* table = nullptr;
    Status st = host.get_extension(KEEL_STORAGE_EXTENSION_ID, table);
    if (!st.ok()) {
      return detail::StorageRef{nullptr, nullptr, KEEL_TXN_NONE,
                                detail::make_status(KEEL_ERR_PERMISSION_DENIED,
                                                    "no database: the host did not grant keel.storage/1 (add "
                                                    "\"ext:keel.storage/1\" to the manifest permissions)")};
    }
    return detail::StorageRef{static_cast<const keel_storage_api*>(table), host.ctx_for_extensions(), KEEL_TXN_NONE, {}};
  }
};

}  // namespace keel::sdk
