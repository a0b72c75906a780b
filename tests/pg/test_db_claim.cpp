// inferq.claim through src/db/queue_ops: the ranking (priority, run_at,
// id), units of unkeyed jobs and of one key, at most one live unit a key,
// and claimers that run at once never sharing a job.
#include <doctest.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/queue_db.hpp"
#include "support/test_env.hpp"

namespace {

using inferq::db::Session;
using inferq::test::failed;
using inferq::test::finish_all;
using inferq::test::ids_of;
using inferq::test::Job;
using inferq::test::kDefaultMaxAttempts;
using inferq::test::keyed;
using inferq::test::QueueDb;
using inferq::test::sorted_ids;
using inferq::test::succeeded;
using inferq::test::with_priority;
using std::chrono::seconds;

}  // namespace

TEST_CASE("claim takes the highest priority first") {
  QueueDb db;
  const auto low = db.add(with_priority(0));
  const auto high = db.add(with_priority(5));
  const auto mid = db.add(with_priority(1));
  const auto negative = db.add(with_priority(-2));

  std::vector<std::int64_t> order;
  while (auto unit = db.claim()) {
    REQUIRE(unit->jobs.size() == 1);
    order.push_back(unit->jobs[0].id);
  }
  CHECK(order == std::vector<std::int64_t>{high, mid, low, negative});
}

TEST_CASE("claim orders equal priorities by run_at, then by id") {
  QueueDb db;
  Job older;
  older.run_in_seconds = -10;
  Job newer;
  newer.run_in_seconds = -5;
  const auto b = db.add(newer);
  const auto a = db.add(older);
  // Two jobs with the very same run_at: the lower id first.
  const auto r = [&] {
    pqxx::nontransaction tx(db.conn);
    return tx.exec1(
        "SELECT inferq.enqueue('q', '{}', run_at => now() - interval '1 "
        "second'),"
        " inferq.enqueue('q', '{}', run_at => now() - interval '1 second')");
  }();
  const auto c = r[0].as<std::int64_t>();
  const auto d = r[1].as<std::int64_t>();
  REQUIRE(c < d);

  std::vector<std::int64_t> order;
  while (auto unit = db.claim(1)) order.push_back(unit->jobs[0].id);
  CHECK(order == std::vector<std::int64_t>{a, b, c, d});
}

TEST_CASE("claim leaves jobs whose run_at is in the future") {
  QueueDb db;
  Job later;
  later.run_in_seconds = 3600;
  const auto id = db.add(later);

  CHECK_FALSE(db.claim(10));
  CHECK(db.state(id) == "available");
  CHECK(db.attempts(id) == 0);
  CHECK(db.leases() == 0);  // a claim that finds nothing leaves no lease behind

  db.make_due(id);
  const auto unit = db.claim();
  REQUIRE(unit);
  CHECK(unit->jobs[0].id == id);
}

TEST_CASE("claim takes at most max_jobs unkeyed jobs as one unit under one lease") {
  QueueDb db;
  std::vector<std::int64_t> ids;
  ids.reserve(5);
  for (int i = 0; i < 5; ++i) ids.push_back(db.add(with_priority(10 - i)));

  const auto first = db.claim(3);
  REQUIRE(first);
  CHECK_FALSE(first->work_unit_key);
  CHECK(sorted_ids(*first) == std::vector<std::int64_t>{ids[0], ids[1], ids[2]});
  for (const auto &j : first->jobs) {
    CHECK(j.payload == R"({"n": 1})");
    CHECK(*db.field(j.id, "lease_id") == std::to_string(first->lease_id));
  }

  const auto second = db.claim(3);
  REQUIRE(second);
  CHECK(sorted_ids(*second) == std::vector<std::int64_t>{ids[3], ids[4]});
  CHECK(second->lease_id != first->lease_id);
  CHECK_FALSE(db.claim(3));
  CHECK(db.leases() == 2);
  CHECK(db.scalar("SELECT string_agg(DISTINCT worker_id::text, ',') FROM "
                  "inferq.active_sessions") == std::to_string(db.worker));
}

