// An executor that crashes on every unit (builtin:crash aborts) is replaced
// each time; its job uses up its attempts and ends dead naming the signal,
// while the daemon's other executors go on serving their queue.
#include <doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("a crashing executor is restarted, its job ends dead after max_attempts, echo keeps flowing") {
  const std::string url = fresh_inferq_database();
  TestQueue crash = test_queue("crash", "builtin:crash", 1, 16);
  crash.max_attempts = 3;
  crash.backoff = "300ms";  // so the crash loop lasts a moment: retries after 150-300 ms, then 300-600 ms
  crash.max_backoff = "1s";
  TestQueue echo;
  echo.instances = 2;
  const DaemonConfig config = daemon_config(url, {crash, echo});

  Daemon d(config, "crash");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());

  // Echo traffic before, during and after the crash loop. During it, each
  // echo job is enqueued once the one before has succeeded, so the echo
  // queue's progress can be read against the crash job's attempts.
  std::vector<std::int64_t> echo_ids =
      enqueue_many(url, "echo", {R"({"phase": "before"})", R"({"phase": "before"})"});
  const auto crash_id = enqueue(url, "crash", R"({"boom": true})");
  const std::string crash_sid = std::to_string(crash_id);
  const auto crash_final = [&] {
    return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + crash_sid +
                           " AND state IN ('succeeded', 'dead', 'cancelled')") == 1;
  };
  std::vector<std::int64_t> during;
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!crash_final() && std::chrono::steady_clock::now() < until) {
    const auto id =
        enqueue(url, "echo", R"({"phase": "during", "n": )" + std::to_string(during.size()) + "}");
    during.push_back(id);
    REQUIRE_MESSAGE(wait_until([&] { return job(url, id)->state == "succeeded"; }, 10s), d.log());
  }
  REQUIRE(crash_final());
  const auto after = enqueue_many(url, "echo", {R"({"phase": "after"})", R"({"phase": "after"})"});
  echo_ids.insert(echo_ids.end(), during.begin(), during.end());
  echo_ids.insert(echo_ids.end(), after.begin(), after.end());

  REQUIRE(wait_all_final(url, 15s));

  const auto c = job(url, crash_id);
  REQUIRE(c);
  CAPTURE(c->errors);
  CHECK(c->state == "dead");
  CHECK(c->attempts == 3);
  CHECK(c->max_attempts.value_or(-1) == 3);
  REQUIRE(c->last_error);
  CHECK(c->last_error->find("SIGABRT") != std::string::npos);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs, jsonb_array_elements(errors) e WHERE id = " +
                        crash_sid + " AND e->>'class' = 'crash' AND e->>'message' LIKE '%SIGABRT%'") == 3);

  // Echo jobs enqueued while the crash executor died and came back all
  // succeeded, and the echo queue went on between the crashes: between each
  // crash and the next attempt's crash (its executor restarted, its job
  // backing off), echo jobs finished.
  for (const auto id : echo_ids) {
    CAPTURE(id);
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK(j->state == "succeeded");
    CHECK(j->attempts == 1);
  }
  // When the crash job's attempt `n` (0-based) was written as failed.
  const auto crashed_at = [&](int n) {
    return "(SELECT (errors -> " + std::to_string(n) +
           " ->> 'at')::timestamptz FROM inferq.jobs WHERE id = " + crash_sid + ")";
  };
  for (int n = 0; n + 1 < 3; ++n) {
    CAPTURE(n);
    CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE queue = 'echo' AND finished_at > " +
                          crashed_at(n) + " AND finished_at < " + crashed_at(n + 1)) >= 1);
  }
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE queue = 'echo' AND result = payload") ==
        static_cast<std::int64_t>(echo_ids.size()));

  // One crash per attempt, each followed by a fresh executor; the echo
  // executors were never touched.
  CHECK(d.count_log("(SIGABRT) while running a unit") == 3);
  CHECK(d.count_log("while running a unit") == 3);
  CHECK(d.count_log("while idle") == 0);
  CHECK(wait_until([&] { return d.count_log(") ready (builtin:crash)") >= 4; }, 5s));
  CHECK(d.count_log(") ready (builtin:crash)") == 4);
  CHECK(d.count_log(") ready (builtin:echo)") == 2);
  CHECK(d.process().running());
}
