#include "storage/sqlite/sqlite_database.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>

#include <SQLiteCpp/Backup.h>
#include <SQLiteCpp/Database.h>
#include <sqlite3.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "abi/current_request.hpp"
#include "observability/log.hpp"
#include "storage/engine_support.hpp"
#include "storage/sqlite/lockdown.hpp"

namespace keel::host::storage {
namespace {

using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;

/// keel_status for an SQLite result code (docs/storage.md "Errors").
keel_status status_for(int rc) noexcept {
  switch (rc & 0xFF) {
    case SQLITE_OK:
    case SQLITE_ROW:
    case SQLITE_DONE: return KEEL_OK;
    case SQLITE_CONSTRAINT: return KEEL_ERR_CONFLICT;
    case SQLITE_FULL: return KEEL_ERR_STORAGE_FULL;
    case SQLITE_IOERR:
    case SQLITE_CANTOPEN:
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
    case SQLITE_READONLY:
    case SQLITE_PROTOCOL: return KEEL_ERR_UNAVAILABLE;
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return KEEL_ERR_BUSY;
    case SQLITE_AUTH: return KEEL_ERR_PERMISSION_DENIED;
    case SQLITE_TOOBIG: return KEEL_ERR_TOO_LARGE;
    case SQLITE_INTERRUPT: return KEEL_ERR_TIMEOUT;
    case SQLITE_ERROR:
    case SQLITE_RANGE:
    case SQLITE_MISMATCH: return KEEL_ERR_INVALID_ARGUMENT;
    default: return KEEL_ERR_INTERNAL;
  }
}

// The database file and the -wal and -shm files SQLite keeps beside it are readable by the
// host's user only, from their first byte: the main file is created 0600 before SQLite opens it,
// and SQLite gives the -wal and -shm files the main file's mode. Files an older version left
// with a wider mode are narrowed.
void create_private(const fs::path& file) {
  const int fd = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw std::runtime_error(std::string("cannot create it: ") + std::strerror(errno));
  const int narrowed = ::fchmod(fd, 0600);
  const int saved = errno;
  ::close(fd);
  if (narrowed != 0) throw std::runtime_error(std::string("cannot make it private (chmod 0600): ") + std::strerror(saved));
  for (const char* suffix : {"-wal", "-shm"}) {
    const auto side = file.string() + suffix;
    if (::chmod(side.c_str(), 0600) != 0 && errno != ENOENT)
      throw std::runtime_error("cannot make " + side + " private (chmod 0600): " + std::strerror(errno));
  }
}

struct StringHash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// ---------------------------------------------------------------------------------------------

/// One SQLite connection (owned through SQLiteCpp) with its statement caches. Used by one thread
/// at a time: the writer under Impl::writer_mutex, a reader while checked out of the pool.
class Connection {
 public:
  Connection(const fs::path& file, int flags, std::chrono::milliseconds busy, std::uint32_t cache_size)
      : db_(file.string(), flags, static_cast<int>(busy.count())), handle_(db_.getHandle()), capacity_(cache_size) {
    // Lock the connection down: no ATTACH (the limit makes even VACUUM INTO's internal attach
    // fail), no extension loading, no schema-corrupting writes, no untrusted schema functions.
    sqlite3_limit(handle_, SQLITE_LIMIT_ATTACHED, 0);
    sqlite3_db_config(handle_, SQLITE_DBCONFIG_ENABLE_LOAD_EXTENSION, 0, nullptr);
    sqlite3_db_config(handle_, SQLITE_DBCONFIG_DEFENSIVE, 1, nullptr);
    sqlite3_db_config(handle_, SQLITE_DBCONFIG_TRUSTED_SCHEMA, 0, nullptr);
    sqlite3_set_authorizer(handle_, &Connection::authorize, this);
    // Every few thousand virtual-machine steps: a plugin statement past its deadline stops.
    sqlite3_progress_handler(handle_, 4096, &Connection::progress, this);
  }
  ~Connection() {
    for (auto* cache : {&plugin_cache_, &host_cache_})
      for (auto& [sql, entry] : *cache) sqlite3_finalize(entry.stmt);
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] sqlite3* handle() const noexcept { return handle_; }
  SQLite::Database& db() noexcept { return db_; }

  /// Runs `sql` (any number of statements) with sqlite3_exec; `host` lifts the "_keel_" rule.
  keel_status script(std::string_view sql, bool host) {
    const std::string text{sql};
    if (!host && renames_onto_reserved(sql))
      return fail(KEEL_ERR_PERMISSION_DENIED, "a table cannot be renamed to a name starting with _keel_ (the host's)");
    const HostMode mode{*this, host};
    char* err = nullptr;
    denied_ = false;
    const int rc = sqlite3_exec(handle_, text.c_str(), nullptr, nullptr, &err);
    if (rc == SQLITE_OK) return KEEL_OK;
    std::string message = err != nullptr ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    return fail(status_for(denied_ ? SQLITE_AUTH : rc), std::move(message));
  }

