#include "support/pg_cluster.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <pqxx/pqxx>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>
#include <vector>

#include "support/test_env.hpp"

// LeakSanitizer: libpqxx 6.4 drops the PGresult of a statement that finds
// its connection broken (a killed backend, a restarted server), which these
// tests do on purpose. Only allocations made inside libpq are ignored; a
// leaked pqxx object of ours is still reported (it is allocated by our code).
extern "C" const char* __lsan_default_suppressions() { return "leak:libpq.so\n"; }

namespace inferq::test {
namespace {

namespace fs = std::filesystem;
using std::chrono::milliseconds;
using std::chrono::seconds;

// Defaults baked in by support.cmake.
#ifndef INFERQ_PG_BINDIR
#define INFERQ_PG_BINDIR "/usr/lib/postgresql/15/bin"
#endif
#ifndef INFERQ_PG_TEMPLATE_DIR
#define INFERQ_PG_TEMPLATE_DIR ""
#endif

constexpr milliseconds kWaitTimeout = seconds(30);
constexpr milliseconds kTemplateTimeout = seconds(180);
constexpr const char* kDefaultServerUser = "inferq-pg";
// Bump when the template's making changes, so cached templates are redone.
constexpr int kTemplateFormat = 1;
constexpr const char* kTemplateIdFile = "inferq-template.id";
// sun_path is 108 bytes, with the terminating NUL.
constexpr std::size_t kMaxSocketPath = 107;

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

std::string pg_bindir() { return env_or("INFERQ_PG_BIN", INFERQ_PG_BINDIR); }

// The template for tests; the production-like one sits beside it.
std::string template_dir(PgCluster::Wal wal = PgCluster::Wal::kSmallSegments) {
  std::string dir = env_or("INFERQ_PG_TEMPLATE", INFERQ_PG_TEMPLATE_DIR);
  if (dir.empty()) dir = test_tmp_base() + "/inferq-pg-template-" + std::to_string(::geteuid());
  return wal == PgCluster::Wal::kSmallSegments ? dir : dir + "-wal16";
}

std::vector<std::string> initdb_options(PgCluster::Wal wal) {
  std::vector<std::string> options = {"-U",   PgCluster::kSuperuser, "-A",       "trust", "-E",
                                      "UTF8", "--no-locale",         "--no-sync"};
  // 1 MB WAL segments: a smaller template to copy for every cluster.
  if (wal == PgCluster::Wal::kSmallSegments) options.push_back("--wal-segsize=1");
  return options;
}

std::string template_id(PgCluster::Wal wal) {
  std::string id = "format=" + std::to_string(kTemplateFormat) + " bindir=" + pg_bindir() + " initdb";
  for (const std::string& option : initdb_options(wal)) id += " " + option;
  return id + "\n";
}

// An exclusive flock(2) held for the object's life; waits with a deadline.
class FileLock {
 public:
  FileLock(const std::string& path, milliseconds timeout) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw std::system_error(errno, std::generic_category(), "open " + path);
    const bool locked =
        wait_until([&] { return ::flock(fd_, LOCK_EX | LOCK_NB) == 0; }, timeout, milliseconds(50));
    if (!locked) {
      ::close(fd_);
      throw std::runtime_error("timed out after " + std::to_string(timeout.count()) +
                               " ms waiting for the lock " + path);
    }
  }
  ~FileLock() { ::close(fd_); }  // closing releases the lock
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;

