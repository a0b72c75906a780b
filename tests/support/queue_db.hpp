#pragma once
// The fixture of the tests of the daemon's queue statements (claim,
// complete, heartbeat, reap, release, key heads): jobs to enqueue, a
// WorkerDb that enqueues and inspects them, and the outcomes to finish them.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "db/error.hpp"
#include "db/queue_ops.hpp"
#include "support/worker_db.hpp"

namespace inferq::test {

constexpr int kDefaultMaxAttempts = 3;

// What a test enqueues; run_at is relative to now.
struct Job {
  std::string queue = "q";
  std::optional<std::string> key;
  int priority = 0;
  double run_in_seconds = 0;
  std::optional<int> max_attempts;
};

Job keyed(const std::string& key, int priority = 0);
Job with_priority(int priority);

// A WorkerDb whose daemon is "host-a:101", serving queue "q".
struct QueueDb : WorkerDb {
  QueueDb();

  // inferq.enqueue() of `job`; returns its id.
  std::int64_t add(const Job& job = {});
  std::optional<db::ClaimedUnit> claim(int max_jobs = 1, const std::string& queue = "q",
                                       int default_max_attempts = kDefaultMaxAttempts);
  int complete(const std::vector<db::UnitFinish>& units);

  // One column of a job's row, as text; nullopt for SQL NULL.
  std::optional<std::string> field(std::int64_t id, const std::string& expression);
  int attempts(std::int64_t id);
  int error_count(std::int64_t id);
  bool flag(std::int64_t id, const std::string& condition);
  int leases();

  // Makes a job due now (as if its backoff had passed), and its key's head
  // row with it (a row written by hand is indexed by hand).
  void make_due(std::int64_t id);
  // inferq.cancel(), as a producer calls it.
  bool cancel(std::int64_t id);
  // Moves a lease's heartbeat back in time, as if its daemon had stopped:
  // a reap with a stale_after shorter than `by` then finds it stale.
  void age_lease(std::int64_t lease, const std::string& by = "1 hour");
};

// The unit's job ids in the order claim() returned them.
std::vector<std::int64_t> ids_of(const db::ClaimedUnit& unit);

// The unit's job ids in ascending order: an unkeyed unit is a set of
// independent jobs, returned in no particular order.
std::vector<std::int64_t> sorted_ids(const db::ClaimedUnit& unit);

db::JobFinish succeeded(std::int64_t id, const std::string& result = R"({"outputs": [1]})");
db::JobFinish failed(std::int64_t id, db::ErrorClass error_class, const std::string& message,
                     std::int64_t retry_ms = 0);

// The unit finished with one outcome per job, all alike.
db::UnitFinish finish_all(const db::ClaimedUnit& unit,
                          const std::function<db::JobFinish(std::int64_t)>& outcome);

}  // namespace inferq::test
