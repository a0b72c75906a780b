// The daemon's statements (src/db/queue_ops over inferq.claim, complete,
// heartbeat, reap, release): ranking, keyed units, attempts, fencing, leases
// and the NOTIFYs that tell producers and daemons about them.
#include <doctest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <optional>
#include <pqxx/pqxx>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "db/error.hpp"
#include "db/listener.hpp"
#include "db/migrate.hpp"
#include "db/queue_ops.hpp"
#include "db/session.hpp"
#include "support/migrated_database.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using inferq::db::ClaimedUnit;
using inferq::db::JobFinish;
using inferq::db::Listener;
using inferq::db::Notification;
using inferq::db::Session;
using inferq::db::UnitFinish;
using inferq::db::WorkerIdentity;
using inferq::test::PgCluster;
using std::chrono::milliseconds;
using std::chrono::seconds;

constexpr int kDefaultMaxAttempts = 3;
const std::string kReplacement = "\xef\xbf\xbd";  // U+FFFD in UTF-8

using inferq::test::migrated_database;

WorkerIdentity identity(const std::string &host, int pid) {
  WorkerIdentity who;
  who.name = host + ":" + std::to_string(pid);
  who.host = host;
  who.pid = pid;
  who.version = "0.0.0-test";
  who.queues = {"q"};
  return who;
}

// What a test enqueues; run_at is relative to now.
struct Job {
  std::string queue = "q";
  std::optional<std::string> key;
  int priority = 0;
  double run_in_seconds = 0;
  std::optional<int> max_attempts;
};

Job keyed(const std::string &key, int priority = 0) {
  Job j;
  j.key = key;
  j.priority = priority;
  return j;
}

Job with_priority(int priority) {
  Job j;
  j.priority = priority;
  return j;
}

// A migrated database of its own with one registered daemon ("host-a:101"),
// its Session, and a libpqxx connection to set up and inspect rows.
struct QueueDb {
  std::string url = migrated_database();
  Session session{url, "test-daemon"};
  pqxx::connection conn{url};
  WorkerIdentity who = identity("host-a", 101);
  std::int64_t worker = inferq::db::register_worker(session, who);

  std::int64_t add(const Job &job = {}) {
    pqxx::nontransaction tx(conn);
    const std::string max_attempts = job.max_attempts ? std::to_string(*job.max_attempts) : "";
    return tx
        .exec_params1(
            "SELECT inferq.enqueue($1, '{\"n\": 1}', $2, $3, now() + "
            "make_interval(secs => $4),"
            " $5::integer)",
            job.queue, job.key ? job.key->c_str() : nullptr, job.priority, job.run_in_seconds,
            job.max_attempts ? max_attempts.c_str() : nullptr)[0]
        .as<std::int64_t>();
  }

  std::optional<ClaimedUnit> claim(int max_jobs = 1, const std::string &queue = "q",
                                   int default_max_attempts = kDefaultMaxAttempts) {
    return inferq::db::claim(session, queue, worker, max_jobs, default_max_attempts);
  }

  int complete(const std::vector<UnitFinish> &units) {
    return inferq::db::complete(session, units, who.name);
  }

  // One column of a job's row, as text; nullopt for SQL NULL.
  std::optional<std::string> field(std::int64_t id, const std::string &expression) {
    pqxx::nontransaction tx(conn);
    const auto r = tx.exec_params1("SELECT (" + expression + ")::text FROM inferq.jobs WHERE id = $1", id);
    if (r[0].is_null()) return std::nullopt;
    return r[0].as<std::string>();
  }
  std::string state(std::int64_t id) { return *field(id, "state"); }
  int attempts(std::int64_t id) { return std::stoi(*field(id, "attempts")); }
  int error_count(std::int64_t id) { return std::stoi(*field(id, "jsonb_array_length(errors)")); }
  bool flag(std::int64_t id, const std::string &condition) { return *field(id, condition) == "true"; }

  std::string scalar(const std::string &sql) {
    pqxx::nontransaction tx(conn);
    const auto r = tx.exec1(sql);
    return r[0].is_null() ? "NULL" : r[0].as<std::string>();
  }
  int leases() { return std::stoi(scalar("SELECT count(*) FROM inferq.active_sessions")); }

