// The real daemon's metrics and health endpoints: counters match the jobs it
// processed; /metrics answers while every slot is hung in builtin:sleep and
// while PostgreSQL is stopped (with inferq_db_up 0 and /readyz 503); the
// restart reasons it records itself (deadline, crash); /readyz stays 503
// while a queue has no ready executor; a busy metrics port
// stops the start-up. No timed assertions: each check is "it answered, and
// with these values".
#include <doctest.h>

#include <sys/wait.h>

#include <chrono>
#include <set>
#include <string>

#include "support/daemon.hpp"
#include "support/http_get.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

bool wait_metric(const std::string& address, const std::string& series, double want,
                 std::chrono::milliseconds timeout = 20s) {
  return wait_until([&] { return scrape(address, series) == want; }, timeout, 50ms);
}

int status_of(const std::string& address, const std::string& path) {
  const auto r = http_get(address, path);
  return r ? r->status : -1;
}

}  // namespace

TEST_CASE("counters match the jobs processed, by queue and outcome") {
  const std::string url = fresh_inferq_database();
  auto fail = test_queue("fail", "builtin:fail", 1, 1);
  fail.max_attempts = 2;
  auto slow = test_queue("slow", "builtin:sleep", 1, 1);
  Daemon d(daemon_config(url, {test_queue("echo", "builtin:echo", 2, 4), fail, slow}));
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto address = d.metrics_address();
  REQUIRE(address);

  std::vector<std::string> echoes(10, R"({"x": 1})");
  enqueue_many(url, "echo", echoes);
  enqueue(url, "fail", R"({"permanent": true, "message": "bad input"})");  // dead at once
  enqueue(url, "fail", R"({"permanent": false, "message": "flaky"})");     // retried, then dead
  const auto running = enqueue(url, "slow", R"({"seconds": 2})");
  REQUIRE(wait_until([&] { return job(url, running)->state == "running"; }, 10s));
  exec_sql(url, "SELECT inferq.cancel(" + std::to_string(running) + ")");  // cancelled when its unit ends
  REQUIRE(wait_all_final(url, 30s));

  CHECK(wait_metric(*address, R"(inferq_jobs_finished_total{outcome="succeeded",queue="echo"})", 10));
  CHECK(wait_metric(*address, R"(inferq_jobs_finished_total{outcome="dead",queue="fail"})", 2));
  CHECK(wait_metric(*address, R"(inferq_jobs_finished_total{outcome="cancelled",queue="slow"})", 1));
  const auto r = http_get(*address, "/metrics");
  REQUIRE(r);
  const std::string& t = r->body;
  CHECK(metric_value(t, R"(inferq_jobs_claimed_total{queue="echo"})") == 10);
  CHECK(metric_value(t, R"(inferq_jobs_claimed_total{queue="fail"})") == 3);  // one retry
  CHECK(metric_value(t, R"(inferq_jobs_claimed_total{queue="slow"})") == 1);
  CHECK(metric_value(t, R"(inferq_jobs_finished_total{outcome="retried",queue="fail"})") == 1);
  CHECK(metric_value(t, R"(inferq_jobs_finished_total{outcome="succeeded",queue="fail"})") == 0);
  CHECK(metric_value(t, R"(inferq_jobs_finished_total{outcome="dead",queue="echo"})") == 0);
  CHECK(metric_value(t, R"(inferq_job_wait_seconds_count{queue="echo"})") == 10);
  CHECK(metric_value(t, R"(inferq_batch_jobs_sum{queue="echo"})") == 10);
  CHECK(metric_value(t, R"(inferq_unit_run_seconds_count{queue="fail"})") == 3);
  CHECK(metric_value(t, R"(inferq_unit_run_seconds_sum{queue="slow"})").value_or(0) >= 1.5);
  CHECK(metric_value(t, "inferq_tick_seconds_count").value_or(0) > 0);
  CHECK(metric_value(t, "inferq_db_up") == 1);
  CHECK(metric_value(t, R"(inferq_slots{queue="echo",state="idle"})") == 2);
  // The backlog sampler sees the queues drained.
  CHECK(wait_metric(*address, R"(inferq_queue_jobs{queue="echo",state="available"})", 0));
  // No job id, key or payload in any label: only these label names exist.
  const std::set<std::string> allowed = {"queue",   "outcome", "reason", "state", "stage", "op",    "le",
                                         "version", "torch",   "cuda",   "gpu",   "uuid",  "result"};
  for (std::size_t open = t.find('{'); open != std::string::npos; open = t.find('{', open + 1)) {
    const std::size_t close = t.find('}', open);
    REQUIRE(close != std::string::npos);
    std::string labels = t.substr(open + 1, close - open - 1);
    for (std::size_t start = 0; start < labels.size();) {
      const auto eq = labels.find('=', start);
      REQUIRE(eq != std::string::npos);
      CHECK(allowed.count(labels.substr(start, eq - start)) == 1);
      const auto end_quote = labels.find('"', eq + 2);
      start = end_quote + 2;  // past `",`
    }
  }
  CHECK(t.find("flaky") == std::string::npos);
}

