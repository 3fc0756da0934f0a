#include "storage/postgres/postgres_database.hpp"

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cctype>
#include <cstdint>
#include <charconv>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <random>
#include <stdexcept>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <libpq-fe.h>
#include <poll.h>
#include <sys/socket.h>

#include "abi/current_request.hpp"
#include "observability/log.hpp"
#include "storage/engine_support.hpp"
#include "storage/postgres/sql_text.hpp"

namespace keel::host::storage {
namespace {

using Clock = std::chrono::steady_clock;

// Type OIDs of pg_type (stable since forever; libpq ships no header with them for clients).
constexpr Oid kBoolOid = 16, kByteaOid = 17, kInt8Oid = 20, kInt2Oid = 21, kInt4Oid = 23, kTextOid = 25, kOidOid = 26,
              kFloat4Oid = 700, kFloat8Oid = 701, kNumericOid = 1700;

std::string quote_ident(std::string_view name) {
  std::string out = "\"";
  for (char c : name) {
    if (c == '"') out += '"';
    out += c;
  }
  return out + '"';
}

std::string quote_literal(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    if (c == '\'') out += '\'';
    out += c;
  }
  return out + '\'';
}

/// keel_status for a failed result (docs/storage.md "Errors", the PostgreSQL table).
keel_status status_for(std::string_view sqlstate, bool connection_lost) noexcept {
  if (connection_lost) return KEEL_ERR_UNAVAILABLE;
  if (sqlstate.size() != 5) return KEEL_ERR_INTERNAL;
  const auto cls = sqlstate.substr(0, 2);
  if (cls == "23") return KEEL_ERR_CONFLICT;  // integrity constraint violation (unique, foreign key, check, not null)
  if (sqlstate == "40001" || sqlstate == "40P01" || sqlstate == "55P03") return KEEL_ERR_BUSY;  // retry the transaction
  if (sqlstate == "57014" || sqlstate == "25P03") return KEEL_ERR_TIMEOUT;  // statement or idle-transaction timeout
  if (sqlstate == "53100") return KEEL_ERR_STORAGE_FULL;
  if (cls == "08" || cls == "53" || cls == "57" || cls == "58") return KEEL_ERR_UNAVAILABLE;
  if (sqlstate == "42501") return KEEL_ERR_PERMISSION_DENIED;
  if (sqlstate == "54000" || sqlstate == "54001") return KEEL_ERR_TOO_LARGE;
  if (cls == "42" || cls == "22" || cls == "21" || cls == "25" || cls == "26" || cls == "34" || cls == "2B" ||
      cls == "0A" || cls == "44")
    return KEEL_ERR_INVALID_ARGUMENT;
  return KEEL_ERR_INTERNAL;
}

/// Owns a PGresult.
struct Result {
  PGresult* r = nullptr;
  explicit Result(PGresult* p = nullptr) : r(p) {}
  ~Result() { PQclear(r); }
  Result(const Result&) = delete;
  Result& operator=(const Result&) = delete;
  Result(Result&& o) noexcept : r(std::exchange(o.r, nullptr)) {}
  Result& operator=(Result&& o) noexcept {
    std::swap(r, o.r);
    return *this;
  }
};

std::string random_password() {
  std::random_device rd;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 32; ++i) out += kHex[rd() % 16];
  return out;
}

// Decodes bytea's text output ("\x0a1b..."); the old escape format is never produced by a
// server whose bytea_output is hex, the default the host's connections keep.
bool decode_bytea(const char* text, std::size_t len, std::string& out) {
  out.clear();
  if (len < 2 || text[0] != '\\' || text[1] != 'x' || (len - 2) % 2 != 0) return false;
  out.reserve((len - 2) / 2);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (std::size_t i = 2; i < len; i += 2) {
    const int hi = nibble(text[i]), lo = nibble(text[i + 1]);
    if (hi < 0 || lo < 0) return false;
    out += static_cast<char>(hi * 16 + lo);
  }
  return true;
}

/// Transaction control belongs to the storage API: a COMMIT inside a plugin's statement or
/// script would end the transaction the host tracks (a migration's, with its history row).
keel_status refuse_control(std::string_view keyword) {
  static constexpr std::string_view kControl[] = {"begin",   "start",      "commit",  "end",
                                                  "rollback", "abort",     "savepoint", "release",
                                                  "prepare", "deallocate", "discard"};
  if (std::find(std::begin(kControl), std::end(kControl), keyword) == std::end(kControl)) return KEEL_OK;
  return fail(KEEL_ERR_PERMISSION_DENIED, "\"" + std::string(keyword) + "\" is not allowed in a statement: use the "
                                          "storage API's begin, commit and rollback");
}


// ---------------------------------------------------------------------------------------------

/// One server connection with its prepared statements. Used by one thread at a time: a pool
/// lease, a transaction (under its mutex), or the host connection (under its mutex).
/// When a running statement must stop early: at `deadline`, or once `*abandoned` is set.
/// How long a statement may go on after its cancel before its connection is cut.
constexpr std::chrono::milliseconds kCancelGrace{2000};

struct Watch {
  Clock::time_point deadline = Clock::time_point::max();
  const std::atomic<bool>* abandoned = nullptr;
  enum class Stop { kNo, kDeadline, kAbandoned };
};

class Connection {
 public:
  explicit Connection(PGconn* c) : conn_(c) {
    // Server notices (a plugin's RAISE WARNING, "already exists, skipping") never reach the
    // host's log stream, where a plugin could forge lines with them.
    if (conn_ != nullptr) PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
    cancel_ = conn_ != nullptr ? PQgetCancel(conn_) : nullptr;
  }
  ~Connection() {
    PQfreeCancel(cancel_);
    PQfinish(conn_);
  }
  /// Asks the server to stop the statement running on this connection; any thread may call it.
  void cancel() const noexcept {
    char error[256];
    if (cancel_ != nullptr) static_cast<void>(PQcancel(cancel_, error, sizeof error));
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  [[nodiscard]] PGconn* get() const noexcept { return conn_; }
  [[nodiscard]] bool lost() const noexcept { return PQstatus(conn_) != CONNECTION_OK; }
  [[nodiscard]] bool idle() const noexcept { return PQtransactionStatus(conn_) == PQTRANS_IDLE; }

  /// A statement prepared on this connection under a name of its own.
  struct Prepared {
    std::string name;
    int params = 0;
    bool returning_added = false;  ///< " RETURNING <identity column>" was appended for last_insert_id
    bool insert = false;
    bool read_only = false;
    bool changes_settings = false;  ///< SET, RESET or set_config(): the session needs RESET ALL after
    std::uint64_t used = 0;
  };

  /// A statement changed session settings (search_path, statement_timeout, ...): they are put
  /// back to the connection's own before another user gets it.
  bool dirty = false;

  /// PQexecPrepared that watches `watch` while the server works: past the deadline, or once the
  /// caller is abandoned, the statement is cancelled on the server and `stopped` says why. The
  /// result of the statement (the server's 57014 error when the cancel came in time), or null.
  PGresult* exec_prepared(const char* name, int n, const char* const* values, const int* lengths, const int* formats,
                          const Watch& watch, Watch::Stop& stopped) {
    if (PQsendQueryPrepared(conn_, name, n, values, lengths, formats, 0) == 0) return nullptr;
    PGresult* last = nullptr;
    for (;;) {
      bool readable = true;
      Clock::time_point cut_at = Clock::time_point::max();  // after a cancel the server did not act on
      while (readable && PQisBusy(conn_) != 0) {
        int wait_ms = -1;
        if (stopped != Watch::Stop::kNo) {
          const auto now = Clock::now();
          if (now >= cut_at) {
            // The cancel got lost (or the server is stuck): the connection goes, and the pool
            // opens another. The statement ends on the server when it notices.
            ::shutdown(PQsocket(conn_), SHUT_RDWR);
          } else {
            wait_ms = static_cast<int>(std::chrono::ceil<std::chrono::milliseconds>(cut_at - now).count());
          }
        } else {
          const auto now = Clock::now();
          if (watch.abandoned != nullptr && watch.abandoned->load(std::memory_order_relaxed)) {
            stopped = Watch::Stop::kAbandoned;
          } else if (now >= watch.deadline) {
            stopped = Watch::Stop::kDeadline;
          } else {
            const auto left = watch.deadline == Clock::time_point::max()
                                  ? std::chrono::milliseconds::max()
                                  : std::chrono::ceil<std::chrono::milliseconds>(watch.deadline - now);
            // Whether the caller is still there is looked at ten times a second.
            const auto slice = watch.abandoned != nullptr ? std::min(left, std::chrono::milliseconds(100)) : left;
            wait_ms = slice == std::chrono::milliseconds::max() ? -1 : static_cast<int>(std::min<std::int64_t>(slice.count(), 60000));
          }
          if (stopped != Watch::Stop::kNo) {
            cancel();
            cut_at = Clock::now() + kCancelGrace;
            continue;
          }
        }
        pollfd pfd{PQsocket(conn_), POLLIN, 0};
        if (::poll(&pfd, 1, wait_ms) < 0 && errno != EINTR) break;
        readable = PQconsumeInput(conn_) != 0;  // 0: the connection failed; PQgetResult says how
      }
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) break;
      PQclear(last);  // one statement: one result, then null
      last = r;
      if (!readable && PQstatus(conn_) != CONNECTION_OK) break;
    }
    return last;
  }

