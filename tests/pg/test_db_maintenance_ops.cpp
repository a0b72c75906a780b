// The janitor's statements against a real PostgreSQL: the dead-row count it
// decides on, the privilege check, and the lock that keeps two daemons from
// vacuuming at once.
#include <doctest.h>

#include <unistd.h>

#include <pqxx/pqxx>
#include <string>

#include "db/maintenance_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"

namespace {

using inferq::db::Session;

struct Migrated {
  std::string url = inferq::test::migrated_database();
  pqxx::connection conn{url};
  void exec(const std::string& sql) {
    pqxx::nontransaction tx(conn);
    tx.exec(sql);
  }
};

}  // namespace

TEST_CASE("dead_job_rows counts the row versions updates leave behind, and vacuum_jobs clears them") {
  Migrated db;
  db.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 1000)");
  db.exec("UPDATE inferq.jobs SET state = 'succeeded'");
  // Statistics reach the shared counters when a backend flushes them.
  db.exec("SELECT pg_stat_force_next_flush()");
  db.exec("SELECT 1");
  Session s(db.url, "test-janitor");
  CHECK(inferq::db::dead_job_rows(s) >= 1000);

  REQUIRE(inferq::db::vacuum_jobs(s));
  CHECK(inferq::db::dead_job_rows(s) == 0);
}

TEST_CASE("vacuum_jobs leaves the table to a daemon already vacuuming it") {
  Migrated db;
  Session s(db.url, "test-janitor");
  // The lock another daemon's janitor would hold.
  db.exec("SELECT pg_advisory_lock(" + std::to_string(0x696e66657271LL + 1) + ")");
  CHECK_FALSE(inferq::db::vacuum_jobs(s));
  db.exec("SELECT pg_advisory_unlock_all()");
  CHECK(inferq::db::vacuum_jobs(s));
  CHECK(inferq::db::vacuum_jobs(s));  // and it let go of the lock after
}

TEST_CASE("may_vacuum_jobs is true for the owner and false for a role that does not own inferq.jobs") {
  Migrated db;
  Session owner(db.url, "test-janitor");
  CHECK(inferq::db::may_vacuum_jobs(owner));

  const std::string role = "inferq_test_reader_" + std::to_string(::getpid());
  db.exec("CREATE ROLE " + role + " LOGIN");
  db.exec("GRANT USAGE ON SCHEMA inferq TO " + role);
  std::string url = db.url;
  const auto at = url.find("://") + 3;
  url.replace(at, url.find('@') - at, role);
  Session reader(url, "test-janitor");
  CHECK_FALSE(inferq::db::may_vacuum_jobs(reader));
  reader.disconnect();
  db.exec("DROP OWNED BY " + role);
  db.exec("DROP ROLE " + role);
}
