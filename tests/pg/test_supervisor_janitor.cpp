// The janitor thread against a real PostgreSQL: it vacuums once dead rows
// reach its threshold, and does not vacuum again and again while a
// transaction keeps those rows from being removed; it prunes finished jobs
// past their queue's retention and counts what is left.
#include "supervisor/janitor.hpp"

#include <doctest.h>

#include <pqxx/pqxx>

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "config/settings.hpp"
#include "metrics/metrics.hpp"
#include "support/test_env.hpp"
#include "support/worker_db.hpp"

namespace {

using namespace std::chrono_literals;

struct Db : inferq::test::MigratedDb {
  // Dead row versions, as this connection's updates counted them: flushed
  // to the shared statistics at once rather than within a second or ten.
  void make_dead_rows(int n) {
    exec("UPDATE inferq.jobs SET priority = priority + 1 WHERE id IN (SELECT id FROM inferq.jobs LIMIT " +
         std::to_string(n) + ")");
    exec("SELECT pg_stat_force_next_flush()");
    exec("SELECT 1");
  }
  std::int64_t vacuums() {
    pqxx::nontransaction tx(conn);
    tx.exec("SELECT pg_stat_clear_snapshot()");
    return tx.exec1("SELECT vacuum_count FROM pg_stat_all_tables WHERE relid = 'inferq.jobs'::regclass")[0]
        .as<std::int64_t>();
  }
  // Waits up to `within` for the vacuum count to exceed `than`.
  bool vacuumed_beyond(std::int64_t than, std::chrono::milliseconds within) {
    return inferq::test::wait_until([&] { return vacuums() > than; }, within);
  }
  // Waits up to `within` for the janitor to begin `n` more rounds: each
  // begins with its dead-row count, a statement whose start its backend
  // shows in pg_stat_activity (a VACUUM round counts once more after it).
  bool janitor_rounds(int n, std::chrono::milliseconds within) {
    const auto count_started = [&] {
      return scalar(
          "SELECT max(query_start)::text FROM pg_stat_activity"
          " WHERE application_name = 'inferq janitor' AND query LIKE '%n_dead_tup%'");
    };
    std::string last = count_started();
    int rounds = 0;
    return inferq::test::wait_until(
        [&] {
          const auto started = count_started();
          if (started != last) ++rounds;
          last = started;
          return rounds >= n;
        },
        within, 5ms);
  }
};

}  // namespace

TEST_CASE("vacuum_due counts only the dead rows that came after the last VACUUM") {
  using inferq::supervisor::vacuum_due;
  CHECK(vacuum_due(1000, 0, 1000));
  CHECK_FALSE(vacuum_due(999, 0, 1000));
  CHECK_FALSE(vacuum_due(1500, 1000, 1000));  // 1,000 of them it could not remove
  CHECK(vacuum_due(2000, 1000, 1000));
  CHECK(vacuum_due(1000, 5000, 1000) == false);  // fewer than left: counted afresh by the caller
}

TEST_CASE("while a transaction holds dead rows back, the janitor vacuums once, not every interval") {
  Db db;
  db.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 3000)");
  // A transaction whose snapshot still sees the rows about to die: no VACUUM
  // may remove them until it ends.
  pqxx::connection holder(db.url);
  pqxx::transaction<pqxx::repeatable_read> snapshot(holder);
  snapshot.exec("SELECT count(*) FROM inferq.jobs");
  db.make_dead_rows(2000);

  inferq::supervisor::Janitor janitor(db.url, 1000, 50ms);
  const auto before = db.vacuums();
  janitor.start();
  REQUIRE(db.vacuumed_beyond(before, 10s));
  const auto first = db.vacuums();
  // Twenty rounds on: dead rows still over the threshold, none removable.
  REQUIRE(db.janitor_rounds(20, 10s));
  CHECK(db.vacuums() == first);

  // Once the transaction ends and more rows die, it vacuums again.
  snapshot.commit();
  db.make_dead_rows(1000);
  CHECK(db.vacuumed_beyond(first, 10s));
  janitor.stop();
}

