#include "postgres_server.hpp"

#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <pwd.h>
#include <sys/shm.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "process.hpp"

namespace keel::test {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

const fs::path kBinDir = "/usr/lib/postgresql/15/bin";
constexpr const char* kRunuser = "/usr/sbin/runuser";
constexpr int kPortTries = 5;
constexpr auto kPgCtlTimeout = 30s;  // pg_ctl -t; the Process wait adds a margin on top

// root/pg belongs to postgres: the data directory, the server log (pg_ctl -l opens it as
// postgres) and the unix socket. Command output (initdb.log, pg_ctl.log) stays in root.
struct Layout {
  explicit Layout(const fs::path& r) : root(fs::absolute(r)), cluster(root / "pg"), data(cluster / "data"),
                                       log(cluster / "server.log") {}
  fs::path root, cluster, data, log;
};

// In the child before exec: postgres's tools resolve their own path with getcwd(), which fails
// in a directory postgres cannot read (e.g. /root); and the postmaster outlives us, so it must not
// inherit our descriptors (a ctest output pipe held open would hang the fixture step).
void child_setup() {
  if (::chdir("/") != 0) ::_exit(126);
  ::close_range(3, ~0U, 0);
}

std::string read_file(const fs::path& file, std::uintmax_t from = 0) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return {};
  in.seekg(static_cast<std::streamoff>(from));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string tail(const std::string& text, std::size_t max = 4000) {
  return text.size() <= max ? text : "..." + text.substr(text.size() - max);
}

std::uintmax_t size_or_zero(const fs::path& file) {
  std::error_code ec;
  const auto size = fs::file_size(file, ec);
  return ec ? 0 : size;
}

struct Result {
  std::optional<int> exit;  // nullopt: timed out and killed
  std::string output;
};

// Run a PostgreSQL tool to completion as postgres; output goes to root/<name>.log.
Result run_as_postgres(const Layout& l, const std::string& name, const std::string& tool,
                       const std::vector<std::string>& args, std::chrono::milliseconds timeout) {
  const auto binary = kBinDir / tool;
  if (::access(binary.c_str(), X_OK) != 0)
    throw std::runtime_error(binary.string() + " not found: apt-get install postgresql-15");
  std::vector<std::string> argv{"-u", "postgres", "--", binary.string()};
  argv.insert(argv.end(), args.begin(), args.end());
  Process process(kRunuser, argv, l.root / (name + ".log"), {}, child_setup);
  auto exit = process.wait(timeout);
  if (!exit) {
    process.signal(SIGKILL);
    (void)process.wait(5s);
  }
  return {exit, process.output()};
}

[[noreturn]] void fail(const Layout& l, const std::string& what, const Result& r, std::uintmax_t log_from = 0) {
  throw std::runtime_error("postgres: " + what + (r.exit ? " failed, exit " + std::to_string(*r.exit) : " timed out") +
                           "\n--- command output:\n" + tail(r.output) + "\n--- server log (" + l.log.string() +
                           "):\n" + tail(read_file(l.log, log_from)));
}

uid_t postgres_uid(gid_t& gid) {
  const passwd* pw = ::getpwnam("postgres");
  if (pw == nullptr) throw std::runtime_error("postgres: no `postgres` account: apt-get install postgresql-15");
  gid = pw->pw_gid;
  return pw->pw_uid;
}

// A port nothing listens on right now (the kernel's choice for a socket bound to port 0).
std::uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  const bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
                  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  ::close(fd);
  if (!ok) throw std::runtime_error("postgres: cannot bind a loopback port");
  return ntohs(addr.sin_port);
}

bool port_refuses(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  const bool refused = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 && errno == ECONNREFUSED;
  ::close(fd);
  return refused;
}

// Gone, or a zombie nobody reaps (the postmaster's parent is PID 1, which in a container may
// never call wait()).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return errno == ESRCH;
  const auto stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  const auto close = stat.rfind(')');
  return close != std::string::npos && close + 2 < stat.size() && stat[close + 2] == 'Z';
}

// postmaster.pid, see PostgreSQL's src/include/miscadmin.h (LOCK_FILE_LINE_*): line 1 the pid,
// 4 the port, 7 the SysV shared memory key and id. Lines appear as start-up proceeds.
struct PidFile {
  pid_t pid = 0;
  std::uint16_t port = 0;
  int shmid = -1;
};

