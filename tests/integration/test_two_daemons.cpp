// Two real daemons share one queue while a producer keeps enqueueing 5,000
// echo jobs, a third unkeyed and the rest over 50 keys. PostgreSQL is the
// only coordinator, so: every job succeeds exactly once with its payload as
// result, both daemons do work, and per key the units never overlap and take
// the jobs in id order even when consecutive units of a key go to different
// daemons. An audit trigger records every state change with the claiming
// worker; the daemons' own debug logs must agree with it.
#include <doctest.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "support/audit.hpp"
#include "support/daemon.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Units and jobs a daemon's debug log says it dispatched ("unit N with K job(s)").
std::pair<std::int64_t, std::int64_t> logged_units_and_jobs(const std::string& log) {
  static const std::regex kLine(R"(: unit \d+ with (\d+) job\(s\))");
  std::int64_t units = 0;
  std::int64_t jobs_total = 0;
  for (auto it = std::sregex_iterator(log.begin(), log.end(), kLine); it != std::sregex_iterator(); ++it) {
    ++units;
    jobs_total += std::stoll((*it)[1].str());
  }
  return {units, jobs_total};
}

// The running jobs and the live leases, for a failure message.
std::string stuck_report(const std::string& url) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec1(
      "SELECT (SELECT string_agg(format('job %s lease %s attempts %s key %s', id, lease_id, attempts,"
      "                                 work_unit_key), '; ') FROM inferq.jobs WHERE state = 'running'),"
      "       (SELECT string_agg(format('lease %s worker %s key %s age %s', id, worker_id, work_unit_key,"
      "                                 clock_timestamp() - heartbeat_at), '; ') FROM "
      "inferq.active_sessions)");
  return "running: " + std::string(r[0].is_null() ? "none" : r[0].c_str()) +
         "\nleases: " + std::string(r[1].is_null() ? "none" : r[1].c_str()) + "\n";
}

}  // namespace

