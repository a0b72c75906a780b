// README guarantee "fenced completion": a daemon that stalls past
// stale_after loses its lease to another daemon, and when it wakes up its late completion writes nothing.
// Every job is completed exactly once; a test-only trigger records each write
// that puts a job into a final state, so a second completion would show.
#include <signal.h>
#include <sys/syscall.h>

#include <doctest.h>

#include <chrono>
#include <fstream>
#include <string>

#include "support/audit.hpp"
#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The audit rows of writes that leave a job in a final state.
const std::string kFinalWrite = "new_state IN ('succeeded', 'dead', 'cancelled')";

std::int64_t db_now_ms(const std::string& url) {
  return scalar(url, "SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint");
}

// True while `pid` is blocked waiting for input (poll or read), as an
// executor is once it has written its result and waits for the next unit;
// /proc/PID/syscall names the system call a blocked thread is in.
bool waits_for_input(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/syscall");
  std::string first;
  f >> first;
  if (first.empty() || first == "running") return false;
  const long nr = std::stol(first);
#ifdef SYS_poll
  if (nr == SYS_poll) return true;
#endif
  return nr == SYS_ppoll || nr == SYS_read;
}

}  // namespace

TEST_CASE("a stalled daemon's late completion is fenced out: the job is completed once, by its new owner") {
  // Every write that puts a job into a final state is on record, whatever
  // state it had before (a final -> final rewrite counts).
  const std::string url = fresh_audited_database();

  DaemonConfig config = daemon_config(url, {test_queue("sleep", "builtin:sleep", 1, 1, "30s")});
  config.stale_after = "1s";  // heartbeat and poll stay at 200ms

  Daemon a(config, "a");
  INFO("daemon A log:\n", a.log());
  REQUIRE(a.wait_ready());
  const auto a_name = worker_name(url, a.pid());
  REQUIRE(a_name);
  const auto a_worker =
      std::to_string(scalar(url, "SELECT id FROM inferq.workers WHERE pid = " + std::to_string(a.pid())));

  const auto id = enqueue(url, "sleep", R"({"seconds": 3})");
  const std::string sid = std::to_string(id);
  REQUIRE(wait_until(
      [&] {
        return scalar(url,
                      "SELECT count(*) FROM inferq.jobs j JOIN inferq.active_sessions s ON s.id = j.lease_id"
                      " WHERE j.id = " +
                          sid + " AND j.state = 'running' AND s.worker_id = " + a_worker) == 1;
      },
      10s, 10ms));
  const auto a_lease = scalar(url, "SELECT lease_id FROM inferq.jobs WHERE id = " + sid);
  const auto a_executors = a.executor_pids();
  REQUIRE(a_executors.size() == 1);

  // A stalls: no tick, no heartbeat. Its executor keeps running the unit.
  a.process().send_signal(SIGSTOP);
  const auto stopped_at = Clock::now();
  CHECK(!waits_for_input(a_executors[0]));  // still in its 3 s sleep

  Daemon b(config, "b");
  INFO("daemon B log:\n", b.log());
  REQUIRE(b.wait_ready());
  const auto b_executors = b.executor_pids();
  REQUIRE(b_executors.size() == 1);

  // B reaps A's lease once it is stale, and claims the job again.
  REQUIRE(wait_until(
      [&] {
        return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + sid +
                               " AND state = 'running' AND attempts = 2 AND lease_id <> " +
                               std::to_string(a_lease)) == 1;
      },
      10s, 10ms));
  const double stale_for = std::chrono::duration<double>(Clock::now() - stopped_at).count();
  CHECK(stale_for >= 0.7);  // not before stale_after (less A's last heartbeat interval)
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions WHERE id = " + std::to_string(a_lease)) ==
        0);
  const auto b_lease = scalar(url, "SELECT lease_id FROM inferq.jobs WHERE id = " + sid);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs, jsonb_array_elements(errors) e WHERE id = " + sid +
                        " AND e->>'class' = 'lost' AND e->>'worker' = '" + *a_name + "'") == 1);

  // Hold B's unit (its executor stopped; B itself stays alive and keeps its
  // lease), so A's late completion certainly comes first.
  ::kill(b_executors[0], SIGSTOP);
  // Let A's executor finish its 3 s sleep while A is stopped, so the result
  // is waiting in A's socket: A reads it before it ticks (and so before its
  // heartbeat may notice the lost lease and stop the unit instead). It has
  // written the result once it waits for its next unit.
  REQUIRE(wait_until([&] { return waits_for_input(a_executors[0]); }, 20s, 10ms));
  a.process().send_signal(SIGCONT);

  // A's executor finished the 3 s sleep; A tries to write the result.
  // (Or, were the fence broken, the job would stop running under B's lease.)
  const std::string late_write_logged = "not written: their lease was reaped";
  REQUIRE(wait_until(
      [&] {
        return a.log().find(late_write_logged) != std::string::npos ||
               scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + sid +
                               " AND state = 'running' AND lease_id = " + std::to_string(b_lease)) == 0;
      },
      10s, 20ms));
  const auto after_late_write = db_now_ms(url);
  auto row = job(url, id);
  REQUIRE(row);
  CHECK(row->state == "running");
  CHECK(scalar(url, "SELECT lease_id FROM inferq.jobs WHERE id = " + sid) == b_lease);
  CHECK(row->result.value_or("<null>") == "<null>");
  CHECK(!row->finished_epoch.has_value());
  CHECK(row->attempts == 2);
  CHECK(scalar(url, "SELECT count(*) FROM public.job_audit WHERE " + kFinalWrite) == 0);
  CHECK(a.log().find(late_write_logged) != std::string::npos);
  // A's heartbeat noticed the loss and said so once, not on every beat
  // while the lost unit ran on.
  CHECK(a.count_log("heartbeat: lease " + std::to_string(a_lease) + " is gone") <= 1);

  // B finishes the job; that is its one and only completion.
  ::kill(b_executors[0], SIGCONT);
  REQUIRE(wait_all_final(url, 10s));
  row = job(url, id);
  REQUIRE(row);
  CHECK(row->state == "succeeded");
  CHECK(row->attempts == 2);
  CHECK(row->result.value_or("<null>") == R"({"slept_seconds": 3})");
  REQUIRE(row->finished_epoch);
  CHECK(*row->finished_epoch * 1000 > static_cast<double>(after_late_write));
  CHECK(scalar(url, "SELECT jsonb_array_length(errors) FROM inferq.jobs WHERE id = " + sid) == 1);
  CHECK(scalar(url, "SELECT count(*) FROM public.job_audit WHERE " + kFinalWrite + " AND job_id = " + sid) ==
        1);
  CHECK(scalar(url, "SELECT count(*) FROM public.job_audit WHERE " + kFinalWrite + " AND job_id = " + sid +
                        " AND old_state = 'running' AND new_state = 'succeeded'") == 1);
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions") == 0);

  // Both daemons are healthy and stop cleanly; nothing more is written.
  const auto a_status = a.terminate(10s);
  REQUIRE(a_status);
  CHECK(exited_with(*a_status, 0));
  const auto b_status = b.terminate(10s);
  REQUIRE(b_status);
  CHECK(exited_with(*b_status, 0));
  CHECK(scalar(url, "SELECT count(*) FROM public.job_audit WHERE " + kFinalWrite) == 1);
}