  /// Runs text with the simple protocol (any number of statements, no parameters).
  keel_status simple(std::string_view sql) {
    const std::string text{sql};
    Result r{PQexec(conn_, text.c_str())};
    return check(r.r, PGRES_COMMAND_OK);
  }

  /// Turns a failed result (or a lost connection) into a status and the thread's last error.
  keel_status check(const PGresult* r, ExecStatusType want, ExecStatusType also = PGRES_TUPLES_OK) {
    const auto st = r == nullptr ? PGRES_FATAL_ERROR : PQresultStatus(r);
    state_.clear();
    if (st == want || st == also || st == PGRES_EMPTY_QUERY) return KEEL_OK;
    const char* state = r != nullptr ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
    if (state != nullptr) state_ = state;
    const char* primary = r != nullptr ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : nullptr;
    std::string message = primary != nullptr ? primary : PQerrorMessage(conn_);
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    const bool gone = lost();
    if (gone) message = "connection to PostgreSQL lost: " + message;
    if (state != nullptr) message += std::string(" (SQLSTATE ") + state + ")";
    return fail(status_for(state != nullptr ? state : "", gone), std::move(message));
  }

  /// The prepared statement for `sql` (plugin text with ? placeholders), preparing it on first use.
  keel_status prepared(std::string_view sql, std::span<const keel_sql_param> params, std::uint32_t capacity,
                       Prepared*& out) {
    if (auto it = cache_.find(sql); it != cache_.end()) {
      it->second.used = ++tick_;
      out = &it->second;
      return KEEL_OK;
    }
    const auto keyword = pg::first_keyword(sql);
    if (keyword.empty())
      return fail(KEEL_ERR_INVALID_ARGUMENT, "no SQL statement in the text (only whitespace or comments)");
    if (auto st = refuse_control(keyword); st < 0) return st;
    // DDL written for SQLite reads as in a migration (INTEGER PRIMARY KEY, BLOB, ...).
    auto translated = pg::translate_placeholders(keyword == "create" || keyword == "alter" ? pg::translate_ddl(sql)
                                                                                            : std::string(sql));
    if (!translated.error.empty()) return fail(KEEL_ERR_INVALID_ARGUMENT, translated.error);
    Prepared p;
    p.params = translated.count;
    p.read_only = pg::read_only(sql);
    p.insert = keyword == "insert";
    std::string lower{sql};
    std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
    p.changes_settings = keyword == "set" || keyword == "reset" || lower.find("set_config") != std::string::npos;
    std::string text = std::move(translated.sql);
    if (const auto target = pg::insert_without_returning(sql)) {
      std::string column;
      if (auto st = identity_column(*target, column); st < 0) return st;
      if (!column.empty()) {
        while (!text.empty() && (std::isspace(static_cast<unsigned char>(text.back())) != 0 || text.back() == ';'))
          text.pop_back();
        text += "\nRETURNING " + quote_ident(column);
        p.returning_added = true;
      }
    }
    if (capacity > 0 && cache_.size() >= capacity && idle()) {
      // Full: start over (DEALLOCATE needs a healthy transaction state, which idle guarantees).
      static_cast<void>(simple("DEALLOCATE ALL"));
      cache_.clear();
    }
    p.name = "k" + std::to_string(++names_);
    // Each parameter takes the type its place gives it ("id = ?" a number, "name = ?" text), as
    // SQLite's dynamic values would fit there. Where nothing gives one ("SELECT ?"), the server
    // refuses (42P18) and the statement is prepared again with the types of this call's values.
    // Inside a transaction a failed prepare would end it: try under a savepoint there.
    const bool guarded = PQtransactionStatus(conn_) == PQTRANS_INTRANS && simple("SAVEPOINT keel_prepare") >= 0;
    Result r{PQprepare(conn_, p.name.c_str(), text.c_str(), 0, nullptr)};
    const char* state = PQresultErrorField(r.r, PG_DIAG_SQLSTATE);
    const bool untyped = state != nullptr && std::string_view(state) == "42P18";
    if (guarded) static_cast<void>(simple(untyped ? "ROLLBACK TO SAVEPOINT keel_prepare; RELEASE SAVEPOINT keel_prepare"
                                                 : "RELEASE SAVEPOINT keel_prepare"));
    if (untyped && params.size() == static_cast<std::size_t>(p.params)) {
      std::vector<Oid> types;
      for (const auto& v : params)
        types.push_back(v.type == KEEL_SQL_INTEGER ? kInt8Oid
                        : v.type == KEEL_SQL_REAL  ? kFloat8Oid
                        : v.type == KEEL_SQL_BLOB  ? kByteaOid
                                                   : kTextOid);
      r = Result{PQprepare(conn_, p.name.c_str(), text.c_str(), static_cast<int>(types.size()), types.data())};
    }
    if (auto st = check(r.r, PGRES_COMMAND_OK); st < 0) return st;
    p.used = ++tick_;
    out = &cache_.emplace(std::string(sql), std::move(p)).first->second;
    return KEEL_OK;
  }

  /// The SQLSTATE of the last failure check() saw on this connection ("" after a success).
  [[nodiscard]] const std::string& state() const noexcept { return state_; }

  /// Forgets identity columns (after a migration changed the schema: PostgreSQL re-plans
  /// prepared statements itself, but an appended RETURNING may be stale).
  void forget_schema() { identity_.clear(); }

  /// Forgets the prepared statement of `sql`, whose plan the schema outgrew (another
  /// connection or host migrated); the server-side name is freed when the connection is idle.
  void forget_statement(std::string_view sql) {
    const auto it = cache_.find(sql);
    if (it == cache_.end()) return;
    if (idle()) static_cast<void>(simple("DEALLOCATE " + it->second.name));
    cache_.erase(it);
    identity_.clear();
  }

 private:
  /// The identity (or serial) column of an INSERT's target table, "" if it has none.
  keel_status identity_column(const pg::InsertTarget& target, std::string& out) {
    const auto key = target.schema + '.' + target.table;
    if (auto it = identity_.find(key); it != identity_.end()) {
      out = it->second;
      return KEEL_OK;
    }
    const std::string rel = target.schema.empty() ? quote_ident(target.table)
                                                  : quote_ident(target.schema) + '.' + quote_ident(target.table);
    const char* values[1] = {rel.c_str()};
    Result r{PQexecParams(conn_,
                          "SELECT a.attname FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND"
                          " d.adnum = a.attnum WHERE a.attrelid = to_regclass($1) AND a.attnum > 0 AND NOT"
                          " a.attisdropped AND (a.attidentity <> '' OR pg_get_expr(d.adbin, d.adrelid) LIKE"
                          " 'nextval(%') ORDER BY a.attnum LIMIT 1",
                          1, nullptr, values, nullptr, nullptr, 0)};
    if (auto st = check(r.r, PGRES_TUPLES_OK); st < 0) return st;
    out = PQntuples(r.r) > 0 ? PQgetvalue(r.r, 0, 0) : "";
    identity_.emplace(key, out);
    return KEEL_OK;
  }

  struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  PGconn* conn_;
  PGcancel* cancel_ = nullptr;
  std::string state_;
  std::uint64_t tick_ = 0, names_ = 0;
  std::unordered_map<std::string, Prepared, StringHash, std::equal_to<>> cache_;
  std::unordered_map<std::string, std::string> identity_;
};

/// Binds `params` for PQexecPrepared: integers and reals as text with their type, text as text of
/// a type the server infers, blobs as binary bytea.
struct Bound {
  std::vector<std::string> text;
  std::vector<const char*> values;
  std::vector<int> lengths, formats;

  keel_status bind(std::span<const keel_sql_param> params, int expected) {
    if (static_cast<std::size_t>(expected) != params.size())
      return fail(KEEL_ERR_INVALID_ARGUMENT, "the statement has " + std::to_string(expected) + " parameter(s), " +
                                                 std::to_string(params.size()) + " given");
    text.assign(params.size(), {});
    values.assign(params.size(), nullptr);
    lengths.assign(params.size(), 0);
    formats.assign(params.size(), 0);
    for (std::size_t i = 0; i < params.size(); ++i) {
      const auto& p = params[i];
      const auto index = std::to_string(i + 1);
      if ((p.type == KEEL_SQL_TEXT || p.type == KEEL_SQL_BLOB) && p.bytes.ptr == nullptr && p.bytes.len != 0)
        return fail(KEEL_ERR_INVALID_ARGUMENT, "parameter " + index + " has a NULL pointer and length " +
                                                   std::to_string(p.bytes.len));
      switch (p.type) {
        case KEEL_SQL_NULL: break;
        case KEEL_SQL_INTEGER: text[i] = std::to_string(p.integer); values[i] = text[i].c_str(); break;
        case KEEL_SQL_REAL: {
          char buf[32];
          const auto r = std::to_chars(buf, buf + sizeof buf, p.real);
          text[i].assign(buf, r.ptr);
          values[i] = text[i].c_str();
          break;
        }
        case KEEL_SQL_TEXT:
          if (std::memchr(p.bytes.ptr != nullptr ? p.bytes.ptr : "", '\0', p.bytes.len) != nullptr)
            return fail(KEEL_ERR_INVALID_ARGUMENT, "parameter " + index + ": PostgreSQL text cannot hold a NUL byte; "
                                                                          "bind it as a blob");
          text[i].assign(p.bytes.ptr != nullptr ? p.bytes.ptr : "", p.bytes.len);
          values[i] = text[i].c_str();
          break;
        case KEEL_SQL_BLOB:
          if (p.bytes.len > static_cast<std::size_t>(INT32_MAX))
            return fail(KEEL_ERR_TOO_LARGE, "parameter " + index + " is larger than 2 GiB");
          values[i] = p.bytes.ptr != nullptr ? p.bytes.ptr : "";
          lengths[i] = static_cast<int>(p.bytes.len);
          formats[i] = 1;
          break;
        default:
          return fail(KEEL_ERR_INVALID_ARGUMENT, "parameter " + index + " has unknown type " + std::to_string(p.type));
      }
    }
    return KEEL_OK;
  }
};

}  // namespace

std::string describe_postgres_url(const std::string& url) {
  PQconninfoOption* options = PQconninfoParse(url.c_str(), nullptr);
  if (options == nullptr) return "(an unreadable postgres_url)";
  std::string host, port, db, user;
  for (auto* o = options; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view k = o->keyword;
    if (k == "host" || (k == "hostaddr" && host.empty())) host = o->val;
    else if (k == "port") port = o->val;
    else if (k == "dbname") db = o->val;
    else if (k == "user") user = o->val;
  }
  PQconninfoFree(options);
  return "postgresql://" + (user.empty() ? "" : user + "@") + (host.empty() ? "localhost" : host) +
         (port.empty() ? "" : ":" + port) + "/" + db;
}

std::string connect_timeout_seconds(const Options& options) {
  return std::to_string(std::max<std::int64_t>(2, (options.postgres.connect_timeout.count() + 999) / 1000));
}