  // Makes a job due now (as if its backoff had passed), and its key's head
  // row with it (a row written by hand is indexed by hand).
  void make_due(std::int64_t id) {
    pqxx::nontransaction tx(conn);
    tx.exec_params("UPDATE inferq.jobs SET run_at = now() WHERE id = $1", id);
    tx.exec_params(
        "SELECT inferq.refresh_key_head(queue, work_unit_key) FROM inferq.jobs"
        " WHERE id = $1 AND work_unit_key IS NOT NULL",
        id);
  }

  // inferq.cancel(), as a producer calls it.
  bool cancel(std::int64_t id) {
    pqxx::nontransaction tx(conn);
    return tx.exec_params1("SELECT inferq.cancel($1)", id)[0].as<bool>();
  }

  // Moves a lease's heartbeat back in time, as if its daemon had stopped.
  void age_lease(std::int64_t lease, const std::string &by = "1 hour") {
    pqxx::nontransaction tx(conn);
    tx.exec_params(
        "UPDATE inferq.active_sessions SET heartbeat_at = "
        "heartbeat_at - $2::interval WHERE id = $1",
        lease, by);
  }
};

// The unit's job ids in the order claim() returned them.
std::vector<std::int64_t> ids_of(const ClaimedUnit &unit) {
  std::vector<std::int64_t> ids;
  for (const auto &j : unit.jobs) ids.push_back(j.id);
  return ids;
}

// The unit's job ids in ascending order: an unkeyed unit is a set of
// independent jobs, returned in no particular order.
std::vector<std::int64_t> sorted_ids(const ClaimedUnit &unit) {
  auto ids = ids_of(unit);
  std::sort(ids.begin(), ids.end());
  return ids;
}

JobFinish succeeded(std::int64_t id, const std::string &result = R"({"outputs": [1]})") {
  JobFinish f;
  f.job_id = id;
  f.ok = true;
  f.result_json = result;
  return f;
}

JobFinish failed(std::int64_t id, inferq::db::ErrorClass error_class, const std::string &message,
                 std::int64_t retry_ms = 0) {
  JobFinish f;
  f.job_id = id;
  f.error_class = error_class;
  f.message = message;
  f.retry_ms = retry_ms;
  return f;
}

// The unit finished with one outcome per job, all alike.
UnitFinish finish_all(const ClaimedUnit &unit, const std::function<JobFinish(std::int64_t)> &outcome) {
  UnitFinish u;
  u.lease_id = unit.lease_id;
  for (const auto &j : unit.jobs) u.jobs.push_back(outcome(j.id));
  return u;
}

// Everything delivered to `listener` before a marker committed now
// (notifications arrive in commit order).
std::vector<Notification> drain(const std::string &url, Listener &listener) {
  static int markers = 0;
  const std::string marker = "marker-" + std::to_string(++markers);
  {
    pqxx::connection other(url);
    pqxx::nontransaction tx(other);
    tx.exec_params("SELECT pg_notify('inferq_jobs', $1)", marker);
  }
  std::vector<Notification> got;
  const auto deadline = std::chrono::steady_clock::now() + seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    for (auto &n : listener.wait(milliseconds(100))) {
      if (n.payload == marker) return got;
      got.push_back(n);
    }
  }
  FAIL("the marker notification did not arrive within 10 s");
  return got;
}

int count_of(const std::vector<Notification> &got, const std::string &channel, const std::string &payload) {
  int n = 0;
  for (const auto &x : got) n += x.channel == channel && x.payload == payload;
  return n;
}

}  // namespace

// ---------------------------------------------------------------- claim

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
  for (const auto &[key, ids] : runs) {
    CAPTURE(key);
    CHECK(ids.size() == static_cast<std::size_t>(kPerKey));
    CHECK(std::is_sorted(ids.begin(), ids.end()));
  }
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded' "
                  "AND attempts = 1") == std::to_string(kKeys * kPerKey));
}

// ------------------------------------------------------------- complete

