// A queue's sink end to end: jobs enqueued with SQL, run by the real daemon,
// and their results written into the user's own table by the sink in the
// completion's transaction. A sink the database lacks stops `inferq run` at
// start-up (exit 2), naming the queue and the function.
#include <doctest.h>

#include <chrono>
#include <string>

#include "support/daemon.hpp"

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
