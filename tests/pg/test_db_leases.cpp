// The life of a lease through src/db/queue_ops: heartbeat renews it,
// reap (and reap_then_claim) ends a stale one with a 'lost' attempt,
// release gives its jobs back with the attempt refunded.
#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/queue_db.hpp"

namespace {

using inferq::db::Session;
using inferq::test::failed;
using inferq::test::finish_all;
using inferq::test::Job;
using inferq::test::QueueDb;
using inferq::test::succeeded;
using std::chrono::seconds;

}  // namespace

// ------------------------------------------------------------ heartbeat

TEST_CASE("heartbeat renews the leases that still exist and returns only those") {
  QueueDb db;
  db.add();
  db.add();
  const auto kept = db.claim();
  const auto finished = db.claim();
  REQUIRE(kept);
  REQUIRE(finished);
  CHECK(db.complete({finish_all(*finished, [](std::int64_t j) { return succeeded(j); })}) == 1);
  db.age_lease(kept->lease_id);
  {
    pqxx::nontransaction tx(db.conn);
    tx.exec_params(
        "UPDATE inferq.workers SET last_seen_at = last_seen_at - "
        "interval '1 hour' WHERE id = $1",
        db.worker);
  }

  auto alive = inferq::db::heartbeat(db.session, db.worker,
                                     {kept->lease_id, finished->lease_id, kept->lease_id + 1000});

  CHECK(alive == std::vector<std::int64_t>{kept->lease_id});
  CHECK(db.scalar("SELECT heartbeat_at > clock_timestamp() - interval '1 "
                  "minute' FROM inferq.active_sessions"
                  " WHERE id = " +
                  std::to_string(kept->lease_id)) == "t");
  CHECK(db.scalar("SELECT last_seen_at > clock_timestamp() - interval '1 "
                  "minute' FROM inferq.workers WHERE id = " +
                  std::to_string(db.worker)) == "t");
  // Renewed, the lease survives a reaper with a stale_after it had exceeded.
  CHECK(inferq::db::reap(db.session, seconds(30), {}) == 0);
  CHECK(db.leases() == 1);

  CHECK(inferq::db::heartbeat(db.session, db.worker, {}).empty());
}

// ----------------------------------------------------------------- reap

TEST_CASE(
    "reap returns the jobs of a stale lease to available with a 'lost' "
    "error naming the worker") {
  QueueDb db;
  const auto a = db.add();
  const auto b = db.add();
  const auto unit = db.claim(2);
  REQUIRE(unit);
  // Fresh, the lease is spared; its heartbeat an hour old, it is stale.
  Session reaper(db.url, "test-reaper");
  CHECK(inferq::db::reap(reaper, seconds(30), {}) == 0);
  db.age_lease(unit->lease_id);
  CHECK(inferq::db::reap(reaper, seconds(30), {}) == 1);

  CHECK(db.leases() == 0);
  for (const auto id : {a, b}) {
    CAPTURE(id);
    CHECK(db.state(id) == "available");
    CHECK(db.attempts(id) == 1);  // the lost attempt counts
    CHECK(db.flag(id, "lease_id IS NULL AND finished_at IS NULL"));
    const std::string error = *db.field(id, "last_error");
    CHECK_MESSAGE(error.find("lease expired") != std::string::npos, error);
    CHECK_MESSAGE(error.find("host-a:101") != std::string::npos, error);
    REQUIRE(db.error_count(id) == 1);
    CHECK(*db.field(id, "errors->0->>'class'") == "lost");
    CHECK(*db.field(id, "errors->0->>'worker'") == "host-a:101");
    CHECK(*db.field(id, "errors->0->>'attempt'") == "1");
    CHECK(*db.field(id, "errors->0->>'message'") == error);
  }
  const auto again = db.claim(2);
  REQUIRE(again);
  CHECK(again->jobs[0].attempts == 2);
}

TEST_CASE(
    "reap makes a job dead when the lost attempt was its last, and "
    "cancelled when cancel was requested") {
  QueueDb db;
  Job once;
  once.max_attempts = 1;
  const auto last_try = db.add(once);
  const auto unit = db.claim();
  const auto to_cancel = db.add();
  const auto other = db.claim();
  REQUIRE(unit);
  REQUIRE(other);
  CHECK(db.cancel(to_cancel));
  db.age_lease(unit->lease_id);
  db.age_lease(other->lease_id);

  CHECK(inferq::db::reap(db.session, seconds(30), {}) == 2);

  CHECK(db.state(last_try) == "dead");
  CHECK(db.flag(last_try, "finished_at IS NOT NULL"));
  CHECK(*db.field(last_try, "errors->0->>'class'") == "lost");
  CHECK(db.state(to_cancel) == "cancelled");
  CHECK(db.flag(to_cancel, "finished_at IS NOT NULL"));
}