 private:
  int fd_ = -1;
};

std::optional<detail::RunAs> lookup_user(const std::string& name) {
  struct passwd pw {};
  struct passwd* found = nullptr;
  std::vector<char> buffer(16384);
  if (::getpwnam_r(name.c_str(), &pw, buffer.data(), buffer.size(), &found) != 0 || found == nullptr) {
    return std::nullopt;
  }
  return detail::RunAs{true, pw.pw_uid, pw.pw_gid, name};
}

// PostgreSQL refuses to run as root: from root, the server runs as an
// unprivileged system user, made here when missing (the scripts make the
// same one).
detail::RunAs server_user() {
  if (::geteuid() != 0) return detail::RunAs{false, ::geteuid(), ::getegid(), ""};
  const std::string name = env_or("INFERQ_PG_USER", kDefaultServerUser);
  if (auto user = lookup_user(name)) return *user;

  fs::create_directories(fs::path(template_dir()).parent_path());
  FileLock lock(template_dir() + ".lock", kTemplateTimeout);
  if (auto user = lookup_user(name)) return *user;
  std::string error;
  try {
    detail::run_checked({{"useradd", "--system", "--user-group", "--no-create-home", "--home-dir",
                          "/nonexistent", "--shell", "/usr/sbin/nologin", name}},
                        kWaitTimeout);
  } catch (const std::exception& e) {
    error = e.what();  // another process may have made it meanwhile
  }
  if (auto user = lookup_user(name)) return *user;
  throw std::runtime_error("cannot create the PostgreSQL server user " + name + ": " + error);
}

void chown_tree(const std::string& root, const detail::RunAs& user) {
  if (!user.drop) return;
  auto own = [&](const fs::path& path) {
    if (::lchown(path.c_str(), user.uid, user.gid) != 0) {
      throw std::system_error(errno, std::generic_category(), "chown " + path.string());
    }
  };
  own(root);
  for (const auto& entry : fs::recursive_directory_iterator(root)) own(entry.path());
}

// The initdb'd data directory this build copies for every cluster; made
// once, under a lock, by whichever test gets there first.
std::string ensure_template(const detail::RunAs& user, PgCluster::Wal wal) {
  static std::mutex mu;
  std::lock_guard<std::mutex> guard(mu);
  const std::string dir = template_dir(wal);
  const std::string id = template_id(wal);
  if (read_file(dir + "/" + kTemplateIdFile) == id) return dir;

  fs::create_directories(fs::path(dir).parent_path());
  FileLock lock(dir + ".lock", kTemplateTimeout);
  if (read_file(dir + "/" + kTemplateIdFile) == id) return dir;

  const std::string staging = dir + ".new";
  fs::remove_all(dir);
  fs::remove_all(staging);
  // initdb runs as the server user, which may not reach the build
  // directory: make it in the temporary directory, then copy it over.
  TempDir work("inferq-initdb");
  chown_tree(work.path(), user);
  std::vector<std::string> argv{pg_bindir() + "/initdb", "-D", work.file("data")};
  for (const std::string& option : initdb_options(wal)) argv.push_back(option);
  detail::SpawnSpec initdb;
  initdb.argv = detail::as_user(user, argv);
  initdb.cwd = work.path();
  initdb.env = {{"LC_ALL", "C"}, {"TZ", "UTC"}};
  detail::run_checked(initdb, kTemplateTimeout);

  {
    std::ofstream out(work.file("data") + "/" + kTemplateIdFile, std::ios::binary | std::ios::trunc);
    out << id;
    if (!out.flush()) throw std::runtime_error("cannot write " + work.file("data") + "/" + kTemplateIdFile);
  }
  detail::run_checked({{"cp", "-a", "--", work.file("data"), staging}}, kTemplateTimeout);
  fs::rename(staging, dir);
  return dir;
}

int pick_free_port() {
  // Below Linux's ephemeral range (32768-60999), so outgoing connections do
  // not take it between this probe and the server's bind.
  static std::mt19937 rng{std::random_device{}()};
  std::uniform_int_distribution<int> dist(20000, 32000);
  for (int attempt = 0; attempt < 200; ++attempt) {
    const int port = dist(rng);
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::system_error(errno, std::generic_category(), "socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const bool free = ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
    ::close(fd);
    if (free) return port;
  }
  throw std::runtime_error("no free TCP port on 127.0.0.1 between 20000 and 32000");
}

std::string percent_encode(const std::string& text) {
  static const char* kHex = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) != 0 || c == '-' || c == '_' || c == '.' || c == '~' || c == '/') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

// The postmaster writes its status into line 8 of postmaster.pid ("ready"
// once it accepts connections), as pg_ctl reads it. Polling that instead of
// connecting keeps "not yet accepting connections" out of the server log.
bool reports_ready(const std::string& data_dir, pid_t pid) {
  std::istringstream in(read_file(data_dir + "/postmaster.pid"));
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines.size() >= 8 && lines[0] == std::to_string(pid) && lines[7].rfind("ready", 0) == 0;
}

bool accepts_connections(int port) {
  try {
    pqxx::connection probe("host=127.0.0.1 port=" + std::to_string(port) + " user=" + PgCluster::kSuperuser +
                           " dbname=postgres connect_timeout=2");
    return probe.is_open();
  } catch (const std::exception&) {
    return false;
  }
}

// Wakes when the test process's end of its stdin closes: at the destructor,
// or when the process dies without one. Then stops a server still running
// from this directory (checking the pid really is that postmaster) and
// removes the directory.
constexpr const char* kWatchdogScript = R"sh(
cat >/dev/null
d=$1
p=$(head -n 1 "$d/data/postmaster.pid" 2>/dev/null) || p=
case $p in ''|*[!0-9]*) p= ;; esac
ours() { grep -qF -- "$d/data" "/proc/$p/cmdline" 2>/dev/null; }
if [ -n "$p" ] && ours; then
  kill -QUIT "$p" 2>/dev/null
  i=0
  while [ "$i" -lt 100 ] && ours; do sleep 0.1; i=$((i + 1)); done
  if ours; then kill -KILL "$p" 2>/dev/null; sleep 0.5; fi
