#pragma once

#include <sys/types.h>

#include <string>

#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace inferq::test {

// A real PgBouncer (Debian's /usr/sbin/pgbouncer) in front of a PgCluster's
// unix socket, for one test: on 127.0.0.1 at a free port, every database of
// the cluster under its own name, trust authentication for the harness's
// superuser, up to 20 server connections per database. Run as root, it runs
// as the cluster's server user (PgBouncer refuses root as PostgreSQL does).
class PgBouncer {
 public:
  enum class PoolMode { kSession, kTransaction };

  // Starts it and waits until it serves a query (30 s); throws
  // std::runtime_error with its log otherwise.
  PgBouncer(const PgCluster& cluster, PoolMode mode);
  // SIGTERM, then SIGKILL; removes its directory.
  ~PgBouncer();
  PgBouncer(const PgBouncer&) = delete;
  PgBouncer& operator=(const PgBouncer&) = delete;

  // postgresql://inferq@127.0.0.1:<port>/<db>, through the pooler.
  std::string url(const std::string& db) const;
  std::string log() const;

 private:
  TempDir dir_;
  int port_ = 0;
  pid_t pid_ = -1;
};

}  // namespace inferq::test