TEST_CASE(
    "claim counts the attempt and fixes max_attempts from the default at "
    "the first claim") {
  QueueDb db;
  const auto plain = db.add();
  Job own;
  own.max_attempts = 5;
  const auto explicit_max = db.add(own);
  CHECK_FALSE(db.field(plain, "max_attempts"));

  const auto unit = db.claim(2, "q", 3);
  REQUIRE(unit);
  REQUIRE(unit->jobs.size() == 2);
  for (const auto &j : unit->jobs) {
    CHECK(j.attempts == 1);
    CHECK(j.max_attempts == (j.id == plain ? 3 : 5));
    CHECK(db.state(j.id) == "running");
    CHECK(db.attempts(j.id) == 1);
    CHECK(db.flag(j.id, "started_at IS NOT NULL"));
  }
  CHECK(*db.field(plain, "max_attempts") == "3");
  CHECK(*db.field(explicit_max, "max_attempts") == "5");

  // Back to available (a transient failure): the next claim counts again,
  // and a different default no longer changes what was fixed.
  CHECK(db.complete({finish_all(*unit, [](std::int64_t id) {
    return failed(id, inferq::db::ErrorClass::kTransient, "retry me");
  })}) == 2);
  const auto again = db.claim(2, "q", 9);
  REQUIRE(again);
  for (const auto &j : again->jobs) {
    CHECK(j.attempts == 2);
    CHECK(j.max_attempts == (j.id == plain ? 3 : 5));
  }
}

TEST_CASE("claim only takes jobs of the queue it names") {
  QueueDb db;
  Job other;
  other.queue = "other";
  const auto elsewhere = db.add(other);
  const auto here = db.add();

  const auto unit = db.claim(10);
  REQUIRE(unit);
  CHECK(ids_of(*unit) == std::vector<std::int64_t>{here});
  CHECK(db.state(elsewhere) == "available");
  CHECK_FALSE(db.claim(10, "missing-queue"));
}

TEST_CASE("a key has at most one live unit") {
  QueueDb db;
  const auto k1 = db.add(keyed("user-1"));
  const auto k2 = db.add(keyed("user-1"));
  const auto k3 = db.add(keyed("user-1"));

  const auto first = db.claim(2);
  REQUIRE(first);
  CHECK(first->work_unit_key == std::optional<std::string>("user-1"));
  CHECK(ids_of(*first) == std::vector<std::int64_t>{k1, k2});

  // The key is leased: its third job waits although it is due.
  CHECK_FALSE(db.claim(2));
  CHECK(db.state(k3) == "available");
  CHECK(db.scalar("SELECT work_unit_key FROM inferq.active_sessions") == "user-1");

  // Other keys and unkeyed jobs are not held up by it.
  const auto other_key = db.add(keyed("user-2"));
  const auto second = db.claim(2);
  REQUIRE(second);
  CHECK(ids_of(*second) == std::vector<std::int64_t>{other_key});
  const auto unkeyed = db.add();
  const auto third = db.claim(2);
  REQUIRE(third);
  CHECK(ids_of(*third) == std::vector<std::int64_t>{unkeyed});
  CHECK_FALSE(third->work_unit_key);

  // Once its unit is done, the key's next job is claimable.
  CHECK(db.complete({finish_all(*first, [](std::int64_t id) { return succeeded(id); })}) == 2);
  const auto fourth = db.claim(2);
  REQUIRE(fourth);
  CHECK(ids_of(*fourth) == std::vector<std::int64_t>{k3});
}

TEST_CASE("the same key in two queues is two independent keys") {
  QueueDb db;
  Job a = keyed("shared");
  Job b = keyed("shared");
  b.queue = "other";
  db.add(a);
  db.add(b);
  CHECK(db.claim(1, "q"));
  CHECK(db.claim(1, "other"));
}

TEST_CASE(
    "a keyed unit is the key's consecutive jobs in id order up to "
    "max_jobs, cut at the first not yet due") {
  QueueDb db;
  const auto a1 = db.add(keyed("a"));
  const auto b1 = db.add(keyed("b", -1));  // another key in between does not break a's run
  const auto a2 = db.add(keyed("a", -5));  // a later job's own priority does not matter
  const auto unkeyed = db.add(with_priority(-1));
  const auto a3 = db.add(keyed("a", 7));
  Job not_due = keyed("a");
  not_due.run_in_seconds = 3600;
  const auto a4 = db.add(not_due);
  const auto a5 = db.add(keyed("a"));

  SUBCASE("up to max_jobs") {
    const auto unit = db.claim(2);
    REQUIRE(unit);
    CHECK(ids_of(*unit) == std::vector<std::int64_t>{a1, a2});
  }
  SUBCASE("cut at the first job not yet due, even when later ones are") {
    const auto unit = db.claim(10);
    REQUIRE(unit);
    CHECK(unit->work_unit_key == std::optional<std::string>("a"));
    CHECK(ids_of(*unit) == std::vector<std::int64_t>{a1, a2, a3});
    CHECK(db.state(a4) == "available");
    CHECK(db.state(a5) == "available");
    CHECK(db.state(b1) == "available");
    CHECK(db.state(unkeyed) == "available");
    CHECK(db.complete({finish_all(*unit, [](std::int64_t id) { return succeeded(id); })}) == 3);

    // Now the key's oldest job is not due: the key waits, a5 must not jump it.
    std::vector<std::optional<std::string>> keys;
    while (auto next = db.claim(10)) {
      keys.push_back(next->work_unit_key);
      const auto ids = ids_of(*next);
      CHECK(std::find(ids.begin(), ids.end(), a5) == ids.end());
    }
    CHECK(keys.size() == 2);  // b's unit and the unkeyed one
    CHECK(db.state(a4) == "available");
    CHECK(db.state(a5) == "available");
  }
}

