// inferq.claim_more (migration 0002, batch.max_wait) and has_available_work
// (restarting queues whose executors exited idle), from src/db/queue_ops.
#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/pg_cluster.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::ClaimedJob;
using inferq::db::Session;
using inferq::test::PgCluster;

struct Db : inferq::test::WorkerDb {
  std::int64_t add(const std::optional<std::string>& key = std::nullopt, double run_in_seconds = 0,
                   const std::string& queue = "q") {
    pqxx::nontransaction tx(conn);
    return tx
        .exec_params1("SELECT inferq.enqueue($1, '{\"n\": 1}', $2, 0, now() + make_interval(secs => $3))",
                      queue, key ? key->c_str() : nullptr, run_in_seconds)[0]
        .as<std::int64_t>();
  }
  std::string field(std::int64_t id, const std::string& expression) {
    pqxx::nontransaction tx(conn);
    const auto r = tx.exec_params1("SELECT (" + expression + ")::text FROM inferq.jobs WHERE id = $1", id);
    return r[0].is_null() ? "NULL" : r[0].as<std::string>();
  }
};

std::vector<std::int64_t> ids(const std::vector<ClaimedJob>& jobs) {
  std::vector<std::int64_t> out;
  for (const auto& j : jobs) out.push_back(j.id);
  return out;
}

}  // namespace

TEST_CASE("claim_more tops a live unkeyed lease up in claim order, counting the attempt") {
  Db db;
  const auto a = db.add();
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 1);
  CHECK(inferq::db::claim_more(db.session, unit->lease_id, "q", 3, 3).empty());  // nothing more yet

  const auto b = db.add();
  const auto c = db.add();
  const auto d = db.add();
  const auto e = db.add();
  db.add(std::nullopt, 0, "other");
  const auto more = inferq::db::claim_more(db.session, unit->lease_id, "q", 3, 3);
  CHECK(ids(more) == std::vector<std::int64_t>{b, c, d});
  for (const auto& job : more) {
    CHECK(job.attempts == 1);
    CHECK(job.max_attempts == 3);
    CHECK(job.payload == R"({"n": 1})");
    CHECK(db.field(job.id, "state") == "running");
    CHECK(db.field(job.id, "lease_id") == std::to_string(unit->lease_id));
  }
  CHECK(db.field(a, "state") == "running");
  CHECK(db.field(e, "state") == "available");
  CHECK(inferq::db::claim_more(db.session, unit->lease_id, "q", 0, 3).empty());

  // The whole unit completes under its one lease.
  inferq::db::UnitFinish finish;
  finish.lease_id = unit->lease_id;
  for (const auto id : {a, b, c, d}) finish.jobs.push_back({id, true, R"({"ok": true})", {}, "", 0});
  CHECK(inferq::db::complete(db.session, {finish}, "h:1") == 4);
  for (const auto id : {a, b, c, d}) CHECK(db.field(id, "state") == "succeeded");
}

TEST_CASE("claim_more adds nothing to a lease that is gone, keyed, or of another queue") {
  Db db;
  db.add();
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(unit);
  db.add();
  CHECK(inferq::db::claim_more(db.session, unit->lease_id, "other", 4, 3).empty());
  CHECK(inferq::db::claim_more(db.session, unit->lease_id + 1000, "q", 4, 3).empty());

  Db keyed;
  keyed.add(std::string("k"));
  const auto kunit = inferq::db::claim(keyed.session, "q", keyed.worker, 4, 3);
  REQUIRE(kunit);
  REQUIRE(kunit->work_unit_key);
  const auto loose = keyed.add();
  CHECK(inferq::db::claim_more(keyed.session, kunit->lease_id, "q", 4, 3).empty());
  CHECK(keyed.field(loose, "state") == "available");

  // Reaped: the lease row is gone, so nothing can join it.
  pqxx::nontransaction tx(db.conn);
  tx.exec_params(
      "UPDATE inferq.active_sessions SET heartbeat_at = heartbeat_at - interval '1 hour' WHERE id = $1",
      unit->lease_id);
  CHECK(inferq::db::reap(db.session, std::chrono::seconds(30), {}) == 1);
  CHECK(inferq::db::claim_more(db.session, unit->lease_id, "q", 4, 3).empty());
}