std::string trimmed_message(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

bool postgres_answers(const Options& options) {
  const auto connect_s = connect_timeout_seconds(options);
  const char* keys[] = {"dbname", "connect_timeout", nullptr};
  const char* values[] = {options.postgres.url.c_str(), connect_s.c_str(), nullptr};
  return PQpingParams(keys, values, 1) == PQPING_OK;
}

std::string check_postgres_url(const std::string& url) {
  char* error = nullptr;
  PQconninfoOption* options = PQconninfoParse(url.c_str(), &error);
  PQfreemem(error);  // it may quote part of the string
  if (options != nullptr) {
    PQconninfoFree(options);
    return {};
  }
  return "[storage] postgres_url is not a connection string libpq can read (key=value pairs, or a postgresql:// URI "
         "with percent-encoded special characters); it is not shown here because it may hold a password";
}

std::string PostgresDatabase::schema_name(std::string_view prefix, std::string_view plugin) {
  return std::string(prefix) + "_" + std::string(plugin);
}

// ---------------------------------------------------------------------------------------------

struct PostgresDatabase::Impl {
  explicit Impl(const Options& o)
      : options(o), schema(schema_name(o.postgres.prefix, o.plugin)), host_schema(quote_ident(o.postgres.prefix)), log(observability::logger("storage")),
        where(describe_postgres_url(o.postgres.url)) {}

  const Options& options;
  const std::string schema;       // also the role's name
  const std::string host_schema;  // quoted: the host's own, with the roles' passwords
  std::shared_ptr<spdlog::logger> log;
  const std::string where;  // the server, for messages (no password)
  std::string password;     // of the plugin's role, from <prefix>.plugin_roles

  Counters counters;
  std::mutex listener_mutex;  // a reload may set the listener while the old generation commits
  std::function<void()> commit_listener;

  void committed() {
    std::lock_guard lock(listener_mutex);
    if (commit_listener) commit_listener();
  }

  // The pool of the plugin's connections.
  std::mutex pool_mutex;
  std::condition_variable pool_free;
  std::vector<std::unique_ptr<Connection>> idle;
  std::uint32_t open_count = 0;  // idle + leased + held by transactions
  std::unordered_set<Connection*> every;  // every open connection of the pool, to cancel at close
  std::atomic<bool> closed{false};

  // Transactions: every open id (top level and savepoints) maps to its transaction.
  struct Txn {
    keel_txn top = KEEL_TXN_NONE;  // the top-level id; set before the transaction is shared
    std::mutex m;
    std::unique_ptr<Connection> conn;  // null once finished
    std::vector<keel_txn> open;        // the top-level id, then its savepoints
    Clock::time_point since;
    bool notify = false;
  };
  std::mutex txns_mutex;
  std::unordered_map<keel_txn, std::shared_ptr<Txn>> txns;
  std::unordered_set<keel_txn> expired;  // rolled back after transaction_timeout
  keel_txn next_txn = 1;

  // --- connections ---

  /// Opens a connection as `admin` (the URL's role) or as the plugin's role. Both keep the
  /// plugin's schema as their only search path and the server-side timeouts.
  std::unique_ptr<Connection> connect(bool admin) {
    const auto timeout_ms = std::to_string(options.transaction_timeout.count());
    const std::string server_options = "-c search_path=" + schema + " -c statement_timeout=" + timeout_ms +
                                       " -c idle_in_transaction_session_timeout=" + timeout_ms +
                                       " -c bytea_output=hex -c client_encoding=UTF8 -c standard_conforming_strings=on";
    const auto connect_s = connect_timeout_seconds(options);
    const std::string app = "keel:" + options.plugin;
    std::vector<const char*> keys{"dbname", "options", "connect_timeout", "application_name"};
    std::vector<const char*> values{options.postgres.url.c_str(), server_options.c_str(), connect_s.c_str(), app.c_str()};
    if (!admin) {
      keys.insert(keys.end(), {"user", "password"});
      values.insert(values.end(), {schema.c_str(), password.c_str()});
    }
    keys.push_back(nullptr);
    values.push_back(nullptr);
    PGconn* c = PQconnectdbParams(keys.data(), values.data(), 1);
    auto conn = std::make_unique<Connection>(c);
    if (c == nullptr || PQstatus(c) != CONNECTION_OK) {
      const auto why = c != nullptr ? trimmed_message(PQerrorMessage(c)) : std::string("out of memory");
      fail(KEEL_ERR_UNAVAILABLE, "cannot connect to PostgreSQL " + where + " as " +
                                     (admin ? std::string("the administrative role") : "role " + schema) + ": " + why);
      return nullptr;
    }
    if (!admin) {
      std::lock_guard lock(pool_mutex);
      every.insert(conn.get());
    }
    return conn;
  }

  /// Closes a pooled connection for good (pool_mutex held).
  void forget(std::unique_ptr<Connection>& conn) {
    every.erase(conn.get());
    conn.reset();
    --open_count;
  }

  /// Takes a connection of the plugin's role from the pool, opening one while fewer than
  /// pool_size exist; waits up to busy_timeout for one to come back.
  keel_status lease(std::unique_ptr<Connection>& out) {
    std::unique_lock lock(pool_mutex);
    const auto deadline = Clock::now() + options.busy_timeout;
    for (;;) {
      if (closed) return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
      if (!idle.empty()) {
        out = std::move(idle.back());
        idle.pop_back();
        if (!out->lost()) return KEEL_OK;
        forget(out);  // the server went away since it was used: open a fresh one below
      }
      if (open_count < options.postgres.pool_size) {
        ++open_count;
        lock.unlock();
        out = connect(false);
        if (out != nullptr) return KEEL_OK;
        lock.lock();
        --open_count;
        pool_free.notify_one();
        return KEEL_ERR_UNAVAILABLE;  // connect() set the message
      }
      lock.unlock();
      const bool reclaimed = reclaim_expired();
      lock.lock();
      if (reclaimed) continue;
      // Wake now and then: a transaction holding a connection may pass its timeout meanwhile.
      const auto wake = std::min(deadline, Clock::now() + std::chrono::milliseconds(50));
      if (pool_free.wait_until(lock, wake) == std::cv_status::timeout && Clock::now() >= deadline && idle.empty() &&
          open_count >= options.postgres.pool_size) {
        counters.count_busy();
        log->warn("storage pool busy plugin={} pool_size={} waited_ms={}", options.plugin, options.postgres.pool_size,
                  options.busy_timeout.count());
        return fail(KEEL_ERR_BUSY, "all " + std::to_string(options.postgres.pool_size) +
                                       " PostgreSQL connections ([storage] postgres_pool_size) stayed busy for "
                                       "busy_timeout_ms=" + std::to_string(options.busy_timeout.count()) +
                                       "; retry later");
      }
    }
  }

  /// Puts a connection back: a lost one, or one a plugin left inside a transaction block, is
  /// closed instead (the next lease opens a fresh one).
  void give_back(std::unique_ptr<Connection> conn) {
    if (conn == nullptr) return;
    bool keep = !conn->lost();
    if (keep && !conn->idle()) keep = conn->simple("ROLLBACK") >= 0 && conn->idle();
    if (keep && conn->dirty) keep = conn->simple("RESET ALL") >= 0;
    conn->dirty = false;
    std::lock_guard lock(pool_mutex);
    if (keep && !closed) idle.push_back(std::move(conn));
    else forget(conn);
    pool_free.notify_all();
  }

  /// A leased connection, given back when the lease ends (also when an exception passes).
  struct Lease {
    Impl& impl;
    std::unique_ptr<Connection> conn;
    ~Lease() { impl.give_back(std::move(conn)); }
  };

  /// Rolls back every transaction older than transaction_timeout (a plugin that never ended it)
  /// and returns its connection to the pool. True if one was reclaimed.
  bool reclaim_expired() {
    std::vector<std::shared_ptr<Txn>> old;
    {
      std::lock_guard lock(txns_mutex);
      const auto now = Clock::now();
      for (auto& [id, t] : txns)
        if (id == t->top && now - t->since >= options.transaction_timeout) old.push_back(t);
    }
    bool any = false;
    for (auto& t : old) {
      std::unique_lock lock(t->m, std::try_to_lock);  // one in use is not forgotten
      if (!lock.owns_lock() || t->conn == nullptr) continue;
      log->warn("transaction rolled back after transaction_timeout_ms={} plugin={} txn={}",
                options.transaction_timeout.count(), options.plugin, t->top);
      finish(*t, true);
      any = true;
    }
    return any;
  }

  /// Ends `t` (its SQL side done or abandoned): forgets its ids, returns its connection.
  void finish(Txn& t, bool timed_out) {
    {
      std::lock_guard lock(txns_mutex);
      for (auto id : t.open) {
        txns.erase(id);
        if (timed_out) expired.insert(id);
      }
      if (expired.size() > 4096) expired.clear();  // bounded memory; old ids then read as "unknown"
    }
    t.open.clear();
    t.notify = false;
    give_back(std::move(t.conn));
  }

  /// Finds the open transaction of `id`, locked; `depth` is the id's place in it.
  keel_status find(keel_txn id, std::shared_ptr<Txn>& out, std::unique_lock<std::mutex>& lock, std::size_t& depth) {
    {
      std::lock_guard g(txns_mutex);
      if (closed) return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
      if (auto it = txns.find(id); it != txns.end()) out = it->second;
      if (out == nullptr) {
        if (expired.contains(id))
          return fail(KEEL_ERR_TIMEOUT, "transaction " + std::to_string(id) + " was rolled back after "
                                        "transaction_timeout_ms=" + std::to_string(options.transaction_timeout.count()));
        return fail(KEEL_ERR_NOT_FOUND, "no open transaction or savepoint with id " + std::to_string(id));
      }
    }
    lock = std::unique_lock(out->m);
    const auto it = std::find(out->open.begin(), out->open.end(), id);
    if (out->conn == nullptr || it == out->open.end())
      return fail(KEEL_ERR_NOT_FOUND, "no open transaction or savepoint with id " + std::to_string(id));
    if (Clock::now() - out->since >= options.transaction_timeout) {
      static_cast<void>(out->conn->simple("ROLLBACK"));
      log->warn("transaction rolled back after transaction_timeout_ms={} plugin={} txn={}",
                options.transaction_timeout.count(), options.plugin, out->top);
      finish(*out, true);
      return fail(KEEL_ERR_TIMEOUT, "transaction " + std::to_string(id) + " was rolled back after "
                                    "transaction_timeout_ms=" + std::to_string(options.transaction_timeout.count()));
    }
    depth = static_cast<std::size_t>(it - out->open.begin());
    return KEEL_OK;
  }

  /// Runs `fn(connection)` inside `txn`, or (txn 0) on a leased connection in autocommit mode.
  /// A transaction whose connection is lost is over: its ids are forgotten.
  template <class F>
  keel_status with_connection(keel_txn txn, F&& fn) {
    if (txn == KEEL_TXN_NONE) {
      Lease leased{*this, nullptr};
      if (auto st = lease(leased.conn); st < 0) return st;
      return fn(*leased.conn);
    }
    std::shared_ptr<Txn> t;
    std::unique_lock<std::mutex> lock;
    std::size_t depth = 0;
    if (auto st = find(txn, t, lock, depth); st < 0) return st;
    const auto st = fn(*t->conn);
    if (st < 0 && t->conn->lost()) {
      finish(*t, false);
      error_text() += " (the transaction was rolled back)";
    }
    return st;
  }

  /// Commit or rollback of `txn`, counted as one statement: `top(t)` ends a top-level
  /// transaction, `savepoint(t, depth)` the savepoint at `depth` (and those above it); `t` is locked.
  template <class Top, class Savepoint>
  keel_status end_transaction(keel_txn txn, Top&& top, Savepoint&& savepoint) {
    if (auto st = enter_call(); st < 0) return st;
    const auto start = Clock::now();
    std::shared_ptr<Txn> t;
    std::unique_lock<std::mutex> lock;
    std::size_t depth = 0;
    auto st = find(txn, t, lock, depth);
    if (st >= 0) st = depth == 0 ? top(*t) : savepoint(*t, depth);
    record(start, st);
    return st;
  }

  /// Forgets the ids of `t`'s savepoints from `depth` on (released or rolled back).
  void drop_savepoints(Txn& t, std::size_t depth) {
    {
      std::lock_guard g(txns_mutex);
      for (auto i = depth; i < t.open.size(); ++i) txns.erase(t.open[i]);
    }
    t.open.resize(depth);
  }

  // --- statements ---

  /// Runs one statement on `c` and streams its rows to `rows`.
  keel_status run(Connection& c, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                  keel_sql_result* out, bool plugin) {
    const auto st = run_once(c, sql, params, rows, out, plugin);
    // 0A000 "cached plan must not change result type".
    if (st >= 0 || c.state() != "0A000") return st;
    // A statement prepared before a migration (here, on another connection or on another host)
    // whose result no longer fits: prepare it again. Outside a transaction at once; inside one,
    // the failure ended the transaction, so the caller runs it again.
    c.forget_statement(sql);
    if (!c.idle()) return fail(KEEL_ERR_BUSY, error_text() + "; the schema changed under a prepared statement: "
                                                             "run the transaction again");
    return run_once(c, sql, params, rows, out, plugin);
  }

  keel_status run_once(Connection& c, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                       keel_sql_result* out, bool plugin) {
    Connection::Prepared* p = nullptr;
    if (auto st = c.prepared(sql, params, options.statement_cache, p); st < 0) return st;
    c.dirty = c.dirty || p->changes_settings;
    thread_local Bound bound;
    if (auto st = bound.bind(params, p->params); st < 0) return st;
    // A plugin's statement ends with the request it serves (the server's statement_timeout bounds
    // it by transaction_timeout_ms anyway), or at once when the runner that asked is gone.
    const auto* cur = plugin ? abi::current_request() : nullptr;
    const Watch watch{cur != nullptr && cur->deadline != Clock::time_point{} ? cur->deadline : Clock::time_point::max(),
                      cur != nullptr ? cur->abandoned : nullptr};
    Watch::Stop stopped = Watch::Stop::kNo;
    Result r{c.exec_prepared(p->name.c_str(), static_cast<int>(params.size()), bound.values.data(),
                             bound.lengths.data(), bound.formats.data(), watch, stopped)};
    if (auto st = c.check(r.r, PGRES_COMMAND_OK); st < 0) {
      if (stopped == Watch::Stop::kNo || (c.state() != "57014" && !c.lost())) return st;
      if (stopped == Watch::Stop::kAbandoned) {
        log->warn("stopped a statement whose plugin runner is gone plugin={}", options.plugin);
        return fail(KEEL_ERR_UNAVAILABLE, "statement stopped: the plugin runner that asked for it is gone");
      }
      return fail(KEEL_ERR_TIMEOUT, "statement stopped at its deadline (the request's)");
    }
    const int n = PQntuples(r.r);
    std::int64_t last_id = 0;
    if (p->insert && n > 0 && PQnfields(r.r) > 0 && !PQgetisnull(r.r, n - 1, 0)) {
      const Oid t = PQftype(r.r, 0);
      if (t == kInt8Oid || t == kInt4Oid || t == kInt2Oid) last_id = std::strtoll(PQgetvalue(r.r, n - 1, 0), nullptr, 10);
    }
    std::int64_t delivered = p->returning_added ? 0 : n;
    if (rows.fn != nullptr && !p->returning_added && n > 0) delivered = deliver(r.r, rows);
    if (out != nullptr) {
      out->reserved = 0;
      const char* changed = PQcmdTuples(r.r);
      if (KEEL_HAS_FIELD(out, keel_sql_result, changes))
        out->changes = p->read_only || changed == nullptr || *changed == '\0' ? 0 : std::strtoll(changed, nullptr, 10);
      if (KEEL_HAS_FIELD(out, keel_sql_result, last_insert_id)) out->last_insert_id = last_id;
      if (KEEL_HAS_FIELD(out, keel_sql_result, rows)) out->rows = delivered;
    }
    return KEEL_OK;
  }

  /// Hands the rows of `r` to the callback as typed values, until it asks to stop. Returns the
  /// number of rows handed over.
  static std::int64_t deliver(PGresult* r, RowSink rows) {
    const int n = PQntuples(r), columns = PQnfields(r);
    thread_local std::vector<keel_sql_value> values;
    thread_local std::vector<keel_host_bytes> names;
    thread_local std::vector<std::string> blobs;
    thread_local std::vector<Oid> types;
    values.resize(static_cast<std::size_t>(columns));
    names.resize(static_cast<std::size_t>(columns));
    blobs.resize(static_cast<std::size_t>(columns));
    types.resize(static_cast<std::size_t>(columns));
    for (int i = 0; i < columns; ++i) {
      const char* name = PQfname(r, i);
      names[static_cast<std::size_t>(i)] = {name, name != nullptr ? std::strlen(name) : 0};
      types[static_cast<std::size_t>(i)] = PQftype(r, i);
    }
    std::int64_t delivered = 0;
    for (int row = 0; row < n; ++row) {
      for (int i = 0; i < columns; ++i) {
        const auto ui = static_cast<std::size_t>(i);
        auto& v = values[ui];
        v = keel_sql_value{};
        if (PQgetisnull(r, row, i) != 0) continue;  // KEEL_SQL_NULL
        const char* text = PQgetvalue(r, row, i);
        const auto len = static_cast<std::size_t>(PQgetlength(r, row, i));
        switch (types[ui]) {
          case kInt2Oid:
          case kInt4Oid:
          case kInt8Oid:
          case kOidOid: v.type = KEEL_SQL_INTEGER; v.integer = std::strtoll(text, nullptr, 10); break;
          case kBoolOid: v.type = KEEL_SQL_INTEGER; v.integer = text[0] == 't' ? 1 : 0; break;
          case kNumericOid:
            // An integral numeric (sum() of integers) reads as an integer, as SQLite's would.
            if (len > 0 && len < 19 && std::strpbrk(text, ".eEN") == nullptr) {
              v.type = KEEL_SQL_INTEGER;
              v.integer = std::strtoll(text, nullptr, 10);
              break;
            }
            [[fallthrough]];
          case kFloat4Oid:
          case kFloat8Oid: v.type = KEEL_SQL_REAL; v.real = std::strtod(text, nullptr); break;
          case kByteaOid:
            v.type = KEEL_SQL_BLOB;
            if (!decode_bytea(text, len, blobs[ui])) blobs[ui].assign(text, len);
            v.bytes = {blobs[ui].empty() ? nullptr : blobs[ui].data(), blobs[ui].size()};
            break;
          default: v.type = KEEL_SQL_TEXT; v.bytes = {len == 0 ? nullptr : text, len}; break;
        }
      }
      ++delivered;
      const CallbackScope scope;
      if (rows.fn(rows.user, values.data(), names.data(), static_cast<std::size_t>(columns)) != 0) break;
    }
    return delivered;
  }

  void record(Clock::time_point start, keel_status st) {
    counters.record(start, st);
    if (st == KEEL_ERR_UNAVAILABLE)
      log->error("storage unavailable plugin={} server={} error=\"{}\"", options.plugin, where, error_text());
    else if (st == KEEL_ERR_STORAGE_FULL)
      log->warn("storage full plugin={} server={} error=\"{}\"", options.plugin, where, error_text());
  }

  /// Every statement, the plugin's and the host's, runs as the plugin's role: the host's own
  /// tables in its schema are reached through the grants (docs/storage.md).
  keel_status exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params, RowSink rows,
                   keel_sql_result* out, bool plugin = false) {
    if (auto st = enter_call(); st < 0) return st;
    const auto start = Clock::now();
    const auto st = with_connection(txn, [&](Connection& c) { return run(c, sql, params, rows, out, plugin); });
    record(start, st);
    return st;
  }

  // --- set-up ---

  /// Creates what is missing, as the administrative role, in one transaction under an advisory
  /// lock (hosts starting together provision one after the other): the host's schema (the prefix)
  /// with the plugin roles' passwords, the plugin's role and schema, and the host's tables in
  /// that schema with the grants docs/storage.md lists.
  void provision() {
    // A server that does not answer (down, starting, shutting down, unreachable) may answer
    // later: the host waits for it. One that answers but refuses the login (password, pg_hba,
    // no such database) will not change by itself.
    if (!postgres_answers(options))
      throw Unavailable("PostgreSQL " + where + " does not accept connections (down, starting up, or unreachable)");
    auto admin = connect(true);
    if (admin == nullptr) throw std::runtime_error(last_error());
    // A failure because the server went away may pass by itself; any other will not.
    auto failed = [&admin] {
      if (admin->lost()) throw Unavailable(last_error());
      throw std::runtime_error(last_error());
    };
    auto run_sql = [&](const std::string& sql) {
      if (admin->simple(sql) < 0) failed();
    };
    auto query = [&](const std::string& sql, std::vector<std::string> args) {
      std::vector<const char*> values;
      for (const auto& a : args) values.push_back(a.c_str());
      Result r{PQexecParams(admin->get(), sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr,
                            nullptr, 0)};
      if (admin->check(r.r, PGRES_TUPLES_OK) < 0) failed();
      return r;
    };
    const auto role = quote_ident(schema);
    const auto& h = host_schema;
    const auto& prefix = options.postgres.prefix;
    run_sql("BEGIN");
    // The first host to arrive creates the host's schema; an advisory lock orders hosts arriving
    // together only then (any role could hold its key). Later, the table's own lock orders them.
    if (PQgetisnull(query("SELECT to_regclass($1)", {h + ".plugin_roles"}).r, 0, 0) != 0) {
      run_sql("SELECT pg_advisory_xact_lock(hashtext(" + quote_literal(prefix) + " || ' provisioning'))");
      run_sql("CREATE SCHEMA IF NOT EXISTS " + h + "; REVOKE ALL ON SCHEMA " + h + " FROM PUBLIC;"
              "CREATE TABLE IF NOT EXISTS " + h + ".plugin_roles (plugin TEXT PRIMARY KEY, role TEXT NOT NULL,"
              " password TEXT NOT NULL, created_at TIMESTAMPTZ NOT NULL DEFAULT now());"
              "REVOKE ALL ON " + h + ".plugin_roles FROM PUBLIC");
    }
    run_sql("LOCK TABLE " + h + ".plugin_roles IN EXCLUSIVE MODE");
    {
      const Result r = query("SELECT password FROM " + h + ".plugin_roles WHERE plugin = $1", {options.plugin});
      if (PQntuples(r.r) > 0) password = PQgetvalue(r.r, 0, 0);
    }
    const bool superuser = std::string_view(PQgetvalue(
                               query("SELECT rolsuper::text FROM pg_roles WHERE rolname = current_user", {}).r, 0, 0)) ==
                           "true";
    const bool exists = PQntuples(query("SELECT 1 FROM pg_roles WHERE rolname = $1", {schema}).r) > 0;
    if (password.empty() && exists)
      throw std::runtime_error("a role named " + schema + " exists but this deployment did not create it (no row in " +
                               prefix + ".plugin_roles); Keel never takes over a role: drop it, or set another "
                               "[storage] postgres_prefix");
    if (password.empty()) {
      password = random_password();
      run_sql("CREATE ROLE " + role);
      const Result r = query("INSERT INTO " + h + ".plugin_roles (plugin, role, password) VALUES ($1, $2, $3) RETURNING 1",
                             {options.plugin, schema, password});
    }
    // The password travels hashed, so no statement the server might log holds it.
    char* hashed = PQencryptPasswordConn(admin->get(), password.c_str(), schema.c_str(), nullptr);
    if (hashed == nullptr) throw std::runtime_error("cannot hash the role's password: " + std::string(PQerrorMessage(admin->get())));
    const std::string verifier = hashed;
    PQfreemem(hashed);
    // Every start re-asserts the role's limits and drops settings it gave itself. Only a superuser
    // may name the superuser, replication and RLS attributes; a CREATEROLE administrator cannot
    // grant them in the first place.
    run_sql("ALTER ROLE " + role + " LOGIN NOCREATEDB NOCREATEROLE NOINHERIT" +
            (superuser ? " NOSUPERUSER NOREPLICATION NOBYPASSRLS" : "") + " PASSWORD " + quote_literal(verifier) +
            "; ALTER ROLE " + role + " RESET ALL");
    const auto s = quote_ident(schema);
    run_sql("CREATE SCHEMA IF NOT EXISTS " + s + "; REVOKE ALL ON SCHEMA " + s + " FROM PUBLIC;"
            "GRANT USAGE, CREATE ON SCHEMA " + s + " TO " + role + ";"
            "CREATE TABLE IF NOT EXISTS " + s + "._keel_migrations (version BIGINT PRIMARY KEY, description TEXT NOT NULL,"
            " checksum TEXT NOT NULL, applied_at TEXT NOT NULL, duration_ms BIGINT NOT NULL);"
            "CREATE TABLE IF NOT EXISTS " + s + "._keel_kv (key BYTEA PRIMARY KEY, value BYTEA NOT NULL,"
            " version BIGINT NOT NULL, expires_at BIGINT NOT NULL DEFAULT 0);"
            "CREATE INDEX IF NOT EXISTS _keel_kv_expiry ON " + s + "._keel_kv (expires_at) WHERE expires_at > 0;"
            "GRANT SELECT, INSERT ON " + s + "._keel_migrations TO " + role + ";"
            "GRANT SELECT, INSERT, UPDATE, DELETE ON " + s + "._keel_kv TO " + role);
    run_sql("COMMIT");
  }
};