TEST_CASE("complete writes a success with its result and releases the lease") {
  QueueDb db;
  const auto id = db.add();
  const auto other = db.add();
  const auto unit = db.claim(2);
  REQUIRE(unit);

  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {succeeded(id, R"({"outputs": [{"name": "y", "data": [0.5, "x\"y"]}]})"),
                 succeeded(other, "")};
  CHECK(db.complete({finish}) == 2);

  CHECK(db.state(id) == "succeeded");
  CHECK(*db.field(id, "result") == R"({"outputs": [{"data": [0.5, "x\"y"], "name": "y"}]})");
  CHECK_FALSE(db.field(other, "result"));  // an empty result is JSON null
  CHECK(db.state(other) == "succeeded");
  CHECK(db.flag(id, "finished_at IS NOT NULL AND lease_id IS NULL AND last_error IS NULL"));
  CHECK(db.error_count(id) == 0);
  CHECK(db.attempts(id) == 1);
  CHECK(db.leases() == 0);
}

TEST_CASE("one completion statement gives every job it finishes the same finished_at and error time") {
  QueueDb db;
  for (int i = 0; i < 400; ++i) db.add();
  const auto a = db.claim(200);
  const auto b = db.claim(200);
  REQUIRE(a);
  REQUIRE(b);
  // One unit succeeds, the other fails for good: both kinds of row change.
  CHECK(db.complete(
            {finish_all(*a, [](std::int64_t j) { return succeeded(j); }), finish_all(*b, [](std::int64_t j) {
               return failed(j, inferq::db::ErrorClass::kPermanent, "bad input", 0);
             })}) == 400);
  // Per-row clock_timestamp() gave a unit's jobs 400 different times, so
  // ordering a key's jobs by finished_at showed inversions inside a unit.
  CHECK(db.scalar("SELECT count(DISTINCT finished_at) FROM inferq.jobs") == "1");
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE finished_at IS NULL") == "0");
  CHECK(db.scalar("SELECT count(DISTINCT errors->0->>'at') FROM inferq.jobs WHERE state = 'dead'") == "1");
  CHECK(db.scalar("SELECT bool_and((errors->0->>'at')::timestamptz = finished_at) FROM inferq.jobs "
                  "WHERE state = 'dead'") == "t");
}

TEST_CASE(
    "a transient failure makes the job available again after retry_ms, "
    "with the error in its history") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);

  CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kTransient, "CUDA busy", 60000);
  })}) == 1);

  CHECK(db.state(id) == "available");
  CHECK(db.flag(id,
                "run_at BETWEEN clock_timestamp() + interval '55 seconds'"
                " AND clock_timestamp() + interval '61 seconds'"));
  CHECK(db.flag(id, "lease_id IS NULL AND finished_at IS NULL AND result IS NULL"));
  CHECK(db.attempts(id) == 1);
  CHECK(*db.field(id, "last_error") == "CUDA busy");
  REQUIRE(db.error_count(id) == 1);
  CHECK(*db.field(id, "errors->0->>'attempt'") == "1");
  CHECK(*db.field(id, "errors->0->>'class'") == "transient");
  CHECK(*db.field(id, "errors->0->>'message'") == "CUDA busy");
  CHECK(*db.field(id, "errors->0->>'worker'") == "host-a:101");
  CHECK(db.flag(id,
                "(errors->0->>'at')::timestamptz BETWEEN now() - interval "
                "'1 minute' AND clock_timestamp()"));
  CHECK(db.leases() == 0);
  CHECK_FALSE(db.claim());  // not due yet

  // With no backoff it is due at once; the second failure is appended.
  db.make_due(id);
  const auto again = db.claim();
  REQUIRE(again);
  CHECK(again->jobs[0].attempts == 2);
  CHECK(db.complete({finish_all(*again, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kDeadline, "took 31 s", 0);
  })}) == 1);
  CHECK(db.state(id) == "available");
  REQUIRE(db.error_count(id) == 2);
  CHECK(*db.field(id, "errors->1->>'attempt'") == "2");
  CHECK(*db.field(id, "errors->1->>'class'") == "deadline");
  CHECK(*db.field(id, "errors->0->>'class'") == "transient");
  CHECK(*db.field(id, "last_error") == "took 31 s");
  CHECK(db.claim());  // retry_ms 0: due at once
}

