// PostgreSQL crashes (SIGQUIT, crash recovery on restart) twice while the
// real daemon is busy: every connection it holds is cut in mid-statement.
// The daemon must stay up (same process), reconnect, say so in its log, and
// drain the queue with nothing lost and nothing finished twice. An audit
// trigger records every state change of every job; being in the same
// database, it is exactly as durable as the changes it records.
#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <string>

#include "support/audit.hpp"
#include "support/daemon.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// One wave of work: `echo` echo jobs (a third unkeyed, the rest over 20
// keys) and `sleeps` 100 ms sleep jobs, in one transaction.
void enqueue_wave(const std::string& url, int wave, int echo, int sleeps) {
  pqxx::connection conn(url);
  pqxx::work tx(conn);
  tx.exec_params(
      "SELECT inferq.enqueue('echo', jsonb_build_object('wave', $1::int, 'g', g),"
      "                      CASE WHEN g % 3 = 0 THEN NULL ELSE 'k' || (g % 20) END)"
      "  FROM generate_series(1, $2::int) AS g ORDER BY g",
      wave, echo);
  tx.exec_params(
      "SELECT inferq.enqueue('slow', jsonb_build_object('seconds', 0.1, 'wave', $1::int, 'g', g))"
      "  FROM generate_series(1, $2::int) AS g ORDER BY g",
      wave, sleeps);
  tx.commit();
}

std::int64_t count_where(const std::string& url, const std::string& where) {
  return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE " + where);
}

}  // namespace

TEST_CASE(
    "PostgreSQL crash-restarts twice mid-run: the daemon reconnects and drains, nothing lost or done twice") {
  const auto t_start = Clock::now();
  PgCluster pg;  // our own: we crash it
  pg.start();
  const std::string url = pg.create_database();
  migrate_with_cli(url);
  install_job_audit(url);

  const DaemonConfig cfg = daemon_config(
      url, {test_queue("echo", "builtin:echo", 2, 16), test_queue("slow", "builtin:sleep", 2, 2)});
  Daemon d(cfg, "d");
  REQUIRE_MESSAGE(d.wait_ready(), d.log());
  const pid_t pid = d.pid();

  constexpr int kWaves = 2;
  constexpr int kEchoPerWave = 1500;
  constexpr int kSleepsPerWave = 30;
  constexpr int kTotal = kWaves * (kEchoPerWave + kSleepsPerWave);
  int enqueued = 0;
  for (int wave = 1; wave <= kWaves; ++wave) {
    enqueue_wave(url, wave, kEchoPerWave, kSleepsPerWave);
    enqueued += kEchoPerWave + kSleepsPerWave;
    // Crash once the daemon is well into the wave, with work still in flight.
    REQUIRE_MESSAGE(
        wait_until([&] { return count_where(url, "state = 'succeeded'") >= enqueued - 1200; }, 20s), d.log());
    const auto left = count_where(url, "state IN ('available', 'running')");
    REQUIRE_MESSAGE(left > 0, "wave ", wave, " finished before the crash: make it bigger");
    const auto t_crash = Clock::now();
    pg.restart_immediate();
    const double down = std::chrono::duration<double>(Clock::now() - t_crash).count();
    // Each crash cuts every connection, the tick's (which LISTENs) among
    // them: the tick must say it is back, having LISTENed again, without a
    // notification to wake it: the next wave is only enqueued once it has.
    const auto recovered = [&] {
      return d.count_log(" info database reachable again") >= static_cast<std::size_t>(wave);
    };
    REQUIRE_MESSAGE(wait_until(recovered, 20s), d.log());
    MESSAGE("crash " << wave << " with " << left << " job(s) not yet finished; PostgreSQL back after " << down
                     << " s; daemon recovered "
                     << std::chrono::duration<double>(Clock::now() - t_crash).count() - down << " s later");
  }
  REQUIRE_MESSAGE(wait_all_final(url, 40s), "states: ", count_where(url, "state = 'available'"),
                  " available, ", count_where(url, "state = 'running'"), " running\n", d.log());
  const double drained = std::chrono::duration<double>(Clock::now() - t_start).count();

  // Nothing lost: every job succeeded, echoes with their payload.
  const auto counts = state_counts(url);
  CHECK(counts.at("succeeded") == kTotal);
  CHECK(count_where(url, "queue = 'echo' AND result IS DISTINCT FROM payload") == 0);
  // Nothing done twice: one transition into a final state per job.
  CHECK(scalar(url,
               "SELECT count(*) FROM public.job_audit"
               " WHERE old_state <> new_state AND new_state IN ('succeeded', 'dead', 'cancelled')") ==
        kTotal);
  CHECK(
      scalar(url,
             "SELECT count(*) FROM (SELECT job_id FROM public.job_audit WHERE old_state <> new_state"
             " AND new_state IN ('succeeded', 'dead', 'cancelled') GROUP BY job_id HAVING count(*) > 1) x") ==
      0);
  // A job runs again only when its claim was lost with the crash; that shows
  // as a reaped lease in its history, never as a silent second run.
  const auto reclaimed = count_where(url, "attempts > 1");
  CHECK(count_where(url, "attempts > 1 AND errors::text NOT LIKE '%\"lost\"%'") == 0);
  CHECK(count_where(url, "attempts > max_attempts") == 0);

  // Same process throughout, still registered, still running; it said it reconnected.
  CHECK(d.process().running());
  CHECK(d.pid() == pid);
  CHECK(d.count_log("started as worker") == 1);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.workers WHERE pid = " + std::to_string(pid)) == 1);
  const auto lost = d.count_log("error database: ");
  const auto back = d.count_log(" info database reachable again");
  CHECK_MESSAGE(lost == static_cast<std::size_t>(kWaves), d.log());
  CHECK_MESSAGE(back == static_cast<std::size_t>(kWaves), d.log());
  CHECK(d.count_log("retrying with backoff") >= static_cast<std::size_t>(kWaves));
  // And it still works: a job enqueued now is done at once.
  const auto id = enqueue(url, "echo", R"({"after": "crashes"})");
  CHECK(wait_until([&] { return job(url, id)->state == "succeeded"; }, 5s));

  const auto status = d.terminate(10s);
  REQUIRE(status.has_value());
  CHECK_MESSAGE(exited_with(*status, 0), describe_wait_status(*status), "\n", d.log());
  MESSAGE(kTotal << " jobs drained through " << kWaves << " crash-restarts in " << drained << " s; "
                 << reclaimed << " job(s) re-run after a claim lost in a crash; log: " << lost
                 << " failure(s), " << back << " recoveries");
}
