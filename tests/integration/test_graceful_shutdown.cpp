// SIGTERM through the real daemon (README guarantee "bounded shutdown"): it stops claiming, lets
// running units finish for shutdown_grace, then kills what is left, gives
// those jobs back with their attempt refunded and deletes its leases and its
// workers row, so another daemon takes the jobs at once instead of after
// stale_after. A second signal stops at once. An audit trigger records every
// state change of every job with the claiming worker.
#include <doctest.h>

#include <signal.h>

#include <cerrno>

#include <pqxx/pqxx>

#include <chrono>
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

struct Transition {
  std::int64_t seq = 0;
  std::string from;
  std::string to;
  std::optional<std::int64_t> worker;  // on claims: who claimed
  int attempts = 0;
};

// The job's state changes in order.
std::vector<Transition> history(const std::string& url, std::int64_t job_id) {
  pqxx::connection conn(url);
  pqxx::nontransaction tx(conn);
  std::vector<Transition> out;
  for (const auto& r :
       tx.exec_params("SELECT seq, old_state, new_state, worker_id,"
                      " attempts FROM public.job_audit WHERE job_id = $1 AND old_state <> new_state"
                      " ORDER BY seq",
                      job_id)) {
    Transition t;
    t.seq = r[0].as<std::int64_t>();
    t.from = r[1].c_str();
    t.to = r[2].c_str();
    if (!r[3].is_null()) t.worker = r[3].as<std::int64_t>();
    t.attempts = r[4].as<int>();
    out.push_back(t);
  }
  return out;
}

std::int64_t max_seq(const std::string& url) {
  return scalar(url, "SELECT coalesce(max(seq), 0) FROM public.job_audit");
}

// The inferq.workers id of the daemon with this pid (it registers at start-up).
std::int64_t worker_id_of(const std::string& url, pid_t pid) {
  std::optional<std::int64_t> id;
  const bool found = wait_until(
      [&] {
        id = worker_id(url, pid);
        return id.has_value();
      },
      5s);
  REQUIRE_MESSAGE(found, "no inferq.workers row for pid ", pid);
  return *id;
}

std::int64_t leases_of(const std::string& url, std::int64_t worker) {
  return scalar(url,
                "SELECT count(*) FROM inferq.active_sessions WHERE worker_id = " + std::to_string(worker));
}

std::int64_t running_of(const std::string& url, std::int64_t worker) {
  return scalar(url,
                "SELECT count(*) FROM inferq.jobs j JOIN inferq.active_sessions s ON s.id = j.lease_id"
                " WHERE j.state = 'running' AND s.worker_id = " +
                    std::to_string(worker));
}

std::vector<std::int64_t> ids_in_state(const std::string& url, const std::string& state) {
  std::vector<std::int64_t> ids;
  for (const auto& j : jobs(url, "state = '" + state + "'")) ids.push_back(j.id);
  return ids;
}

DaemonConfig sleep_config(const std::string& url, const std::string& grace, const std::string& stale_after) {
  DaemonConfig cfg = daemon_config(url, {test_queue("slow", "builtin:sleep", 2, 1, "60s")});
  cfg.shutdown_grace = grace;
  cfg.stale_after = stale_after;
  return cfg;
}

// True once no process of the group led by `pgid` is left (the daemon's
// executors are in the daemon's group).
bool group_gone(pid_t pgid) { return ::kill(-pgid, 0) != 0 && errno == ESRCH; }

}  // namespace