TEST_CASE("reap spares the leases in keep and fresh leases") {
  QueueDb db;
  const auto mine = db.add();
  const auto theirs = db.add();
  const auto fresh = db.add();
  const auto kept = db.claim();
  const auto stale = db.claim();
  REQUIRE(kept);
  REQUIRE(stale);
  const auto young = db.claim();
  REQUIRE(young);
  REQUIRE(young->jobs[0].id == fresh);

  // A fresh lease is not reaped with a realistic stale_after.
  CHECK(inferq::db::reap(db.session, seconds(60), {}) == 0);
  CHECK(db.leases() == 3);

  // Two of them stale: the one in keep is spared, and so is the fresh one.
  db.age_lease(kept->lease_id);
  db.age_lease(stale->lease_id);
  CHECK(inferq::db::reap(db.session, seconds(60), {kept->lease_id}) == 1);
  CHECK(db.state(mine) == "running");
  CHECK(db.state(fresh) == "running");
  CHECK(db.state(theirs) == "available");
  CHECK(db.leases() == 2);
  CHECK(db.scalar("SELECT count(*) FROM inferq.active_sessions WHERE id = " +
                  std::to_string(stale->lease_id)) == "0");
}

TEST_CASE("reap_then_claim reaps first, then claims in the same statement what the reap made available") {
  QueueDb db;
  const auto a = db.add();
  const auto b = db.add();
  const auto lost = db.claim(2);
  REQUIRE(lost);

  // Nothing stale (a realistic stale_after): no reap, and nothing to claim.
  auto r = inferq::db::reap_then_claim(db.session, seconds(60), {}, "q", db.worker, 16, 5);
  CHECK(r.reaped == 0);
  CHECK_FALSE(r.unit);
  CHECK(db.leases() == 1);

  // Stale: the jobs the reap frees are the ones its claim takes, on their
  // second attempt, under a new lease; the old lease is gone.
  db.age_lease(lost->lease_id);
  r = inferq::db::reap_then_claim(db.session, seconds(60), {}, "q", db.worker, 16, 5);
  CHECK(r.reaped == 1);
  REQUIRE(r.unit);
  CHECK(r.unit->lease_id != lost->lease_id);
  REQUIRE(r.unit->jobs.size() == 2);
  for (const auto &job : r.unit->jobs) {
    CAPTURE(job.id);
    CHECK((job.id == a || job.id == b));
    CHECK(job.attempts == 2);
    CHECK(db.state(job.id) == "running");
    CHECK(*db.field(job.id, "errors->0->>'class'") == "lost");
  }
  CHECK(db.leases() == 1);
  CHECK(db.scalar("SELECT count(*) FROM inferq.active_sessions WHERE id = " +
                  std::to_string(lost->lease_id)) == "0");

  // The reap spares `keep`, stale as it is; the claim still runs.
  const auto c = db.add();
  db.age_lease(r.unit->lease_id);
  r = inferq::db::reap_then_claim(db.session, seconds(60), {r.unit->lease_id}, "q", db.worker, 16, 5);
  CHECK(r.reaped == 0);
  REQUIRE(r.unit);
  REQUIRE(r.unit->jobs.size() == 1);
  CHECK(r.unit->jobs[0].id == c);
}

TEST_CASE("reap names a worker whose row is gone by its id") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);
  inferq::db::deregister_worker(db.session, db.worker);
  db.age_lease(unit->lease_id);

  CHECK(inferq::db::reap(db.session, seconds(30), {}) == 1);
  CHECK(*db.field(id, "errors->0->>'worker'") == "#" + std::to_string(db.worker));
  const std::string error = *db.field(id, "last_error");
  CHECK_MESSAGE(error.find("#" + std::to_string(db.worker)) != std::string::npos, error);
  CHECK_MESSAGE(error.find("within 30s") != std::string::npos, error);
}

// -------------------------------------------------------------- release

TEST_CASE("release returns the leases' jobs to available with the attempt refunded") {
  QueueDb db;
  const auto a = db.add();
  const auto b = db.add();
  const auto c = db.add();
  const auto unit = db.claim(2);
  const auto other = db.claim(1);
  REQUIRE(unit);
  REQUIRE(other);

  CHECK(inferq::db::release(db.session, {unit->lease_id}) == 2);

  for (const auto id : {a, b}) {
    CHECK(db.state(id) == "available");
    CHECK(db.attempts(id) == 0);
    CHECK(db.error_count(id) == 0);
    CHECK(db.flag(id, "lease_id IS NULL AND finished_at IS NULL"));
  }
  CHECK(db.state(c) == "running");
  CHECK(db.leases() == 1);
  CHECK(inferq::db::release(db.session, {unit->lease_id}) == 0);  // already gone
  CHECK(inferq::db::release(db.session, {}) == 0);

  const auto again = db.claim(2);
  REQUIRE(again);
  for (const auto &j : again->jobs) CHECK(j.attempts == 1);
}

TEST_CASE(
    "release keeps attempts of earlier runs and cancels a job whose "
    "cancel was requested") {
  QueueDb db;
  const auto retried = db.add();
  const auto to_cancel = db.add();
  const auto first = db.claim(2);
  REQUIRE(first);
  CHECK(db.complete({finish_all(*first, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kTransient, "x");
  })}) == 2);
  const auto second = db.claim(2);
  REQUIRE(second);
  CHECK(db.cancel(to_cancel));

  CHECK(inferq::db::release(db.session, {second->lease_id}) == 2);
  CHECK(db.state(retried) == "available");
  CHECK(db.attempts(retried) == 1);
  CHECK(db.error_count(retried) == 1);
  CHECK(db.state(to_cancel) == "cancelled");
  CHECK(db.flag(to_cancel, "finished_at IS NOT NULL"));
}
