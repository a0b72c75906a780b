// inferq.lock_keys (migration 0004) against a real PostgreSQL: a daemon that
// completes units of several keys gives way to a producer that holds one of
// those keys and waits for another, instead of deadlocking with it.
#include <doctest.h>

#include <chrono>
#include <future>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "db/error.hpp"
#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::test::PgCluster;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE(
    "a daemon completing two keys' units gives way to a producer holding one key and waiting for the other") {
  inferq::test::WorkerDb db({"q"}, "test", 1);  // its daemon "test:1"
  std::string first_key;                        // the key lock_keys takes first (lower lock number)
  std::string second_key;
  {
    pqxx::nontransaction tx(db.conn);
    const auto r = tx.exec1(
        "SELECT CASE WHEN inferq.key_lock('q', 'a') < inferq.key_lock('q', 'b') THEN 'a' ELSE 'b' END,"
        "       CASE WHEN inferq.key_lock('q', 'a') < inferq.key_lock('q', 'b') THEN 'b' ELSE 'a' END");
    first_key = r[0].as<std::string>();
    second_key = r[1].as<std::string>();
    tx.exec("SELECT inferq.enqueue('q', '{}', 'a'), inferq.enqueue('q', '{}', 'b')");
  }
  std::vector<inferq::db::UnitFinish> units;
  for (int i = 0; i < 2; ++i) {
    const auto unit = inferq::db::claim(db.session, "q", db.worker, 16, 3);
    REQUIRE(unit);
    inferq::db::UnitFinish finish;
    finish.lease_id = unit->lease_id;
    for (const auto& job : unit->jobs) {
      inferq::db::JobFinish f;
      f.job_id = job.id;
      f.ok = true;
      f.result_json = "{}";
      finish.jobs.push_back(f);
    }
    units.push_back(finish);
  }

  // The producer holds the key the daemon takes second.
  pqxx::connection producer_conn(db.url);
  pqxx::work producer(producer_conn);
  producer.exec_params("SELECT inferq.enqueue('q', '{}', $1)", second_key);

  // The daemon takes its first key, then waits for the second.
  auto completing = std::async(std::launch::async, [&] {
    try {
      inferq::db::complete(db.session, units, "test:1");
      return std::string("completed");
    } catch (const inferq::db::DbError& e) {
      return std::string(e.retryable() && !e.connection_lost() ? "retryable " : "fatal ") + e.sqlstate();
    }
  });
  pqxx::connection watcher(db.url);
  REQUIRE(inferq::test::wait_until(
      [&] {
        pqxx::nontransaction tx(watcher);
        return tx.exec1("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")[0]
                   .as<int>() == 1;
      },
      10s, 1ms));

  // Now the producer wants the daemon's first key: a cycle, which the daemon
  // breaks by giving up within 200 ms. The producer's transaction goes on.
  producer.exec_params("SELECT inferq.enqueue('q', '{}', $1)", first_key);
  producer.commit();
  CHECK(completing.get() == "retryable 55P03");

  // Run again, as the completion writer does, it goes through.
  CHECK(inferq::db::complete(db.session, units, "test:1") == 2);
  pqxx::nontransaction tx(db.conn);
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded'")[0].as<int>() == 2);
  CHECK(tx.exec1("SELECT count(*) FROM inferq.jobs WHERE state = 'available'")[0].as<int>() == 2);
}