fi
rm -rf -- "$d"
)sh";

}  // namespace

std::string pg_program(const std::string& name) { return pg_bindir() + "/" + name; }

PgCluster::PgCluster(std::vector<std::string> settings, Wal wal)
    : settings_(std::move(settings)), user_(server_user()) {
  const std::string source = ensure_template(user_, wal);

  std::string pattern = test_tmp_base() + "/inferq-pg-XXXXXX";
  std::vector<char> buffer(pattern.begin(), pattern.end());
  buffer.push_back('\0');
  if (::mkdtemp(buffer.data()) == nullptr) {
    throw std::system_error(errno, std::generic_category(), "mkdtemp " + pattern);
  }
  dir_ = buffer.data();
  try {
    // First, so that even a test killed while copying leaves nothing behind.
    start_watchdog();
    if ((socket_dir() + "/.s.PGSQL.65535").size() > kMaxSocketPath) {
      throw std::runtime_error("the unix socket path under " + dir_ +
                               " is too long for PostgreSQL: set INFERQ_TEST_TMP to a shorter directory");
    }
    // In this process, not with cp: a test killed meanwhile stops copying
    // too, and the watchdog's rm -rf is the last word.
    fs::copy(source, data_dir(), fs::copy_options::recursive);
    fs::permissions(data_dir(), fs::perms::owner_all);
    fs::create_directory(socket_dir());
    fs::permissions(socket_dir(), fs::perms::owner_all);
    chown_tree(dir_, user_);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(dir_, ec);
    stop_watchdog();
    throw;
  }
}

PgCluster::~PgCluster() {
  {
    // The directory goes next: no shutdown checkpoint to wait for.
    std::lock_guard<std::mutex> lock(mu_);
    stop_locked(SIGQUIT);
  }
  std::error_code ec;
  fs::remove_all(dir_, ec);
  stop_watchdog();
}

void PgCluster::stop_watchdog() noexcept {
  if (watchdog_fd_ >= 0) ::close(watchdog_fd_);
  watchdog_fd_ = -1;
  try {
    if (watchdog_pid_ > 0 && !detail::wait_for_exit(watchdog_pid_, seconds(10))) {
      ::kill(watchdog_pid_, SIGKILL);
      detail::wait_for_exit(watchdog_pid_, seconds(10));
    }
  } catch (...) {
    // noexcept; an unreaped watchdog is a zombie until the process exits
  }
  watchdog_pid_ = -1;
}

PgCluster& PgCluster::shared() {
  static PgCluster cluster;
  cluster.start();  // a no-op once it runs
  return cluster;
}