  /// The cached prepared statement for `sql`, compiling it on first use. nullptr on failure
  /// (error_text() says why). `host` selects the host's own cache, where "_keel_" tables are allowed.
  sqlite3_stmt* statement(std::string_view sql, bool host, keel_status& status) {
    if (sql.empty()) {  // also a NULL pointer, which sqlite3_prepare would call API misuse
      status = fail(KEEL_ERR_INVALID_ARGUMENT, "no SQL statement in the text (only whitespace or comments)");
      return nullptr;
    }
    auto& cache = host ? host_cache_ : plugin_cache_;
    if (auto it = cache.find(sql); it != cache.end()) {
      it->second.used = ++tick_;
      return it->second.stmt;
    }
    if (sql.size() > static_cast<std::size_t>(INT_MAX)) {
      status = fail(KEEL_ERR_TOO_LARGE, "statement text is larger than 2 GiB");
      return nullptr;
    }
    if (!host && iequals_prefix(skip_filler(sql), "vacuum")) {
      status = fail(KEEL_ERR_PERMISSION_DENIED, "VACUUM is not allowed: the host maintains the database file");
      return nullptr;
    }
    if (!host && renames_onto_reserved(sql)) {
      status = fail(KEEL_ERR_PERMISSION_DENIED, "a table cannot be renamed to a name starting with _keel_ (the host's)");
      return nullptr;
    }
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    const HostMode mode{*this, host};
    denied_ = false;
    const int rc = sqlite3_prepare_v3(handle_, sql.data(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                                      &stmt, &tail);
    if (rc != SQLITE_OK) {
      // A denial on a connection that has not read the schema yet comes back as SQLITE_SCHEMA.
      status = fail(status_for(denied_ ? SQLITE_AUTH : rc), sqlite3_errmsg(handle_));
      return nullptr;
    }
    if (stmt == nullptr) {
      status = fail(KEEL_ERR_INVALID_ARGUMENT, "no SQL statement in the text (only whitespace or comments)");
      return nullptr;
    }
    const auto rest = skip_filler(sql.substr(static_cast<std::size_t>(tail - sql.data())));
    if (!rest.empty()) {
      sqlite3_finalize(stmt);
      status = fail(KEEL_ERR_INVALID_ARGUMENT, "one statement per exec: more SQL follows the first statement at \"" +
                                                   std::string(rest.substr(0, 40)) + "\"");
      return nullptr;
    }
    if (capacity_ == 0) {
      // No cache: keep exactly one statement, replaced on the next prepare.
      for (auto& [text, entry] : cache) sqlite3_finalize(entry.stmt);
      cache.clear();
    } else if (cache.size() >= capacity_) {
      auto oldest = std::min_element(cache.begin(), cache.end(),
                                     [](const auto& a, const auto& b) { return a.second.used < b.second.used; });
      sqlite3_finalize(oldest->second.stmt);
      cache.erase(oldest);
    }
    cache.emplace(std::string(sql), Cached{stmt, ++tick_});
    return stmt;
  }

  /// Marks the statements that run next as the host's own (while the object lives).
  class HostMode {
   public:
    HostMode(Connection& c, bool host) : c_(c), saved_(c.host_mode_) { c_.host_mode_ = host; }
    ~HostMode() { c_.host_mode_ = saved_; }
    HostMode(const HostMode&) = delete;
    HostMode& operator=(const HostMode&) = delete;

   private:
    Connection& c_;
    bool saved_;
  };

 private:
  // SQLite calls this while compiling a statement (also when it recompiles one after a schema
  // change), so the rules hold for every statement a plugin ever runs.
  static int authorize(void* user, int action, const char* a1, const char* a2, const char* /*db*/,
                       const char* /*trigger*/) {
    auto* self = static_cast<Connection*>(user);
    if (self->host_mode_) return SQLITE_OK;
    const int verdict = decide_plugin_action(action, a1, a2);
    if (verdict == SQLITE_DENY) self->denied_ = true;
    return verdict;
  }

  // Only the thread running the statement reads these (SQLite calls the handler on it); the
  // Deadline that sets them lives on that thread too. `abandoned_` is another thread's flag.
  static int progress(void* user) {
    const auto* self = static_cast<Connection*>(user);
    if (self->abandoned_ != nullptr && self->abandoned_->load(std::memory_order_relaxed)) return 1;
    return self->deadline_ns_ != 0 && Clock::now().time_since_epoch().count() > self->deadline_ns_ ? 1 : 0;
  }

 public:
  /// While alive, statements on `c` stop (SQLITE_INTERRUPT) once `deadline` has passed or
  /// `*abandoned` (when given) becomes true.
  class Deadline {
   public:
    Deadline(Connection& c, Clock::time_point deadline, const std::atomic<bool>* abandoned) : c_(c) {
      c_.deadline_ns_ = deadline.time_since_epoch().count();
      c_.abandoned_ = abandoned;
    }
    ~Deadline() {
      c_.deadline_ns_ = 0;
      c_.abandoned_ = nullptr;
    }
    Deadline(const Deadline&) = delete;
    Deadline& operator=(const Deadline&) = delete;

   private:
    Connection& c_;
  };

  /// Whether the statement that just stopped was abandoned rather than past its deadline.
  [[nodiscard]] bool abandoned() const noexcept {
    return abandoned_ != nullptr && abandoned_->load(std::memory_order_relaxed);
  }

 private:

  struct Cached {
    sqlite3_stmt* stmt;
    std::uint64_t used;
  };
  SQLite::Database db_;
  sqlite3* handle_;
  std::uint32_t capacity_;
  std::uint64_t tick_ = 0;
  bool host_mode_ = false;
  bool denied_ = false;  // the authorizer refused something since the last prepare began
  Clock::rep deadline_ns_ = 0;  // steady clock; 0 = none (the host's own statements)
  const std::atomic<bool>* abandoned_ = nullptr;  // CurrentRequest::abandoned of the statement running
  std::unordered_map<std::string, Cached, StringHash, std::equal_to<>> plugin_cache_;
  std::unordered_map<std::string, Cached, StringHash, std::equal_to<>> host_cache_;
};

/// Resets and unbinds a statement when leaving scope, so cached statements hold no pointers
/// into the caller's parameters and release their read snapshot.
struct StatementReset {
  sqlite3_stmt* stmt;
  ~StatementReset() {
    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
  }
};

keel_status bind_params(sqlite3_stmt* stmt, std::span<const keel_sql_param> params) {
  const int expected = sqlite3_bind_parameter_count(stmt);
  if (static_cast<std::size_t>(expected) != params.size())
    return fail(KEEL_ERR_INVALID_ARGUMENT, "the statement has " + std::to_string(expected) + " parameter(s), " +
                                               std::to_string(params.size()) + " given");
  for (std::size_t i = 0; i < params.size(); ++i) {
    const auto& p = params[i];
    const int index = static_cast<int>(i + 1);
    if ((p.type == KEEL_SQL_TEXT || p.type == KEEL_SQL_BLOB) && p.bytes.ptr == nullptr && p.bytes.len != 0)
      return fail(KEEL_ERR_INVALID_ARGUMENT, "parameter " + std::to_string(index) + " has a NULL pointer and length " +
                                                 std::to_string(p.bytes.len));
    int rc = SQLITE_OK;
    const char* bytes = p.bytes.ptr != nullptr ? p.bytes.ptr : "";
    switch (p.type) {
      case KEEL_SQL_NULL: rc = sqlite3_bind_null(stmt, index); break;
      case KEEL_SQL_INTEGER: rc = sqlite3_bind_int64(stmt, index, p.integer); break;
      case KEEL_SQL_REAL: rc = sqlite3_bind_double(stmt, index, p.real); break;
      case KEEL_SQL_TEXT: rc = sqlite3_bind_text64(stmt, index, bytes, p.bytes.len, SQLITE_STATIC, SQLITE_UTF8); break;
      case KEEL_SQL_BLOB:
        // A NULL pointer would bind SQL NULL; an empty blob is a zero-length blob.
        rc = p.bytes.len == 0 ? sqlite3_bind_zeroblob(stmt, index, 0)
                              : sqlite3_bind_blob64(stmt, index, bytes, p.bytes.len, SQLITE_STATIC);
        break;
      default:
        return fail(KEEL_ERR_INVALID_ARGUMENT,
                    "parameter " + std::to_string(index) + " has unknown type " + std::to_string(p.type));
    }
    if (rc != SQLITE_OK)
      return fail(status_for(rc), "parameter " + std::to_string(index) + ": " + sqlite3_errstr(rc));
  }
  return KEEL_OK;
}

keel_host_bytes column_bytes(sqlite3_stmt* stmt, int i, bool text) {
  const void* p = text ? static_cast<const void*>(sqlite3_column_text(stmt, i)) : sqlite3_column_blob(stmt, i);
  const auto n = static_cast<std::size_t>(sqlite3_column_bytes(stmt, i));
  return {n == 0 ? nullptr : static_cast<const char*>(p), n};
}

// The database a "storage": "read" handler runs against on this thread (begin_read_only): its
// Impl, and the reader reserved for it (or null). Plain pointers: no thread_local destructor.
struct ReadOnlyRun {
  const void* owner = nullptr;
  Connection* reader = nullptr;
};
thread_local ReadOnlyRun tl_read_only;

}  // namespace

// ---------------------------------------------------------------------------------------------

struct SqliteDatabase::Impl {
  explicit Impl(const Options& o) : options(o), log(observability::logger("storage")) {}