TEST_CASE("a permanent failure makes the job dead at once, attempts left or not") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim(1, "q", 10);
  REQUIRE(unit);

  CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kPermanent, "input 'x': expected shape [3], got [4]", 5000);
  })}) == 1);

  CHECK(db.state(id) == "dead");
  CHECK(db.flag(id, "finished_at IS NOT NULL AND lease_id IS NULL AND result IS NULL"));
  CHECK(*db.field(id, "last_error") == "input 'x': expected shape [3], got [4]");
  CHECK(*db.field(id, "errors->0->>'class'") == "permanent");
  CHECK_FALSE(db.claim());
}

TEST_CASE("a job out of attempts is dead after its last failure") {
  QueueDb db;
  Job once;
  once.max_attempts = 1;
  const auto id = db.add(once);
  const auto unit = db.claim();
  REQUIRE(unit);
  CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kCrash, "executor died", 100);
  })}) == 1);
  CHECK(db.state(id) == "dead");
  CHECK(db.flag(id, "finished_at IS NOT NULL"));
  CHECK(*db.field(id, "errors->0->>'class'") == "crash");

  // The same with the default of 2, over two claims.
  const auto twice = db.add();
  for (int attempt = 1; attempt <= 2; ++attempt) {
    const auto u = db.claim(1, "q", 2);
    REQUIRE(u);
    CHECK(u->jobs[0].attempts == attempt);
    CHECK(db.complete({finish_all(*u, [](std::int64_t j) {
      return failed(j, inferq::db::ErrorClass::kTransient, "again");
    })}) == 1);
  }
  CHECK(db.state(twice) == "dead");
  CHECK(db.error_count(twice) == 2);
}

TEST_CASE(
    "class requeue puts a keyed job back behind its retried predecessor: "
    "attempt refunded, no error") {
  // The supervisor sends "requeue" for the jobs of a keyed unit after one
  // that will be retried, so the key's jobs still run in id order.
  QueueDb db;
  Job once = keyed("k");
  once.max_attempts = 1;  // requeue must not kill a job that never ran
  const auto first = db.add(keyed("k"));
  const auto second = db.add(keyed("k"));
  const auto third = db.add(once);
  const auto unit = db.claim(3);
  REQUIRE(unit);
  REQUIRE(ids_of(*unit) == std::vector<std::int64_t>{first, second, third});

  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {
      failed(first, inferq::db::ErrorClass::kTransient, "CUDA busy", 60000),
      failed(second, inferq::db::ErrorClass::kRequeue, "requeued behind an earlier job of its key"),
      failed(third, inferq::db::ErrorClass::kRequeue, "requeued behind an earlier job of its key")};
  CHECK(db.complete({finish}) == 3);

  CHECK(db.state(first) == "available");
  CHECK(db.attempts(first) == 1);
  CHECK(db.error_count(first) == 1);
  for (const auto id : {second, third}) {
    CAPTURE(id);
    CHECK(db.state(id) == "available");
    CHECK(db.attempts(id) == 0);
    CHECK(db.error_count(id) == 0);
    CHECK_FALSE(db.field(id, "last_error"));
    CHECK(db.flag(id, "lease_id IS NULL AND finished_at IS NULL AND run_at <= now()"));
  }
  // The key waits for its first job's retry; nothing jumps ahead of it.
  CHECK_FALSE(db.claim(3));

  db.make_due(first);
  const auto retry = db.claim(3);
  REQUIRE(retry);
  REQUIRE(ids_of(*retry) == std::vector<std::int64_t>{first, second, third});
  CHECK(retry->jobs[0].attempts == 2);
  CHECK(retry->jobs[1].attempts == 1);
  CHECK(retry->jobs[2].attempts == 1);
}

TEST_CASE("a requeued job whose cancel was requested ends cancelled") {
  QueueDb db;
  const auto first = db.add(keyed("k"));
  const auto second = db.add(keyed("k"));
  const auto unit = db.claim(2);
  REQUIRE(unit);
  CHECK(db.cancel(second));

  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  finish.jobs = {failed(first, inferq::db::ErrorClass::kTransient, "busy", 0),
                 failed(second, inferq::db::ErrorClass::kRequeue, "requeued")};
  CHECK(db.complete({finish}) == 2);
  CHECK(db.state(first) == "available");
  CHECK(db.state(second) == "cancelled");
  CHECK(db.flag(second, "finished_at IS NOT NULL"));
}

