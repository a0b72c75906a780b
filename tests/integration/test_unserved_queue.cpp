// Issue 13 item 8: jobs enqueued for a queue that no live daemon serves (a
// producer's typo) show in inferq_unserved_queue_jobs and in one warning;
// both clear once the queue has no available jobs. The real daemon.
#include <doctest.h>

#include <chrono>
#include <string>

#include "support/daemon.hpp"
#include "support/http_get.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

}  // namespace

TEST_CASE("jobs of a queue no daemon serves get a metric and one warning, both gone when the jobs are") {
  const std::string url = fresh_inferq_database();
  Daemon daemon(daemon_config(url, {test_queue("echo", "builtin:echo", 1, 4)}));
  INFO("daemon log:\n", daemon.log());
  REQUIRE(daemon.wait_ready());
  const auto address = daemon.metrics_address();
  REQUIRE(address);

  // A queue a dead daemon served an hour ago counts as unserved too.
  exec_sql(url,
           "INSERT INTO inferq.workers (name, host, pid, version, queues, last_seen_at) "
           "VALUES ('gone', 'nowhere', 1, 'old', '{ecoh}', now() - interval '1 hour')");
  const auto typo = enqueue_many(url, "ecoh", {R"({"n": 1})", R"({"n": 2})"});
  const auto keyed = enqueue(url, "ecoh", R"({"n": 3})", "k");
  const auto served = enqueue(url, "echo", R"({"n": 4})");

  const std::string series = R"(inferq_unserved_queue_jobs{queue="ecoh"})";
  CHECK(wait_until([&] { return scrape(*address, series) == 3; }, 15s, 100ms));
  // Warned once the oldest job has waited longer than stale_after (2 s).
  CHECK(daemon.process().wait_log("queue ecoh has 3 available job(s)", 15s));
  CHECK(daemon.log().find("no live daemon serves it") != std::string::npos);
  CHECK(wait_until([&] { return job(url, served)->state == "succeeded"; }, 10s));
  const auto r = http_get(*address, "/metrics");
  REQUIRE(r);
  CHECK(r->body.find(R"(inferq_unserved_queue_jobs{queue="echo"})") == std::string::npos);
  const auto age =
      metric_value(r->body, R"(inferq_unserved_queue_oldest_available_age_seconds{queue="ecoh"})");
  REQUIRE(age);
  CHECK(*age > 2.0);

  for (const auto id : typo) exec_sql(url, "SELECT inferq.cancel(" + std::to_string(id) + ")");
  exec_sql(url, "SELECT inferq.cancel(" + std::to_string(keyed) + ")");
  CHECK(daemon.process().wait_log("queue ecoh is served again, or has no available jobs left", 15s));
  CHECK(wait_until([&] { return !scrape(*address, series).has_value(); }, 10s, 100ms));
  // One warning for the whole episode, not one per sample.
  const auto log = daemon.log();
  const auto first = log.find("queue ecoh has");
  CHECK(log.find("queue ecoh has", first + 1) == std::string::npos);
}