PidFile read_pid_file(const fs::path& file) {
  std::istringstream in(read_file(file));
  PidFile p;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    std::istringstream fields(line);
    if (n == 1) {
      long pid = 0;
      if (fields >> pid) p.pid = static_cast<pid_t>(pid);
    } else if (n == 4) {
      unsigned port = 0;
      if (fields >> port && port < 65536) p.port = static_cast<std::uint16_t>(port);
    } else if (n == 7) {
      unsigned long key = 0;
      long id = -1;
      if (fields >> key >> id && id >= 0) p.shmid = static_cast<int>(id);
    }
  }
  return p;
}

// Every server process (postmaster and children) stays attached to this segment until it exits;
// PostgreSQL itself uses the count to refuse a start beside a live orphan backend.
bool shm_detached(int shmid) {
  if (shmid < 0) return true;
  shmid_ds ds{};
  if (::shmctl(shmid, IPC_STAT, &ds) != 0) return true;  // already removed
  return ds.shm_nattch == 0;
}

}  // namespace

void init_postgres_cluster(const fs::path& root) {
  const Layout l(root);
  gid_t gid = 0;
  const uid_t uid = postgres_uid(gid);
  // mkdtemp makes root 0700: postgres needs to pass through it to reach root/pg.
  fs::permissions(l.root, fs::perms::others_exec | fs::perms::group_exec, fs::perm_options::add);
  for (auto dir = l.root; dir != dir.root_path(); dir = dir.parent_path()) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) != 0 || ((st.st_mode & S_IXOTH) == 0 && st.st_uid != uid))
      throw std::runtime_error("postgres: the postgres account cannot reach " + l.root.string() + " (" +
                               dir.string() + " is not world-executable); set TMPDIR elsewhere");
  }
  fs::create_directory(l.cluster);
  if (::chown(l.cluster.c_str(), uid, gid) != 0)
    throw std::system_error(errno, std::generic_category(), "chown " + l.cluster.string());
  fs::permissions(l.cluster, fs::perms::owner_all, fs::perm_options::replace);

  const auto r = run_as_postgres(l, "initdb", "initdb",
                                 {"-D", l.data.string(), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                                  "--locale=C.UTF-8", "--no-sync", "--no-instructions"},
                                 60s);
  if (r.exit != 0) fail(l, "initdb", r);

  // Settings go into postgresql.conf rather than pg_ctl -o, so no path needs shell quoting and
  // pg_ctl by hand (KEEL_TEST_KEEP_DIRS=1) starts the same server. Only the port is per start.
  std::ofstream conf(l.data / "postgresql.conf", std::ios::app);
  conf << "\n# keel tests (tests/support/postgres_server.cpp)\n"
       << "listen_addresses = '127.0.0.1'\n"
       << "unix_socket_directories = '" << l.cluster.string() << "'\n"
       // Safe against crash(), which kills processes but keeps the page cache. synchronous_commit
       // stays on: off would lose acknowledged commits on crash() (the WAL is still in shared
       // memory), and with fsync off it costs only a write() per commit.
       << "fsync = off\nfull_page_writes = off\nmax_connections = 200\n"
       // In data/ rather than /dev/shm, so a crashed server leaves nothing behind the temp dir.
       << "dynamic_shared_memory_type = mmap\n";
  if (!conf) throw std::runtime_error("postgres: cannot write " + (l.data / "postgresql.conf").string());
}

std::uint16_t start_postgres_cluster(const fs::path& root, std::uint16_t port) {
  const Layout l(root);
  const int tries = port == 0 ? kPortTries : 1;
  for (int attempt = 1;; ++attempt) {
    const std::uint16_t p = port == 0 ? free_port() : port;
    const auto log_from = size_or_zero(l.log);
    const auto r = run_as_postgres(l, "pg_ctl", "pg_ctl",
                                   {"-D", l.data.string(), "-l", l.log.string(), "-o", "-p " + std::to_string(p),
                                    "-w", "-t", std::to_string(kPgCtlTimeout.count()), "start"},
                                   kPgCtlTimeout + 15s);
    if (r.exit == 0) return p;
    // A server still starting when pg_ctl gave up must not outlive the attempt.
    try {
      crash_postgres_cluster(root);
    } catch (const std::exception&) {  // the start failure below is the one to report
    }
    const bool port_taken = read_file(l.log, log_from).find("Address already in use") != std::string::npos;
    if (!(port_taken && attempt < tries)) fail(l, "pg_ctl start on port " + std::to_string(p), r, log_from);
  }
}

