#pragma once

#include <sys/types.h>

#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include "support/spawn.hpp"

namespace inferq::test {

namespace detail {
// Who the harness's servers run as: this process's user, or from root the
// unprivileged $INFERQ_PG_USER (made when missing). See PgCluster.
RunAs harness_server_user();
// A TCP port free on 127.0.0.1, below the ephemeral range.
int free_local_port();
}  // namespace detail

// The PostgreSQL program `name` (pg_dump, psql) of the version the harness
// runs ($INFERQ_PG_BIN, else the one found at configure time).
std::string pg_program(const std::string& name);

// A throwaway PostgreSQL cluster for one test process: a fresh directory
// under test_tmp_base() holding a copy of a data directory initdb'd once per
// build (<build>/tests/pg-template, made under a file lock so parallel tests
// do not race). The server listens on 127.0.0.1 at a free port and on a unix
// socket in the cluster directory; every role and database is reached as
// superuser `inferq` with trust authentication. fsync stays on, so
// restart_immediate() is a real crash-and-recover.
//
// Run as root, the server runs as the unprivileged user $INFERQ_PG_USER
// (default inferq-pg, created with useradd when missing): the temporary
// directory must then be reachable by that user (/tmp is).
//
// If the test process dies without running destructors, a watchdog process
// stops the server and removes the directory. Every wait has a 30 s deadline
// and throws std::runtime_error with the tail of the server log. Methods are
// safe to call from several threads; start/stop/restart hold a lock while
// they wait for the server.
class PgCluster {
 public:
  static constexpr const char* kSuperuser = "inferq";

  // The WAL segment size, fixed at initdb. Tests copy a template with 1 MB
  // segments (smaller and faster to copy); benchmarks want PostgreSQL's
  // default of 16 MB, since a WAL-heavy run through 1 MB segments pays a
  // segment switch (file creation and fsync) per megabyte.
  enum class Wal { kSmallSegments, kDefaultSegments };

  // Creates the directory and copies the template in (making the template
  // first when this build has none); does not start the server. Throws on
  // failure. `settings` ("name=value") are passed to the server after the
  // harness's own, which they override (e.g. "shared_buffers=2GB").
  explicit PgCluster(std::vector<std::string> settings = {}, Wal wal = Wal::kSmallSegments);
  // Stops the server (immediate shutdown: the data goes anyway) and removes
  // the directory.
  ~PgCluster();
  PgCluster(const PgCluster&) = delete;
  PgCluster& operator=(const PgCluster&) = delete;

  // The test process's cluster: started on first use (and by the next call
  // after a test stopped it), stopped and removed at process exit. Tests
  // share it and each works in a create_database() of its own; a test that
  // stops or breaks its server uses a PgCluster of its own instead.
  static PgCluster& shared();

  // Starts the server and waits until it accepts connections. A no-op when
  // it runs. The port is chosen on the first start and kept afterwards.
  void start();

  // Fast shutdown (SIGINT), escalating to SIGQUIT and SIGKILL when it does
  // not stop in time. Idempotent.
  void stop() noexcept;

  // Like `pg_ctl restart -m immediate`: SIGQUIT (no checkpoint, open
  // connections are cut), then starts again on the same port, running crash
  // recovery, and waits until it accepts connections. Throws when not running.
  void restart_immediate();

  // pg_terminate_backend() on every backend connected to database `db` but
  // the caller's own, waiting until each has gone. Returns how many.
  int kill_backends(const std::string& db);

  // postgresql://inferq@127.0.0.1:<port>/<db>. Throws std::logic_error
  // before the first start().
  std::string url(const std::string& db) const;

  // The same database through the unix socket:
  // postgresql://inferq@/<db>?host=<socket_dir>&port=<port>
  std::string socket_url(const std::string& db) const;

  // CREATE DATABASE with a fresh name (inferq_test_<n>, from template0);
  // returns its url(). Requires a running server.
  std::string create_database();

  // The database a URL of url()/socket_url()'s form names.
  static std::string database_name(const std::string& url);

  bool running() const;
  int port() const;
  pid_t server_pid() const;                              // -1 when stopped
  const std::string& directory() const { return dir_; }  // the cluster's directory
  std::string data_dir() const { return dir_ + "/data"; }
  std::string socket_dir() const { return dir_ + "/run"; }
  std::string log_path() const { return dir_ + "/server.log"; }
  // The last `lines` lines of the server log.
  std::string log_tail(std::size_t lines = 40) const;

 private:
  void start_locked();  // requires mu_
  // SIGINT (fast) or SIGQUIT (immediate) first, then harder. Requires mu_.
  void stop_locked(int first_signal) noexcept;
  void start_watchdog();
  void stop_watchdog() noexcept;
  std::string describe_failure(const std::string& what) const;

  std::vector<std::string> settings_;
  std::string dir_;
  detail::RunAs user_;  // who the server runs as
  pid_t watchdog_pid_ = -1;
  int watchdog_fd_ = -1;  // its stdin's write end; closing it (or dying) wakes it

  mutable std::mutex mu_;
  pid_t server_pid_ = -1;  // guarded by mu_
  int port_ = 0;           // guarded by mu_; 0 before the first start
  int next_database_ = 0;  // guarded by mu_
};

}  // namespace inferq::test