// ---------------------------------------------------------------------------------------------

PostgresDatabase::PostgresDatabase(Options options)
    : Database(std::move(options)), impl_(std::make_unique<Impl>(options_)) {
  auto& s = *impl_;
  const auto context = " (plugin " + options_.plugin + ", PostgreSQL " + s.where + ")";
  if (options_.postgres.url.empty())
    throw std::runtime_error("cannot open database" + context + ": [storage] postgres_url is not set");
  if (const auto why = check_postgres_url(options_.postgres.url); !why.empty())
    throw std::runtime_error("cannot open database (plugin " + options_.plugin + "): " + why);
  if (s.schema.size() > 63)
    throw std::runtime_error("cannot open database" + context + ": the schema name " + s.schema +
                             " is longer than PostgreSQL's 63 bytes; use a shorter plugin name");
  try {
    s.provision();
    // One connection of the plugin's role now: a role that cannot log in fails the start, not
    // the first request.
    std::unique_ptr<Connection> first;
    if (const auto st = s.lease(first); st < 0) {
      if (st == KEEL_ERR_UNAVAILABLE && !postgres_answers(options_)) throw Unavailable(last_error());
      throw std::runtime_error(last_error());
    }
    s.give_back(std::move(first));
  } catch (const Unavailable& e) {
    throw Unavailable("cannot prepare database" + context + ": " + e.what());
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot prepare database" + context + ": " + e.what());
  }
}