TEST_CASE(
    "complete is fenced by the lease: a wrong or reaped lease writes "
    "nothing, a repeat is a no-op") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);

  SUBCASE("a lease that is not the job's") {
    UnitFinish wrong = finish_all(*unit, [](std::int64_t j) { return succeeded(j); });
    wrong.lease_id = unit->lease_id + 1000;
    CHECK(db.complete({wrong}) == 0);
    CHECK(db.state(id) == "running");
    CHECK(*db.field(id, "lease_id") == std::to_string(unit->lease_id));
    CHECK_FALSE(db.field(id, "result"));
    CHECK(db.leases() == 1);
  }
  SUBCASE("a job the lease does not hold") {
    const auto stranger = db.add();
    UnitFinish wrong;
    wrong.lease_id = unit->lease_id;
    wrong.jobs = {failed(stranger, inferq::db::ErrorClass::kPermanent, "not mine")};
    CHECK(db.complete({wrong}) == 0);
    CHECK(db.state(stranger) == "available");
    CHECK(db.error_count(stranger) == 0);
  }
  SUBCASE("a repeated complete") {
    const UnitFinish ok = finish_all(*unit, [](std::int64_t j) { return succeeded(j, R"({"v": 1})"); });
    CHECK(db.complete({ok}) == 1);
    CHECK(db.complete({ok}) == 0);
    CHECK(db.complete({finish_all(*unit, [](std::int64_t j) {
      return failed(j, inferq::db::ErrorClass::kPermanent, "late");
    })}) == 0);
    CHECK(db.state(id) == "succeeded");
    CHECK(*db.field(id, "result") == R"({"v": 1})");
    CHECK(db.error_count(id) == 0);
  }
  SUBCASE("a lease reaped and the job claimed by another daemon") {
    db.age_lease(unit->lease_id);
    Session other(db.url, "test-other-daemon");
    CHECK(inferq::db::reap(other, seconds(30), {}) == 1);
    const auto taken = inferq::db::claim(other, "q", db.worker + 1, 1, kDefaultMaxAttempts);
    REQUIRE(taken);
    REQUIRE(taken->jobs[0].id == id);

    CHECK(db.complete({finish_all(*unit, [](std::int64_t j) { return succeeded(j); })}) == 0);
    CHECK(db.state(id) == "running");
    CHECK(*db.field(id, "lease_id") == std::to_string(taken->lease_id));
    CHECK_FALSE(db.field(id, "result"));
    CHECK(db.leases() == 1);  // the new owner's lease is untouched

    CHECK(inferq::db::complete(other, {finish_all(*taken, [](std::int64_t j) { return succeeded(j); })},
                               "b:2") == 1);
    CHECK(db.state(id) == "succeeded");
  }
  CHECK(db.complete({}) == 0);
}

TEST_CASE("completion_document escapes messages into valid JSON") {
  UnitFinish u;
  u.lease_id = 7;
  u.jobs = {succeeded(1, R"({"y":1})"), failed(2, inferq::db::ErrorClass::kTransient, "m", 250),
            succeeded(3, "")};
  UnitFinish v;
  v.lease_id = 8;
  v.jobs = {failed(4, inferq::db::ErrorClass::kPermanent,
                   std::string("a\"b\\c\nd\te\rf") + '\x01' + '\0' + "g\x7f", 0)};
  CHECK(inferq::db::completion_document({u, v}) ==
        R"([{"lease":7,"id":1,"ok":true,"result":{"y":1}},)"
        R"({"lease":7,"id":2,"ok":false,"class":"transient","message":"m","retry_ms":250},)"
        R"({"lease":7,"id":3,"ok":true,"result":null},)"
        R"({"lease":8,"id":4,"ok":false,"class":"permanent","message":"a\"b\\c\nd\te\rf\u0001\ufffdg)"
        "\x7f"
        R"(","retry_ms":0}])");
  CHECK(inferq::db::completion_document({}) == "[]");
}

