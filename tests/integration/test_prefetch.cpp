// Prefetch: while a unit runs, its slot claims the next one, which starts
// the moment the current one ends. Its deadline counts from that start, not
// from its claim; when the executor dies (here: killed at its deadline) or
// the daemon shuts down, the unit claimed ahead goes back unrun with its
// attempt refunded.
#include <doctest.h>

#include <sys/wait.h>

#include <csignal>

#include <chrono>
#include <string>
#include <vector>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

std::string sleep_for(double seconds) { return "{\"seconds\": " + std::to_string(seconds) + "}"; }

// One slot of builtin:sleep, one job a unit, with prefetch: true.
TestQueue prefetching(const std::string& deadline) {
  TestQueue q = test_queue("sleep", "builtin:sleep", 1, 1, deadline);
  q.extra_yaml = "prefetch: true\n";
  return q;
}

// Waits until job `id` is running (claimed); false on timeout.
bool wait_running(const std::string& url, std::int64_t id, std::chrono::milliseconds timeout) {
  return wait_until(
      [&] {
        const auto row = job(url, id);
        return row && row->state == "running";
      },
      timeout);
}

}  // namespace

TEST_CASE("the next unit is claimed while one runs, and its deadline counts from its own start") {
  const std::string url = fresh_inferq_database();
  // One slot, one job a unit, a 2 s deadline, jobs of 1.2 s: counted from its
  // claim (with the first job still running) the second would overrun.
  Daemon d(daemon_config(url, {prefetching("2s")}), "prefetch");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto ids = enqueue_many(url, "sleep", {sleep_for(1.2), sleep_for(1.2), sleep_for(1.2)});
  REQUIRE(wait_all_final(url, 30s));
  const auto rows = jobs(url);
  REQUIRE(rows.size() == 3);
  for (const auto& r : rows) {
    CAPTURE(r.errors);
    CHECK(r.state == "succeeded");
    CHECK(r.attempts == 1);
  }
  // Each next job was claimed (started_at is set at claim) just after the
  // one ahead of it started, long before its 1.2 s were up: the slot never
  // waited for a claim.
  CHECK(*rows[1].started_epoch < *rows[0].started_epoch + 0.6);
  CHECK(*rows[2].started_epoch < *rows[1].started_epoch + 1.2 + 0.6);
  CHECK(*rows[2].started_epoch > *rows[0].started_epoch + 1.2);  // one ahead, not two
  CHECK(d.count_log("killing executor") == 0);
}

TEST_CASE("without prefetch (the default) a slot claims only when idle") {
  const std::string url = fresh_inferq_database();
  Daemon d(daemon_config(url, {test_queue("sleep", "builtin:sleep", 1, 1, "5s")}), "noprefetch");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto ids = enqueue_many(url, "sleep", {sleep_for(1), sleep_for(0)});
  REQUIRE(wait_all_final(url, 30s));
  // The second was claimed (started_at is set at claim) only once the
  // first had run its 1 s: the slot claimed when idle, not while busy.
  const auto first = job(url, ids[0]);
  const auto second = job(url, ids[1]);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->state == "succeeded");
  CHECK(second->state == "succeeded");
  CHECK(*second->started_epoch >= *first->started_epoch + 1.0);
}

TEST_CASE("a unit claimed ahead goes back unrun when its executor is killed, and runs on the next one") {
  const std::string url = fresh_inferq_database();
  TestQueue q = prefetching("1s");
  q.max_attempts = 1;
  Daemon d(daemon_config(url, {q}), "prefetch-kill");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto ids = enqueue_many(url, "sleep", {sleep_for(30), sleep_for(0)});
  REQUIRE(wait_all_final(url, 30s));
  const auto overrun = job(url, ids[0]);
  const auto next = job(url, ids[1]);
  REQUIRE(overrun);
  REQUIRE(next);
  CHECK(overrun->state == "dead");
  CHECK(overrun->last_error.value_or("").find("deadline exceeded") != std::string::npos);
  // It was claimed ahead, given back when the executor was killed (attempt
  // refunded: with max_attempts 1 it would be dead otherwise) and run on
  // the replacement.
  CAPTURE(next->errors);
  CHECK(next->state == "succeeded");
  CHECK(next->attempts == 1);
  CHECK(d.count_log("giving back its next unit") == 1);
}

TEST_CASE("a graceful shutdown gives the unit claimed ahead back unrun") {
  const std::string url = fresh_inferq_database();
  Daemon d(daemon_config(url, {prefetching("30s")}), "prefetch-stop");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto ids = enqueue_many(url, "sleep", {sleep_for(1.5), sleep_for(0)});
  REQUIRE(wait_running(url, ids[1], 10s));  // claimed ahead while the first runs
  d.process().send_signal(SIGTERM);
  const auto status = d.process().wait_exit(30s);
  REQUIRE(status);
  CHECK(exited_with(*status, 0));
  const auto first = job(url, ids[0]);
  const auto second = job(url, ids[1]);
  REQUIRE(first);
  REQUIRE(second);
  CHECK(first->state == "succeeded");  // the running unit had its grace
  CHECK(second->state == "available");
  CHECK(second->attempts == 0);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions") == 0);
}