PostgresDatabase::~PostgresDatabase() { close(); }

void PostgresDatabase::close() {
  auto& s = *impl_;
  std::vector<std::shared_ptr<Impl::Txn>> open;
  {
    std::lock_guard lock(s.txns_mutex);
    if (s.closed) return;
    s.closed = true;
    for (auto& [id, t] : s.txns)
      if (id == t->top) open.push_back(t);
  }
  // Statements still running stop now: statement_timeout alone does not bound them, since a
  // plugin may lift it for its own session.
  auto cancel_all = [&] {
    std::lock_guard lock(s.pool_mutex);
    for (const auto* c : s.every) c->cancel();
  };
  cancel_all();
  for (auto& t : open) {
    std::lock_guard lock(t->m);
    if (t->conn == nullptr) continue;
    s.log->warn("transaction left open at stop rolled back plugin={} txn={}", options_.plugin, t->top);
    static_cast<void>(t->conn->simple("ROLLBACK"));
    s.finish(*t, false);
  }
  std::unique_lock lock(s.pool_mutex);
  s.pool_free.notify_all();
  while (!s.idle.empty()) {
    s.forget(s.idle.back());
    s.idle.pop_back();
  }
  // Leased connections come back as their statement ends (never held across calls).
  for (int waited = 0; s.open_count != 0; ++waited) {
    s.pool_free.wait_for(lock, std::chrono::milliseconds(10));
    if (waited % 100 == 99) {
      lock.unlock();
      cancel_all();
      lock.lock();
    }
  }
}