void PgCluster::start_watchdog() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  detail::SpawnSpec spec;
  spec.argv = {"/bin/sh", "-c", kWatchdogScript, "inferq-pg-watchdog", dir_};
  spec.input_fd = fds[0];
  spec.new_process_group = true;  // a Ctrl-C of the test must not end it first
  try {
    watchdog_pid_ = detail::spawn(spec);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[0]);
  watchdog_fd_ = fds[1];
}

void PgCluster::start() {
  std::lock_guard<std::mutex> lock(mu_);
  start_locked();
}

void PgCluster::start_locked() {
  if (server_pid_ > 0) {
    if (!detail::try_reap(server_pid_)) return;
    server_pid_ = -1;  // it died: start it again
  }
  const bool port_fixed = port_ != 0;
  // A first start that fails leaves no port behind: the next one picks anew.
  auto fail = [&](const std::string& what) {
    const std::string message = describe_failure(what);
    if (!port_fixed) port_ = 0;
    throw std::runtime_error(message);
  };
  for (int attempt = 1;; ++attempt) {
    if (!port_fixed) port_ = pick_free_port();
    std::error_code ec;
    const auto log_offset = fs::exists(log_path()) ? fs::file_size(log_path(), ec) : 0;

    const int log_fd = ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (log_fd < 0) throw std::system_error(errno, std::generic_category(), "open " + log_path());
    detail::SpawnSpec spec;
    std::vector<std::string> argv = {pg_bindir() + "/postgres",
                                     "-D",
                                     data_dir(),
                                     "-p",
                                     std::to_string(port_),
                                     "-k",
                                     socket_dir(),
                                     "-c",
                                     "listen_addresses=127.0.0.1",
                                     "-c",
                                     "shared_buffers=128MB",
                                     "-c",
                                     "max_connections=200",
                                     "-c",
                                     "fsync=on",
                                     "-c",
                                     "synchronous_commit=on",
                                     "-c",
                                     "logging_collector=off",
                                     "-c",
                                     "log_line_prefix=%m [%p] %q%a@%d ",
                                     "-c",
                                     "lc_messages=C"};
    // Later -c options win over earlier ones (and over ALTER SYSTEM, which
    // command-line options always beat).
    for (const auto& setting : settings_) {
      argv.push_back("-c");
      argv.push_back(setting);
    }
    spec.argv = detail::as_user(user_, argv);
    spec.cwd = dir_;
    spec.output_fd = log_fd;
    spec.new_process_group = true;
    pid_t pid = -1;
    try {
      pid = detail::spawn(spec);
    } catch (...) {
      ::close(log_fd);
      throw;
    }
    ::close(log_fd);

    const auto deadline = std::chrono::steady_clock::now() + kWaitTimeout;
    for (;;) {
      if (auto status = detail::try_reap(pid)) {
        const std::string log = read_file(log_path());
        const std::string fresh = log.size() > log_offset ? log.substr(log_offset) : std::string();
        const bool port_taken = fresh.find("could not bind") != std::string::npos ||
                                fresh.find("Address already in use") != std::string::npos;
        if (port_taken && !port_fixed && attempt < 10) break;  // another test took the port: pick again
        fail("postgres " + detail::describe_status(*status) + " during start-up");
      }
      if (reports_ready(data_dir(), pid) && accepts_connections(port_)) {
        server_pid_ = pid;
        return;
      }
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid, SIGQUIT);
        if (!detail::wait_for_exit(pid, seconds(10))) {
          ::kill(pid, SIGKILL);
          detail::wait_for_exit(pid, seconds(10));
        }
        fail("postgres did not accept connections within " + std::to_string(kWaitTimeout.count()) + " ms");
      }
      std::this_thread::sleep_for(milliseconds(20));
    }
  }
}

void PgCluster::stop() noexcept {
  std::lock_guard<std::mutex> lock(mu_);
  stop_locked(SIGINT);
}

void PgCluster::stop_locked(int first_signal) noexcept {
  if (server_pid_ <= 0) return;
  const pid_t pid = server_pid_;
  server_pid_ = -1;
  try {
    // Fast shutdown; then immediate; then the hard way.
    for (int sig : {SIGINT, SIGQUIT, SIGKILL}) {
      if (sig == SIGINT && first_signal != SIGINT) continue;
      if (::kill(pid, sig) != 0 && errno == ESRCH) {
        detail::try_reap(pid);
        return;
      }
      if (detail::wait_for_exit(pid, sig == SIGINT ? kWaitTimeout : milliseconds(10000))) return;
    }
  } catch (...) {
    // noexcept: a failed sleep leaves the watchdog to finish the job
  }
}

