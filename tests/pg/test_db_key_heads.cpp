// inferq.key_heads: one row per claimable key (available jobs, no live lease)
// naming its head, kept by every function that changes a key's state, also
// when those functions run at once.
#include <doctest.h>

#include <pqxx/pqxx>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "support/queue_db.hpp"
#include "support/test_env.hpp"

namespace {

using inferq::db::UnitFinish;
using inferq::test::failed;
using inferq::test::finish_all;
using inferq::test::ids_of;
using inferq::test::Job;
using inferq::test::keyed;
using inferq::test::QueueDb;
using inferq::test::succeeded;
using std::chrono::milliseconds;
using std::chrono::seconds;

}  // namespace

namespace {

// The key's row in key_heads as "head_id" (or "due" / "not due" appended when
// asked), "none" when the key has no row.
std::string head_of(QueueDb &db, const std::string &key, bool with_due = false) {
  pqxx::nontransaction tx(db.conn);
  const auto r = tx.exec_params(
      "SELECT head_id::text || CASE WHEN $2 THEN CASE WHEN run_at <= now() THEN ' due' ELSE ' not due' END"
      " ELSE '' END FROM inferq.key_heads WHERE queue = 'q' AND work_unit_key = $1",
      key, with_due);
  return r.empty() ? "none" : r[0][0].as<std::string>();
}

std::string success_document(std::int64_t lease, std::int64_t id) {
  return "[{\"lease\": " + std::to_string(lease) + ", \"id\": " + std::to_string(id) +
         ", \"ok\": true, \"result\": {}}]";
}

std::string retry_document(std::int64_t lease, std::int64_t id) {
  return "[{\"lease\": " + std::to_string(lease) + ", \"id\": " + std::to_string(id) +
         ", \"ok\": false, \"class\": \"transient\", \"message\": \"busy\", \"retry_ms\": 0}]";
}

// Whether, within 5 s, a statement of another connection comes to wait on
// a key's lock (an advisory lock) that an open transaction holds.
bool key_lock_awaited(QueueDb &db) {
  return inferq::test::wait_until(
      [&] {
        return db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == "1";
      },
      seconds(5), milliseconds(1));
}

// Runs `first` in a transaction on one connection and, before it commits,
// `second` in a transaction on another: the second must wait for the first
// (the key's lock), then both commit, the first one first.
void interleave(QueueDb &db, const std::string &first, const std::string &second) {
  pqxx::connection a(db.url);
  pqxx::connection b(db.url);
  pqxx::work ta(a);
  pqxx::work tb(b);
  ta.exec(first);
  std::exception_ptr failure;
  std::thread t([&] {
    try {
      tb.exec(second);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  CHECK(key_lock_awaited(db));
  ta.commit();
  t.join();
  if (failure) std::rethrow_exception(failure);
  tb.commit();
}

}  // namespace

TEST_CASE("key_heads names the head of each key that has available jobs and no lease") {
  QueueDb db;
  const auto k1 = db.add(keyed("k"));
  const auto k2 = db.add(keyed("k"));
  const auto k3 = db.add(keyed("k"));
  CHECK(head_of(db, "k") == std::to_string(k1));
  db.add();  // an unkeyed job has no row
  CHECK(db.scalar("SELECT count(*) FROM inferq.key_heads") == "1");

  // Claimed: the key is leased, so it has no row.
  const auto unit = db.claim(1);
  REQUIRE(unit);
  REQUIRE(ids_of(*unit) == std::vector<std::int64_t>{k1});
  CHECK(head_of(db, "k") == "none");
  db.add(keyed("k"));  // a job enqueued behind a leased key adds no row
  CHECK(head_of(db, "k") == "none");

  // Done: the next job is the head.
  CHECK(db.complete({finish_all(*unit, [](std::int64_t id) { return succeeded(id); })}) == 1);
  CHECK(head_of(db, "k") == std::to_string(k2));

  // Cancelling the head moves it on; cancelling another job does not.
  CHECK(db.cancel(k2));
  CHECK(head_of(db, "k") == std::to_string(k3));
  const auto unkeyed_cancel = db.add();
  CHECK(db.cancel(unkeyed_cancel));
  CHECK(head_of(db, "k") == std::to_string(k3));
}

TEST_CASE("cancelling a key's last available job removes its row") {
  QueueDb db;
  const auto only = db.add(keyed("k"));
  CHECK(head_of(db, "k") == std::to_string(only));
  CHECK(db.cancel(only));
  CHECK(head_of(db, "k") == "none");
  CHECK_FALSE(db.claim());

  // A running job's cancel leaves the key leased, without a row.
  const auto running = db.add(keyed("k"));
  db.add(keyed("k"));
  const auto unit = db.claim(1);
  REQUIRE(unit);
  CHECK(db.cancel(running));
  CHECK(head_of(db, "k") == "none");
}

TEST_CASE("a retried head keeps its key waiting until it is due, then claimable") {
  QueueDb db;
  const auto first = db.add(keyed("k"));
  const auto second = db.add(keyed("k"));
  const auto unit = db.claim(1);
  REQUIRE(unit);
  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {failed(first, inferq::db::ErrorClass::kTransient, "busy", std::int64_t{3600} * 1000)};
  CHECK(db.complete({finish}) == 1);
  CHECK(head_of(db, "k", true) == std::to_string(first) + " not due");
  CHECK_FALSE(db.claim(2));
  CHECK(db.state(second) == "available");
  db.make_due(first);
  CHECK(head_of(db, "k", true) == std::to_string(first) + " due");
  const auto retry = db.claim(2);
  REQUIRE(retry);
  CHECK(ids_of(*retry) == std::vector<std::int64_t>{first, second});
}

TEST_CASE("reap and release give a keyed unit's key its row back") {
  QueueDb db;
  const auto first = db.add(keyed("k"));
  const auto second = db.add(keyed("k"));

  SUBCASE("reap") {
    const auto unit = db.claim(1);
    REQUIRE(unit);
    CHECK(head_of(db, "k") == "none");
    db.age_lease(unit->lease_id);
    CHECK(inferq::db::reap(db.session, seconds(30), {}) == 1);
  }
  SUBCASE("release") {
    const auto unit = db.claim(1);
    REQUIRE(unit);
    CHECK(head_of(db, "k") == "none");
    CHECK(inferq::db::release(db.session, {unit->lease_id}) == 1);
  }
  SUBCASE("reap of a unit whose jobs are out of attempts") {
    Job once = keyed("j");
    once.max_attempts = 1;
    const auto dying = db.add(once);
    const auto after = db.add(keyed("j"));
    // Take k's unit out of the way first (it ranks first).
    const auto k_unit = db.claim(2);
    REQUIRE(k_unit);
    const auto unit = db.claim(1);
    REQUIRE(unit);
    REQUIRE(ids_of(*unit) == std::vector<std::int64_t>{dying});
    db.age_lease(unit->lease_id);
    CHECK(inferq::db::reap(db.session, seconds(30), {k_unit->lease_id}) == 1);
    CHECK(db.state(dying) == "dead");
    CHECK(head_of(db, "j") == std::to_string(after));
    const auto next = db.claim(1);
    REQUIRE(next);
    CHECK(ids_of(*next) == std::vector<std::int64_t>{after});
    return;
  }
  CHECK(head_of(db, "k") == std::to_string(first));
  const auto again = db.claim(2);
  REQUIRE(again);
  CHECK(ids_of(*again) == std::vector<std::int64_t>{first, second});
}

TEST_CASE(
    "an enqueue and the complete that ends its key's lease, in concurrent "
    "transactions, leave the key claimable whichever commits first") {
  QueueDb db;
  const auto first = db.add(keyed("k"));
  const auto unit = db.claim(1);
  REQUIRE(unit);
  const std::string enqueue = "SELECT inferq.enqueue('q', '{}', 'k')";

  SUBCASE("enqueue first, the first job succeeds") {
    interleave(db, enqueue, "SELECT inferq.complete('" + success_document(unit->lease_id, first) + "', 'w')");
  }
  SUBCASE("complete first, the first job succeeds") {
    interleave(db, "SELECT inferq.complete('" + success_document(unit->lease_id, first) + "', 'w')", enqueue);
  }
  SUBCASE("enqueue first, the first job is retried") {
    interleave(db, enqueue, "SELECT inferq.complete('" + retry_document(unit->lease_id, first) + "', 'w')");
  }
  SUBCASE("complete first, the first job is retried") {
    interleave(db, "SELECT inferq.complete('" + retry_document(unit->lease_id, first) + "', 'w')", enqueue);
  }

  const auto newest = std::stoll(db.scalar("SELECT max(id) FROM inferq.jobs"));
  const bool retried = db.state(first) == "available";
  const auto head = retried ? first : newest;
  CHECK(head_of(db, "k") == std::to_string(head));
  const auto next = db.claim(2);
  REQUIRE(next);
  CHECK(next->work_unit_key == std::optional<std::string>("k"));
  CHECK(ids_of(*next) ==
        (retried ? std::vector<std::int64_t>{first, newest} : std::vector<std::int64_t>{newest}));
}

TEST_CASE("two enqueues of one key in concurrent transactions leave the lower id the head") {
  QueueDb db;
  // The first transaction takes the lower id but commits first or last.
  pqxx::connection a(db.url);
  pqxx::connection b(db.url);
  pqxx::work ta(a);
  pqxx::work tb(b);
  const auto low = ta.exec1("SELECT inferq.enqueue('q', '{}', 'k')")[0].as<std::int64_t>();
  std::int64_t high = 0;
  std::thread t([&] { high = tb.exec1("SELECT inferq.enqueue('q', '{}', 'k')")[0].as<std::int64_t>(); });
  // The second enqueue has its id and waits for the key's lock to refresh
  // the key's head row.
  CHECK(key_lock_awaited(db));
  ta.commit();
  t.join();
  tb.commit();
  CHECK(low < high);
  CHECK(head_of(db, "k") == std::to_string(low));
}

TEST_CASE("rebuild_key_heads rebuilds the rows from the jobs and leases") {
  QueueDb db;
  const auto a1 = db.add(keyed("a"));
  db.add(keyed("a"));
  const auto b1 = db.add(keyed("b"));
  db.add(keyed("c"));
  const auto unit = db.claim(1);  // takes a
  REQUIRE(unit);
  const auto b_row = head_of(db, "b");
  db.scalar("SELECT count(*) FROM (SELECT inferq.cancel(id) FROM inferq.jobs WHERE work_unit_key = 'c') x");
  {
    pqxx::nontransaction tx(db.conn);
    tx.exec("DELETE FROM inferq.key_heads");
  }
  CHECK(db.scalar("SELECT inferq.rebuild_key_heads()") == "1");
  CHECK(head_of(db, "a") == "none");
  CHECK(head_of(db, "b") == std::to_string(b1));
  CHECK(b_row == std::to_string(b1));
  CHECK(head_of(db, "c") == "none");
  CHECK(a1 == unit->jobs[0].id);
}

TEST_CASE(
    "under concurrent producers, cancels and two claiming daemons, key_heads "
    "ends up naming exactly the claimable keys' heads") {
  QueueDb db;
  constexpr int kKeys = 4;
  // The run lasts until the producers have committed kEnqueues enqueues and
  // the daemons ended kUnits units (each way out about twenty times): an
  // amount of interleaving, not of time.
  constexpr int kEnqueues = 200;
  constexpr int kUnits = 200;
  std::atomic<int> enqueues{0};
  std::atomic<int> units{0};
  std::atomic<bool> stop{false};
  std::atomic<int> errors{0};
  std::mutex error_mutex;
  std::string first_error;
  const auto record = [&](const std::exception &e) {
    std::lock_guard<std::mutex> lock(error_mutex);
    if (errors++ == 0) first_error = e.what();
  };

  // Producers: single enqueues, and transactions of three jobs of one key.
  const auto producer = [&](unsigned seed) {
    std::mt19937 rng(seed);
    pqxx::connection c(db.url);
    while (!stop) {
      try {
        const std::string key = "k" + std::to_string(rng() % kKeys);
        if (rng() % 4 == 0) {
          pqxx::work tx(c);
          for (int i = 0; i < 3; ++i)
            tx.exec_params("SELECT inferq.enqueue('q', '{}', $1, $2)", key, static_cast<int>(rng() % 2));
          tx.commit();
          ++enqueues;
        } else {
          pqxx::nontransaction tx(c);
          const auto id = tx.exec_params1("SELECT inferq.enqueue('q', '{}', $1)", key)[0].as<std::int64_t>();
          if (rng() % 5 == 0) tx.exec_params("SELECT inferq.cancel($1)", id - static_cast<int>(rng() % 3));
          ++enqueues;
        }
      } catch (const std::exception &e) {
        record(e);
      }
    }
  };
  // Daemons: claim a unit, then finish it (some first jobs retried, the
  // rest requeued), or give it back, or let it be reaped.
  const auto daemon = [&](unsigned seed) {
    std::mt19937 rng(seed);
    pqxx::connection c(db.url);
    while (!stop) {
      try {
        pqxx::nontransaction tx(c);
        const auto rows =
            tx.exec_params("SELECT lease_id, job_id FROM inferq.claim('q', $1, 3, 3)", db.worker);
        if (rows.empty()) continue;
        const auto lease = rows[0][0].as<std::int64_t>();
        const auto what = rng() % 10;
        if (what == 0) {
          tx.exec_params("SELECT inferq.release(ARRAY[$1]::bigint[])", lease);
          ++units;
          continue;
        }
        if (what == 1) {
          tx.exec_params(
              "UPDATE inferq.active_sessions SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
              lease);
          tx.exec("SELECT inferq.reap(interval '30 seconds', '{}')");
          ++units;
          continue;
        }
        std::string doc = "[";
        for (pqxx::row::size_type i = 0; i < rows.size(); ++i) {
          const bool retry = what == 2;
          doc +=
              (i ? ", " : "") + std::string("{\"lease\": ") + std::to_string(lease) +
              ", \"id\": " + rows[i][1].as<std::string>() +
              (!retry   ? ", \"ok\": true, \"result\": {}}"
               : i == 0 ? ", \"ok\": false, \"class\": \"transient\", \"message\": \"busy\", \"retry_ms\": 0}"
                        : ", \"ok\": false, \"class\": \"requeue\", \"message\": \"requeued\"}");
        }
        doc += "]";
        tx.exec_params("SELECT inferq.complete($1::jsonb, 'w')", doc);
        ++units;
      } catch (const std::exception &e) {
        record(e);
      }
    }
  };

  std::vector<std::thread> threads;
  threads.emplace_back(producer, 1u);
  threads.emplace_back(producer, 2u);
  threads.emplace_back(daemon, 3u);
  threads.emplace_back(daemon, 4u);
  const auto started = std::chrono::steady_clock::now();
  const bool ran =
      inferq::test::wait_until([&] { return enqueues >= kEnqueues && units >= kUnits; }, seconds(30));
  stop = true;
  for (auto &t : threads) t.join();
  CHECK_MESSAGE(ran, enqueues << " enqueues and " << units << " units in 30 s");
  CHECK_MESSAGE(errors == 0, first_error);  // no deadlock, no error

  const std::string mismatches =
      "WITH want AS ("
      "  SELECT DISTINCT ON (j.queue, j.work_unit_key) j.queue, j.work_unit_key, j.id, j.priority, j.run_at"
      "    FROM inferq.jobs j"
      "   WHERE j.state = 'available' AND j.work_unit_key IS NOT NULL"
      "     AND NOT EXISTS (SELECT 1 FROM inferq.active_sessions s"
      "                      WHERE s.queue = j.queue AND s.work_unit_key = j.work_unit_key)"
      "   ORDER BY j.queue, j.work_unit_key, j.id),"
      " have AS (SELECT queue, work_unit_key, head_id, priority, run_at FROM inferq.key_heads)"
      " SELECT count(*) FROM ((SELECT * FROM want EXCEPT SELECT * FROM have)"
      "                       UNION ALL (SELECT * FROM have EXCEPT SELECT * FROM want)) d";
  CHECK(db.scalar(mismatches) == "0");
  MESSAGE("after a run of "
          << std::chrono::duration_cast<milliseconds>(std::chrono::steady_clock::now() - started).count()
          << " ms: " << db.scalar("SELECT count(*) FROM inferq.jobs") << " jobs, "
          << db.scalar("SELECT count(*) FROM inferq.key_heads") << " key_heads rows, " << db.leases()
          << " leases");

  // Everything left is claimable: drain it.
  while (auto unit = db.claim(100))
    CHECK(db.complete({finish_all(*unit, [](std::int64_t id) { return succeeded(id); })}) ==
          static_cast<int>(unit->jobs.size()));
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE state IN ('available', 'running')") == "0");
  CHECK(db.scalar("SELECT count(*) FROM inferq.key_heads") == "0");
}