  const Options& options;
  std::shared_ptr<spdlog::logger> log;

  // The writer and everything about the transaction holding it.
  std::mutex writer_mutex;
  std::condition_variable writer_free;
  std::unique_ptr<Connection> writer;
  std::vector<keel_txn> open;            // the open transaction (front) and its savepoints
  Clock::time_point open_since{};
  std::unordered_set<keel_txn> expired;  // rolled back by the host after transaction_timeout
  bool closed = false;
  std::uint64_t next_txn = 1;
  bool notify_pending = false;               // the open transaction wants the commit listener
  std::function<void()> commit_listener;

  // Readers: checked out one per autocommit read.
  std::mutex readers_mutex;
  std::condition_variable reader_free;
  std::vector<std::unique_ptr<Connection>> readers;
  std::vector<Connection*> idle;
  bool readers_closed = false;

  Counters counters;

  void record(Clock::time_point start, keel_status st) {
    counters.record(start, st);
    if (st == KEEL_ERR_STORAGE_FULL)
      log->warn("storage full plugin={} file={} error=\"{}\"", options.plugin, options.file.string(), error_text());
    else if (st == KEEL_ERR_UNAVAILABLE)
      log->error("storage i/o error plugin={} file={} error=\"{}\"", options.plugin, options.file.string(), error_text());
  }

  /// Checks that a public call may proceed; clears the thread's last error.
  keel_status enter() {
    return enter_call();
  }

  // --- writer ownership (writer_mutex held) ---

  /// Ends the open transaction (the SQL side is already done).
  void finish_open() {
    open.clear();
    notify_pending = false;
    writer_free.notify_all();
  }

  /// Rolls back the open transaction if it outlived transaction_timeout. Returns true if it did.
  bool reclaim_if_expired() {
    if (open.empty() || Clock::now() - open_since < options.transaction_timeout) return false;
    static_cast<void>(writer->script("ROLLBACK", true));
    for (auto id : open) expired.insert(id);
    if (expired.size() > 4096) expired.clear();  // bounded memory; old ids then read as "unknown"
    log->warn("transaction rolled back after transaction_timeout_ms={} plugin={} txn={}",
              options.transaction_timeout.count(), options.plugin, open.front());
    finish_open();
    return true;
  }