keel_status PostgresDatabase::exec(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params,
                                   RowSink rows, keel_sql_result* out) {
  return impl_->exec(txn, sql, params, rows, out, /*plugin=*/true);
}

keel_status PostgresDatabase::exec_host(keel_txn txn, std::string_view sql, std::span<const keel_sql_param> params,
                                        RowSink rows, keel_sql_result* out) {
  return impl_->exec(txn, sql, params, rows, out);
}

keel_status PostgresDatabase::exec_script(keel_txn txn, std::string_view sql) {
  auto& s = *impl_;
  if (auto st = enter_call(); st < 0) return st;
  if (txn == KEEL_TXN_NONE) return fail(KEEL_ERR_INVALID_ARGUMENT, "a script runs inside a transaction");
  const auto start = Clock::now();
  for (const auto& keyword : pg::statement_keywords(sql))
    if (auto st = refuse_control(keyword); st < 0) return st;
  const auto st = s.with_connection(txn, [&](Connection& c) {
    c.forget_schema();
    c.dirty = true;  // a script may SET anything; RESET ALL when the connection goes back
    return c.simple(pg::translate_ddl(sql));
  });
  s.record(start, st);
  return st;
}

keel_status PostgresDatabase::prepare(std::string_view sql, keel_sql_info* out) {
  auto& s = *impl_;
  if (auto st = enter_call(); st < 0) return st;
  if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "prepare needs an output struct");
  return s.with_connection(KEEL_TXN_NONE, [&](Connection& c) {
    Connection::Prepared* p = nullptr;
    if (auto st = c.prepared(sql, {}, s.options.statement_cache, p); st < 0) return st;
    Result d{PQdescribePrepared(c.get(), p->name.c_str())};
    if (auto st = c.check(d.r, PGRES_COMMAND_OK); st < 0) return st;
    if (KEEL_HAS_FIELD(out, keel_sql_info, param_count)) out->param_count = static_cast<std::uint32_t>(PQnparams(d.r));
    if (KEEL_HAS_FIELD(out, keel_sql_info, column_count))
      out->column_count = p->returning_added ? 0u : static_cast<std::uint32_t>(PQnfields(d.r));
    if (KEEL_HAS_FIELD(out, keel_sql_info, read_only)) out->read_only = p->read_only ? 1u : 0u;
    return KEEL_OK;
  });
}

keel_status PostgresDatabase::begin(keel_txn parent, keel_txn* out) {
  auto& s = *impl_;
  if (auto st = enter_call(); st < 0) return st;
  if (out == nullptr) return fail(KEEL_ERR_INVALID_ARGUMENT, "begin needs an output id");
  *out = KEEL_TXN_NONE;
  const auto start = Clock::now();
  keel_status st = KEEL_OK;
  if (parent == KEEL_TXN_NONE) {
    auto t = std::make_shared<Impl::Txn>();
    st = s.lease(t->conn);
    // Explicit, whatever default the database was given: statements see what committed before them.
    if (st >= 0) st = t->conn->simple("BEGIN ISOLATION LEVEL READ COMMITTED");
    if (st >= 0) {
      std::lock_guard lock(s.txns_mutex);
      if (s.closed) {
        s.give_back(std::move(t->conn));
        return fail(KEEL_ERR_UNAVAILABLE, "storage is closed (the plugin is stopping)");
      }
      *out = s.next_txn++;
      t->top = *out;
      t->open.assign(1, *out);
      t->since = Clock::now();
      s.txns.emplace(*out, t);
    } else if (t->conn != nullptr) {
      s.give_back(std::move(t->conn));
    }
  } else {
    std::shared_ptr<Impl::Txn> t;
    std::unique_lock<std::mutex> lock;
    std::size_t depth = 0;
    st = s.find(parent, t, lock, depth);
    if (st >= 0 && depth + 1 != t->open.size())
      st = fail(KEEL_ERR_INVALID_ARGUMENT, "savepoint " + std::to_string(t->open.back()) + " is open inside " +
                                               std::to_string(parent) + "; nest under the innermost one");
    if (st >= 0) {
      keel_txn id = KEEL_TXN_NONE;
      {
        std::lock_guard g(s.txns_mutex);
        id = s.next_txn++;
      }
      st = t->conn->simple("SAVEPOINT keel_sp_" + std::to_string(id));
      if (st >= 0) {
        t->open.push_back(id);
        std::lock_guard g(s.txns_mutex);
        s.txns.emplace(id, t);
        *out = id;
      } else if (t->conn->lost()) {
        s.finish(*t, false);
      }
    }
  }
  s.record(start, st);
  return st;
}

keel_status PostgresDatabase::commit(keel_txn txn) {
  auto& s = *impl_;
  return s.end_transaction(
      txn,
      [&](Impl::Txn& t) -> keel_status {
        // COMMIT of a transaction a failed statement aborted answers ROLLBACK without an error.
        const bool aborted = PQtransactionStatus(t.conn->get()) == PQTRANS_INERROR;
        Result r{PQexec(t.conn->get(), "COMMIT")};
        auto st = t.conn->check(r.r, PGRES_COMMAND_OK);
        if (st >= 0 && aborted)
          st = fail(KEEL_ERR_CONFLICT, "transaction " + std::to_string(txn) +
                                           " was rolled back, not committed: a statement in it failed earlier");
        if (st >= 0 && t.notify) s.committed();
        if (st < 0 && t.conn->lost()) {
          // The COMMIT may have reached the server before the connection broke.
          error_text() += " (the outcome of the commit is unknown: it may have been applied)";
          if (t.notify) s.committed();  // let readers look; they find what committed
        } else if (st < 0) {
          error_text() += " (the transaction was rolled back)";
        }
        s.finish(t, false);
        return st;
      },
      [&](Impl::Txn& t, std::size_t depth) -> keel_status {
        const auto st = t.conn->simple("RELEASE keel_sp_" + std::to_string(txn));
        if (st >= 0) s.drop_savepoints(t, depth);
        else if (t.conn->lost()) s.finish(t, false);
        return st;
      });
}

keel_status PostgresDatabase::rollback(keel_txn txn) {
  auto& s = *impl_;
  return s.end_transaction(
      txn,
      [&](Impl::Txn& t) -> keel_status {
        keel_status st = KEEL_OK;  // a lost connection: the server ended the transaction with it
        if (!t.conn->lost()) st = t.conn->simple("ROLLBACK");
        if (t.conn->lost()) st = KEEL_OK;
        s.finish(t, false);
        return st;
      },
      [&](Impl::Txn& t, std::size_t depth) -> keel_status {
        const auto name = "keel_sp_" + std::to_string(txn);
        const auto st = t.conn->simple("ROLLBACK TO SAVEPOINT " + name + "; RELEASE SAVEPOINT " + name);
        s.drop_savepoints(t, depth);
        if (t.conn->lost()) s.finish(t, false);
        return st;
      });
}

