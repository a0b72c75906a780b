// Keyed jobs through the real daemon: the jobs of one work_unit_key run one
// unit at a time and finish in id order, while different keys run in
// parallel. An audit trigger in the test database records every state change
// of every job (sequence number + clock_timestamp()), so order and overlap
// are read from what PostgreSQL saw, not from timing in the test.
#include <doctest.h>

#include <pqxx/pqxx>

#include <algorithm>
#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "support/audit.hpp"
#include "support/daemon.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Enqueues jobs g = first..last through inferq.enqueue in one transaction,
// in g order (so ids grow with g). payload_sql and key_sql are SQL
// expressions of g.
void enqueue_series(const std::string& url, const std::string& queue, int first, int last,
                    const std::string& payload_sql, const std::string& key_sql) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  tx.exec_params("SELECT inferq.enqueue($1, " + payload_sql + ", " + key_sql +
                     ") FROM generate_series($2::int, $3::int) AS g ORDER BY g",
                 queue, first, last);
  tx.commit();
}

// The most keyed units the audit shows live at once (claim .. end intervals
// in sequence order); 2 or more means different keys ran in parallel.
int max_parallel_keyed_units(const JobAudit& a) {
  std::vector<std::pair<std::int64_t, int>> events;
  for (const auto& [lease, u] : a.units) {
    if (!u.key || u.end_seq < 0) continue;
    events.emplace_back(u.claim_seq, +1);
    events.emplace_back(u.end_seq, -1);
  }
  std::sort(events.begin(), events.end());
  int live = 0;
  int most = 0;
  for (const auto& e : events) most = std::max(most, live += e.second);
  return most;
}

// Per key, in id order: started_at and finished_at never go back, and a job
// of a later unit starts only after the earlier job finished. Jobs of one
// unit are claimed by one statement and finished by one transaction, so
// among themselves only their (atomic) commit counts.
std::vector<std::string> timestamp_problems(const std::string& url, const JobAudit& a) {
  std::map<std::int64_t, std::int64_t> unit_of;
  for (const auto& [lease, u] : a.units) {
    for (const auto id : u.jobs) unit_of[id] = lease;
  }
  std::vector<std::string> problems;
  const auto rows = jobs(url, "work_unit_key IS NOT NULL");
  std::map<std::string, const JobRow*> last;
  for (const auto& j : rows) {
    if (!j.started_epoch || !j.finished_epoch) {
      problems.push_back("job " + std::to_string(j.id) + " has no started_at/finished_at");
      continue;
    }
    const JobRow*& prev = last[*j.key];
    if (prev && unit_of[prev->id] != unit_of[j.id] &&
        (*j.started_epoch < *prev->finished_epoch || *j.finished_epoch < *prev->finished_epoch ||
         *j.started_epoch < *prev->started_epoch)) {
      problems.push_back("key " + *j.key + ": job " + std::to_string(j.id) + " (started " +
                         std::to_string(*j.started_epoch) + ", finished " +
                         std::to_string(*j.finished_epoch) + ") ran before job " + std::to_string(prev->id) +
                         " had finished (" + std::to_string(*prev->finished_epoch) + ")");
    }
    prev = &j;
  }
  return problems;
}

// While the daemon works: how many keys held a lease at once, and whether a
// key ever had running jobs under two leases. Sampled from the database.
struct Samples {
  int count = 0;
  std::int64_t most_keys_leased = 0;
  std::int64_t keys_with_two_live_units = 0;
  std::int64_t succeeded = 0;  // at the last sample
};

// Takes one sample (one snapshot); returns true once no job is available or
// running.
bool sample(pqxx::connection& conn, Samples& s) {
  pqxx::nontransaction tx(conn);
  const auto r = tx.exec1(
      "SELECT (SELECT count(DISTINCT work_unit_key) FROM inferq.active_sessions WHERE work_unit_key IS NOT "
      "NULL),"
      "       (SELECT count(*) FROM (SELECT work_unit_key FROM inferq.jobs"
      "                               WHERE state = 'running' AND work_unit_key IS NOT NULL"
      "                               GROUP BY work_unit_key HAVING count(DISTINCT lease_id) > 1) x),"
      "       (SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded'),"
      "       (SELECT count(*) FROM inferq.jobs WHERE state IN ('available', 'running'))");
  ++s.count;
  s.most_keys_leased = std::max(s.most_keys_leased, r[0].as<std::int64_t>());
  s.keys_with_two_live_units += r[1].as<std::int64_t>();
  s.succeeded = r[2].as<std::int64_t>();
  return r[3].as<std::int64_t>() == 0;
}

struct Scenario {
  std::string handler;
  std::string payload_sql;  // of g
  int keys = 4;
  int jobs_per_key = 40;
  int rounds = 2;         // enqueue batches, the later ones while the daemon works
  bool prefetch = false;  // the queue's prefetch: busy slots claim their next unit ahead
};

