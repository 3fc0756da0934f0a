// What `keel migrate status`, `keel backup` and GET /admin/migrations do to a plugin's schema on
// PostgreSQL, without the plugin and without provisioning anything: the migration history read
// by the administrative role in a read-only session, and a dump of the schema by pg_dump logged
// in as the plugin's role (it owns the plugin's tables; an administrator with CREATEROLE only
// could not read them).

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "storage/offline.hpp"
#include "storage/postgres/postgres_database.hpp"

extern char** environ;

namespace keel::host::storage {
namespace {

namespace fs = std::filesystem;

struct ConnDeleter {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using Conn = std::unique_ptr<PGconn, ConnDeleter>;
using Rows = std::unique_ptr<PGresult, ResultDeleter>;

/// A read-only session of the administrative role. Throws naming the server.
Conn connect_admin(const Options& o, const std::string& where) {
  if (o.postgres.url.empty()) throw std::runtime_error("[storage] postgres_url is not set");
  if (const auto why = check_postgres_url(o.postgres.url); !why.empty()) throw std::runtime_error(why);
  const auto connect_s = connect_timeout_seconds(o);
  const char* keys[] = {"dbname", "options", "connect_timeout", "application_name", nullptr};
  const char* values[] = {o.postgres.url.c_str(), "-c default_transaction_read_only=on", connect_s.c_str(),
                          "keel:tools", nullptr};
  Conn c{PQconnectdbParams(keys, values, 1)};
  if (c == nullptr || PQstatus(c.get()) != CONNECTION_OK)
    throw std::runtime_error("cannot connect to PostgreSQL " + where + ": " +
                             (c != nullptr ? trimmed_message(PQerrorMessage(c.get())) : std::string("out of memory")));
  PQsetNoticeProcessor(c.get(), [](void*, const char*) {}, nullptr);
  return c;
}

/// Runs `sql` with text parameters; throws naming `what` when it fails.
Rows query(PGconn* c, const std::string& sql, const std::vector<std::string>& args, const std::string& what) {
  std::vector<const char*> values;
  for (const auto& a : args) values.push_back(a.c_str());
  Rows r{PQexecParams(c, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(), nullptr, nullptr, 0)};
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) throw std::runtime_error("cannot read " + what + ": " + trimmed_message(PQerrorMessage(c)));
  return r;
}

bool schema_exists(PGconn* c, const std::string& schema) {
  return PQntuples(query(c, "SELECT 1 FROM pg_namespace WHERE nspname = $1", {schema}, "the schema list").get()) > 0;
}

/// The environment pg_dump runs with: this process's, without any variable libpq would read,
/// plus the settings `admin` connected with (PGHOST, PGPORT, PGSSLMODE, ... as in effect, so
/// pg_dump reaches the same server the same way) as `role` with `password`. Nothing secret goes
/// on the command line, where other users could read it. Settings without a variable
/// (sslpassword, keepalives) do not reach pg_dump.
std::vector<std::string> dump_environment(PGconn* admin, const std::string& role, const std::string& password) {
  PQconninfoOption* used = PQconninfo(admin);
  std::vector<std::string> names;  // every variable libpq reads
  for (auto* o = used; o != nullptr && o->keyword != nullptr; ++o)
    if (o->envvar != nullptr) names.emplace_back(o->envvar);
  names.insert(names.end(), {"PGSERVICE", "PGSERVICEFILE", "PGPASSFILE", "PGSYSCONFDIR"});
  std::vector<std::string> env;
  for (char** e = environ; *e != nullptr; ++e) {
    const std::string_view entry = *e;
    const auto name = entry.substr(0, entry.find('='));
    if (std::find(names.begin(), names.end(), name) == names.end()) env.emplace_back(entry);
  }
  for (auto* o = used; o != nullptr && o->keyword != nullptr; ++o) {
    const std::string_view k = o->keyword;
    if (o->val == nullptr || *o->val == '\0' || o->envvar == nullptr || k == "user" || k == "password" ||
        k == "passfile" || k == "service" || k == "options" || k == "application_name")
      continue;
    env.push_back(std::string(o->envvar) + "=" + o->val);
  }
  env.push_back("PGUSER=" + role);
  env.push_back("PGPASSWORD=" + password);
  env.push_back("PGAPPNAME=keel:backup");
  PQconninfoFree(used);
  return env;
}

/// Runs `argv` with `env` and its standard output on `out`; returns its exit status and up to
/// 64 KiB of what it wrote to stderr.
int run(const std::vector<std::string>& argv, const std::vector<std::string>& env, int out, std::string& err) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], STDERR_FILENO);
  posix_spawn_file_actions_adddup2(&actions, out, STDOUT_FILENO);
  posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
  std::vector<char*> args, envp;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  for (const auto& e : env) envp.push_back(const_cast<char*>(e.c_str()));
  envp.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  ::close(pipe_fds[1]);
  if (rc != 0) {
    ::close(pipe_fds[0]);
    throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc) +
                             " (install postgresql-client-15, or name the program with keel backup --pg-dump)");
  }
  char buf[4096];
  for (;;) {
    const auto n = ::read(pipe_fds[0], buf, sizeof buf);
    if (n > 0 && err.size() < 65536) err.append(buf, static_cast<std::size_t>(n));
    if (n == 0 || (n < 0 && errno != EINTR)) break;
  }
  ::close(pipe_fds[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

MigrationHistory read_postgres_history(const Options& o) {
  const auto schema = PostgresDatabase::schema_name(o.postgres.prefix, o.plugin);
  const auto where = describe_postgres_url(o.postgres.url);
  try {
    const auto c = connect_admin(o, where);
    MigrationHistory out;
    out.exists = schema_exists(c.get(), schema);
    if (!out.exists) return out;
    const auto table = "\"" + schema + "\"._keel_migrations";
    if (PQgetisnull(query(c.get(), "SELECT to_regclass($1)", {table}, "the migration table").get(), 0, 0) != 0) return out;
    const auto r = query(c.get(), "SELECT version, description, checksum, applied_at FROM " + table, {},
                         "_keel_migrations");
    for (int i = 0; i < PQntuples(r.get()); ++i)
      out.recorded.push_back({std::strtoll(PQgetvalue(r.get(), i, 0), nullptr, 10), PQgetvalue(r.get(), i, 1),
                              PQgetvalue(r.get(), i, 2), PQgetvalue(r.get(), i, 3)});
    return out;
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read migrations of plugin " + o.plugin + " (PostgreSQL " + where + " schema " +
                             schema + "): " + e.what());
  }
}

void backup_postgres(const Options& o, const fs::path& target, const std::string& pg_dump) {
  const auto schema = PostgresDatabase::schema_name(o.postgres.prefix, o.plugin);
  const auto where = describe_postgres_url(o.postgres.url);
  const auto partial = fs::path(target.string() + ".partial");
  std::error_code ec;
  int fd = -1;
  try {
    std::vector<std::string> env;
    {
      const auto c = connect_admin(o, where);
      if (!schema_exists(c.get(), schema)) throw std::runtime_error("the schema does not exist (the plugin never ran)");
      const auto r = query(c.get(), "SELECT password FROM \"" + o.postgres.prefix + "\".plugin_roles WHERE plugin = $1",
                           {o.plugin}, "the plugin's role");
      if (PQntuples(r.get()) == 0) throw std::runtime_error("no role of this deployment owns the schema");
      env = dump_environment(c.get(), schema, PQgetvalue(r.get(), 0, 0));
    }
    // pg_dump writes to its standard output: this file, private from its creation, so nothing
    // can be swapped in under its name meanwhile.
    fs::remove(partial, ec);
    fd = ::open(partial.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) throw std::runtime_error("cannot create " + partial.string() + ": " + std::strerror(errno));
    const auto lock_wait = std::to_string(o.busy_timeout.count()) + "ms";
    std::string err;
    const int status = run({pg_dump, "--format=custom", "--no-password", "--schema=" + schema,
                            "--lock-wait-timeout=" + lock_wait},
                           env, fd, err);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      throw std::runtime_error(pg_dump + " failed (" +
                               (WIFEXITED(status) ? "exit " + std::to_string(WEXITSTATUS(status))
                                                  : "signal " + std::to_string(WTERMSIG(status))) +
                               "): " + trimmed_message(err));
    char magic[5] = {};
    if (::pread(fd, magic, sizeof magic, 0) != static_cast<ssize_t>(sizeof magic) ||
        std::memcmp(magic, "PGDMP", sizeof magic) != 0)
      throw std::runtime_error(pg_dump + " did not write a custom-format archive");
    if (::fsync(fd) != 0) throw std::runtime_error("cannot write " + partial.string() + ": " + std::strerror(errno));
    ::close(fd);
    fd = -1;
    fs::rename(partial, target);
  } catch (const std::exception& e) {
    if (fd >= 0) ::close(fd);
    fs::remove(partial, ec);
    throw std::runtime_error("backup of plugin " + o.plugin + " (PostgreSQL " + where + " schema " + schema +
                             ") failed: " + e.what());
  }
}

}  // namespace keel::host::storage