TEST_CASE(
    "messages with quotes, newlines, NUL and invalid UTF-8 round-trip "
    "through complete into last_error") {
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);
  const std::string message = std::string("say \"hi\" \\ back\nline 2\ttab\r\x01 nul:") + '\0' +
                              " bad:\xff\xfe cut:\xe2\x82 overlong2:\xc0\xaf euro:\xe2\x82\xac "
                              "smile:\xf0\x9f\x98\x80";

  CHECK(db.complete({finish_all(*unit, [&](std::int64_t j) {
    return failed(j, inferq::db::ErrorClass::kTransient, message);
  })}) == 1);

  const std::string stored = *db.field(id, "last_error");
  CHECK(*db.field(id, "errors->0->>'message'") == stored);
  CHECK(stored.rfind("say \"hi\" \\ back\nline 2\ttab\r\x01 nul:" + kReplacement + " bad:" + kReplacement,
                     0) == 0);
  CHECK(stored.find("euro:\xe2\x82\xac smile:\xf0\x9f\x98\x80") != std::string::npos);
  // Every invalid byte became U+FFFD; the valid text around them is intact.
  std::string without_replacements = stored;
  for (std::size_t p; (p = without_replacements.find(kReplacement)) != std::string::npos;)
    without_replacements.erase(p, kReplacement.size());
  CHECK(without_replacements ==
        "say \"hi\" \\ back\nline 2\ttab\r\x01 nul: "
        "bad: cut: overlong2: euro:\xe2\x82\xac"
        " smile:\xf0\x9f\x98\x80");
}

TEST_CASE(
    "well-formed-looking but invalid UTF-8 (overlong, surrogate, beyond "
    "U+10FFFF) does not make complete fail") {
  // PostgreSQL rejects these sequences in text; append_json_string must
  // replace them like any other invalid byte, or the unit cannot be written.
  QueueDb db;
  const auto id = db.add();
  const auto unit = db.claim();
  REQUIRE(unit);
  // The valid neighbours of each rejected range must pass through as they are:
  // U+0800, U+D7FF, U+E000, U+10000, U+10FFFF.
  const std::string valid_edges =
      "edges:"
      "\xe0\xa0\x80\xed\x9f\xbf\xee\x80\x80\xf0\x90\x80\x80\xf4\x8f\xbf\xbf";
  const std::string message =
      "overlong3:\xe0\x80\xaf surrogate:\xed\xa0\x80 "
      "overlong4:\xf0\x80\x80\xaf too-big:\xf4\x90\x80\x80 " +
      valid_edges;

  int written = -1;
  try {
    written = db.complete({finish_all(
        *unit, [&](std::int64_t j) { return failed(j, inferq::db::ErrorClass::kPermanent, message); })});
  } catch (const inferq::db::DbError &e) {
    FAIL("complete() was rejected: " << std::string(e.what()));
  }
  CHECK(written == 1);
  const auto stored = db.field(id, "last_error");
  REQUIRE(stored);
  std::string without_replacements = *stored;
  for (std::size_t p; (p = without_replacements.find(kReplacement)) != std::string::npos;)
    without_replacements.erase(p, kReplacement.size());
  CHECK(without_replacements == "overlong3: surrogate: overlong4: too-big: " + valid_edges);
  CHECK(stored->find(valid_edges) != std::string::npos);
}

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
  std::this_thread::sleep_for(milliseconds(20));  // older than the 1 ms stale_after below

  Session reaper(db.url, "test-reaper");
  CHECK(inferq::db::reap(reaper, milliseconds(1), {}) == 1);

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
  std::this_thread::sleep_for(milliseconds(20));

  CHECK(inferq::db::reap(db.session, milliseconds(1), {}) == 2);

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
  std::this_thread::sleep_for(milliseconds(20));
  const auto young = db.claim();
  REQUIRE(young);
  REQUIRE(young->jobs[0].id == fresh);

  // A fresh lease is not reaped with a realistic stale_after.
  CHECK(inferq::db::reap(db.session, seconds(60), {}) == 0);
  CHECK(db.leases() == 3);

  CHECK(inferq::db::reap(db.session, milliseconds(1), {kept->lease_id, young->lease_id}) == 1);
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
  std::this_thread::sleep_for(milliseconds(20));

  // Nothing stale (a realistic stale_after): no reap, and nothing to claim.
  auto r = inferq::db::reap_then_claim(db.session, seconds(60), {}, "q", db.worker, 16, 5);
  CHECK(r.reaped == 0);
  CHECK_FALSE(r.unit);
  CHECK(db.leases() == 1);

  // Stale: the jobs the reap frees are the ones its claim takes, on their
  // second attempt, under a new lease; the old lease is gone.
  r = inferq::db::reap_then_claim(db.session, milliseconds(1), {}, "q", db.worker, 16, 5);
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

  // The reap spares `keep`; the claim still runs.
  const auto c = db.add();
  r = inferq::db::reap_then_claim(db.session, milliseconds(1), {r.unit->lease_id}, "q", db.worker, 16, 5);
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