  /// Waits until no transaction holds the writer, up to busy_timeout.
  keel_status wait_for_writer(std::unique_lock<std::mutex>& lock) {
    const auto deadline = Clock::now() + options.busy_timeout;
    while (!open.empty() && !closed) {
      if (reclaim_if_expired()) break;
      const auto wake = std::min(deadline, open_since + options.transaction_timeout);
      if (writer_free.wait_until(lock, wake) == std::cv_status::timeout && Clock::now() >= deadline && !open.empty() &&
          !reclaim_if_expired()) {
        counters.count_busy();
        log->warn("storage writer busy plugin={} waited_ms={} holder_txn={}", options.plugin,
                  options.busy_timeout.count(), open.front());
        return fail(KEEL_ERR_BUSY, "the database writer stayed busy for busy_timeout_ms=" +
                                       std::to_string(options.busy_timeout.count()) +
                                       " (a transaction is open); retry later");
      }
    }
    if (closed) return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
    return KEEL_OK;
  }

  /// Validates `txn` as one of the open transaction's ids; returns its depth in `depth`.
  keel_status find_open(keel_txn txn, std::size_t& depth) {
    if (closed) return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
    const auto it = std::find(open.begin(), open.end(), txn);
    if (it == open.end()) {
      if (expired.contains(txn))
        return fail(KEEL_ERR_TIMEOUT, "transaction " + std::to_string(txn) + " was rolled back after transaction_timeout_ms=" +
                                          std::to_string(options.transaction_timeout.count()));
      return fail(KEEL_ERR_NOT_FOUND, "no open transaction or savepoint with id " + std::to_string(txn));
    }
    if (sqlite3_get_autocommit(writer->handle()) != 0) {
      // SQLite rolled the transaction back itself (e.g. after a full disk).
      finish_open();
      return fail(KEEL_ERR_NOT_FOUND, "transaction " + std::to_string(txn) + " was rolled back by an earlier error");
    }
    depth = static_cast<std::size_t>(it - open.begin());
    return KEEL_OK;
  }

  // --- "storage": "read" handlers (begin_read_only) ---

  [[nodiscard]] bool read_only_here() const noexcept { return tl_read_only.owner == this; }
  /// The reader reserved for this thread's read-only run, or null.
  [[nodiscard]] Connection* reserved_reader() const noexcept {
    return read_only_here() ? tl_read_only.reader : nullptr;
  }
  static keel_status refuse_write() {
    return fail(KEEL_ERR_PERMISSION_DENIED,
                "this route is declared \"storage\": \"read\": it can only read (leave that out and declare it "
                "\"blocking\": true to write or open a transaction)");
  }

  /// Runs `fn(writer)` holding the writer: inside `txn`, or (txn 0) as its own transaction.
  template <class F>
  keel_status with_writer(keel_txn txn, F&& fn) {
    if (read_only_here()) return refuse_write();
    std::unique_lock lock(writer_mutex);
    if (txn == KEEL_TXN_NONE) {
      if (auto st = wait_for_writer(lock); st < 0) return st;
      return fn(*writer);
    }
    std::size_t depth = 0;
    if (auto st = find_open(txn, depth); st < 0) return st;
    const auto st = fn(*writer);
    if (st < 0 && !open.empty() && sqlite3_get_autocommit(writer->handle()) != 0) {
      finish_open();
      error_text() += " (the transaction was rolled back)";
    }
    return st;
  }

  // --- readers ---

  struct ReaderLease {
    Impl* impl;
    Connection* conn;
    ReaderLease(Impl* i, Connection* c) : impl(i), conn(c) {}
    ReaderLease(const ReaderLease&) = delete;
    ReaderLease& operator=(const ReaderLease&) = delete;
    ~ReaderLease() {
      if (conn == nullptr) return;
      std::lock_guard lock(impl->readers_mutex);
      impl->idle.push_back(conn);
      impl->reader_free.notify_one();
    }
  };

  /// A free reader connection, opening one while fewer than `readers` exist.
  keel_status lease_reader(Connection*& out) {
    std::unique_lock lock(readers_mutex);
    const auto deadline = Clock::now() + options.busy_timeout;
    while (idle.empty()) {
      if (readers_closed) return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
      if (readers.size() < options.readers) {
        try {
          readers.push_back(std::make_unique<Connection>(options.file, SQLite::OPEN_READONLY | SQLite::OPEN_NOMUTEX,
                                                         options.busy_timeout, options.statement_cache));
        } catch (const std::exception& e) {
          return fail(KEEL_ERR_UNAVAILABLE, std::string("cannot open a reader connection: ") + e.what());
        }
        idle.push_back(readers.back().get());
        break;
      }
      if (reader_free.wait_until(lock, deadline) == std::cv_status::timeout && idle.empty()) {
        counters.count_busy();
        return fail(KEEL_ERR_BUSY, "all " + std::to_string(options.readers) + " reader connections stayed busy for busy_timeout_ms");
      }
    }
    if (readers_closed) return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
    out = idle.back();
    idle.pop_back();
    return KEEL_OK;
  }

  // --- statements ---

