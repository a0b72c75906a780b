// inferq behind a real PgBouncer (Debian's), started by the harness in front
// of the test cluster. In transaction mode, with database.transaction_pooling,
// every job runs exactly once: no named statement may outlive its
// transaction, and without LISTEN the tick polls. With transaction_pooling
// left false, `inferq run` finds the pooler at start-up and refuses (exit 2)
// naming the cause and the fix, where it used to half-work (jobs stalled as
// its named statements vanished). Session mode needs no setting at all.
#include <doctest.h>

#include <chrono>
#include <fstream>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/pg_bouncer.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

// 1,000 unkeyed jobs and 100 jobs on 5 keys, enqueued straight into
// PostgreSQL; returns their ids.
std::vector<std::int64_t> enqueue_load(const std::string& url) {
  std::vector<std::string> payloads;
  payloads.reserve(1000);
  for (int i = 0; i < 1000; ++i) payloads.push_back("{\"i\": " + std::to_string(i) + "}");
  std::vector<std::int64_t> ids = enqueue_many(url, "echo", payloads);
  for (int k = 0; k < 5; ++k) {
    std::vector<std::string> keyed;
    keyed.reserve(20);
    for (int i = 0; i < 20; ++i)
      keyed.push_back("{\"k\": " + std::to_string(k) + ", \"i\": " + std::to_string(i) + "}");
    const auto more = enqueue_many(url, "echo", keyed, "key-" + std::to_string(k));
    ids.insert(ids.end(), more.begin(), more.end());
  }
  return ids;
}

// Every job succeeded at its first attempt with its own payload as result.
void check_exactly_once(const std::string& url, std::size_t n) {
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs") == static_cast<std::int64_t>(n));
  CHECK(scalar(url,
               "SELECT count(*) FROM inferq.jobs WHERE state = 'succeeded' AND attempts = 1 "
               "AND result = payload AND errors = '[]'") == static_cast<std::int64_t>(n));
  CHECK(scalar(url, "SELECT count(*) FROM inferq.active_sessions") == 0);
}

DaemonConfig config_through(const std::string& url, bool transaction_pooling) {
  DaemonConfig c = daemon_config(url, {test_queue("echo", "builtin:echo", 2, 16)});
  c.transaction_pooling = transaction_pooling;
  return c;
}

}  // namespace

TEST_CASE("transaction pooling: with database.transaction_pooling every job runs exactly once, by polling") {
  const std::string direct = fresh_inferq_database();
  PgBouncer bouncer(PgCluster::shared(), PgBouncer::PoolMode::kTransaction);
  const std::string pooled = bouncer.url(PgCluster::database_name(direct));

  Daemon d(config_through(pooled, true), "txpool");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(30s));
  // Enqueued while it runs: no NOTIFY reaches it through the pooler.
  const auto ids = enqueue_load(direct);
  REQUIRE(wait_all_final(direct, 90s));
  check_exactly_once(direct, ids.size());
  CHECK(d.count_log("no LISTEN through the pooler, so jobs are found by polling every 200ms") == 1);
  CHECK(d.count_log("prepared statement") == 0);
  CHECK(d.count_log(" error ") == 0);
  const auto status = d.terminate(30s);
  REQUIRE(status);
  CHECK(exited_with(*status, 0));
}

TEST_CASE("transaction pooling left unset: inferq run refuses at start-up, naming the cause and the fix") {
  const std::string direct = fresh_inferq_database();
  PgBouncer bouncer(PgCluster::shared(), PgBouncer::PoolMode::kTransaction);
  const auto id = enqueue(direct, "echo", "{}");
  Daemon d(config_through(bouncer.url(PgCluster::database_name(direct)), false), "txpool-unset");
  INFO("daemon log:\n", d.log());
  const auto status = d.process().wait_exit(30s);
  REQUIRE(status);
  CHECK(exited_with(*status, 2));
  CHECK(d.count_log("database.url goes through a pooler in transaction mode (PgBouncer pool_mode = "
                    "transaction)") == 1);
  CHECK(d.count_log("Set database.transaction_pooling: true, or use session pooling") == 1);
  // Nothing was claimed: the job waits for a daemon that is set up right.
  const auto row = job(direct, id);
  REQUIRE(row);
  CHECK(row->state == "available");
  CHECK(row->attempts == 0);
}

TEST_CASE("session pooling needs no setting: every job runs exactly once, woken by LISTEN") {
  const std::string direct = fresh_inferq_database();
  PgBouncer bouncer(PgCluster::shared(), PgBouncer::PoolMode::kSession);
  DaemonConfig c = config_through(bouncer.url(PgCluster::database_name(direct)), false);
  c.poll_interval = "60s";  // so only a notification can wake the tick in time
  Daemon d(c, "sessionpool");
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready(30s));
  const auto ids = enqueue_load(direct);
  REQUIRE(wait_all_final(direct, 50s));
  check_exactly_once(direct, ids.size());
}

TEST_CASE("inferq migrate runs through a transaction pooler; two at once apply the migrations once") {
  // An empty database: migrate makes the schema through the pooler. Its
  // advisory lock is its transaction's, so wherever the pooler runs each
  // one, the second migrate waits for the first's commit and finds the
  // schema current.
  const std::string direct = PgCluster::shared().create_database();
  PgBouncer bouncer(PgCluster::shared(), PgBouncer::PoolMode::kTransaction);
  TempDir dir("inferq-migrate-pool");
  {
    std::ofstream f(dir.file("inferq.yaml"));
    f << "database:\n  url: " << bouncer.url(PgCluster::database_name(direct))
      << "\n  transaction_pooling: true\n";
  }
  ChildProcess a({bin_path("inferq"), "migrate", "--config", dir.file("inferq.yaml")});
  ChildProcess b({bin_path("inferq"), "migrate", "--config", dir.file("inferq.yaml")});
  const auto a_status = a.wait_exit(60s);
  const auto b_status = b.wait_exit(60s);
  INFO("first:\n", a.log(), "\nsecond:\n", b.log());
  REQUIRE(a_status);
  REQUIRE(b_status);
  CHECK(exited_with(*a_status, 0));
  CHECK(exited_with(*b_status, 0));
  const std::string version =
      std::to_string(scalar(direct, "SELECT max(version) FROM inferq.schema_migrations"));
  // Each migration is on record once, so it was applied once.
  CHECK(scalar(direct, "SELECT count(*) FROM inferq.schema_migrations") ==
        scalar(direct, "SELECT count(DISTINCT version) FROM inferq.schema_migrations"));
  const std::string both = a.log() + b.log();
  CHECK(both.find("schema migrated from version 0 to " + version + "\n") != std::string::npos);
  CHECK(both.find("schema is current at version " + version + "\n") != std::string::npos);
  // And a daemon starts on it through the same pooler.
  Daemon d(config_through(bouncer.url(PgCluster::database_name(direct)), true), "txpool-migrated");
  INFO("daemon log:\n", d.log());
  CHECK(d.wait_ready(30s));
}