TEST_CASE(
    "two daemons, 5000 mixed jobs enqueued while they run: each done once, both work, key order holds") {
  const auto t_start = Clock::now();
  const std::string url = fresh_audited_database();
  const DaemonConfig cfg = daemon_config(url, {test_queue("echo", "builtin:echo", 2, 16)});
  Daemon a(cfg, "a");
  Daemon b(cfg, "b");
  REQUIRE_MESSAGE(a.wait_ready(), a.log());
  REQUIRE_MESSAGE(b.wait_ready(), b.log());
  const std::int64_t worker_a = worker_id(url, a.pid()).value_or(0);
  const std::int64_t worker_b = worker_id(url, b.pid()).value_or(0);
  REQUIRE(worker_a > 0);
  REQUIRE(worker_b > 0);

  constexpr int kJobs = 5000;
  constexpr int kBatches = 10;
  constexpr int kPerBatch = kJobs / kBatches;
  pqxx::connection producer(url);
  pqxx::connection sampler(url);
  std::int64_t most_leases_a = 0;
  std::int64_t most_leases_b = 0;
  std::int64_t keys_with_two_live_units = 0;
  int samples = 0;
  // One snapshot; returns how many jobs have succeeded.
  const auto sample = [&] {
    pqxx::nontransaction tx(sampler);
    const auto r = tx.exec1(
        "SELECT (SELECT count(*) FROM inferq.active_sessions WHERE worker_id = " + std::to_string(worker_a) +
        "),     (SELECT count(*) FROM inferq.active_sessions WHERE worker_id = " + std::to_string(worker_b) +
        "),     (SELECT count(*) FROM (SELECT work_unit_key FROM inferq.jobs"
        "                               WHERE state = 'running' AND work_unit_key IS NOT NULL"
        "                               GROUP BY work_unit_key HAVING count(DISTINCT lease_id) > 1) x),"
        "       (SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded')");
    ++samples;
    most_leases_a = std::max(most_leases_a, r[0].as<std::int64_t>());
    most_leases_b = std::max(most_leases_b, r[1].as<std::int64_t>());
    keys_with_two_live_units += r[2].as<std::int64_t>();
    return r[3].as<std::int64_t>();
  };
  for (int batch = 0; batch < kBatches; ++batch) {
    {
      pqxx::work tx(producer);
      tx.exec_params(
          "SELECT inferq.enqueue('echo', jsonb_build_object('g', g, 'text', repeat('x', g % 17)),"
          "                      CASE WHEN g % 3 = 0 THEN NULL ELSE 'k' || (g % 50) END)"
          "  FROM generate_series($1::int, $2::int) AS g ORDER BY g",
          batch * kPerBatch + 1, (batch + 1) * kPerBatch);
      tx.commit();
    }
    // The next batch arrives while this one is half done.
    REQUIRE_MESSAGE(wait_until([&] { return sample() >= batch * kPerBatch + kPerBatch / 2; }, 30s, 2ms),
                    state_counts(url)["succeeded"], " succeeded\n", a.log(), b.log());
  }
  REQUIRE_MESSAGE(wait_until([&] { return sample() == kJobs; }, 60s, 5ms),
                  "states: ", state_counts(url)["available"], " available, ", state_counts(url)["running"],
                  " running\n", stuck_report(url), a.log(), b.log());
  const double drained = std::chrono::duration<double>(Clock::now() - t_start).count();

  CHECK(state_counts(url)["succeeded"] == kJobs);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE result IS DISTINCT FROM payload") == 0);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE errors <> '[]' OR attempts <> 1") == 0);

  const JobAudit audit = read_job_audit(url);
  CHECK(audit.finals.size() == static_cast<std::size_t>(kJobs));
  CHECK(audit.claims.size() == static_cast<std::size_t>(kJobs));
  int twice = 0;
  for (const auto& [job, n] : audit.finals) twice += n != 1;
  for (const auto& [job, n] : audit.claims) twice += n != 1;
  CHECK_MESSAGE(twice == 0, twice, " job(s) claimed or finished more than once");
  CHECK(audit.jobs_by_key.size() == 50);

  int handoffs = 0;
  const auto order = key_order_problems(audit, &handoffs);
  CHECK_MESSAGE(order.empty(), first_lines(order));
  CHECK(keys_with_two_live_units == 0);

  // Both daemons worked, and each one's log agrees with what the database saw.
  std::map<std::int64_t, std::pair<std::int64_t, std::int64_t>> by_worker;  // units, jobs
  for (const auto& [lease, u] : audit.units) {
    REQUIRE(u.worker);
    auto& w = by_worker[*u.worker];
    ++w.first;
    w.second += static_cast<std::int64_t>(u.jobs.size());
  }
  CHECK(by_worker.size() == 2);
  CHECK(by_worker[worker_a].second >= kJobs / 20);
  CHECK(by_worker[worker_b].second >= kJobs / 20);
  CHECK(by_worker[worker_a].second + by_worker[worker_b].second == kJobs);
  CHECK(logged_units_and_jobs(a.log()) == by_worker[worker_a]);
  CHECK(logged_units_and_jobs(b.log()) == by_worker[worker_b]);
  CHECK(most_leases_a >= 1);
  CHECK(most_leases_b >= 1);
  CHECK(handoffs > 0);  // some key's consecutive units ran on different daemons

  const auto status_a = a.terminate(10s);
  const auto status_b = b.terminate(10s);
  REQUIRE(status_a.has_value());
  REQUIRE(status_b.has_value());
  CHECK(exited_with(*status_a, 0));
  CHECK(exited_with(*status_b, 0));
  MESSAGE(kJobs << " jobs in " << audit.units.size() << " units drained in " << drained << " s: daemon A "
                << by_worker[worker_a].second << " jobs / " << by_worker[worker_a].first << " units, B "
                << by_worker[worker_b].second << " jobs / " << by_worker[worker_b].first << " units; "
                << handoffs << " key hand-offs between daemons; " << samples << " samples");
}
