// README guarantee: a slot is never held past its unit's deadline. The executor
// running a unit past it is killed, the slot serves the next unit at once,
// and a job that always overruns ends dead after its attempts.
#include <doctest.h>

#include <chrono>
#include <string>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

std::string errors_of_class(std::int64_t id, const std::string& cls) {
  return "SELECT count(*) FROM inferq.jobs, jsonb_array_elements(errors) e WHERE id = " + std::to_string(id) +
         " AND e->>'class' = '" + cls + "'";
}

}  // namespace

TEST_CASE("a unit past its deadline is killed, the slot moves on, and the job ends dead after max_attempts") {
  const std::string url = fresh_inferq_database();
  TestQueue q = test_queue("sleep", "builtin:sleep", 1, 1, "1s");
  q.max_attempts = 2;
  q.backoff = "100ms";
  q.max_backoff = "200ms";
  const DaemonConfig config = daemon_config(url, {q});

  Daemon d(config, "deadline");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());

  const auto long_id = enqueue(url, "sleep", R"({"seconds": 10})");
  std::optional<JobRow> first;
  REQUIRE(wait_until(
      [&] {
        first = job(url, long_id);
        return first && first->state == "running";
      },
      10s, 10ms));
  REQUIRE(first->attempts == 1);
  REQUIRE(first->started_epoch);
  const double first_start = *first->started_epoch;

  // Queued behind the overrunning job on the only slot.
  const auto short_id = enqueue(url, "sleep", R"({"seconds": 0.1})");

  REQUIRE(wait_until(
      [&] {
        const auto s = job(url, short_id);
        return s && s->started_epoch.has_value();
      },
      10s, 20ms));
  const auto short_job = job(url, short_id);
  const double waited = *short_job->started_epoch - first_start;
  INFO("the short job started ", waited, " s after the long one");
  // Not before the deadline (one slot), and within deadline + 1 s of it.
  CHECK(waited >= 0.95);
  CHECK(waited <= 2.0);

  REQUIRE(wait_all_final(url, 15s));
  const auto short_done = job(url, short_id);
  CHECK(short_done->state == "succeeded");
  CHECK(short_done->attempts == 1);
  CHECK(short_done->result.value_or("<null>") == R"({"slept_seconds": 0.1})");

  const auto long_done = job(url, long_id);
  CAPTURE(long_done->errors);
  CHECK(long_done->state == "dead");
  CHECK(long_done->attempts == 2);
  CHECK(long_done->max_attempts.value_or(-1) == 2);
  CHECK(long_done->last_error.value_or("<null>") == "deadline exceeded after 1s");
  CHECK(long_done->result.value_or("<null>") == "<null>");
  CHECK(scalar(url, errors_of_class(long_id, "deadline")) == 2);
  CHECK(scalar(url, "SELECT jsonb_array_length(errors) FROM inferq.jobs WHERE id = " +
                        std::to_string(long_id)) == 2);
  CHECK(scalar(url,
               "SELECT count(*) FROM inferq.jobs, jsonb_array_elements(errors) e WHERE id = " +
                   std::to_string(long_id) +
                   " AND e->>'message' = 'deadline exceeded after 1s' AND (e->>'attempt')::int IN (1, 2)") ==
        2);
  // Each attempt was cut at the deadline, not at the 10 s the job asked for:
  // the first failure was written about 1 s after the first start, and the
  // second attempt ended about 1 s after it started.
  const auto first_failure_ms = scalar(url,
                                       "SELECT (extract(epoch FROM (errors->0->>'at')::timestamptz) * "
                                       "1000)::bigint FROM inferq.jobs WHERE id = " +
                                           std::to_string(long_id));
  const double first_attempt = first_failure_ms / 1000.0 - first_start;
  CHECK(first_attempt >= 0.95);
  CHECK(first_attempt <= 2.0);
  REQUIRE(long_done->started_epoch);
  REQUIRE(long_done->finished_epoch);
  const double second_attempt = *long_done->finished_epoch - *long_done->started_epoch;
  CHECK(second_attempt >= 0.95);
  CHECK(second_attempt <= 2.0);

  // The supervisor said what it did, and replaced the killed executors.
  CHECK(d.count_log("deadline exceeded after 1s; killing the executor") == 2);
  CHECK(d.executor_pids().size() >= 3);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions") == 0);
  CHECK(d.process().running());
}