TEST_CASE("SIGTERM: running units finish, no new claims, leases and worker row gone, B drains the rest") {
  const auto t_start = Clock::now();
  const std::string url = fresh_audited_database();
  // A grace far above the units' 1 s: an exit well before it shows that A
  // waited for its units, not for the grace.
  const auto cfg = sleep_config(url, "60s", "2s");
  Daemon a(cfg, "a");
  REQUIRE_MESSAGE(a.wait_ready(), a.log());
  const std::int64_t worker_a = worker_id_of(url, a.pid());

  // 2 slots: two 1 s units run, six wait.
  std::vector<std::string> payloads(8, R"({"seconds": 1})");
  const auto ids = enqueue_many(url, "slow", payloads);
  REQUIRE(wait_until([&] { return running_of(url, worker_a) == 2; }, 5s));
  const auto running = ids_in_state(url, "running");
  REQUIRE(running.size() == 2);
  const std::int64_t seq_before = max_seq(url);

  const auto t_term = Clock::now();
  a.process().send_signal(SIGTERM);
  const auto status = a.process().wait_exit(20s);
  const double took = seconds_since(t_term);
  REQUIRE_MESSAGE(status.has_value(),
                  "A did not exit within 20 s: its units had 1 s left, the grace is 60 s\n", a.log());
  CHECK_MESSAGE(exited_with(*status, 0), describe_wait_status(*status), "\n", a.log());
  CHECK(a.log().find("SIGTERM received: no new claims") != std::string::npos);
  CHECK(a.log().find("did not finish in time") == std::string::npos);

  // The running units finished normally (not given back), once each.
  for (const auto id : running) {
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK_MESSAGE(j->state == "succeeded", "job ", id, " is ", j->state);
    CHECK(j->attempts == 1);
  }
  // A claimed nothing after the signal, and left nothing behind.
  CHECK(scalar(url, "SELECT count(*) FROM public.job_audit WHERE new_state = 'running' AND seq > " +
                        std::to_string(seq_before)) == 0);
  CHECK(leases_of(url, worker_a) == 0);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.workers WHERE id = " + std::to_string(worker_a)) == 0);
  CHECK(wait_until([&] { return group_gone(a.pid()); }, 2s));
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'available' AND attempts = 0") == 6);

  // B takes the backlog (available, not leased) on its first ticks.
  Daemon b(cfg, "b");
  REQUIRE_MESSAGE(b.wait_ready(), b.log());
  const std::int64_t worker_b = worker_id_of(url, b.pid());
  CHECK(wait_until([&] { return running_of(url, worker_b) == 2; }, 10s));
  REQUIRE_MESSAGE(wait_all_final(url, 15s), b.log());
  CHECK(state_counts(url)["succeeded"] == 8);
  for (const auto id : ids) {
    const auto h = history(url, id);
    int finals = 0;
    for (const auto& t : h) finals += t.to == "succeeded" || t.to == "dead" || t.to == "cancelled";
    CHECK_MESSAGE(finals == 1, "job ", id, " reached a final state ", finals, " times");
  }
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE errors <> '[]' OR attempts <> 1") == 0);
  CHECK(b.terminate(10s).has_value());
  MESSAGE("A stopped " << took << " s after SIGTERM; case took " << seconds_since(t_start) << " s");
}