TEST_CASE("has_available_work sees due unkeyed jobs and claimable keys only") {
  Db db;
  CHECK_FALSE(inferq::db::has_available_work(db.session, "q"));
  db.add(std::nullopt, 3600);  // not due
  CHECK_FALSE(inferq::db::has_available_work(db.session, "q"));
  db.add(std::string("k"));
  CHECK(inferq::db::has_available_work(db.session, "q"));
  CHECK_FALSE(inferq::db::has_available_work(db.session, "other"));
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(unit);
  db.add(std::string("k"));  // its key is leased: not claimable
  CHECK_FALSE(inferq::db::has_available_work(db.session, "q"));
  db.add();
  CHECK(inferq::db::has_available_work(db.session, "q"));
}

TEST_CASE("a job that claim_more added but its daemon never saw is reaped once its lease is released") {
  // The reply of a committed claim_more was lost: the daemon completes and
  // releases the unit with the jobs it knew, and the added job keeps state
  // 'running' under a lease that no longer exists (migration 0011).
  Db db;
  const auto a = db.add();
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(unit);
  const auto b = db.add();
  REQUIRE(ids(inferq::db::claim_more(db.session, unit->lease_id, "q", 3, 3)) == std::vector<std::int64_t>{b});
  inferq::db::UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs.push_back({a, true, R"({"ok": true})", {}, "", 0});
  REQUIRE(inferq::db::complete(db.session, {finish}, "h:1") == 1);
  CHECK(db.field(b, "state") == "running");

  // Any daemon's reap, with no stale lease anywhere, finds it.
  CHECK(inferq::db::reap(db.session, std::chrono::hours(1), {}) == 1);
  CHECK(db.field(b, "state") == "available");
  CHECK(db.field(b, "lease_id") == "NULL");
  CHECK(db.field(b, "last_error").find("running with no lease") != std::string::npos);
  CHECK(db.field(b, "errors->0->>'class'") == "lost");
  CHECK(db.field(b, "attempts") == "1");
  CHECK(inferq::db::reap(db.session, std::chrono::hours(1), {}) == 0);

  // It is claimed and finished like any other job; the live unit's own
  // running jobs were never touched by the reap.
  const auto again = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(again);
  const auto c = db.add();
  REQUIRE(inferq::db::claim_more(db.session, again->lease_id, "q", 3, 3).size() == 1);
  CHECK(inferq::db::reap(db.session, std::chrono::hours(1), {}) == 0);
  CHECK(db.field(b, "state") == "running");
  CHECK(db.field(c, "state") == "running");
  CHECK(db.field(b, "attempts") == "2");
}

TEST_CASE("a keyed job left running with no lease is reaped and its key is served again") {
  Db db;
  const auto a = db.add(std::string("k"));
  const auto b = db.add(std::string("k"));
  const auto unit = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 2);
  {
    // Lost by any path (the lease row gone without its jobs): the sweep does
    // not depend on how.
    pqxx::nontransaction tx(db.conn);
    tx.exec_params("DELETE FROM inferq.active_sessions WHERE id = $1", unit->lease_id);
  }
  CHECK(!inferq::db::claim(db.session, "q", db.worker, 4, 3));
  CHECK(inferq::db::reap(db.session, std::chrono::hours(1), {}) == 1);
  CHECK(db.field(a, "state") == "available");
  CHECK(db.field(b, "state") == "available");
  const auto again = inferq::db::claim(db.session, "q", db.worker, 4, 3);
  REQUIRE(again);
  CHECK(ids(again->jobs) == std::vector<std::int64_t>{a, b});
}