TEST_CASE("keyed and unkeyed units rank together by priority, run_at and id") {
  QueueDb db;
  const auto unkeyed_low = db.add(with_priority(1));
  const auto keyed_high = db.add(keyed("k", 5));
  const auto keyed_low = db.add(keyed("j", 0));
  const auto unkeyed_high = db.add(with_priority(3));

  std::vector<std::vector<std::int64_t>> units;
  while (auto unit = db.claim(10)) units.push_back(sorted_ids(*unit));
  // An unkeyed unit batches every due unkeyed job from the best one down.
  CHECK(units ==
        std::vector<std::vector<std::int64_t>>{{keyed_high}, {unkeyed_low, unkeyed_high}, {keyed_low}});
}

TEST_CASE(
    "on equal priority the older run_at wins between a keyed and an "
    "unkeyed head, then the lower id") {
  QueueDb db;
  const auto r = [&] {
    pqxx::nontransaction tx(db.conn);
    return tx.exec1(
        "SELECT inferq.enqueue('q', '{}', NULL, 0, now() - "
        "interval '1 minute'),"
        "       inferq.enqueue('q', '{}', 'k', 0, now() - interval "
        "'2 minutes'),"
        "       inferq.enqueue('q', '{}', 'j', 0, now() - interval "
        "'1 minute')");
  }();
  const auto unkeyed = r[0].as<std::int64_t>();
  const auto keyed_old = r[1].as<std::int64_t>();
  const auto keyed_same = r[2].as<std::int64_t>();

  std::vector<std::vector<std::int64_t>> units;
  while (auto unit = db.claim(10)) units.push_back(sorted_ids(*unit));
  CHECK(units == std::vector<std::vector<std::int64_t>>{{keyed_old}, {unkeyed}, {keyed_same}});
}

TEST_CASE("two concurrent claimers never get the same job") {
  QueueDb db;
  {
    pqxx::nontransaction tx(db.conn);
    tx.exec(
        "SELECT inferq.enqueue('q', jsonb_build_object('n', g)) FROM "
        "generate_series(1, 2000) g");
  }
  std::mutex mu;
  std::condition_variable cv;
  bool go = false;  // guarded by mu
  std::vector<std::int64_t> claimed[2];
  std::set<std::int64_t> leases[2];
  std::exception_ptr errors[2];
  std::vector<std::thread> threads;
  threads.reserve(2);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      try {
        Session s(db.url, "test-claimer-" + std::to_string(t));
        s.connect();
        {
          std::unique_lock<std::mutex> lock(mu);
          cv.wait_for(lock, seconds(30), [&] { return go; });
        }
        while (auto unit = inferq::db::claim(s, "q", db.worker, 7, kDefaultMaxAttempts)) {
          leases[t].insert(unit->lease_id);
          for (const auto &j : unit->jobs) claimed[t].push_back(j.id);
        }
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    go = true;
  }
  cv.notify_all();
  for (auto &th : threads) th.join();
  for (const auto &e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception &x) {
      FAIL("a claimer failed: " << x.what());
    }
  }

  std::set<std::int64_t> all(claimed[0].begin(), claimed[0].end());
  all.insert(claimed[1].begin(), claimed[1].end());
  CHECK(claimed[0].size() + claimed[1].size() == 2000);
  CHECK(all.size() == 2000);  // no job twice
  for (std::int64_t lease : leases[0]) CHECK(leases[1].count(lease) == 0);
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE state = 'running' "
                  "AND attempts = 1") == "2000");
  CHECK(db.leases() == static_cast<int>(leases[0].size() + leases[1].size()));
  MESSAGE("claimer 0 took " << claimed[0].size() << " jobs, claimer 1 took " << claimed[1].size());
}

