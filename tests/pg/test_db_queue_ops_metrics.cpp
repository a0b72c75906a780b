// The parts of src/db/queue_ops that feed the metrics: per-outcome counts
// from inferq.complete_outcomes (migration 0003), the claim's wait, and the
// backlog sample. (The statements themselves are tested by operation in
// test_db_claim, test_db_complete, test_db_leases, test_db_key_heads and
// test_db_notifications.)
#include <doctest.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <string>
#include <utility>
#include <vector>

#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::JobFinish;
using inferq::db::OutcomeCount;
using inferq::db::Session;
using inferq::db::UnitFinish;
using inferq::test::PgCluster;

struct Db : inferq::test::WorkerDb {
  Db() : WorkerDb({"q", "r"}) {}

  std::int64_t enqueue(const std::string& queue, const std::string& extra = "") {
    pqxx::nontransaction tx(conn);
    return tx.exec1("SELECT inferq.enqueue('" + queue + "', '{}'" + extra + ")")[0].as<std::int64_t>();
  }
};

JobFinish ok(std::int64_t id) {
  JobFinish f;
  f.job_id = id;
  f.ok = true;
  f.result_json = "{}";
  return f;
}

JobFinish failed(std::int64_t id, inferq::db::ErrorClass error_class) {
  JobFinish f;
  f.job_id = id;
  f.error_class = error_class;
  f.message = "boom";
  return f;
}

int count_of(const std::vector<OutcomeCount>& counts, const std::string& queue,
             inferq::db::JobOutcome outcome) {
  int n = 0;
  for (const auto& c : counts)
    if (c.queue == queue && c.outcome == outcome) n += c.jobs;
  return n;
}

}  // namespace

TEST_CASE("complete reports per queue how each job ended: succeeded, retried, dead, cancelled, requeued") {
  Db db;
  for (int i = 0; i < 5; ++i) db.enqueue("q");
  db.enqueue("r");
  auto unit = inferq::db::claim(db.session, "q", db.worker, 5, 2);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 5);
  auto other = inferq::db::claim(db.session, "r", db.worker, 1, 1);
  REQUIRE(other);
  const auto& j = unit->jobs;
  db.exec("SELECT inferq.cancel(" + std::to_string(j[3].id) + ")");  // running: cancelled at completion

  UnitFinish u{unit->lease_id,
               {ok(j[0].id), failed(j[1].id, inferq::db::ErrorClass::kTransient),
                failed(j[2].id, inferq::db::ErrorClass::kPermanent), ok(j[3].id),
                failed(j[4].id, inferq::db::ErrorClass::kRequeue)}};
  UnitFinish v{other->lease_id,
               {failed(other->jobs[0].id, inferq::db::ErrorClass::kTransient)}};  // max_attempts 1: dead
  std::vector<OutcomeCount> counts;
  CHECK(inferq::db::complete(db.session, {u, v}, "h:1", &counts) == 6);
  CHECK(count_of(counts, "q", inferq::db::JobOutcome::kSucceeded) == 1);
  CHECK(count_of(counts, "q", inferq::db::JobOutcome::kRetried) == 1);
  CHECK(count_of(counts, "q", inferq::db::JobOutcome::kDead) == 1);
  CHECK(count_of(counts, "q", inferq::db::JobOutcome::kCancelled) == 1);
  CHECK(count_of(counts, "q", inferq::db::JobOutcome::kRequeued) == 1);
  CHECK(count_of(counts, "r", inferq::db::JobOutcome::kDead) == 1);
  CHECK(counts.size() == 6);

  // Repeating it writes nothing and reports nothing (fenced).
  std::vector<OutcomeCount> again;
  CHECK(inferq::db::complete(db.session, {u, v}, "h:1", &again) == 0);
  CHECK(again.empty());
  // The 0001 API still answers with the count alone.
  pqxx::nontransaction tx(db.conn);
  CHECK(tx.exec1("SELECT inferq.complete('[]'::jsonb, 'h:1')")[0].as<int>() == 0);
}

TEST_CASE("a claim reports how long each job had been ready: since created, or since due") {
  Db db;
  const auto created = db.enqueue("q");
  const auto due = db.enqueue("q", ", run_at => now() - interval '1 hour'");  // due before it was created
  db.exec(
      "UPDATE inferq.jobs SET created_at = created_at - interval '10 seconds', run_at = run_at - interval "
      "'10 seconds' WHERE id = " +
      std::to_string(created));
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 2, 3);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 2);
  for (const auto& job : unit->jobs) {
    CAPTURE(job.id);
    if (job.id == created) {
      CHECK(job.wait_seconds >= 10.0);
      CHECK(job.wait_seconds < 60.0);
    } else {
      REQUIRE(job.id == due);
      CHECK(job.wait_seconds >= 0.0);  // ready at creation, not at its earlier run_at
      CHECK(job.wait_seconds < 60.0);
    }
  }
}