TEST_CASE(
    "SIGTERM with units longer than shutdown_grace: killed, jobs given back with the attempt refunded") {
  const auto t_start = Clock::now();
  const std::string url = fresh_audited_database();
  // stale_after far above the grace: a job that waited for reaping would
  // show. B polls once a minute, so only the give-back's notification can
  // make it claim in time.
  auto cfg = sleep_config(url, "1s", "10s");
  Daemon a(cfg, "a");
  REQUIRE_MESSAGE(a.wait_ready(), a.log());
  const std::int64_t worker_a = worker_id_of(url, a.pid());
  const auto ids = enqueue_many(url, "slow", {R"({"seconds": 30})", R"({"seconds": 30})"});
  REQUIRE(wait_until([&] { return running_of(url, worker_a) == 2; }, 5s));

  // B is up and idle before A goes.
  cfg.poll_interval = "60s";
  Daemon b(cfg, "b");
  REQUIRE_MESSAGE(b.wait_ready(), b.log());
  const std::int64_t worker_b = worker_id_of(url, b.pid());
  REQUIRE(running_of(url, worker_b) == 0);
  const std::int64_t seq_before = max_seq(url);

  const auto t_term = Clock::now();
  a.process().send_signal(SIGTERM);
  // Its units have 30 s left: an exit before then is the grace's kill.
  const auto status = a.process().wait_exit(20s);
  const double took = seconds_since(t_term);
  REQUIRE_MESSAGE(status.has_value(), "A did not exit within 20 s: the grace is 1 s, its units 30 s\n",
                  a.log());
  CHECK_MESSAGE(exited_with(*status, 0), describe_wait_status(*status), "\n", a.log());
  CHECK(took >= 0.9);  // it did give the units their grace
  CHECK(a.log().find("did not finish in time; releasing") != std::string::npos);
  CHECK(a.log().find("released 2 job(s)") != std::string::npos);
  CHECK(leases_of(url, worker_a) == 0);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.workers WHERE id = " + std::to_string(worker_a)) == 0);
  CHECK(wait_until([&] { return group_gone(a.pid()); }, 2s));

  // B has both on the notification: before stale_after (10 s) could have
  // freed them, and long before its next poll.
  CHECK(wait_until([&] { return running_of(url, worker_b) == 2; }, 9s));
  for (const auto id : ids) {
    const auto h = history(url, id);
    // After the signal: A gave it back (attempt refunded to 0), then B claimed it (attempt 1).
    std::vector<Transition> after;
    for (const auto& t : h) {
      if (t.seq > seq_before) after.push_back(t);
    }
    REQUIRE_MESSAGE(after.size() == 2, "job ", id, " changed state ", after.size(), " times after SIGTERM");
    CHECK(after[0].from == "running");
    CHECK(after[0].to == "available");
    CHECK(after[0].attempts == 0);
    CHECK(after[1].to == "running");
    CHECK(after[1].worker == worker_b);
    CHECK(after[1].attempts == 1);
    // Given back, not reaped: no "lost" entry in its error history.
    const auto j = job(url, id);
    REQUIRE(j);
    CHECK(j->errors == "[]");
  }
  MESSAGE("A stopped " << took << " s after SIGTERM (grace 1 s); case took " << seconds_since(t_start)
                       << " s");
}

TEST_CASE("a second SIGTERM during the grace stops at once") {
  const auto t_start = Clock::now();
  const std::string url = fresh_audited_database();
  // A grace far above the wait below: an exit within it is the second signal's.
  const auto cfg = sleep_config(url, "120s", "2s");
  Daemon a(cfg, "a");
  REQUIRE_MESSAGE(a.wait_ready(), a.log());
  const std::int64_t worker_a = worker_id_of(url, a.pid());
  enqueue_many(url, "slow", {R"({"seconds": 30})", R"({"seconds": 30})"});
  REQUIRE(wait_until([&] { return running_of(url, worker_a) == 2; }, 5s));

  a.process().send_signal(SIGTERM);
  // Signals of one kind do not queue: send the second only once the first was read.
  REQUIRE_MESSAGE(a.process().wait_log("SIGTERM received: no new claims", 5s), a.log());
  const auto t_second = Clock::now();
  a.process().send_signal(SIGTERM);
  const auto status = a.process().wait_exit(20s);
  const double took = seconds_since(t_second);
  REQUIRE_MESSAGE(status.has_value(), "A did not exit within 20 s of the second SIGTERM (grace 120 s)\n",
                  a.log());
  CHECK_MESSAGE(exited_with(*status, 0), describe_wait_status(*status), "\n", a.log());
  CHECK(a.log().find("received again: stopping now") != std::string::npos);
  // Its units were killed and their jobs given back, attempt refunded.
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'available' AND attempts = 0") == 2);
  CHECK(leases_of(url, worker_a) == 0);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.workers WHERE id = " + std::to_string(worker_a)) == 0);
  CHECK(wait_until([&] { return group_gone(a.pid()); }, 2s));
  MESSAGE("A stopped " << took << " s after the second SIGTERM (grace 120 s); case took "
                       << seconds_since(t_start) << " s");
}