TEST_CASE(
    "two concurrent claimers of keyed jobs never hold one key at once "
    "and keep each key's id order") {
  QueueDb db;
  constexpr int kKeys = 20;
  constexpr int kPerKey = 5;
  {
    pqxx::nontransaction tx(db.conn);
    tx.exec_params(
        "SELECT inferq.enqueue('q', '{}', 'key-' || (g % $1)) FROM "
        "generate_series(1, $2) g",
        kKeys, kKeys * kPerKey);
  }
  std::mutex mu;
  std::map<std::string, std::vector<std::int64_t>> runs;  // guarded by mu: per key, in claim order
  std::set<std::string> holding;                          // guarded by mu: keys claimed, not yet completed
  int done = 0;                                           // guarded by mu
  bool overlap = false;                                   // guarded by mu
  std::exception_ptr errors[2];
  std::vector<std::thread> threads;
  threads.reserve(2);
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      try {
        Session s(db.url, "test-claimer-" + std::to_string(t));
        const auto deadline = std::chrono::steady_clock::now() + seconds(20);
        while (std::chrono::steady_clock::now() < deadline) {
          {
            std::lock_guard<std::mutex> lock(mu);
            if (done == kKeys * kPerKey) return;
          }
          const auto unit = inferq::db::claim(s, "q", db.worker, 2, kDefaultMaxAttempts);
          if (!unit) {
            std::this_thread::yield();  // the remaining keys are leased by the
                                        // other claimer
            continue;
          }
          {
            std::lock_guard<std::mutex> lock(mu);
            overlap = overlap || !holding.insert(*unit->work_unit_key).second;
            auto &run = runs[*unit->work_unit_key];
            for (const auto &j : unit->jobs) run.push_back(j.id);
          }
          std::this_thread::yield();  // widen the window in which the other
                                      // thread could overlap
          {
            // Out of `holding` before the lease goes, so the other thread's
            // claim right after complete() is no false overlap.
            std::lock_guard<std::mutex> lock(mu);
            holding.erase(*unit->work_unit_key);
            done += static_cast<int>(unit->jobs.size());
          }
          inferq::db::complete(s, {finish_all(*unit, [](std::int64_t id) { return succeeded(id); })}, "t");
        }
      } catch (...) {
        errors[t] = std::current_exception();
      }
    });
  }
  for (auto &th : threads) th.join();
  for (const auto &e : errors) {
    if (!e) continue;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception &x) {
      FAIL("a claimer failed: " << x.what());
    }
  }
  CHECK_FALSE(overlap);
  CHECK(done == kKeys * kPerKey);
  CHECK(runs.size() == static_cast<std::size_t>(kKeys));
  for (const auto &entry : runs) {
    const std::string &key = entry.first;  // not a structured binding: CAPTURE's lambda takes it
    const auto &ids = entry.second;
    CAPTURE(key);
    CHECK(ids.size() == static_cast<std::size_t>(kPerKey));
    CHECK(std::is_sorted(ids.begin(), ids.end()));
  }
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded' "
                  "AND attempts = 1") == std::to_string(kKeys * kPerKey));
}
// A claim once read its jobs' wait by joining the claimed rows to
// inferq.jobs in its own statement, whose snapshot predates the function's
// inner statements: a job committed in between was claimed (running, under
// the lease) but left out of the result, so no daemon ever ran it and it
// stayed running for ever after its unit ended (seen in test_two_daemons).
// Here the claim is held at its lease insert while a producer commits a job.
TEST_CASE("claim returns every job it claimed, also one committed while the claim was running") {
  QueueDb db;
  const auto first = db.add(keyed("k"));

  // An uncommitted lease for the key holds the claim's own lease insert.
  pqxx::connection blocker_conn(db.url);
  pqxx::work blocker(blocker_conn);
  blocker.exec_params(
      "INSERT INTO inferq.active_sessions (queue, work_unit_key, worker_id) VALUES ('q', 'k', $1)",
      db.worker);

  auto claiming = std::async(std::launch::async, [&] { return db.claim(16); });
  pqxx::connection watcher(db.url);
  REQUIRE(inferq::test::wait_until(
      [&] {
        pqxx::nontransaction tx(watcher);
        return tx.exec1(
                     "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'test-daemon'"
                     " AND wait_event_type = 'Lock'")[0]
                   .as<int>() == 1;
      },
      std::chrono::seconds(10), std::chrono::milliseconds(1)));
  // Committed after the claim's statement began, before its jobs are read,
  // by a producer whose transaction began earlier (so its run_at, the
  // producer's now(), is due for the claim). Written by hand: enqueue would
  // wait for the key's lock, which the claim holds by now.
  const auto second =
      std::stoll(db.scalar("INSERT INTO inferq.jobs (queue, work_unit_key, payload, run_at)"
                           " VALUES ('q', 'k', '{}', now() - interval '1 minute') RETURNING id"));
  blocker.abort();

  const auto unit = claiming.get();
  REQUIRE(unit);
  std::vector<std::int64_t> ids;
  for (const auto &job : unit->jobs) ids.push_back(job.id);
  CHECK(ids == std::vector<std::int64_t>{first, second});
  CHECK(db.state(second) == "running");
  for (const auto &job : unit->jobs) CHECK(job.wait_seconds >= 0.0);
}
