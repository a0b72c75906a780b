// The NOTIFYs of complete, reap and release: inferq_done for each job that
// finished, inferq_jobs for a queue whose jobs can run again.
#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "db/error.hpp"
#include "db/listener.hpp"
#include "db/queue_ops.hpp"
#include "support/notifications.hpp"
#include "support/queue_db.hpp"

namespace {

using inferq::db::Listener;
using inferq::db::UnitFinish;
using inferq::test::count_of;
using inferq::test::drain;
using inferq::test::failed;
using inferq::test::Job;
using inferq::test::QueueDb;
using inferq::test::sorted_ids;
using inferq::test::succeeded;
using std::chrono::seconds;

}  // namespace

TEST_CASE(
    "finished jobs notify inferq_done with their id; jobs that can run "
    "again notify inferq_jobs") {
  QueueDb db;
  Listener listener(db.url, {"inferq_jobs", "inferq_done"}, "test-listener");
  listener.connect();
  Job once;
  once.max_attempts = 1;
  const auto ok = db.add();
  const auto permanent = db.add();
  const auto transient = db.add();
  const auto lost_dead = db.add(once);
  const auto lost_again = db.add();
  const auto released = db.add();
  drain(db.url, listener);

  const auto unit = db.claim(3);
  REQUIRE(unit);
  REQUIRE(sorted_ids(*unit) == std::vector<std::int64_t>{ok, permanent, transient});
  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {succeeded(ok), failed(permanent, inferq::db::ErrorClass::kPermanent, "bad"),
                 failed(transient, inferq::db::ErrorClass::kTransient, "busy", 0)};
  CHECK(db.complete({finish}) == 3);
  auto got = drain(db.url, listener);
  CHECK(count_of(got, "inferq_done", std::to_string(ok)) == 1);
  CHECK(count_of(got, "inferq_done", std::to_string(permanent)) == 1);
  CHECK(count_of(got, "inferq_done", std::to_string(transient)) == 0);
  CHECK(count_of(got, "inferq_jobs", "q") == 1);

  // Take the three others (and the retried one) as separate units.
  std::map<std::int64_t, std::int64_t> lease_of;
  while (auto u = db.claim()) lease_of[u->jobs[0].id] = u->lease_id;
  REQUIRE(lease_of.count(lost_dead) == 1);
  drain(db.url, listener);
  db.age_lease(lease_of[lost_dead]);
  db.age_lease(lease_of[lost_again]);
  CHECK(inferq::db::reap(db.session, seconds(30), {}) == 2);
  got = drain(db.url, listener);
  CHECK(count_of(got, "inferq_done", std::to_string(lost_dead)) == 1);
  CHECK(count_of(got, "inferq_done", std::to_string(lost_again)) == 0);
  CHECK(count_of(got, "inferq_jobs", "q") == 1);

  CHECK(inferq::db::release(db.session, {lease_of[released]}) == 1);
  got = drain(db.url, listener);
  CHECK(count_of(got, "inferq_jobs", "q") == 1);
  CHECK(count_of(got, "inferq_done", std::to_string(released)) == 0);
}
