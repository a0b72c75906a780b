// An executor that crashes on every unit (builtin:crash aborts) is replaced
// each time; its job uses up its attempts and ends dead naming the signal,
// while the daemon's other executors go on serving their queue.
#include <doctest.h>

#include <chrono>
#include <string>
#include <thread>
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

  // Echo traffic before, during and after the crash loop.
  std::vector<std::int64_t> echo_ids =
      enqueue_many(url, "echo", {R"({"phase": "before"})", R"({"phase": "before"})"});
  const auto crash_id = enqueue(url, "crash", R"({"boom": true})");
  const std::string crash_sid = std::to_string(crash_id);
  std::vector<std::int64_t> during;
  const auto crash_final = [&] {
    return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + crash_sid +
                           " AND state IN ('succeeded', 'dead', 'cancelled')") == 1;
  };
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (!crash_final() && std::chrono::steady_clock::now() < until) {
    during.push_back(
        enqueue(url, "echo", R"({"phase": "during", "n": )" + std::to_string(during.size()) + "}"));
    std::this_thread::sleep_for(25ms);  // pacing the producer, not synchronizing
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
  // succeeded, promptly.
  CHECK(during.size() >= 5);
  for (const auto id : echo_ids) {
    CAPTURE(id);
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK(j->state == "succeeded");
    CHECK(j->attempts == 1);
  }
  CHECK(scalar(url,
               "SELECT count(*) FROM inferq.jobs WHERE queue = 'echo'"
               " AND finished_at - created_at > interval '2 seconds'") == 0);
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
