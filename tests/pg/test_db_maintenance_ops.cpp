// The janitor's statements against a real PostgreSQL: the dead-row count it
// decides on, the privilege check, the lock that keeps two daemons from
// vacuuming at once, and retention's pruning and counting.
#include <doctest.h>

#include <unistd.h>

#include <pqxx/pqxx>

#include <chrono>
#include <map>
#include <string>

#include "db/error.hpp"
#include "db/maintenance_ops.hpp"
#include "db/session.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::Session;

using Migrated = inferq::test::MigratedDb;

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

namespace {

// Finished jobs of `queue` in `state`, finished `ago` before now.
void add_finished(Migrated& db, const std::string& queue, const std::string& state, int n,
                  const std::string& ago) {
  db.exec("INSERT INTO inferq.jobs (queue, payload, state, finished_at) SELECT '" + queue + "', '{}', '" +
          state + "', now() - interval '" + ago + "' FROM generate_series(1, " + std::to_string(n) + ")");
}

std::int64_t count(Migrated& db, const std::string& where) {
  pqxx::nontransaction tx(db.conn);
  return tx.exec1("SELECT count(*) FROM inferq.jobs WHERE " + where)[0].as<std::int64_t>();
}

}  // namespace

TEST_CASE(
    "prune_jobs deletes at most max_rows of one queue's jobs in one state past the retention, oldest first") {
  Migrated db;
  add_finished(db, "q", "succeeded", 30, "2 hours");
  add_finished(db, "q", "succeeded", 5, "10 minutes");  // within the retention
  add_finished(db, "q", "dead", 7, "2 hours");
  add_finished(db, "other", "succeeded", 4, "2 hours");
  db.exec(
      "INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 3)");  // available
  db.exec(
      "INSERT INTO inferq.jobs (queue, payload, state, started_at, finished_at)"
      " VALUES ('q', '{}', 'running', now() - interval '3 hours', now() - interval '3 hours')");
  // The oldest of the old ones, to see the order.
  db.exec(
      "UPDATE inferq.jobs SET finished_at = now() - interval '5 hours' WHERE id = (SELECT max(id) FROM"
      " inferq.jobs WHERE queue = 'q' AND state = 'succeeded' AND finished_at < now() - interval '1 hour')");
  const auto oldest = count(db, "finished_at < now() - interval '4 hours'");
  REQUIRE(oldest == 1);

  Session s(db.url, "test-janitor");
  const std::chrono::milliseconds hour(3'600'000);
  CHECK(inferq::db::prune_jobs(s, "q", "succeeded", hour, 1) == 1);
  CHECK(count(db, "finished_at < now() - interval '4 hours'") == 0);  // the oldest went first
  CHECK(inferq::db::prune_jobs(s, "q", "succeeded", hour, 20) == 20);
  CHECK(inferq::db::prune_jobs(s, "q", "succeeded", hour, 20) == 9);
  CHECK(inferq::db::prune_jobs(s, "q", "succeeded", hour, 20) == 0);
  CHECK(count(db, "queue = 'q' AND state = 'succeeded'") == 5);
  CHECK(count(db, "queue = 'q' AND state = 'dead'") == 7);
  CHECK(count(db, "queue = 'other'") == 4);
  CHECK(count(db, "state IN ('available', 'running')") == 4);  // never live jobs, whatever their times

  CHECK(inferq::db::prune_jobs(s, "q", "dead", hour, 1000) == 7);
  // A state that is not final is refused.
  CHECK_THROWS_AS(inferq::db::prune_jobs(s, "q", "running", hour, 1000), inferq::db::DbError);
  CHECK(count(db, "state = 'running'") == 1);

  const auto counts = inferq::db::count_finished_jobs(s, {"q", "other", "none"});
  std::map<std::string, std::int64_t> by;
  for (const auto& c : counts) by[c.queue + "/" + c.state] = c.jobs;
  CHECK(by == std::map<std::string, std::int64_t>{{"q/succeeded", 5}, {"other/succeeded", 4}});
}

TEST_CASE(
    "one daemon at a time prunes a queue: the other leaves the batch to it at once, and other queues go on") {
  Migrated db;
  add_finished(db, "q", "succeeded", 100, "2 hours");
  add_finished(db, "r", "succeeded", 10, "2 hours");
  // Another daemon's batch, its transaction still open.
  pqxx::connection other(db.url);
  pqxx::work held(other);
  CHECK(held.exec1("SELECT inferq.prune('q', 'succeeded', interval '1 hour', 60)")[0].as<int>() == 60);
  Session s(db.url, "test-janitor");
  CHECK(inferq::db::prune_jobs(s, "q", "succeeded", std::chrono::hours(1), 1000) == 0);
  CHECK(inferq::db::prune_jobs(s, "r", "succeeded", std::chrono::hours(1), 1000) == 10);
  held.commit();
  CHECK(inferq::db::prune_jobs(s, "q", "succeeded", std::chrono::hours(1), 1000) == 40);
  CHECK(count(db, "true") == 0);
}
