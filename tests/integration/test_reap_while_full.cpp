// Incident 1: a worker whose every slot is busy still reaps the stale leases
// of a daemon that died, at once, and the jobs it held run again elsewhere.
#include <doctest.h>

#include <chrono>
#include <csignal>
#include <string>
#include <vector>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Queue `sleep`: two slots, one job per unit, a deadline far beyond the test.
DaemonConfig sleep_config(const std::string& url) {
  return daemon_config(url, {test_queue("sleep", "builtin:sleep", 2, 1, "60s")});
}

}  // namespace

TEST_CASE("a daemon with every slot busy reaps a dead daemon's leases within stale_after plus a tick") {
  const std::string url = fresh_inferq_database();
  const DaemonConfig config = sleep_config(url);  // stale_after 2s, poll and heartbeat 200ms

  // A: both slots busy for 12 s, far longer than reaping takes.
  Daemon a(config, "a");
  INFO("daemon A log:\n", a.log());
  REQUIRE(a.wait_ready());
  const auto a_jobs = enqueue_many(url, "sleep", {R"({"seconds": 12})", R"({"seconds": 12})"});
  const auto a_name = worker_name(url, a.pid());
  REQUIRE(a_name);
  const auto a_worker = scalar(url, "SELECT id FROM inferq.workers WHERE pid = " + std::to_string(a.pid()));
  const std::string a_running =
      "SELECT count(*) FROM inferq.jobs j JOIN inferq.active_sessions s ON s.id = j.lease_id"
      " WHERE j.state = 'running' AND s.worker_id = " +
      std::to_string(a_worker) + " AND j.id IN (" + id_list(a_jobs) + ")";
  REQUIRE(wait_until([&] { return scalar(url, a_running) == 2; }, 10s, 50ms));

  // B: claims the next jobs (A has no free slot), then is killed mid-unit.
  Daemon b(config, "b");
  INFO("daemon B log:\n", b.log());
  REQUIRE(b.wait_ready());
  const auto b_name = worker_name(url, b.pid());
  REQUIRE(b_name);
  const auto b_worker = scalar(url, "SELECT id FROM inferq.workers WHERE pid = " + std::to_string(b.pid()));
  const std::string b_leases =
      "SELECT count(*) FROM inferq.active_sessions WHERE worker_id = " + std::to_string(b_worker);
  const auto b_jobs = enqueue_many(url, "sleep", {R"({"seconds": 3})", R"({"seconds": 3})"});
  const std::string b_running =
      "SELECT count(*) FROM inferq.jobs j JOIN inferq.active_sessions s ON s.id = j.lease_id"
      " WHERE j.state = 'running' AND s.worker_id = " +
      std::to_string(b_worker) + " AND j.id IN (" + id_list(b_jobs) + ")";
  REQUIRE(wait_until([&] { return scalar(url, b_running) == 2; }, 10s, 20ms));
  REQUIRE(scalar(url, b_leases) == 2);
  const auto b_executors = b.executor_pids();
  REQUIRE(b_executors.size() == 2);

  b.process().send_signal(SIGKILL);  // kill -9 of the daemon alone
  const auto killed_at = Clock::now();
  REQUIRE(b.process().wait_exit(5s));
  // Its executors follow it (parent-death signal), so no sleep keeps running.
  CHECK(wait_until([&] { return processes_gone(b_executors); }, 5s));

  // Only A is alive, and A's slots are full: reaping must not wait for a slot.
  REQUIRE(wait_until([&] { return scalar(url, b_leases) == 0; }, 10s, 25ms));
  const double reaped_after = seconds_since(killed_at);
  INFO("B's leases were reaped ", reaped_after, " s after the kill");
  // B's last heartbeat was at most heartbeat_interval (200 ms) before the kill.
  CHECK(reaped_after >= 1.5);
  // stale_after (2 s) + one tick (200 ms) + a generous margin for a busy host.
  CHECK(reaped_after <= 2.0 + 0.2 + 1.5);
  CHECK(scalar(url, a_running) == 2);  // A was full the whole time
  CHECK(a.process().wait_log("stale lease(s); their jobs are available again", 2s));

  // The lost attempt is on record, naming B, and the jobs wait for a slot.
  for (const auto id : b_jobs) {
    const auto j = job(url, id);
    REQUIRE(j);
    CAPTURE(j->errors);
    CHECK(j->state == "available");
    CHECK(j->attempts == 1);
    REQUIRE(j->last_error);
    CHECK(j->last_error->find("lease expired: worker " + *b_name + " did not renew it") != std::string::npos);
    CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs, jsonb_array_elements(errors) e WHERE id = " +
                          std::to_string(id) + " AND e->>'class' = 'lost' AND e->>'worker' = '" + *b_name +
                          "' AND (e->>'attempt')::int = 1") == 1);
    CHECK(scalar(url,
                 "SELECT jsonb_array_length(errors) FROM inferq.jobs WHERE id = " + std::to_string(id)) == 1);
  }

  // C takes them over and finishes them while A still sleeps.
  Daemon c(config, "c");
  INFO("daemon C log:\n", c.log());
  REQUIRE(c.wait_ready());
  REQUIRE(wait_until(
      [&] {
        return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded' AND id IN (" +
                               id_list(b_jobs) + ")") == 2;
      },
      15s, 50ms));
  for (const auto id : b_jobs) {
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK(j->attempts == 2);
    CHECK(j->result.value_or("<null>") == R"({"slept_seconds": 3})");
  }
  CHECK(scalar(url, a_running) == 2);

  // A's own jobs were never disturbed by the reaping.
  REQUIRE(wait_all_final(url, 20s));
  for (const auto id : a_jobs) {
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK(j->state == "succeeded");
    CHECK(j->attempts == 1);
    CHECK(j->errors == "[]");
  }
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions") == 0);
  CHECK(a.process().running());
  CHECK(c.process().running());
}