void run_scenario(const Scenario& sc) {
  const auto t0 = Clock::now();
  const std::string url = fresh_audited_database();

  // More slots (6) than keys: idle slots must not take a live key.
  TestQueue queue = test_queue("keyed", sc.handler, 6, 4);
  if (sc.prefetch) queue.extra_yaml = "prefetch: true\n";
  const DaemonConfig cfg = daemon_config(url, {queue});
  Daemon daemon(cfg, "keyed");
  REQUIRE_MESSAGE(daemon.wait_ready(), daemon.log());

  // Keys interleaved: g = 1, 2, 3, ... cycles through k0..k(keys-1).
  const int total = sc.keys * sc.jobs_per_key;
  const std::string key_sql = "'k' || (g % " + std::to_string(sc.keys) + ")";
  pqxx::connection sampler(url);
  Samples samples;
  const int per_round = total / sc.rounds;
  for (int round = 0; round < sc.rounds; ++round) {
    const int first = round * per_round + 1;
    const int last = round + 1 == sc.rounds ? total : first + per_round - 1;
    enqueue_series(url, "keyed", first, last, sc.payload_sql, key_sql);
    // The next batch lands while this one is being worked on.
    if (round + 1 < sc.rounds) {
      REQUIRE(wait_until(
          [&] {
            return sample(sampler, samples) ||
                   samples.succeeded >= static_cast<std::int64_t>(first - 1 + per_round / 4);
          },
          20s, 2ms));
    }
  }
  const bool all_final = wait_until([&] { return sample(sampler, samples); }, 30s, 2ms);
  REQUIRE_MESSAGE(all_final, "jobs not finished: ", state_counts(url)["available"], " available, ",
                  state_counts(url)["running"], " running\n", daemon.log());
  const auto elapsed = std::chrono::duration<double>(Clock::now() - t0).count();

  CHECK(state_counts(url)["succeeded"] == total);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE attempts <> 1 OR errors <> '[]'") == 0);
  if (sc.handler == "builtin:echo") {
    CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE result IS DISTINCT FROM payload") == 0);
  }

  const JobAudit audit = read_job_audit(url);
  REQUIRE(audit.jobs_by_key.size() == static_cast<std::size_t>(sc.keys));
  for (const auto& [job, n] : audit.finals) CHECK_MESSAGE(n == 1, "job ", job, " finished ", n, " times");
  CHECK(audit.finals.size() == static_cast<std::size_t>(total));
  for (const auto& [job, n] : audit.claims) CHECK_MESSAGE(n == 1, "job ", job, " claimed ", n, " times");

  const auto order = key_order_problems(audit);
  CHECK_MESSAGE(order.empty(), first_lines(order));
  const auto times = timestamp_problems(url, audit);
  CHECK_MESSAGE(times.empty(), first_lines(times));

  // Units really were batches of a key's jobs, and keys really overlapped.
  std::size_t largest = 0;
  for (const auto& [lease, u] : audit.units) largest = std::max(largest, u.jobs.size());
  CHECK(largest > 1);
  CHECK(largest <= 4);
  const int parallel = max_parallel_keyed_units(audit);
  CHECK_MESSAGE(parallel >= 2, "the audit never shows two keys' units live at once");
  CHECK(samples.keys_with_two_live_units == 0);

  MESSAGE(sc.handler << ": " << total << " jobs over " << sc.keys << " keys in " << audit.units.size()
                     << " units; up to " << parallel << " keyed units live at once (audit), up to "
                     << samples.most_keys_leased << " keys leased at once (" << samples.count << " samples); "
                     << elapsed << " s");
  CHECK(daemon.terminate(10s).has_value());
}

// 4 keys of 12 sleep jobs of 10 to 40 ms each, so units of different keys
// overlap for real.
Scenario sleep_scenario() {
  Scenario sc;
  sc.handler = "builtin:sleep";
  sc.payload_sql = "jsonb_build_object('seconds', 0.01 * (1 + g % 4), 'g', g)";
  sc.keys = 4;
  sc.jobs_per_key = 12;
  sc.rounds = 2;
  return sc;
}

}  // namespace

TEST_CASE("keyed echo jobs: one unit per key at a time, in id order, keys in parallel") {
  Scenario sc;
  sc.handler = "builtin:echo";
  sc.payload_sql = "jsonb_build_object('g', g, 'key', 'k' || (g % 4))";
  sc.keys = 4;
  sc.jobs_per_key = 60;
  sc.rounds = 4;
  run_scenario(sc);
}

TEST_CASE("keyed sleep jobs: units that take time still never overlap within a key") {
  run_scenario(sleep_scenario());
}

TEST_CASE("keyed sleep jobs with prefetch: units claimed ahead keep a key's order and never overlap it") {
  Scenario sc = sleep_scenario();
  sc.prefetch = true;
  run_scenario(sc);
}