TEST_CASE("the backlog sample counts available and running jobs per queue and the oldest due one's age") {
  Db db;
  const auto old_job = db.enqueue("q");
  db.enqueue("q");
  db.enqueue("q", ", work_unit_key => 'k'");
  db.enqueue("q", ", run_at => now() + interval '1 hour'");  // available, not due
  db.enqueue("r");
  db.enqueue("elsewhere");  // not asked for
  db.exec(
      "UPDATE inferq.jobs SET created_at = created_at - interval '30 seconds', run_at = run_at - interval "
      "'30 seconds' WHERE id = " +
      std::to_string(old_job));
  const auto running = inferq::db::claim(db.session, "r", db.worker, 1, 3);
  REQUIRE(running);

  const auto backlog = inferq::db::sample_backlog(db.session, {"q", "r", "empty"});
  REQUIRE(backlog.size() == 3);
  const auto find = [&](const std::string& q) {
    return *std::find_if(backlog.begin(), backlog.end(), [&](const auto& b) { return b.queue == q; });
  };
  CHECK(find("q").available == 4);
  CHECK(find("q").running == 0);
  CHECK(find("q").oldest_available_age_seconds >= 30.0);
  CHECK(find("q").oldest_available_age_seconds < 120.0);
  CHECK(find("r").available == 0);
  CHECK(find("r").running == 1);
  CHECK(find("r").oldest_available_age_seconds == 0);
  CHECK(find("empty").available == 0);
  CHECK(find("empty").running == 0);
}

TEST_CASE(
    "the backlog sample reads the backlog through its indexes, never by a sequential scan of the jobs") {
  // A fresh backlog of nothing but available jobs, analysed: the planner then
  // reckons every row matches and, left alone, reads the table from end to
  // end, the history of finished jobs included.
  Db db;
  db.exec("SELECT inferq.enqueue('q', '{}') FROM generate_series(1, 20000)");
  db.exec("ANALYZE inferq.jobs");
  // A backend's table statistics reach the shared counters when it goes idle
  // (at most once a second, else up to 10 s later). This connection's own
  // are flushed now; the sample's are waited for.
  db.exec("SELECT pg_stat_force_next_flush()");
  db.exec("SELECT 1");
  const auto scans = [&] {
    pqxx::nontransaction tx(db.conn);
    tx.exec("SELECT pg_stat_clear_snapshot()");
    const auto r =
        tx.exec1("SELECT seq_scan, idx_scan FROM pg_stat_user_tables WHERE relid = 'inferq.jobs'::regclass");
    return std::pair{r[0].as<std::int64_t>(), r[1].as<std::int64_t>()};
  };
  const auto before = scans();
  const auto backlog = inferq::db::sample_backlog(db.session, {"q"});
  REQUIRE(backlog.size() == 1);
  CHECK(backlog[0].available == 20000);
  // Every plan reads at least the keyed and running branches by index: once
  // idx_scan moves, the sample's statistics are in.
  auto after = before;
  inferq::test::wait_until(
      [&] {
        after = scans();
        return after.second != before.second;
      },
      std::chrono::seconds(15), std::chrono::milliseconds(50));
  REQUIRE(after.second > before.second);
  CHECK(after.first == before.first);
}

namespace {

// Collects the notices a connection receives (auto_explain's plans here).
class NoticeCollector : public pqxx::errorhandler {
 public:
  explicit NoticeCollector(pqxx::connection_base& c) : pqxx::errorhandler(c) {}
  bool operator()(const char msg[]) noexcept override {
    try {
      text += msg;
    } catch (...) {
    }
    return true;
  }
  std::string text;
};

// The sum of every "Rows Removed by Join Filter: N" in `plans`.
long rows_removed_by_join_filters(const std::string& plans) {
  const std::string tag = "Rows Removed by Join Filter: ";
  long sum = 0;
  for (auto at = plans.find(tag); at != std::string::npos; at = plans.find(tag, at + 1))
    sum += std::stol(plans.substr(at + tag.size()));
  return sum;
}

}  // namespace

TEST_CASE("a completion finds its jobs by id, never by pairing each with every running job of its lease") {
  // Statistics that once made the planner join on lease_id (migration 0003):
  // 10,000 running jobs in leases of 512, analysed.
  Db db;
  db.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 50000)");
  db.exec("UPDATE inferq.jobs SET state = 'succeeded' WHERE id <= (SELECT min(id) + 19999 FROM inferq.jobs)");
  db.exec(
      "UPDATE inferq.jobs j SET state = 'running', attempts = 1, max_attempts = 3,"
      " lease_id = 1000 + (j.id - m.lo) / 512"
      " FROM (SELECT min(id) + 20000 AS lo FROM inferq.jobs) m"
      " WHERE j.id >= m.lo AND j.id < m.lo + 10000");
  db.exec("ANALYZE inferq.jobs");
  // auto_explain hands every statement's plan, those inside functions too,
  // with its actual row counts, to this connection as a notice.
  NoticeCollector plans(db.conn);
  db.exec("LOAD 'auto_explain'");
  db.exec(
      "SET auto_explain.log_min_duration = 0; SET auto_explain.log_analyze = on;"
      " SET auto_explain.log_timing = off; SET auto_explain.log_nested_statements = on;"
      " SET auto_explain.log_level = notice");
  pqxx::nontransaction tx(db.conn);
  const auto r = tx.exec1(
      "SELECT sum(c.jobs) FROM inferq.complete_outcomes("
      "  (SELECT jsonb_agg(jsonb_build_object('lease', lease_id, 'id', id, 'ok', true, 'result', "
      "'{}'::jsonb))"
      "     FROM (SELECT lease_id, id FROM inferq.jobs WHERE state = 'running' ORDER BY id LIMIT 4096) x),"
      "  'w') c");
  CHECK(r[0].as<int>() == 4096);
  REQUIRE(plans.text.find("Update on jobs") != std::string::npos);
  // Joined on id, no pair of rows is thrown away; joined on lease_id, each
  // of the 4,096 jobs met its lease's 512 (about 2,000,000 pairs).
  CAPTURE(plans.text);
  CHECK(rows_removed_by_join_filters(plans.text) < 4096);
}
