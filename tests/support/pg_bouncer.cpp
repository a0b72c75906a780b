#include "support/pg_bouncer.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <pqxx/pqxx>
#include <sstream>
#include <stdexcept>

#include "support/spawn.hpp"
#include "support/test_env.hpp"

namespace inferq::test {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::trunc);
  out << text;
  if (!out.flush()) throw std::runtime_error("cannot write " + path);
}

}  // namespace

PgBouncer::PgBouncer(const PgCluster& cluster, PoolMode mode) : dir_("inferq-pgbouncer") {
  const detail::RunAs user = detail::harness_server_user();
  port_ = detail::free_local_port();
  write_file(dir_.file("users.txt"), std::string("\"") + PgCluster::kSuperuser + "\" \"\"\n");
  std::ostringstream ini;
  ini << "[databases]\n"
      << "* = host=" << cluster.socket_dir() << " port=" << cluster.port() << "\n"
      << "[pgbouncer]\n"
      << "listen_addr = 127.0.0.1\n"
      << "listen_port = " << port_ << "\n"
      << "unix_socket_dir =\n"
      << "auth_type = trust\n"
      << "auth_file = " << dir_.file("users.txt") << "\n"
      << "pool_mode = " << (mode == PoolMode::kTransaction ? "transaction" : "session") << "\n"
      << "max_client_conn = 200\n"
      << "default_pool_size = 20\n"
      << "logfile = " << dir_.file("pgbouncer.log") << "\n";
  write_file(dir_.file("pgbouncer.ini"), ini.str());
  if (user.drop) {
    for (const char* f : {"", "/users.txt", "/pgbouncer.ini"}) {
      if (::chown((dir_.path() + f).c_str(), user.uid, user.gid) != 0)
        throw std::runtime_error("chown " + dir_.path() + f);
    }
  }
  detail::SpawnSpec spec;
  spec.argv = detail::as_user(user, {"/usr/sbin/pgbouncer", dir_.file("pgbouncer.ini")});
  spec.cwd = dir_.path();
  spec.new_process_group = true;
  pid_ = detail::spawn(spec);
  const bool up = wait_until(
      [&] {
        if (detail::try_reap(pid_)) return true;  // exited: reported below
        try {
          pqxx::connection c(url("postgres"));
          pqxx::nontransaction(c).exec("SELECT 1");
          return true;
        } catch (const std::exception&) {
          return false;
        }
      },
      seconds(30), milliseconds(50));
  if (!up || detail::try_reap(pid_)) {
    ::kill(pid_, SIGKILL);
    detail::wait_for_exit(pid_, seconds(5));
    pid_ = -1;
    throw std::runtime_error("pgbouncer did not start:\n" + log());
  }
}

PgBouncer::~PgBouncer() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  if (!detail::wait_for_exit(pid_, seconds(10))) {
    ::kill(pid_, SIGKILL);
    detail::wait_for_exit(pid_, seconds(5));
  }
}

std::string PgBouncer::url(const std::string& db) const {
  return std::string("postgresql://") + PgCluster::kSuperuser + "@127.0.0.1:" + std::to_string(port_) + "/" +
         db;
}

std::string PgBouncer::log() const { return read_file(dir_.file("pgbouncer.log")); }

}  // namespace inferq::test
