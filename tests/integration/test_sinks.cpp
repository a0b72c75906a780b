// A queue's sink end to end: jobs enqueued with SQL, run by the real daemon,
// and their results written into the user's own table by the sink in the
// completion's transaction. A sink the database lacks stops `inferq run` at
// start-up (exit 2), naming the queue and the function. Retention prunes
// the jobs afterwards; what the sink wrote stays.
#include <doctest.h>

#include <chrono>
#include <string>

#include "support/daemon.hpp"
#include "support/http_get.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

TestQueue echo_with_sink(const std::string& sink) {
  TestQueue q = test_queue("echo", "builtin:echo", 2, 8);
  q.extra_yaml = "sink: " + sink + "\n";
  return q;
}

}  // namespace

TEST_CASE("a sink puts each job's result into the user's table, once") {
  const std::string url = fresh_inferq_database();
  exec_sql(url, R"(
    CREATE TABLE documents (id bigint PRIMARY KEY, body text, summary jsonb, stored_by_job bigint);
    INSERT INTO documents SELECT g, 'doc ' || g FROM generate_series(1, 200) g;
    CREATE FUNCTION public.store_summary(job_id bigint, payload jsonb, result jsonb) RETURNS void
    LANGUAGE sql AS $$
      UPDATE documents SET summary = result, stored_by_job = job_id
       WHERE id = (payload->>'doc')::bigint AND summary IS NULL
    $$;)");
  Daemon d(daemon_config(url, {echo_with_sink("public.store_summary")}), "sink");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(30s));
  exec_sql(url, "SELECT inferq.enqueue('echo', jsonb_build_object('doc', id)) FROM documents");
  REQUIRE(wait_all_final(url, 60s));
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded' AND attempts = 1") == 200);
  // Each document holds its own job's result (echo: the payload), stored by that job.
  CHECK(scalar(url,
               "SELECT count(*) FROM documents d JOIN inferq.jobs j ON j.id = d.stored_by_job "
               "WHERE d.summary = j.result AND (d.summary->>'doc')::bigint = d.id") == 200);
}

TEST_CASE("a sink the database does not have stops inferq run at start-up") {
  const std::string url = fresh_inferq_database();
  Daemon d(daemon_config(url, {echo_with_sink("public.absent_sink")}), "nosink");
  INFO("daemon log:\n", d.log());
  const auto status = d.process().wait_exit(30s);
  REQUIRE(status);
  CHECK(exited_with(*status, 2));
  CHECK(d.count_log("queues[0] (queue \"echo\"): sink: the database has no function "
                    "public.absent_sink(bigint, jsonb, jsonb)") == 1);
}

TEST_CASE("retention prunes finished jobs once their sink ran: the results stay in the user's table") {
  const std::string url = fresh_inferq_database();
  exec_sql(url, R"(
    CREATE TABLE results (job_id bigint PRIMARY KEY, result jsonb);
    CREATE FUNCTION public.keep_result(job_id bigint, payload jsonb, result jsonb) RETURNS void
    LANGUAGE sql AS $$ INSERT INTO results VALUES (job_id, result) $$;)");
  TestQueue q = echo_with_sink("public.keep_result");
  q.extra_yaml += "retention: {succeeded: 1s, dead: 1s}\n";
  auto fail = test_queue("fail", "builtin:fail", 1, 1);
  fail.extra_yaml = "retention: {dead: 0}\n";  // kept for ever
  Daemon d(daemon_config(url, {q, fail}), "retention");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(30s));
  const auto address = d.metrics_address();
  REQUIRE(address);
  exec_sql(url, "SELECT inferq.enqueue('echo', jsonb_build_object('n', g)) FROM generate_series(1, 50) g");
  exec_sql(url, R"(SELECT inferq.enqueue('fail', '{"permanent": true, "message": "bad"}'))");
  REQUIRE(wait_all_final(url, 60s));
  // A second after they finished, the janitor deletes the echo jobs.
  CHECK(wait_until([&] { return scalar(url, "SELECT count(*) FROM inferq.jobs WHERE queue = 'echo'") == 0; },
                   30s, 100ms));
  CHECK(scalar(url, "SELECT count(*) FROM results") == 50);
  CHECK(scalar(url, "SELECT count(DISTINCT result->>'n') FROM results") == 50);
  CHECK(wait_until(
      [&] { return scrape(*address, R"(inferq_jobs_pruned_total{queue="echo",state="succeeded"})") == 50; },
      10s, 50ms));
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs WHERE queue = 'fail' AND state = 'dead'") == 1);
  CHECK(scrape(*address, R"(inferq_jobs_pruned_total{queue="fail",state="dead"})") == 0);
}
