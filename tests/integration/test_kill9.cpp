// kill -9 of a daemon in the middle of its units loses nothing: another
// daemon reaps its leases and finishes every job, and the attempt the dead
// daemon used is on record.
#include <doctest.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

std::vector<std::string> repeat(const std::string& payload, std::size_t n) {
  return std::vector<std::string>(n, payload);
}

}  // namespace

TEST_CASE("kill -9 mid-unit: a second daemon finishes every job, the lost attempt counted") {
  const std::string url = fresh_inferq_database();
  // Sleep units of two jobs, run one after the other on each of two slots.
  const TestQueue sleep = test_queue("sleep", "builtin:sleep", 2, 2, "30s");
  const TestQueue echo;  // defaults: builtin:echo, one slot, units of up to 16
  const DaemonConfig config = daemon_config(url, {sleep, echo});  // stale_after 2s, poll and heartbeat 200ms

  Daemon a(config, "a");
  INFO("daemon A log:\n", a.log());
  REQUIRE(a.wait_ready());
  const auto a_name = worker_name(url, a.pid());
  REQUIRE(a_name);

  const auto echo_before = enqueue_many(url, "echo", repeat(R"({"n": 1})", 20));
  // Two units of two 1 s sleeps start at once on A's two slots.
  const auto running = enqueue_many(url, "sleep", repeat(R"({"seconds": 1})", 4));
  const std::string running_list = id_list(running);
  REQUIRE(wait_until(
      [&] {
        return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'running' AND id IN (" +
                               running_list + ")") == 4;
      },
      10s, 10ms));
  CHECK(scalar(url, "SELECT count(DISTINCT lease_id) FROM inferq.jobs WHERE id IN (" + running_list + ")") ==
        2);
  // These wait for a slot.
  const auto waiting = enqueue_many(url, "sleep", repeat(R"({"seconds": 1})", 2));
  const auto a_executors = a.executor_pids();
  REQUIRE(a_executors.size() == 3);

  a.process().send_signal(SIGKILL);
  REQUIRE(a.process().wait_exit(5s));
  CHECK(wait_until([&] { return processes_gone(a_executors); }, 5s));
  // Neither unit finished: each had a second second to go.
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'running' AND id IN (" + running_list +
                        ")") == 4);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE queue = 'echo' AND state = 'succeeded'") == 20);

  // Work keeps arriving while no daemon runs.
  const auto echo_after = enqueue_many(url, "echo", repeat(R"({"n": 2})", 20));

  Daemon b(config, "b");
  INFO("daemon B log:\n", b.log());
  REQUIRE(b.wait_ready());
  REQUIRE(wait_all_final(url, 20s));

  const auto counts = state_counts(url);
  CHECK(counts.size() == 1);
  CHECK(counts.at("succeeded") == 20 + 4 + 2 + 20);

  for (const auto id : running) {
    CAPTURE(id);
    const auto j = job(url, id);
    REQUIRE(j);
    CAPTURE(j->errors);
    CHECK(j->state == "succeeded");
    CHECK(j->attempts == 2);
    CHECK(j->result.value_or("<null>") == R"({"slept_seconds": 1})");
    REQUIRE(j->last_error);
    CHECK(j->last_error->find("lease expired: worker " + *a_name) == 0);
    CHECK(scalar(url,
                 "SELECT jsonb_array_length(errors) FROM inferq.jobs WHERE id = " + std::to_string(id)) == 1);
    CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + std::to_string(id) +
                          " AND errors->0->>'class' = 'lost' AND errors->0->>'worker' = '" + *a_name +
                          "' AND (errors->0->>'attempt')::int = 1") == 1);
  }
  std::vector<std::int64_t> untouched = waiting;
  untouched.insert(untouched.end(), echo_before.begin(), echo_before.end());
  untouched.insert(untouched.end(), echo_after.begin(), echo_after.end());
  for (const auto id : untouched) {
    CAPTURE(id);
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK(j->state == "succeeded");
    CHECK(j->attempts == 1);
    CHECK(j->errors == "[]");
  }
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions") == 0);
  CHECK(b.log().find("stale lease(s); their jobs are available again") != std::string::npos);
}
