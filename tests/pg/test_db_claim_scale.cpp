// The claim's cost does not grow with the history: it reads the head of the
// partial index jobs_claim_unkeyed, whose size is the claimable backlog.
// Compared in buffers touched (EXPLAIN ... BUFFERS), never in time.
#include <doctest.h>

#include <cstdint>
#include <pqxx/pqxx>
#include <string>

#include "db/maintenance_ops.hpp"
#include "db/migrate.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/pg_cluster.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::Session;
using inferq::test::PgCluster;

// The unkeyed claim's two statements as inferq.claim() has them (with its
// parameters p_queue and p_max_jobs), whitespace aside. The first test checks
// they are still there word for word, so this copy cannot drift.
const char *const kHeadQuery =
    "SELECT j.priority, j.run_at, j.id FROM inferq.jobs j"
    " WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS "
    "NULL AND j.run_at <= now()"
    " ORDER BY j.priority DESC, j.run_at, j.id LIMIT 1";
const char *const kBatchQuery =
    "SELECT j.ctid FROM inferq.jobs j"
    " WHERE j.queue = p_queue AND j.state = 'available' AND j.work_unit_key IS "
    "NULL AND j.run_at <= now()"
    " ORDER BY j.priority DESC, j.run_at, j.id LIMIT p_max_jobs FOR UPDATE "
    "SKIP LOCKED";

std::string replace_all(std::string s, const std::string &from, const std::string &to) {
  for (std::size_t p = 0; (p = s.find(from, p)) != std::string::npos; p += to.size())
    s.replace(p, from.size(), to);
  return s;
}

// The query with the function's parameters as $1 (queue) and $2 (max jobs).
std::string parameterized(const std::string &query) {
  return replace_all(replace_all(query, "p_queue", "$1"), "p_max_jobs", "$2");
}

// A migrated database holding `available` available jobs of queue "q" and
// `succeeded` finished ones (interleaved with them in the heap), analyzed.
// The available jobs are unkeyed, or spread over `keys` keys (round robin)
// when keys > 0. One INSERT ... SELECT keeps it fast.
struct Backlog : inferq::test::MigratedDb {
  Backlog(int available, int succeeded, int keys = 0) {
    pqxx::nontransaction tx(conn);
    tx.exec_params(
        "INSERT INTO inferq.jobs (queue, work_unit_key, payload, "
        "priority, state, attempts, max_attempts, result,"
        "                         finished_at)"
        " SELECT 'q', CASE WHEN $3::int > 0 AND NOT done THEN "
        "'key-' || (g % $3::int) END,"
        "        '{\"inputs\": []}', g % 3,"
        "        CASE WHEN done THEN 'succeeded' ELSE 'available' "
        "END::inferq.job_state,"
        "        CASE WHEN done THEN 1 ELSE 0 END, 3,"
        "        CASE WHEN done THEN '{\"outputs\": []}'::jsonb "
        "END, CASE WHEN done THEN now() END"
        " FROM (SELECT g, g <= 2 * $2::int AND g % 2 = 1 AS done"
        "         FROM generate_series(1, $1::int + $2::int) g) x",
        available, succeeded, keys);
    // Rows written by hand: index their keys as enqueue would have.
    tx.exec("SELECT inferq.rebuild_key_heads()");
    tx.exec("ANALYZE inferq.jobs");
    tx.exec("ANALYZE inferq.key_heads");
  }

  std::string plan(const std::string &explain) {
    pqxx::nontransaction tx(conn);
    return tx.exec1(explain)[0].as<std::string>();
  }

  bool plan_has(const std::string &plan_json, const std::string &jsonpath) {
    pqxx::nontransaction tx(conn);
    return tx.exec_params1("SELECT jsonb_path_exists($1::jsonb, $2::jsonpath)", plan_json, jsonpath)[0]
        .as<bool>();
  }

  // Shared buffers (hit + read) the top plan node of an EXPLAIN (ANALYZE,
  // BUFFERS, FORMAT JSON) touched; a function scan's node includes what the
  // statements inside the function touched.
  long buffers(const std::string &plan_json) {
    pqxx::nontransaction tx(conn);
    return tx
        .exec_params1(
            "SELECT (p->'Plan'->>'Shared Hit Blocks')::bigint + "
            "(p->'Plan'->>'Shared Read Blocks')::bigint"
            " FROM (SELECT $1::jsonb->0 AS p) x",
            plan_json)[0]
        .as<long>();
  }