TEST_CASE("a daemon that finds its lease reaped stops that unit instead of running it to the deadline") {
  const std::string url = fresh_inferq_database();
  DaemonConfig config = daemon_config(url, {test_queue("sleep", "builtin:sleep", 1, 1, "60s")});
  config.poll_interval = "200ms";
  config.heartbeat_interval = "200ms";
  config.stale_after = "1s";

  Daemon a(config, "a");
  INFO("daemon A log:\n", a.log());
  REQUIRE(a.wait_ready());
  const auto a_executors = a.executor_pids();
  REQUIRE(a_executors.size() == 1);
  const auto id = enqueue(url, "sleep", R"({"seconds": 30})");
  const std::string sid = std::to_string(id);
  REQUIRE(wait_until([&] { return job(url, id)->state == "running"; }, 10s, 10ms));
  const auto a_lease = scalar(url, "SELECT lease_id FROM inferq.jobs WHERE id = " + sid);

  a.process().send_signal(SIGSTOP);
  Daemon b(config, "b");
  INFO("daemon B log:\n", b.log());
  REQUIRE(b.wait_ready());
  REQUIRE(wait_until(
      [&] {
        return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + sid +
                               " AND state = 'running' AND lease_id <> " + std::to_string(a_lease)) == 1;
      },
      10s, 10ms));
  a.process().send_signal(SIGCONT);
  // A's executor is killed for the lost lease, not at the end of its 30 s
  // sleep (nor at the 60 s deadline): a wait well short of both, and the
  // log line that says why.
  REQUIRE(wait_until([&] { return process_gone(a_executors[0]); }, 20s, 10ms));
  CHECK(a.count_log("lease " + std::to_string(a_lease) +
                    " was reaped by another daemon; stopping its unit") == 1);
  // B still owns the job; A wrote nothing.
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE id = " + sid +
                        " AND state = 'running' AND lease_id <> " + std::to_string(a_lease)) == 1);
  CHECK(scalar(url, "SELECT jsonb_array_length(errors) FROM inferq.jobs WHERE id = " + sid) == 1);
}