void stop_postgres_cluster(const fs::path& root) {
  const Layout l(root);
  const auto log_from = size_or_zero(l.log);
  const auto r = run_as_postgres(l, "pg_ctl", "pg_ctl",
                                 {"-D", l.data.string(), "-m", "fast", "-w", "-t",
                                  std::to_string(kPgCtlTimeout.count()), "stop"},
                                 kPgCtlTimeout + 15s);
  if (r.exit != 0) fail(l, "pg_ctl stop", r, log_from);
}

void crash_postgres_cluster(const fs::path& root) {
  const Layout l(root);
  const auto pid_file = l.data / "postmaster.pid";
  if (!fs::exists(pid_file)) return;
  const auto p = read_pid_file(pid_file);
  if (p.pid <= 0) throw std::runtime_error("postgres: no pid in " + pid_file.string());
  ::kill(p.pid, SIGKILL);
  // Children notice the postmaster's death and exit by themselves within milliseconds.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (!(process_gone(p.pid) && shm_detached(p.shmid) && (p.port == 0 || port_refuses(p.port)))) {
    if (std::chrono::steady_clock::now() >= deadline)
      throw std::runtime_error("postgres: processes of postmaster " + std::to_string(p.pid) +
                               " still alive 20 s after SIGKILL\n--- server log:\n" + tail(read_file(l.log)));
    std::this_thread::sleep_for(10ms);
  }
  // What the next postmaster would clean up itself, unless the dead pid lingers as an unreaped
  // zombie: then it takes the lock files for a live server and refuses to start.
  if (p.shmid >= 0) ::shmctl(p.shmid, IPC_RMID, nullptr);
  std::error_code ec;
  fs::remove(pid_file, ec);
  if (p.port != 0) {
    fs::remove(l.cluster / (".s.PGSQL." + std::to_string(p.port) + ".lock"), ec);
    fs::remove(l.cluster / (".s.PGSQL." + std::to_string(p.port)), ec);
  }
}

std::string postgres_admin_url(std::uint16_t port) {
  return "host=127.0.0.1 port=" + std::to_string(port) + " user=postgres dbname=postgres";
}

std::string shared_postgres_url() {
  const char* dir = std::getenv("KEEL_TEST_POSTGRES_DIR");
  if (dir == nullptr || *dir == '\0') return {};
  const auto file = fs::path(dir) / "url";
  std::ifstream in(file);
  std::string url;
  if (!std::getline(in, url) || url.empty())
    throw std::runtime_error("KEEL_TEST_POSTGRES_DIR is set but " + file.string() +
                             " holds no URL: did the postgres.start fixture run?");
  return url;
}

PostgresServer::PostgresServer() {
  init_postgres_cluster(dir_.path());
  port_ = start_postgres_cluster(dir_.path());
  running_ = true;
}

PostgresServer::~PostgresServer() {
  // Never leave a server behind: if the clean stop fails, kill it.
  try {
    if (running_) stop_postgres_cluster(dir_.path());
  } catch (const std::exception&) {
  }
  try {
    crash_postgres_cluster(dir_.path());  // nothing to do after a clean stop
  } catch (const std::exception&) {
  }
}

std::string PostgresServer::admin_url() const { return postgres_admin_url(port_); }

std::string PostgresServer::log() const { return read_file(Layout(dir_.path()).log); }

void PostgresServer::stop() {
  stop_postgres_cluster(dir_.path());
  running_ = false;
}

void PostgresServer::start() {
  if (running_) throw std::logic_error("PostgresServer::start: already running");
  port_ = start_postgres_cluster(dir_.path(), port_);
  running_ = true;
}

void PostgresServer::crash() {
  crash_postgres_cluster(dir_.path());
  running_ = false;
}

}  // namespace keel::test