  std::string count(const std::string &where) {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT count(*) FROM inferq.jobs WHERE " + where)[0].as<std::string>();
  }

  // Buffers one claim of 16 touches: the smallest of `runs` claims, after a
  // first one that warmed the function's plans up on this connection.
  long claim_buffers(int runs = 3) {
    const std::string explain =
        "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
        "SELECT * FROM inferq.claim('q', 1, 16, 3)";
    plan(explain);
    long best = -1;
    for (int i = 0; i < runs; ++i) {
      const long b = buffers(plan(explain));
      if (best < 0 || b < best) best = b;
    }
    return best;
  }
};

const std::string kSeqScanOnJobs =
    R"jp($.** ? (@."Node Type" == "Seq Scan" && @."Relation Name" == "jobs"))jp";
// An Index Scan, or an Index Only Scan (the head query reads only indexed
// columns), of the partial index.
const std::string kUnkeyedIndexScan =
    R"jp($.** ? ((@."Node Type" == "Index Scan" || @."Node Type" == "Index Only Scan"))jp"
    R"jp( && @."Index Name" == "jobs_claim_unkeyed"))jp";

}  // namespace

TEST_CASE("the queries this test explains are inferq.claim's own") {
  const std::string url = inferq::test::migrated_database();
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  const auto source_of = [&](const std::string &signature) {
    return tx
        .exec1("SELECT regexp_replace(prosrc, '\\s+', ' ', 'g') FROM pg_proc WHERE oid = '" + signature +
               "'::regprocedure")[0]
        .as<std::string>();
  };
  // The head query selects INTO u; the batch query is a subquery in claim
  // (0007) and in the helper claim_more uses.
  const auto claim = source_of("inferq.claim(text, bigint, integer, integer)");
  CHECK_MESSAGE(replace_all(claim, " INTO u", "").find(kHeadQuery) != std::string::npos,
                "inferq.claim's unkeyed head query changed: update kHeadQuery");
  CHECK_MESSAGE(claim.find(kBatchQuery) != std::string::npos,
                "inferq.claim's batch query changed: update kBatchQuery");
  CHECK_MESSAGE(source_of("inferq.lock_due_unkeyed(text, integer)").find(kBatchQuery) != std::string::npos,
                "inferq.lock_due_unkeyed's batch query changed: update kBatchQuery");
}

TEST_CASE(
    "with 200,000 available and 200,000 succeeded jobs the unkeyed claim "
    "reads jobs_claim_unkeyed") {
  Backlog big(200000, 200000);
  REQUIRE(big.count("state = 'available'") == "200000");
  REQUIRE(big.count("state = 'succeeded'") == "200000");
  {
    pqxx::nontransaction tx(big.conn);
    tx.exec("PREPARE head(text, integer) AS " + parameterized(kHeadQuery));
    tx.exec("PREPARE batch(text, integer) AS " + parameterized(kBatchQuery));
  }

  for (const std::string mode : {"force_custom_plan", "force_generic_plan"}) {
    CAPTURE(mode);
    big.plan("SELECT set_config('plan_cache_mode', '" + mode + "', false)");
    for (const std::string statement : {"head", "batch"}) {
      CAPTURE(statement);
      const std::string plan = big.plan("EXPLAIN (FORMAT JSON) EXECUTE " + statement + "('q', 16)");
      CAPTURE(plan);
      CHECK(big.plan_has(plan, kUnkeyedIndexScan));
      CHECK_FALSE(big.plan_has(plan, kSeqScanOnJobs));
    }
  }

  // The check above can see a sequential scan: forbid index scans and it does.
  big.plan(
      "SELECT set_config('enable_indexscan', 'off', false), "
      "set_config('enable_indexonlyscan', 'off', false),"
      " set_config('enable_bitmapscan', 'off', false)");
  const std::string literal_batch =
      replace_all(replace_all(kBatchQuery, "p_queue", "'q'"), "p_max_jobs", "16");
  const std::string forced = big.plan("EXPLAIN (FORMAT JSON) " + literal_batch);
  CHECK(big.plan_has(forced, kSeqScanOnJobs));
  CHECK_FALSE(big.plan_has(forced, kUnkeyedIndexScan));
}