keel_status PostgresDatabase::append_in_commit_order(keel_txn txn, std::string_view table, std::string_view sql,
                                                     std::span<const keel_sql_param> params) {
  // Appending transactions go one after the other, from the lock to their end: an identity value
  // drawn earlier never commits after a later one. The lock is the table's, so it orders the
  // plugin's replicas on every host too. Outside a transaction, one of its own holds it.
  auto& s = *impl_;
  const bool own = txn == KEEL_TXN_NONE;
  if (own)
    if (auto st = begin(KEEL_TXN_NONE, &txn); st < 0) return st;
  // A lock on the table itself, which only this plugin's role can reach (an advisory lock's key
  // could be taken by any role). SHARE ROW EXCLUSIVE conflicts with itself, not with readers.
  auto st = s.exec(txn, "LOCK TABLE " + quote_ident(table) + " IN SHARE ROW EXCLUSIVE MODE", {}, {}, nullptr);
  if (st >= 0) st = s.exec(txn, sql, params, {}, nullptr);
  if (own) {
    if (st >= 0) return commit(txn);
    const std::string why = last_error();
    static_cast<void>(rollback(txn));
    return fail(st, why);
  }
  return st;
}

// A transaction-scoped advisory lock keyed by the schema: LOCK TABLE would need more than the
// role's SELECT and INSERT on _keel_migrations, and any role may take an advisory lock.
keel_status PostgresDatabase::lock_migrations(keel_txn txn) {
  const auto sql = "SELECT pg_advisory_xact_lock(hashtext(" + quote_literal(impl_->schema + " migrations") + "))::text";
  return exec_host(txn, sql, {}, {}, nullptr);
}

keel_status PostgresDatabase::has_table(std::string_view name, bool& out) {
  out = false;
  const keel_sql_param p[1] = {{KEEL_SQL_TEXT, 0, 0, 0, {name.data(), name.size()}}};
  auto sink = [](void* user, const keel_sql_value*, const keel_host_bytes*, std::size_t) -> int32_t {
    *static_cast<bool*>(user) = true;
    return 1;
  };
  return exec_host(KEEL_TXN_NONE, "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = $1", p,
                   {sink, &out}, nullptr);
}

void PostgresDatabase::set_commit_listener(std::function<void()> fn) {
  std::lock_guard lock(impl_->listener_mutex);
  impl_->commit_listener = std::move(fn);
}

void PostgresDatabase::notify_on_commit(keel_txn txn) {
  auto& s = *impl_;
  std::shared_ptr<Impl::Txn> t;
  {
    std::lock_guard lock(s.txns_mutex);
    if (auto it = s.txns.find(txn); it != s.txns.end()) t = it->second;
  }
  if (t == nullptr) return;
  std::lock_guard lock(t->m);
  t->notify = true;
}

// ---------------------------------------------------------------------------------------------
// Key-value store: each change is one statement, atomic under PostgreSQL's row locks whatever
// the isolation level, so compare-and-set holds between hosts too.

namespace {

int32_t take_version(void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) {
  *static_cast<std::int64_t*>(user) = v[0].integer;
  return 1;
}

/// The key's current row, for the message of a refused compare-and-set.
keel_status why_refused(PostgresDatabase& db, keel_txn txn, std::string_view key, std::int64_t expected,
                        std::string_view what) {
  KvRow row;
  const keel_sql_param p[2] = {{KEEL_SQL_BLOB, 0, 0, 0, {key.data(), key.size()}},
                               {KEEL_SQL_INTEGER, 0, now_unix_ms(), 0, {}}};
  auto sink = [](void* user, const keel_sql_value* v, const keel_host_bytes*, std::size_t) -> int32_t {
    *static_cast<KvRow*>(user) = {true, v[0].integer, v[1].integer};
    return 1;
  };
  if (auto st = db.exec_host(txn, kKvCurrent, p, {sink, &row}, nullptr); st < 0) return st;
  if (!row.found && what == "kv_delete") return fail(KEEL_ERR_NOT_FOUND, "no such key");
  const auto st = check_kv_version(row, expected, what);
  // The row changed again between the two statements: report the conflict all the same.
  return st < 0 ? st : fail(KEEL_ERR_CONFLICT, std::string(what) + ": the key changed concurrently; retry");
}

}  // namespace

keel_status PostgresDatabase::kv_put(keel_txn txn, const keel_kv_put_args& args, std::int64_t* out_version) {
  auto& s = *impl_;
  if (auto st = enter_call(); st < 0) return st;
  std::string_view key;
  if (auto st = check_kv_put(args, key); st < 0) return st;
  const auto now = now_unix_ms();
  const keel_sql_param p[5] = {{KEEL_SQL_BLOB, 0, 0, 0, args.key},
                               {KEEL_SQL_BLOB, 0, 0, 0, args.value},
                               {KEEL_SQL_INTEGER, 0, kv_expiry(now, args.ttl_ms), 0, {}},
                               {KEEL_SQL_INTEGER, 0, now, 0, {}},
                               {KEEL_SQL_INTEGER, 0, args.expected_version, 0, {}}};
  std::string_view sql;
  std::span<const keel_sql_param> params{p, 4};
  if (args.expected_version == KEEL_KV_ANY_VERSION) {
    sql = "INSERT INTO _keel_kv AS k (key, value, version, expires_at) VALUES ($1, $2, 1, $3) ON CONFLICT (key) DO"
          " UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = CASE WHEN"
          " k.expires_at = 0 OR k.expires_at > $4 THEN k.version + 1 ELSE 1 END RETURNING version";
  } else if (args.expected_version == 0) {
    sql = "INSERT INTO _keel_kv AS k (key, value, version, expires_at) VALUES ($1, $2, 1, $3) ON CONFLICT (key) DO"
          " UPDATE SET value = excluded.value, expires_at = excluded.expires_at, version = 1"
          " WHERE k.expires_at <> 0 AND k.expires_at <= $4 RETURNING version";
  } else {
    sql = "UPDATE _keel_kv SET value = $2, expires_at = $3, version = version + 1 WHERE key = $1 AND version = $5"
          " AND (expires_at = 0 OR expires_at > $4) RETURNING version";
    params = {p, 5};
  }
  std::int64_t version = 0;
  auto st = s.exec(txn, sql, params, {&take_version, &version}, nullptr);
  if (st >= 0 && version == 0) st = why_refused(*this, txn, key, args.expected_version, "kv_put");
  if (st >= 0 && txn == KEEL_TXN_NONE) {
    // Expired entries are invisible already; each autocommit write also removes a few, skipping
    // rows another writer holds.
    const keel_sql_param sweep[1] = {{KEEL_SQL_INTEGER, 0, now, 0, {}}};
    static_cast<void>(s.exec(txn,
                             "DELETE FROM _keel_kv WHERE key IN (SELECT key FROM _keel_kv WHERE expires_at > 0 AND"
                             " expires_at <= $1 LIMIT 16 FOR UPDATE SKIP LOCKED)",
                             sweep, {}, nullptr));
    clear_error();
  }
  if (st >= 0 && out_version != nullptr) *out_version = version;
  return st;
}

keel_status PostgresDatabase::kv_delete(keel_txn txn, std::string_view key, std::int64_t expected_version) {
  auto& s = *impl_;
  if (auto st = enter_call(); st < 0) return st;
  if (auto st = check_kv_key(key); st < 0) return st;
  if (expected_version < KEEL_KV_ANY_VERSION) return fail(KEEL_ERR_INVALID_ARGUMENT, "expected_version below -1");
  const keel_sql_param p[3] = {{KEEL_SQL_BLOB, 0, 0, 0, {key.data(), key.size()}},
                               {KEEL_SQL_INTEGER, 0, now_unix_ms(), 0, {}},
                               {KEEL_SQL_INTEGER, 0, expected_version, 0, {}}};
  std::int64_t version = 0;
  auto st = s.exec(txn,
                   "DELETE FROM _keel_kv WHERE key = $1 AND (expires_at = 0 OR expires_at > $2) AND ($3 < 0 OR"
                   " version = $3) RETURNING version",
                   p, {&take_version, &version}, nullptr);
  if (st >= 0 && version == 0) st = why_refused(*this, txn, key, expected_version, "kv_delete");
  return st;
}

Stats PostgresDatabase::stats() const { return impl_->counters.snapshot(); }

}  // namespace keel::host::storage