namespace {

// The value of the series `name{labels}` in the exposition, or -1.
double series_value(const std::string& exposition, const std::string& series) {
  const auto at = exposition.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::stod(exposition.substr(at + series.size() + 2));
}

}  // namespace

TEST_CASE("prune_targets: a queue's states kept for a limited time, none for 0 (for ever)") {
  inferq::config::QueueSettings a;
  a.name = "a";
  inferq::config::QueueSettings b;
  b.name = "b";
  b.retention.succeeded = 90s;
  b.retention.cancelled = 0s;
  b.retention.dead = 0s;
  const auto targets = inferq::supervisor::prune_targets({a, b});
  REQUIRE(targets.size() == 4);
  CHECK(targets[0].queue == "a");
  CHECK(targets[0].state == inferq::metrics::FinalState::kSucceeded);
  CHECK(targets[0].older_than == 24h);
  CHECK(targets[2].state == inferq::metrics::FinalState::kDead);
  CHECK(targets[2].older_than == 7 * 24h);
  CHECK(targets[3].queue == "b");
  CHECK(targets[3].older_than == 90s);
}

TEST_CASE("the janitor prunes finished jobs past their retention in batches, counts them and what is left") {
  Db db;
  // 2,500 old successes (three batches), 10 recent ones, old dead jobs of a
  // queue kept for ever, old jobs of a queue this daemon does not serve.
  db.exec(
      "INSERT INTO inferq.jobs (queue, payload, state, finished_at)"
      " SELECT 'q', '{}', 'succeeded', now() - interval '2 hours' FROM generate_series(1, 2500)");
  db.exec(
      "INSERT INTO inferq.jobs (queue, payload, state, finished_at)"
      " SELECT 'q', '{}', 'succeeded', now() FROM generate_series(1, 10)");
  db.exec(
      "INSERT INTO inferq.jobs (queue, payload, state, finished_at)"
      " SELECT 'keep', '{}', 'dead', now() - interval '30 days' FROM generate_series(1, 5)");
  db.exec(
      "INSERT INTO inferq.jobs (queue, payload, state, finished_at)"
      " SELECT 'elsewhere', '{}', 'succeeded', now() - interval '30 days' FROM generate_series(1, 5)");
  db.exec("INSERT INTO inferq.jobs (queue, payload) SELECT 'q', '{}' FROM generate_series(1, 3)");

  inferq::config::QueueSettings q;
  q.name = "q";
  q.retention.succeeded = 1h;
  inferq::config::QueueSettings keep;
  keep.name = "keep";
  keep.retention.dead = 0s;
  inferq::metrics::Metrics metrics({"q", "keep"}, 1s, {});
  inferq::supervisor::Pruning pruning{inferq::supervisor::prune_targets({q, keep}), &metrics, 50ms};
  inferq::supervisor::Janitor janitor(db.url, 0, 50ms, pruning);
  janitor.start();
  const auto remaining = [&] {
    pqxx::nontransaction tx(db.conn);
    return tx.exec1("SELECT count(*) FROM inferq.jobs")[0].as<std::int64_t>();
  };
  const auto until = std::chrono::steady_clock::now() + 20s;
  while (remaining() > 23 && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  CHECK(remaining() == 23);
  const std::string pruned = R"(inferq_jobs_pruned_total{queue="q",state="succeeded"})";
  const std::string left = R"(inferq_queue_finished_jobs{queue="q",state="succeeded"})";
  const auto seen = [&] {
    const auto text = metrics.expose();
    return series_value(text, pruned) == 2500 && series_value(text, left) == 10;
  };
  while (!seen() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(20ms);
  const auto text = metrics.expose();
  CHECK(series_value(text, pruned) == 2500);
  CHECK(series_value(text, left) == 10);
  CHECK(series_value(text, R"(inferq_queue_finished_jobs{queue="keep",state="dead"})") == 5);
  CHECK(series_value(text, R"(inferq_jobs_pruned_total{queue="keep",state="dead"})") == 0);
  CHECK(series_value(text, "inferq_prune_seconds_count") >= 3);
  janitor.stop();
}