TEST_CASE(
    "a claim of 16 touches about as many buffers with 400,000 jobs as "
    "with 1,000") {
  Backlog small(1000, 0);
  Backlog big(200000, 200000);

  // The batch statement alone (rolled back, so the rows stay available).
  const auto batch_buffers = [](Backlog &b) {
    pqxx::work tx(b.conn);
    tx.exec("PREPARE batch_only(text, integer) AS " + parameterized(kBatchQuery));
    const std::string plan = tx.exec1(
                                   "EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) "
                                   "EXECUTE batch_only('q', 16)")[0]
                                 .as<std::string>();
    tx.abort();
    return b.buffers(plan);
  };
  const long small_batch = batch_buffers(small);
  const long big_batch = batch_buffers(big);

  // The whole claim function, as the daemon calls it.
  const long small_claim = small.claim_buffers();
  const long big_claim = big.claim_buffers();

  MESSAGE("buffers touched, 1,000 jobs vs 400,000 jobs: batch statement "
          << small_batch << " vs " << big_batch << ", whole claim " << small_claim << " vs " << big_claim);
  CHECK(small_batch > 0);
  CHECK(small_claim > 0);
  CHECK(big_batch <= 4 * small_batch);
  CHECK(big_claim <= 4 * small_claim);
  // A sequential scan would touch thousands of pages of this table.
  CHECK(big_claim < 1000);
  CHECK(big.count("state = 'running'") == "64");  // the four claims took 16 jobs each
}

// With every key leased (each key being worked on: the steady state of a
// keyed backlog) no key is claimable. The keyed head search once walked the
// keyed jobs in rank order and rejected, one by one, every job of a leased key
// and every job behind its key's head: 10 keys x 20,000 jobs, all leased, took
// 802,851 buffers and 2.4 s per claim, in every claim, unkeyed ones included.
// Now it reads inferq.key_heads, which holds only the claimable keys.
TEST_CASE(
    "with every key leased, a claim touches about as many buffers with "
    "50,000 keyed jobs as with 1,000") {
  constexpr int kKeys = 10;
  Backlog small(1000, 0, kKeys);
  Backlog big(20000, 0, kKeys);
  for (Backlog *b : {&small, &big}) {
    pqxx::nontransaction tx(b->conn);
    // One unit per key: now each key has a live lease and a deep backlog.
    for (int i = 0; i < kKeys; ++i) tx.exec("SELECT * FROM inferq.claim('q', 1, 16, 3)");
    REQUIRE(tx.exec1("SELECT count(*) FROM inferq.active_sessions")[0].as<int>() == kKeys);
  }

  const long small_claim = small.claim_buffers(1);
  const long big_claim = big.claim_buffers(1);

  MESSAGE(
      "buffers touched by a claim with every key leased, 1,000 vs 20,000 "
      "keyed jobs: "
      << small_claim << " vs " << big_claim);
  CHECK(big.count("state = 'running'") == std::to_string(kKeys * 16));  // nothing more was claimable
  CHECK(big_claim <= 4 * small_claim);
  CHECK(big_claim < 1000);
}

// Every claimed job leaves a dead entry at the head of jobs_claim_unkeyed,
// and the claim's index scan steps over all of them until a VACUUM: in the
// daemon's 1,000,000-job benchmark this made the claim 7 times slower by the
// end of the run. vacuum_jobs (which the daemon's janitor calls) removes them.
TEST_CASE("the dead entries claimed jobs leave behind slow the claim until vacuum_jobs removes them") {
  Backlog b(60000, 0);
  const long fresh = b.claim_buffers();
  {
    pqxx::nontransaction tx(b.conn);
    // What 40,000 claims-and-completions do to the claim index, in one go.
    tx.exec(
        "UPDATE inferq.jobs SET state = 'succeeded', finished_at = now()"
        " WHERE id IN (SELECT id FROM inferq.jobs WHERE state = 'available'"
        "              ORDER BY priority DESC, run_at, id LIMIT 40000)");
  }
  const long drained = b.claim_buffers();
  Session s(b.url, "test-janitor");
  REQUIRE(inferq::db::vacuum_jobs(s));
  const long vacuumed = b.claim_buffers();

  MESSAGE("buffers touched by a claim: fresh " << fresh << ", after 40,000 jobs claimed " << drained
                                               << ", after vacuum_jobs " << vacuumed);
  CHECK(drained > fresh + 100);  // about 40,000 entries / ~300 a page
  CHECK(vacuumed <= fresh + 20);
}