  /// Binds, steps and streams one cached statement on `c`.
  keel_status run(Connection& c, sqlite3_stmt* stmt, std::span<const keel_sql_param> params, RowSink rows,
                  keel_sql_result* out, bool host) {
    const StatementReset reset{stmt};
    if (auto st = bind_params(stmt, params); st < 0) return st;
    const Connection::HostMode mode{c, host};
    // A plugin's statement ends with the request it serves, or after transaction_timeout_ms when
    // that comes first: a runaway query never keeps a core busy after its client got a 504.
    std::optional<Connection::Deadline> deadline;
    const auto* cur = abi::current_request();
    if (!host) deadline.emplace(c, statement_deadline(cur), cur != nullptr ? cur->abandoned : nullptr);
    const int columns = sqlite3_column_count(stmt);
    thread_local std::vector<keel_sql_value> values;
    thread_local std::vector<keel_host_bytes> names;
    std::int64_t delivered = 0;
    bool names_ready = false;
    for (;;) {
      const int rc = sqlite3_step(stmt);
      if (rc == SQLITE_DONE) break;
      if (rc == SQLITE_INTERRUPT && !host) return interrupted(c);
      if (rc != SQLITE_ROW) return fail(status_for(sqlite3_extended_errcode(c.handle())), sqlite3_errmsg(c.handle()));
      ++delivered;
      if (rows.fn == nullptr) continue;
      if (!names_ready) {
        names.resize(static_cast<std::size_t>(columns));
        values.resize(static_cast<std::size_t>(columns));
        for (int i = 0; i < columns; ++i) {
          const char* n = sqlite3_column_name(stmt, i);
          names[static_cast<std::size_t>(i)] = {n, n != nullptr ? std::strlen(n) : 0};
        }
        names_ready = true;
      }
      for (int i = 0; i < columns; ++i) {
        auto& v = values[static_cast<std::size_t>(i)];
        v = keel_sql_value{};
        switch (sqlite3_column_type(stmt, i)) {
          case SQLITE_INTEGER: v.type = KEEL_SQL_INTEGER; v.integer = sqlite3_column_int64(stmt, i); break;
          case SQLITE_FLOAT: v.type = KEEL_SQL_REAL; v.real = sqlite3_column_double(stmt, i); break;
          case SQLITE_TEXT: v.type = KEEL_SQL_TEXT; v.bytes = column_bytes(stmt, i, true); break;
          case SQLITE_BLOB: v.type = KEEL_SQL_BLOB; v.bytes = column_bytes(stmt, i, false); break;
          default: v.type = KEEL_SQL_NULL; break;
        }
      }
      int32_t stop = 0;
      {
        const CallbackScope scope;
        stop = rows.fn(rows.user, values.data(), names.data(), static_cast<std::size_t>(columns));
      }
      if (stop != 0) {
        // A write already made its changes; step it to the end (discarding rows) so that it
        // completes and sqlite3_changes() below counts this statement, not the previous one.
        if (sqlite3_stmt_readonly(stmt) == 0) {
          int rc2 = SQLITE_ROW;
          while (rc2 == SQLITE_ROW) rc2 = sqlite3_step(stmt);
          if (rc2 != SQLITE_DONE)
            return fail(status_for(sqlite3_extended_errcode(c.handle())), sqlite3_errmsg(c.handle()));
        }
        break;
      }
    }
    if (out != nullptr) {
      const bool wrote = sqlite3_stmt_readonly(stmt) == 0;
      out->reserved = 0;
      if (KEEL_HAS_FIELD(out, keel_sql_result, changes)) out->changes = wrote ? sqlite3_changes64(c.handle()) : 0;
      if (KEEL_HAS_FIELD(out, keel_sql_result, last_insert_id)) out->last_insert_id = sqlite3_last_insert_rowid(c.handle());
      if (KEEL_HAS_FIELD(out, keel_sql_result, rows)) out->rows = delivered;
    }
    return KEEL_OK;
  }

  /// When a plugin statement started now must stop: the deadline of the request (or event) `cur`
  /// (the calling thread's) serves, capped by transaction_timeout.
  Clock::time_point statement_deadline(const abi::CurrentRequest* cur) const {
    auto deadline = Clock::now() + options.transaction_timeout;
    if (cur != nullptr && cur->deadline != Clock::time_point{}) deadline = std::min(deadline, cur->deadline);
    return deadline;
  }

  /// The failure of a plugin statement the progress handler stopped on `c`.
  keel_status interrupted(const Connection& c) const {
    if (c.abandoned()) {
      log->warn("stopped a statement whose plugin runner is gone plugin={}", options.plugin);
      return fail(KEEL_ERR_UNAVAILABLE, "statement stopped: the plugin runner that asked for it is gone");
    }
    return fail(KEEL_ERR_TIMEOUT, "statement stopped at its deadline (the request's, or [storage] "
                                  "transaction_timeout_ms=" + std::to_string(options.transaction_timeout.count()) + ")");
  }

  keel_status run_sql(Connection& c, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                      keel_sql_result* out, bool host) {
    keel_status st = KEEL_OK;
    sqlite3_stmt* stmt = c.statement(sql, host, st);
    if (stmt == nullptr) return st;
    return run(c, stmt, params, rows, out, host);
  }

  /// Autocommit statement: on a reader if it only reads, else on the writer.
  keel_status autocommit(std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                         keel_sql_result* out, bool host) {
    if (Connection* own = reserved_reader()) {
      keel_status st = KEEL_OK;
      sqlite3_stmt* stmt = own->statement(sql, host, st);
      if (stmt == nullptr) return st;
      if (sqlite3_stmt_readonly(stmt) == 0) return refuse_write();
      return run(*own, stmt, params, rows, out, host);
    }
    {
      Connection* reader = nullptr;
      if (auto st = lease_reader(reader); st < 0) return st;
      const ReaderLease lease{this, reader};
      keel_status st = KEEL_OK;
      sqlite3_stmt* stmt = reader->statement(sql, host, st);
      if (stmt == nullptr) return st;
      if (sqlite3_stmt_readonly(stmt) != 0) return run(*reader, stmt, params, rows, out, host);
    }
    return with_writer(KEEL_TXN_NONE, [&](Connection& w) { return run_sql(w, sql, params, rows, out, host); });
  }

  keel_status exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                   keel_sql_result* out, bool host) {
    if (auto st = enter(); st < 0) return st;
    const auto start = Clock::now();
    const auto st = txn == KEEL_TXN_NONE
                        ? autocommit(sql, params, rows, out, host)
                        : with_writer(txn, [&](Connection& w) { return run_sql(w, sql, params, rows, out, host); });
    record(start, st);
    if (st >= 0) error_text().clear();  // a refused call from inside the row callback left its message
    return st;
  }

  // --- key-value ---