TEST_CASE(
    "/metrics and the health endpoints answer while every slot is hung, then the deadline restarts them") {
  const std::string url = fresh_inferq_database();
  // Two slots; a 4 s deadline against 600 s sleeps.
  Daemon d(daemon_config(url, {test_queue("sleep", "builtin:sleep", 2, 1, "4s")}));
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto address = d.metrics_address();
  REQUIRE(address);
  enqueue_many(url, "sleep", {R"({"seconds": 600})", R"({"seconds": 600})", R"({"seconds": 600})"});
  REQUIRE(wait_metric(*address, R"(inferq_slots{queue="sleep",state="busy"})", 2));

  // Every slot is hung: scrapes keep answering, and the backlog is seen.
  for (int i = 0; i < 50; ++i) {
    const auto r = http_get(*address, "/metrics");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(wait_metric(*address, R"(inferq_queue_jobs{queue="sleep",state="running"})", 2));
  CHECK(wait_metric(*address, R"(inferq_queue_jobs{queue="sleep",state="available"})", 1));
  CHECK(wait_until(
      [&] {
        return scrape(*address, R"(inferq_queue_oldest_available_age_seconds{queue="sleep"})").value_or(0) >
               0;
      },
      10s, 50ms));
  CHECK(status_of(*address, "/healthz") == 200);
  CHECK(status_of(*address, "/readyz") == 200);  // busy executors are ready ones

  // The deadline kills both; each kill is a deadline restart.
  CHECK(wait_metric(*address, R"(inferq_deadline_exceeded_total{queue="sleep"})", 2));
  CHECK(wait_metric(*address, R"(inferq_executor_restarts_total{queue="sleep",reason="deadline"})", 2));
  CHECK(scrape(*address, R"(inferq_executor_restarts_total{queue="sleep",reason="crash"})") == 0);
  CHECK(wait_metric(*address, R"(inferq_jobs_finished_total{outcome="retried",queue="sleep"})", 2));
}

TEST_CASE("an executor that crashes counts as a crash restart") {
  const std::string url = fresh_inferq_database();
  auto crash = test_queue("crash", "builtin:crash", 1, 1);
  crash.max_attempts = 1;
  Daemon d(daemon_config(url, {crash}));
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto address = d.metrics_address();
  REQUIRE(address);
  enqueue(url, "crash", "{}");
  CHECK(wait_metric(*address, R"(inferq_executor_restarts_total{queue="crash",reason="crash"})", 1));
  CHECK(wait_metric(*address, R"(inferq_jobs_finished_total{outcome="dead",queue="crash"})", 1));
  CHECK(scrape(*address, R"(inferq_executor_restarts_total{queue="crash",reason="deadline"})") == 0);
}

TEST_CASE(
    "with PostgreSQL stopped: /metrics answers with inferq_db_up 0, /readyz 503, /healthz 200; then back") {
  PgCluster pg;  // our own: we stop it
  pg.start();
  const std::string url = pg.create_database();
  migrate_with_cli(url);
  Daemon d(daemon_config(url, {test_queue("sleep", "builtin:sleep", 2, 1, "60s")}));
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto address = d.metrics_address();
  REQUIRE(address);
  // Both slots hung as well, for the worst case.
  enqueue_many(url, "sleep", {R"({"seconds": 600})", R"({"seconds": 600})"});
  REQUIRE(wait_metric(*address, R"(inferq_slots{queue="sleep",state="busy"})", 2));
  REQUIRE(wait_until([&] { return status_of(*address, "/readyz") == 200; }, 10s, 50ms));

  pg.stop();
  CHECK(wait_metric(*address, "inferq_db_up", 0));
  const auto ready = http_get(*address, "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(ready->body == "{\"status\":\"unavailable\",\"reason\":\"the database is unreachable\"}\n");
  CHECK(status_of(*address, "/healthz") == 200);  // the tick loop still ticks
  for (int i = 0; i < 20; ++i) {
    const auto r = http_get(*address, "/metrics");
    REQUIRE(r);
    CHECK(r->status == 200);
  }
  CHECK(wait_until([&] { return scrape(*address, R"(inferq_db_errors_total{op="reap"})").value_or(0) > 0; },
                   10s, 50ms));
  CHECK(wait_until([&] { return scrape(*address, R"(inferq_db_errors_total{op="sample"})").value_or(0) > 0; },
                   10s, 50ms));

  pg.start();
  CHECK(wait_metric(*address, "inferq_db_up", 1));
  CHECK(wait_until([&] { return status_of(*address, "/readyz") == 200; }, 20s, 50ms));
}

TEST_CASE("a metrics address in use stops the start-up with a clear error") {
  const std::string url = fresh_inferq_database();
  Daemon a(daemon_config(url, {test_queue("echo", "builtin:echo", 1, 1)}), "a");
  REQUIRE(a.wait_ready());
  const auto address = a.metrics_address();
  REQUIRE(address);
  auto config = daemon_config(url, {test_queue("echo", "builtin:echo", 1, 1)});
  config.metrics_listen = *address;
  Daemon b(config, "b");
  INFO("daemon B log:\n", b.log());
  const auto status = b.process().wait_exit(10s);
  REQUIRE(status);
  CHECK(WIFEXITED(*status));
  CHECK(WEXITSTATUS(*status) == 2);
  CHECK(b.log().find("metrics.listen: cannot listen on " + *address) != std::string::npos);
  CHECK(status_of(*address, "/healthz") == 200);  // A still owns it
}

TEST_CASE("a queue whose executors never become ready keeps /readyz at 503 and counts crash restarts") {
  const std::string url = fresh_inferq_database();
  auto config = daemon_config(url, {test_queue("echo", "builtin:echo", 1, 1)});
  config.executor_path = "/bin/false";  // starts, exits at once, never says Ready
  Daemon d(config);
  INFO("daemon log:\n", d.log());
  const auto address = d.metrics_address();
  REQUIRE(address);
  CHECK(wait_metric(*address, "inferq_db_up", 1));
  CHECK(wait_until([&] { return status_of(*address, "/healthz") == 200; }, 10s, 50ms));
  const auto ready = http_get(*address, "/readyz");
  REQUIRE(ready);
  CHECK(ready->status == 503);
  CHECK(ready->body == "{\"status\":\"unavailable\",\"reason\":\"queue echo has no ready executor\"}\n");
  CHECK(wait_until(
      [&] {
        return scrape(*address, R"(inferq_executor_restarts_total{queue="echo",reason="crash"})")
                   .value_or(0) >= 2;
      },
      20s, 50ms));
}