void PgCluster::restart_immediate() {
  std::lock_guard<std::mutex> lock(mu_);
  if (server_pid_ <= 0) throw std::logic_error("PgCluster::restart_immediate: the server is not running");
  const pid_t pid = server_pid_;
  ::kill(pid, SIGQUIT);
  // The postmaster exits only after its backends have, so the new one finds
  // no old shared memory still attached.
  if (!detail::wait_for_exit(pid, kWaitTimeout)) {
    ::kill(pid, SIGKILL);
    detail::wait_for_exit(pid, seconds(10));
    server_pid_ = -1;
    throw std::runtime_error(describe_failure("postgres did not stop on SIGQUIT within " +
                                              std::to_string(kWaitTimeout.count()) + " ms"));
  }
  server_pid_ = -1;
  start_locked();
}

int PgCluster::kill_backends(const std::string& db) {
  pqxx::connection conn(url("postgres"));
  pqxx::nontransaction txn(conn);
  const pqxx::result r = txn.exec_params(
      "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity "
      "WHERE datname = $1 AND pid <> pg_backend_pid()",
      db);
  return r[0][0].as<int>();
}

std::string PgCluster::url(const std::string& db) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (port_ == 0) throw std::logic_error("PgCluster::url: the cluster has never been started");
  return std::string("postgresql://") + kSuperuser + "@127.0.0.1:" + std::to_string(port_) + "/" +
         percent_encode(db);
}

std::string PgCluster::socket_url(const std::string& db) const {
  std::lock_guard<std::mutex> lock(mu_);
  if (port_ == 0) throw std::logic_error("PgCluster::socket_url: the cluster has never been started");
  return std::string("postgresql://") + kSuperuser + "@/" + percent_encode(db) +
         "?host=" + percent_encode(socket_dir()) + "&port=" + std::to_string(port_);
}

std::string PgCluster::create_database() {
  std::string name;
  {
    std::lock_guard<std::mutex> lock(mu_);
    name = "inferq_test_" + std::to_string(++next_database_);
  }
  pqxx::connection conn(url("postgres"));
  pqxx::nontransaction txn(conn);
  txn.exec("CREATE DATABASE " + conn.quote_name(name) + " TEMPLATE template0");
  return url(name);
}

std::string PgCluster::database_name(const std::string& url) {
  const auto scheme = url.find("://");
  const auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  if (slash == std::string::npos) return {};
  const auto end = url.find('?', slash);
  return url.substr(slash + 1, end == std::string::npos ? std::string::npos : end - slash - 1);
}

bool PgCluster::running() const {
  std::lock_guard<std::mutex> lock(mu_);
  return server_pid_ > 0;
}

int PgCluster::port() const {
  std::lock_guard<std::mutex> lock(mu_);
  return port_;
}

pid_t PgCluster::server_pid() const {
  std::lock_guard<std::mutex> lock(mu_);
  return server_pid_;
}

std::string PgCluster::log_tail(std::size_t lines) const {
  std::istringstream in(read_file(log_path()));
  std::deque<std::string> tail;
  for (std::string line; std::getline(in, line);) {
    tail.push_back(line);
    if (tail.size() > lines) tail.pop_front();
  }
  std::string out;
  for (const std::string& line : tail) out += line + "\n";
  return out;
}

std::string PgCluster::describe_failure(const std::string& what) const {
  std::string message = what + " (cluster " + dir_ + ")";
  if (user_.drop) {
    message += "; the server runs as user " + user_.name + ", which must be able to reach " + dir_;
  }
  return message + "\n--- server log (tail) ---\n" + log_tail();
}

namespace detail {

RunAs harness_server_user() { return server_user(); }

int free_local_port() { return pick_free_port(); }

}  // namespace detail

}  // namespace inferq::test