  keel_status kv_current(Connection& c, std::string_view key, std::int64_t now, KvRow& row) {
    const keel_sql_param p[2] = {{KEEL_SQL_BLOB, 0, 0, 0, {key.data(), key.size()}}, {KEEL_SQL_INTEGER, 0, now, 0, {}}};
    auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
      auto& r = *static_cast<KvRow*>(user);
      r = {true, v[0].integer, v[1].integer};
      return 1;
    };
    return run_sql(c, kKvCurrent, p, {sink, &row}, nullptr, true);
  }
};

// ---------------------------------------------------------------------------------------------

SqliteDatabase::SqliteDatabase(Options options) : Database(std::move(options)), impl_(std::make_unique<Impl>(options_)) {
  auto& s = *impl_;
  const auto where = " (plugin " + options_.plugin + ", file " + options_.file.string() + ")";
  try {
    create_private(options_.file);
    s.writer = std::make_unique<Connection>(options_.file,
                                            SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_NOMUTEX,
                                            options_.busy_timeout, options_.statement_cache);
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot open database" + where + ": " + e.what());
  }
  auto& db = s.writer->db();
  try {
    const Connection::HostMode host{*s.writer, true};
    const auto mode = db.execAndGet("PRAGMA journal_mode=WAL").getString();
    if (mode != "wal")
      throw std::runtime_error("journal_mode is '" + mode + "', not 'wal' (WAL needs a local file system with shared memory)");
    db.exec(options_.synchronous == config::SyncMode::kFull ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL");
    db.exec("PRAGMA foreign_keys=ON");
    if (db.execAndGet("PRAGMA foreign_keys").getInt() != 1) throw std::runtime_error("foreign keys could not be enabled");
    db.exec(
        "CREATE TABLE IF NOT EXISTS _keel_migrations (version INTEGER PRIMARY KEY, description TEXT NOT NULL,"
        " checksum TEXT NOT NULL, applied_at TEXT NOT NULL, duration_ms INTEGER NOT NULL);"
        "CREATE TABLE IF NOT EXISTS _keel_kv (key BLOB PRIMARY KEY, value BLOB NOT NULL, version INTEGER NOT NULL,"
        " expires_at INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;"
        "CREATE INDEX IF NOT EXISTS _keel_kv_expiry ON _keel_kv (expires_at) WHERE expires_at > 0;");
    // The quota applies after the host's own tables exist, so a small one fails the plugin's
    // writes (or its first migration, with that message), never the opening of the database.
    if (options_.max_bytes > 0) {
      const auto page = static_cast<std::uint64_t>(db.execAndGet("PRAGMA page_size").getInt64());
      const auto pages = std::max<std::uint64_t>(options_.max_bytes / page, 2);
      db.exec("PRAGMA max_page_count=" + std::to_string(pages));
    }
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot prepare database" + where + ": " + e.what());
  }
}

SqliteDatabase::~SqliteDatabase() { close(); }

void SqliteDatabase::close() {
  auto& s = *impl_;
  // Statements still running finish first; each has a deadline (statement_deadline), so the
  // wait is bounded even for a runaway query.
  {
    std::lock_guard lock(s.writer_mutex);
    if (s.closed) return;
    if (!s.open.empty()) {
      static_cast<void>(s.writer->script("ROLLBACK", true));
      s.log->warn("transaction left open at stop rolled back plugin={} txn={}", options_.plugin, s.open.front());
      s.finish_open();
    }
    s.closed = true;
    s.writer_free.notify_all();
  }
  {
    std::unique_lock lock(s.readers_mutex);
    s.readers_closed = true;
    s.reader_free.notify_all();
    // Readers in use finish their statement first (they are never held across calls, except by
    // a "storage": "read" handler running on an I/O thread, which ends before its plugin stops).
    while (s.idle.size() != s.readers.size()) s.reader_free.wait_for(lock, std::chrono::milliseconds(10));
    s.idle.clear();
    s.readers.clear();
  }
  std::lock_guard lock(s.writer_mutex);
  // A last checkpoint folds the WAL into the database file, so a stopped host leaves one file.
  try {
    const Connection::HostMode host{*s.writer, true};
    s.writer->db().exec("PRAGMA wal_checkpoint(TRUNCATE)");
  } catch (const std::exception& e) {
    s.log->warn("checkpoint at close failed plugin={} error=\"{}\"", options_.plugin, e.what());
  }
  s.writer.reset();
}

bool SqliteDatabase::begin_read_only(bool reserve_reader) {
  auto& s = *impl_;
  if (tl_read_only.owner != nullptr) return false;  // one run per thread
  Connection* reader = nullptr;
  if (reserve_reader) {
    std::lock_guard lock(s.readers_mutex);
    if (s.readers_closed || s.idle.empty()) return false;
    reader = s.idle.back();
    s.idle.pop_back();
  }
  tl_read_only = {&s, reader};
  return true;
}

void SqliteDatabase::end_read_only() noexcept {
  auto& s = *impl_;
  if (tl_read_only.owner != &s) return;
  if (tl_read_only.reader != nullptr) {
    std::lock_guard lock(s.readers_mutex);
    s.idle.push_back(tl_read_only.reader);
    s.reader_free.notify_one();
  }
  tl_read_only = {};
}

bool SqliteDatabase::read_only_here() const noexcept { return impl_->read_only_here(); }

keel_status SqliteDatabase::exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                           keel_sql_result* out) {
  return impl_->exec(txn, sql, params, rows, out, false);
}

keel_status SqliteDatabase::exec_host(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params,
                                RowSink rows, keel_sql_result* out) {
  return impl_->exec(txn, sql, params, rows, out, true);
}

