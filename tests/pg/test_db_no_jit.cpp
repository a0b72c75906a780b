// The samplers' counting statements (the backlog sample, the unserved
// queues, the janitor's finished counts) run without JIT. Their estimated
// cost over a large backlog passes jit_above_cost, and one unserved-queue
// sample spent 344 ms compiling with LLVM (BENCHMARKS.md, "JIT off for the
// samplers"): about a tenth of a core while a backlog drained. A cluster of
// its own, since pg_stat_statements (which counts each statement's
// jit_functions) must be preloaded.
#include <doctest.h>

#include <pqxx/pqxx>

#include <string>

#include "db/maintenance_ops.hpp"
#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/pg_cluster.hpp"

namespace {

using inferq::test::PgCluster;

// JIT-compiled functions of the statements pg_stat_statements saw whose text
// contains `needle`.
long jit_functions(pqxx::connection& c, const std::string& needle) {
  pqxx::nontransaction tx(c);
  return tx
      .exec_params1(
          "SELECT coalesce(sum(jit_functions), 0)::bigint FROM pg_stat_statements WHERE strpos(query, $1) > "
          "0",
          needle)[0]
      .as<long>();
}

}  // namespace

TEST_CASE(
    "the samplers' counts are not JIT-compiled, even where every statement's cost passes jit_above_cost") {
  PgCluster pg({"shared_preload_libraries=pg_stat_statements"});
  pg.start();
  const std::string url = pg.create_database();
  {
    inferq::db::Session setup(url, "test-setup");
    inferq::db::migrate(setup);
  }
  pqxx::connection owner(url);
  {
    pqxx::nontransaction tx(owner);
    tx.exec("CREATE EXTENSION pg_stat_statements");
    // Queue q is served, queue u is not (so the unserved sample counts it);
    // some of q's jobs are finished, for the janitor's count.
    tx.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 2000)");
    tx.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'u', '{}' FROM generate_series(1, 2000)");
    tx.exec(
        "INSERT INTO inferq.jobs (queue, payload, state, finished_at)"
        " SELECT 'q', '{}', 'succeeded', now() FROM generate_series(1, 2000)");
    tx.exec("ANALYZE inferq.jobs");
    // Any statement's cost passes these: every plan would be compiled.
    tx.exec("ALTER DATABASE " + tx.quote_name(PgCluster::database_name(url)) + " SET jit_above_cost = 0");
    tx.exec("SELECT pg_stat_statements_reset()");
  }

  // New sessions, so that they take the database's setting.
  inferq::db::Session s(url, "test-daemon");
  const inferq::db::WorkerIdentity who{"h:1", "h", 1, "test", {"q"}};
  inferq::db::register_worker(s, who);
  CHECK(inferq::db::sample_backlog(s, {"q", "u"}).size() == 2);
  const auto unserved = inferq::db::sample_unserved(s, std::chrono::minutes(1));
  REQUIRE(unserved.size() == 1);
  CHECK(unserved[0].queue == "u");
  CHECK(unserved[0].available == 2000);
  CHECK(!inferq::db::count_finished_jobs(s, {"q"}).empty());
  {
    // The control: JIT works in this cluster, so the checks below can fail.
    pqxx::connection other(url);
    pqxx::nontransaction tx(other);
    tx.exec("SELECT /* control */ sum(id) FROM inferq.jobs");
  }

  pqxx::connection reader(url);
  CHECK(jit_functions(reader, "/* control */") > 0);
  CHECK(jit_functions(reader, "sum(x.available)") == 0);  // sample_backlog
  CHECK(jit_functions(reader, "WITH RECURSIVE") == 0);    // sample_unserved
  CHECK(jit_functions(reader, "j.state IN (") == 0);      // count_finished_jobs
  // Each of the three was seen, so a zero above is not a missed statement.
  pqxx::nontransaction tx(reader);
  CHECK(tx.exec1("SELECT count(*) FROM pg_stat_statements WHERE strpos(query, 'sum(x.available)') > 0 OR"
                 " strpos(query, 'WITH RECURSIVE') > 0 OR strpos(query, 'j.state IN (') > 0")[0]
            .as<int>() == 3);
}