// -------------------------------------------------------- notifications

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

// inferq.key_heads: one row per claimable key (available jobs, no live lease)
// naming its head, kept by every function that changes a key's state.
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
  // The second statement waits on the key's advisory lock while the first
  // transaction is open.
  bool waited = false;
  for (int i = 0; i < 500 && !waited; ++i) {
    waited = db.scalar("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == "1";
    if (!waited) std::this_thread::sleep_for(milliseconds(10));
  }
  CHECK(waited);
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
  finish.jobs = {failed(first, inferq::db::ErrorClass::kTransient, "busy", 3600 * 1000)};
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
  std::this_thread::sleep_for(milliseconds(100));
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
        } else {
          pqxx::nontransaction tx(c);
          const auto id = tx.exec_params1("SELECT inferq.enqueue('q', '{}', $1)", key)[0].as<std::int64_t>();
          if (rng() % 5 == 0) tx.exec_params("SELECT inferq.cancel($1)", id - static_cast<int>(rng() % 3));
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
          continue;
        }
        if (what == 1) {
          tx.exec_params(
              "UPDATE inferq.active_sessions SET heartbeat_at = now() - interval '1 hour' WHERE id = $1",
              lease);
          tx.exec("SELECT inferq.reap(interval '30 seconds', '{}')");
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
  std::this_thread::sleep_for(seconds(2));
  stop = true;
  for (auto &t : threads) t.join();
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
  MESSAGE("after the run: " << db.scalar("SELECT count(*) FROM inferq.jobs") << " jobs, "
                            << db.scalar("SELECT count(*) FROM inferq.key_heads") << " key_heads rows, "
                            << db.leases() << " leases");

  // Everything left is claimable: drain it.
  while (auto unit = db.claim(100))
    CHECK(db.complete({finish_all(*unit, [](std::int64_t id) { return succeeded(id); })}) ==
          static_cast<int>(unit->jobs.size()));
  CHECK(db.scalar("SELECT count(*) FROM inferq.jobs WHERE state IN ('available', 'running')") == "0");
  CHECK(db.scalar("SELECT count(*) FROM inferq.key_heads") == "0");
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

TEST_CASE("a result that is not one JSON value cannot add keys to the completion: its job fails alone") {
  QueueDb db;
  const auto a = db.add();
  const auto b = db.add();
  const auto c = db.add();
  const auto unit = db.claim(3);
  REQUIRE(unit);
  UnitFinish finish;
  finish.lease_id = unit->lease_id;
  // Each would otherwise rewrite its own element: a second "id" (jsonb keeps
  // the last) that completes job c with a's result, and a fake success flag.
  finish.jobs = {succeeded(a, "{}, \"id\": " + std::to_string(c)), succeeded(b, R"(1,"ok":false)"),
                 succeeded(c, R"({"fine": true})")};
  CHECK(db.complete({finish}) == 3);
  for (const auto id : {a, b}) {
    CHECK(db.state(id) == "dead");
    CHECK(db.field(id, "last_error")->find("the executor's result is not one JSON value") !=
          std::string::npos);
    CHECK_FALSE(db.field(id, "result"));
  }
  CHECK(db.state(c) == "succeeded");
  CHECK(*db.field(c, "result") == R"({"fine": true})");
}