keel_status SqliteDatabase::exec_script(keel_txn txn, std::string_view sql) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  if (txn == KEEL_TXN_NONE) return fail(KEEL_ERR_INVALID_ARGUMENT, "a script runs inside a transaction");
  const auto start = Clock::now();
  const auto st = s.with_writer(txn, [&](Connection& w) { return w.script(sql, false); });
  s.record(start, st);
  return st;
}

keel_status SqliteDatabase::prepare(std::string_view sql, keel_sql_info* out) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "prepare needs an output struct");
  Connection* const reserved = s.reserved_reader();
  Connection* reader = reserved;
  if (reader == nullptr)
    if (auto st = s.lease_reader(reader); st < 0) return st;
  const Impl::ReaderLease lease{&s, reader == reserved ? nullptr : reader};
  keel_status st = KEEL_OK;
  sqlite3_stmt* stmt = reader->statement(sql, false, st);
  if (stmt == nullptr) return st;
  if (KEEL_HAS_FIELD(out, keel_sql_info, param_count))
    out->param_count = static_cast<std::uint32_t>(sqlite3_bind_parameter_count(stmt));
  if (KEEL_HAS_FIELD(out, keel_sql_info, column_count))
    out->column_count = static_cast<std::uint32_t>(sqlite3_column_count(stmt));
  if (KEEL_HAS_FIELD(out, keel_sql_info, read_only)) out->read_only = sqlite3_stmt_readonly(stmt) != 0 ? 1u : 0u;
  return KEEL_OK;
}

keel_status SqliteDatabase::begin(keel_txn parent, keel_txn* out) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "begin needs an output id");
  *out = KEEL_TXN_NONE;
  if (s.read_only_here()) return Impl::refuse_write();
  const auto start = Clock::now();
  std::unique_lock lock(s.writer_mutex);
  keel_status st = KEEL_OK;
  if (parent == KEEL_TXN_NONE) {
    st = s.wait_for_writer(lock);
    if (st >= 0) st = s.writer->script("BEGIN IMMEDIATE", true);
    if (st >= 0) {
      *out = s.next_txn++;
      s.open.assign(1, *out);
      s.open_since = Clock::now();
    }
  } else {
    std::size_t depth = 0;
    st = s.find_open(parent, depth);
    if (st >= 0 && depth + 1 != s.open.size())
      st = fail(KEEL_ERR_INVALID_ARGUMENT, "savepoint " + std::to_string(s.open.back()) + " is open inside " +
                                               std::to_string(parent) + "; nest under the innermost one");
    if (st >= 0) {
      const auto id = s.next_txn++;
      st = s.writer->script("SAVEPOINT keel_sp_" + std::to_string(id), true);
      if (st >= 0) {
        s.open.push_back(id);
        *out = id;
      }
    }
  }
  s.record(start, st);
  return st;
}

keel_status SqliteDatabase::commit(keel_txn txn) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  if (s.read_only_here()) return Impl::refuse_write();  // not even another thread's transaction
  const auto start = Clock::now();
  std::lock_guard lock(s.writer_mutex);
  std::size_t depth = 0;
  auto st = s.find_open(txn, depth);
  if (st >= 0 && depth == 0) {
    st = s.writer->script("COMMIT", true);
    if (st >= 0 && s.notify_pending && s.commit_listener) s.commit_listener();
    if (st < 0) {
      // A failed COMMIT (full disk, I/O error) may leave the transaction active: end it.
      if (sqlite3_get_autocommit(s.writer->handle()) == 0) static_cast<void>(s.writer->script("ROLLBACK", true));
      error_text() += " (the transaction was rolled back)";
    }
    s.finish_open();
  } else if (st >= 0) {
    st = s.writer->script("RELEASE keel_sp_" + std::to_string(txn), true);
    if (st >= 0) s.open.resize(depth);
  }
  s.record(start, st);
  return st;
}

keel_status SqliteDatabase::append_in_commit_order(keel_txn txn, std::string_view /*table*/, std::string_view sql,
                                                   std::span<const keel_sql_param> params) {
  return exec_host(txn, sql, params, {}, nullptr);  // one writer: keys are in commit order already
}

// One host opens a SQLite file, and its transaction already owns the only writer.
keel_status SqliteDatabase::lock_migrations(keel_txn) { return KEEL_OK; }

keel_status SqliteDatabase::has_table(std::string_view name, bool& out) {
  out = false;
  const keel_sql_param p[1] = {{KEEL_SQL_TEXT, 0, 0, 0, {name.data(), name.size()}}};
  auto sink = [](void* user, const keel_sql_value*, const keel_host_bytes*, std::size_t) -> int32_t {
    *static_cast<bool*>(user) = true;
    return 1;
  };
  return exec_host(KEEL_TXN_NONE, "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1", p, {sink, &out},
                   nullptr);
}

void SqliteDatabase::set_commit_listener(std::function<void()> fn) {
  std::lock_guard lock(impl_->writer_mutex);
  impl_->commit_listener = std::move(fn);
}

void SqliteDatabase::notify_on_commit(keel_txn txn) {
  std::lock_guard lock(impl_->writer_mutex);
  if (std::find(impl_->open.begin(), impl_->open.end(), txn) != impl_->open.end()) impl_->notify_pending = true;
}

keel_status SqliteDatabase::rollback(keel_txn txn) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  if (s.read_only_here()) return Impl::refuse_write();  // not even another thread's transaction
  const auto start = Clock::now();
  std::lock_guard lock(s.writer_mutex);
  std::size_t depth = 0;
  auto st = s.find_open(txn, depth);
  if (st < 0) {
    s.record(start, st);
    return st;
  }
  if (depth == 0) {
    st = s.writer->script("ROLLBACK", true);
    s.finish_open();
  } else {
    const auto name = "keel_sp_" + std::to_string(txn);
    st = s.writer->script("ROLLBACK TO " + name + "; RELEASE " + name, true);
    s.open.resize(depth);
  }
  s.record(start, st);
  return st;
}

