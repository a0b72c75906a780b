// batch.max_wait: a partial unit waits (its lease held) for more jobs and is
// topped up under the same lease before it runs; it runs as soon as it is
// full, and on its own once the wait is over. Order comes from the job audit,
// not from timing in the test.
#include <doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/audit.hpp"
#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

// The unit (lease) the audit saw job `id` claimed in.
const AuditUnit* unit_of(const JobAudit& audit, std::int64_t id) {
  for (const auto& [lease, unit] : audit.units) {
    for (const auto j : unit.jobs) {
      if (j == id) return &unit;
    }
  }
  return nullptr;
}

bool is_running(const std::string& url, std::int64_t id) {
  const auto row = job(url, id);
  return row && row->state == "running";
}

}  // namespace

TEST_CASE("a partial unit is topped up under its lease until it is full, then runs at once") {
  const std::string url = fresh_audited_database();
  TestQueue q = test_queue("echo", "builtin:echo", 1, 4);
  // Far longer than the test needs: the unit must run because it is full.
  q.max_wait = "60s";
  Daemon d(daemon_config(url, {q}), "max-wait");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());

  const auto first = enqueue(url, "echo", R"({"n": 1})");
  // Claimed (running) but held back, waiting for more.
  REQUIRE(wait_until([&] { return is_running(url, first); }, 20s));
  const auto more = enqueue_many(url, "echo", {R"({"n": 2})", R"({"n": 3})", R"({"n": 4})", R"({"n": 5})"});
  // Four fill the unit of 4; the fifth runs in the next unit, which then waits.
  REQUIRE(wait_until([&] { return job(url, more[2])->state == "succeeded"; }, 20s));

  const JobAudit audit = read_job_audit(url);
  const AuditUnit* unit = unit_of(audit, first);
  REQUIRE(unit != nullptr);
  CHECK(unit->jobs == std::vector<std::int64_t>{first, more[0], more[1], more[2]});
  CHECK(unit->end_seq >= 0);
  CHECK(job(url, more[3])->state == "running");  // alone in a unit that waits for company

  // SIGTERM stops the wait: the filling unit runs at once, within the grace.
  const auto status = d.terminate(30s);
  REQUIRE(status);
  CHECK(exited_with(*status, 0));
  const auto last = job(url, more[3]);
  CHECK(last->state == "succeeded");
  CHECK(last->attempts == 1);
  for (const auto id : {first, more[0], more[1], more[2]}) CHECK(job(url, id)->attempts == 1);
}

TEST_CASE("a partial unit runs with what it has once max_wait is over") {
  const std::string url = fresh_audited_database();
  TestQueue q = test_queue("echo", "builtin:echo", 1, 8);
  q.max_wait = "300ms";
  Daemon d(daemon_config(url, {q}), "max-wait-partial");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto ids = enqueue_many(url, "echo", {R"({"n": 1})", R"({"n": 2})"});
  REQUIRE(wait_all_final(url, 20s));
  for (const auto id : ids) {
    CHECK(job(url, id)->state == "succeeded");
    CHECK(job(url, id)->attempts == 1);
  }
}
