// Unique jobs (migration 0013): while a job of a queue with a unique_key is
// available or running, inferq.enqueue with that key returns its id and
// inserts nothing, under concurrent producers too; once it is finished the
// key is free again.
#include <doctest.h>

#include <pqxx/pqxx>

#include <atomic>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/worker_db.hpp"

namespace {

using inferq::db::JobFinish;
using inferq::db::Session;
using inferq::db::UnitFinish;

// WorkerDb's helpers, and enqueue.
struct Db : inferq::test::WorkerDb {
  std::int64_t enqueue(const std::string& args) {
    return std::stoll(scalar("SELECT inferq.enqueue(" + args + ")"));
  }
};

}  // namespace

TEST_CASE("a live job's unique_key returns its id and inserts nothing; the first job's fields are kept") {
  Db db;
  const auto first = db.enqueue("'q', '{\"n\": 1}', 'k1', 5, unique_key => 'doc-42'");
  CHECK(db.enqueue("'q', '{\"n\": 2}', 'k2', 9, unique_key => 'doc-42'") == first);
  CHECK(db.jobs() == 1);
  CHECK(db.scalar(
            "SELECT payload::text || ' ' || work_unit_key || ' ' || priority FROM inferq.jobs WHERE id = " +
            std::to_string(first)) == "{\"n\": 1} k1 5");
  // Keys are per queue; jobs without a key are never folded.
  const auto other_queue = db.enqueue("'r', '{}', unique_key => 'doc-42'");
  CHECK(other_queue != first);
  const auto a = db.enqueue("'q', '{}'");
  const auto b = db.enqueue("'q', '{}'");
  CHECK(a != b);
  CHECK(db.jobs() == 4);
  CHECK(db.scalar("SELECT unique_key FROM inferq.my_jobs WHERE id = " + std::to_string(first)) == "doc-42");
}

TEST_CASE(
    "the key is held while the job runs and waits for a retry, and freed once it succeeds, dies or is "
    "cancelled") {
  Db db;
  const auto id = db.enqueue("'q', '{}', unique_key => 'u'");
  auto unit = inferq::db::claim(db.session, "q", db.worker, 1, 2);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 1);
  CHECK(db.enqueue("'q', '{}', unique_key => 'u'") == id);  // running

  // A transient failure puts it back to available for its next attempt: still held.
  UnitFinish retry;
  retry.lease_id = unit->lease_id;
  JobFinish transient;
  transient.job_id = id;
  transient.error_class = inferq::db::ErrorClass::kTransient;
  transient.message = "try again";
  retry.jobs.push_back(transient);
  REQUIRE(inferq::db::complete(db.session, {retry}, "h:1") == 1);
  REQUIRE(db.scalar("SELECT state FROM inferq.jobs WHERE id = " + std::to_string(id)) == "available");
  CHECK(db.enqueue("'q', '{}', unique_key => 'u'") == id);

  // Succeeded: a new job takes the key.
  unit = inferq::db::claim(db.session, "q", db.worker, 1, 2);
  REQUIRE(unit);
  UnitFinish done;
  done.lease_id = unit->lease_id;
  JobFinish ok;
  ok.job_id = id;
  ok.ok = true;
  ok.result_json = "{}";
  done.jobs.push_back(ok);
  REQUIRE(inferq::db::complete(db.session, {done}, "h:1") == 1);
  REQUIRE(db.scalar("SELECT state FROM inferq.jobs WHERE id = " + std::to_string(id)) == "succeeded");
  const auto second = db.enqueue("'q', '{}', unique_key => 'u'");
  CHECK(second != id);

  // Cancelled: free again.
  db.scalar("SELECT inferq.cancel(" + std::to_string(second) + ")");
  const auto third = db.enqueue("'q', '{}', unique_key => 'u'");
  CHECK(third != second);

  // Dead (a permanent failure): free again.
  unit = inferq::db::claim(db.session, "q", db.worker, 1, 2);
  REQUIRE(unit);
  REQUIRE(unit->jobs[0].id == third);
  UnitFinish bad;
  bad.lease_id = unit->lease_id;
  JobFinish permanent;
  permanent.job_id = third;
  permanent.error_class = inferq::db::ErrorClass::kPermanent;
  permanent.message = "bad input";
  bad.jobs.push_back(permanent);
  REQUIRE(inferq::db::complete(db.session, {bad}, "h:1") == 1);
  REQUIRE(db.scalar("SELECT state FROM inferq.jobs WHERE id = " + std::to_string(third)) == "dead");
  CHECK(db.enqueue("'q', '{}', unique_key => 'u'") != third);
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE unique_key = 'u'") == "4");
}

TEST_CASE("concurrent producers enqueueing one key in their own transactions make exactly one job") {
  Db db;
  constexpr int kProducers = 12;
  constexpr int kRounds = 5;
  std::vector<std::unique_ptr<pqxx::connection>> conns;
  conns.reserve(kProducers);
  for (int i = 0; i < kProducers; ++i) conns.push_back(std::make_unique<pqxx::connection>(db.url));
  for (int round = 0; round < kRounds; ++round) {
    const std::string key = "req-" + std::to_string(round);
    std::atomic<int> ready{0};
    std::vector<std::int64_t> ids(kProducers, 0);
    std::vector<std::string> errors(kProducers);
    std::vector<std::thread> threads;
    threads.reserve(kProducers);
    for (int i = 0; i < kProducers; ++i) {
      threads.emplace_back([&, i] {
        try {
          pqxx::work tx(*conns[static_cast<std::size_t>(i)]);
          ready.fetch_add(1);
          while (ready.load() < kProducers) std::this_thread::yield();
          ids[static_cast<std::size_t>(i)] =
              tx.exec1("SELECT inferq.enqueue('q', '{}', unique_key => '" + key + "')")[0].as<std::int64_t>();
          // Hold the insert a moment so others meet it uncommitted.
          tx.exec("SELECT pg_sleep(0.01)");
          tx.commit();
        } catch (const std::exception& e) {
          errors[static_cast<std::size_t>(i)] = e.what();
        }
      });
    }
    for (auto& t : threads) t.join();
    for (const auto& e : errors) CHECK_MESSAGE(e.empty(), e);
    CHECK(std::set<std::int64_t>(ids.begin(), ids.end()).size() == 1);
    CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE unique_key = '" + key + "'") == "1");
  }
  // A producer that rolls back frees the key for the next one.
  {
    pqxx::work tx(*conns[0]);
    tx.exec("SELECT inferq.enqueue('q', '{}', unique_key => 'rolled-back')");
    tx.abort();
  }
  db.enqueue("'q', '{}', unique_key => 'rolled-back'");
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE unique_key = 'rolled-back'") == "1");
}

TEST_CASE("an empty or over-long unique_key is refused with a message") {
  Db db;
  CHECK(db.error("SELECT inferq.enqueue('q', '{}', unique_key => '')") ==
        "ERROR:  inferq.enqueue: unique_key must be NULL or a non-empty string");
  CHECK(db.error("SELECT inferq.enqueue('q', '{}', unique_key => repeat('x', 1001))") ==
        "ERROR:  inferq.enqueue: unique_key is 1001 bytes, over the limit of 1000 bytes");
  CHECK(db.error("SELECT inferq.enqueue('q', '{}', unique_key => repeat('x', 1000))").empty());
  CHECK(db.jobs() == 1);
}
