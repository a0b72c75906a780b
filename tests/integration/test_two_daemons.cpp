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

#include "support/daemon.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kAuditSql = R"sql(
CREATE TABLE public.job_audit (
  seq       bigserial   PRIMARY KEY,
  at        timestamptz NOT NULL DEFAULT clock_timestamp(),
  job_id    bigint      NOT NULL,
  key       text,
  old_state text        NOT NULL,
  new_state text        NOT NULL,
  lease_id  bigint,
  worker_id bigint,
  attempts  integer     NOT NULL
);
CREATE FUNCTION public.audit_job() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO public.job_audit (job_id, key, old_state, new_state, lease_id, worker_id, attempts)
  VALUES (NEW.id, NEW.work_unit_key, OLD.state::text, NEW.state::text, coalesce(NEW.lease_id, OLD.lease_id),
          (SELECT s.worker_id FROM inferq.active_sessions s WHERE s.id = NEW.lease_id), NEW.attempts);
  RETURN NULL;
END
$$;
CREATE TRIGGER jobs_audit AFTER UPDATE ON inferq.jobs FOR EACH ROW
  WHEN (OLD.state IS DISTINCT FROM NEW.state) EXECUTE FUNCTION public.audit_job();
)sql";

struct Unit {
  std::int64_t lease = 0;
  std::optional<std::string> key;
  std::optional<std::int64_t> worker;
  std::vector<std::int64_t> jobs;  // in id order
  std::int64_t claim_seq = 0;
  std::int64_t end_seq = -1;  // -1: never ended
};

struct Audit {
  std::map<std::int64_t, Unit> units;  // by lease
  std::map<std::int64_t, int> finals;  // job -> transitions into a final state
  std::map<std::int64_t, int> claims;  // job -> transitions into running
  std::map<std::string, std::vector<std::int64_t>> jobs_by_key;
};

Audit read_audit(const std::string& url) {
  Audit a;
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  for (const auto& r : tx.exec("SELECT seq, job_id, key, old_state, new_state, lease_id, worker_id"
                               " FROM public.job_audit ORDER BY seq")) {
    const auto seq = r[0].as<std::int64_t>();
    const auto job = r[1].as<std::int64_t>();
    const std::string from = r[3].c_str();
    const std::string to = r[4].c_str();
    const auto lease = r[5].is_null() ? std::int64_t{-1} : r[5].as<std::int64_t>();
    if (to == "running") {
      Unit& u = a.units[lease];
      if (u.jobs.empty()) {
        u.lease = lease;
        u.claim_seq = seq;
        if (!r[2].is_null()) u.key = r[2].c_str();
        if (!r[6].is_null()) u.worker = r[6].as<std::int64_t>();
      }
      u.jobs.push_back(job);
      ++a.claims[job];
    }
    if (from == "running") a.units[lease].end_seq = std::max(a.units[lease].end_seq, seq);
    if (to == "succeeded" || to == "dead" || to == "cancelled") ++a.finals[job];
  }
  for (auto& [lease, u] : a.units) std::sort(u.jobs.begin(), u.jobs.end());
  for (const auto& r : tx.exec("SELECT work_unit_key, id FROM inferq.jobs WHERE work_unit_key IS NOT NULL"
                               " ORDER BY id")) {
    a.jobs_by_key[r[0].c_str()].push_back(r[1].as<std::int64_t>());
  }
  return a;
}

// Per key, the units in claim order must each end before the next is claimed
// and, together, take the key's jobs in id order, each once. Returns one
// line per problem. `handoffs` counts consecutive units of a key that
// different daemons ran.
std::vector<std::string> key_order_problems(const Audit& a, int& handoffs) {
  std::vector<std::string> problems;
  std::map<std::string, std::vector<const Unit*>> by_key;
  for (const auto& [lease, u] : a.units) {
    if (u.key) by_key[*u.key].push_back(&u);
  }
  handoffs = 0;
  for (const auto& [key, ids] : a.jobs_by_key) {
    auto& units = by_key[key];
    std::sort(units.begin(), units.end(), [](const Unit* x, const Unit* y) { return x->claim_seq < y->claim_seq; });
    std::vector<std::int64_t> taken;
    for (std::size_t i = 0; i < units.size(); ++i) {
      const Unit& u = *units[i];
      if (u.end_seq < 0) problems.push_back("key " + key + ": unit " + std::to_string(u.lease) + " never ended");
      if (i > 0) {
        const Unit& prev = *units[i - 1];
        if (prev.end_seq > u.claim_seq) {
          problems.push_back("key " + key + ": unit " + std::to_string(u.lease) + " claimed while unit " +
                             std::to_string(prev.lease) + " was live");
        }
        handoffs += prev.worker != u.worker;
      }
      taken.insert(taken.end(), u.jobs.begin(), u.jobs.end());
    }
    if (taken != ids) problems.push_back("key " + key + ": the units did not take its jobs in id order, once each");
  }
  return problems;
}

std::string first_lines(const std::vector<std::string>& lines, std::size_t n = 10) {
  std::string out;
  for (std::size_t i = 0; i < lines.size() && i < n; ++i) out += lines[i] + "\n";
  if (lines.size() > n) out += "... and " + std::to_string(lines.size() - n) + " more\n";
  return out;
}

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

std::int64_t worker_id_of(const std::string& url, pid_t pid) {
  return scalar(url, "SELECT coalesce(max(id), 0) FROM inferq.workers WHERE pid = " + std::to_string(pid));
}

}  // namespace

TEST_CASE("two daemons, 5000 mixed jobs enqueued while they run: each done once, both work, key order holds") {
  const auto t_start = Clock::now();
  const std::string url = fresh_inferq_database();
  {
    pqxx::connection conn(url);
    pqxx::nontransaction tx(conn);
    tx.exec(kAuditSql);
  }
  DaemonConfig cfg;
  cfg.database_url = url;
  TestQueue q;
  q.name = "echo";
  q.handler = "builtin:echo";
  q.instances = 2;
  q.max_jobs = 16;
  cfg.queues = {q};
  Daemon a(cfg, "a");
  Daemon b(cfg, "b");
  REQUIRE_MESSAGE(a.wait_ready(), a.log());
  REQUIRE_MESSAGE(b.wait_ready(), b.log());
  const std::int64_t worker_a = worker_id_of(url, a.pid());
  const std::int64_t worker_b = worker_id_of(url, b.pid());
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
  REQUIRE_MESSAGE(wait_until([&] { return sample() == kJobs; }, 60s, 5ms), "states: ",
                  state_counts(url)["available"], " available, ", state_counts(url)["running"], " running");
  const double drained = std::chrono::duration<double>(Clock::now() - t_start).count();

  CHECK(state_counts(url)["succeeded"] == kJobs);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE result IS DISTINCT FROM payload") == 0);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE errors <> '[]' OR attempts <> 1") == 0);

  const Audit audit = read_audit(url);
  CHECK(audit.finals.size() == static_cast<std::size_t>(kJobs));
  CHECK(audit.claims.size() == static_cast<std::size_t>(kJobs));
  int twice = 0;
  for (const auto& [job, n] : audit.finals) twice += n != 1;
  for (const auto& [job, n] : audit.claims) twice += n != 1;
  CHECK_MESSAGE(twice == 0, twice, " job(s) claimed or finished more than once");
  CHECK(audit.jobs_by_key.size() == 50);

  int handoffs = 0;
  const auto order = key_order_problems(audit, handoffs);
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
                << by_worker[worker_b].second << " jobs / " << by_worker[worker_b].first << " units; " << handoffs
                << " key hand-offs between daemons; " << samples << " samples");
}