// ---------------------------------------------------------------------------------------------
// Key-value store: rows of _keel_kv, keys compared as bytes (BLOB), expiry in Unix milliseconds.

keel_status SqliteDatabase::kv_put(keel_txn txn, const keel_kv_put_args& args, std::int64_t* out_version) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  std::string_view key;
  if (auto st = check_kv_put(args, key); st < 0) return st;
  const auto start = Clock::now();
  const auto st = s.with_writer(txn, [&](Connection& w) {
    const auto now = now_unix_ms();
    KvRow row;
    if (auto rc = s.kv_current(w, key, now, row); rc < 0) return rc;
    if (auto rc = check_kv_version(row, args.expected_version, "kv_put"); rc < 0) return rc;
    const std::int64_t version = row.found ? row.version + 1 : 1;
    const std::int64_t expires = kv_expiry(now, args.ttl_ms);
    const keel_sql_param p[4] = {{KEEL_SQL_BLOB, 0, 0, 0, args.key},
                                 {KEEL_SQL_BLOB, 0, 0, 0, args.value},
                                 {KEEL_SQL_INTEGER, 0, version, 0, {}},
                                 {KEEL_SQL_INTEGER, 0, expires, 0, {}}};
    auto rc = s.run_sql(w, kKvUpsert, p, {}, nullptr, true);
    if (rc < 0) return rc;
    const keel_sql_param sweep[1] = {{KEEL_SQL_INTEGER, 0, now, 0, {}}};
    rc = s.run_sql(w, kKvSweep, sweep, {}, nullptr, true);
    if (rc < 0) return rc;
    if (out_version != nullptr) *out_version = version;
    return KEEL_OK;
  });
  s.record(start, st);
  return st;
}

keel_status SqliteDatabase::kv_delete(keel_txn txn, std::string_view key, std::int64_t expected_version) {
  auto& s = *impl_;
  if (auto st = s.enter(); st < 0) return st;
  if (auto st = check_kv_key(key); st < 0) return st;
  if (expected_version < KEEL_KV_ANY_VERSION) return fail(KEEL_ERR_INVALID_ARGUMENT, "expected_version below -1");
  const auto start = Clock::now();
  const auto st = s.with_writer(txn, [&](Connection& w) {
    KvRow row;
    if (auto rc = s.kv_current(w, key, now_unix_ms(), row); rc < 0) return rc;
    if (!row.found) return fail(KEEL_ERR_NOT_FOUND, "no such key");
    if (auto rc = check_kv_version(row, expected_version, "kv_delete"); rc < 0) return rc;
    const keel_sql_param p[1] = {{KEEL_SQL_BLOB, 0, 0, 0, {key.data(), key.size()}}};
    return s.run_sql(w, kKvDelete, p, {}, nullptr, true);
  });
  s.record(start, st);
  return st;
}

Stats SqliteDatabase::stats() const {
  Stats out = impl_->counters.snapshot();
  std::error_code ec;
  out.db_bytes = fs::file_size(options_.file, ec);
  if (ec) out.db_bytes = 0;
  out.wal_bytes = fs::file_size(fs::path(options_.file.string() + "-wal"), ec);
  if (ec) out.wal_bytes = 0;
  return out;
}

// ---------------------------------------------------------------------------------------------

std::string integrity_check(const fs::path& file) {
  SQLite::Database db(file.string(), SQLite::OPEN_READONLY);
  SQLite::Statement q(db, "PRAGMA integrity_check");
  std::string result;
  while (q.executeStep()) {
    if (!result.empty()) result += "; ";
    result += q.getColumn(0).getString();
  }
  return result;
}

MigrationHistory read_sqlite_history(const fs::path& file) {
  MigrationHistory out;
  std::error_code ec;
  out.exists = fs::exists(file, ec);
  if (!out.exists) return out;
  try {
    SQLite::Database db(file.string(), SQLite::OPEN_READONLY, 5000);
    if (!db.tableExists("_keel_migrations")) return out;
    SQLite::Statement q(db, "SELECT version, description, checksum, applied_at FROM _keel_migrations");
    while (q.executeStep())
      out.recorded.push_back({q.getColumn(0).getInt64(), q.getColumn(1).getString(), q.getColumn(2).getString(),
                              q.getColumn(3).getString()});
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read migrations of " + file.string() + ": " + e.what());
  }
  return out;
}

std::int64_t sqlite_memory_bytes() noexcept { return sqlite3_memory_used(); }

void backup(const fs::path& source, const fs::path& target) {
  const auto partial = fs::path(target.string() + ".partial");
  std::error_code ec;
  fs::remove(partial, ec);
  try {
    SQLite::Database src(source.string(), SQLite::OPEN_READONLY, 5000);
    {
      SQLite::Database dst(partial.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
      ::chmod(partial.c_str(), 0600);  // before any data is in it
      {
        SQLite::Backup copy(dst, src);
        // One step over every page: the copy is a single snapshot of the source.
        const int rc = copy.executeStep(-1);
        if (rc != SQLITE_DONE) throw std::runtime_error(std::string("backup did not finish: ") + sqlite3_errstr(rc));
      }
      // A self-contained file: readable anywhere, even read-only, without -wal and -shm files.
      dst.exec("PRAGMA journal_mode=DELETE");
    }
    const auto check = integrity_check(partial);
    if (check != "ok") throw std::runtime_error("the copy failed PRAGMA integrity_check: " + check);
  } catch (const std::exception& e) {
    fs::remove(partial, ec);
    throw std::runtime_error("backup of " + source.string() + " failed: " + e.what());
  }
  fs::rename(partial, target);
}

}  // namespace keel::host::storage
