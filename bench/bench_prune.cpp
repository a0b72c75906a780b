// Retention benchmark (issue 22 item 2): a history of finished jobs pruned
// while the daemon drains new ones. Prints the builtin:echo drain rate with
// the history kept (retention 0) and while the janitor prunes it (retention
// 1d, the history being 2 days old), their ratio, how long pruning took,
// and inferq.jobs' table and index sizes before, after pruning, and after a
// VACUUM. Starts its own PostgreSQL and the real binaries; asserts nothing.
//
// The two drains alternate --rounds times (each on a fresh backlog, the
// daemon restarted with the other retention), since one drain of a few
// seconds varies by 10-20% on this machine; the last pruning daemon then
// runs until the history is gone.
//
//   inferq-bench-prune [--finished N] [--backlog B] [--max-jobs M] [--instances I] [--rounds R]
#include <pqxx/pqxx>

#include <csignal>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "support/child_process.hpp"
#include "support/drain.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

using namespace inferq::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  long finished = 5'000'000;  // the history to prune
  long backlog = 300'000;     // each drain's fresh jobs
  int max_jobs = 512;
  int instances = 2;
  int rounds = 3;
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string write_config(const TempDir& dir, const std::string& url, const Options& o,
                         const std::string& retention) {
  const std::string path = dir.file("bench.yaml");
  std::ofstream f(path);
  f << "database: {url: \"" << url << "\"}\n"
    << "worker: {poll_interval: 1s, heartbeat_interval: 2s, stale_after: 15s, shutdown_grace: 5s}\n"
    << "metrics: {listen: \"127.0.0.1:0\"}\n"
    << "retention: " << retention << "\n"
    << "queues:\n"
    << "  - name: echo\n    handler: builtin:echo\n    instances: " << o.instances << "\n"
    << "    batch: {max_jobs: " << o.max_jobs << "}\n    deadline: 30s\n";
  return path;
}

std::string one(pqxx::connection& c, const std::string& sql) {
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(sql);
  return r[0][0].is_null() ? "" : r[0][0].c_str();
}

void print_sizes(pqxx::connection& c, const char* when) {
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(
      "SELECT pg_size_pretty(pg_table_size('inferq.jobs')), pg_size_pretty(pg_indexes_size('inferq.jobs')),"
      " (SELECT count(*) FROM inferq.jobs)");
  std::printf("  inferq.jobs %-28s table %9s, indexes %9s, %s rows\n", when, r[0][0].c_str(), r[0][1].c_str(),
              r[0][2].c_str());
}

// Enqueues `n` echo jobs as bench_queue does; returns the first new id.
long fill_backlog(pqxx::connection& c, long n) {
  fill_echo_backlog(c, n);
  return std::stol(one(c, "SELECT max(id) FROM inferq.jobs")) - n + 1;
}

// The old finished jobs still there.
long history(pqxx::connection& c) {
  return std::stol(one(c, "SELECT count(*) FROM inferq.jobs WHERE finished_at < now() - interval '1 day'"));
}

struct Drain {
  double jobs_per_second = 0;
  double span = 0;
  long pruned = 0;  // history deleted while the drain ran
};

// Drains a fresh backlog with a daemon whose retention is `retention`; the
// daemon is left running in `daemon` (for the pruning that goes on).
Drain drain(const Options& o, pqxx::connection& c, const std::string& url, const TempDir& dir,
            const std::string& retention, std::unique_ptr<ChildProcess>& daemon) {
  const long first = fill_backlog(c, o.backlog);
  const long history_before = history(c);
  const auto config = write_config(dir, url, o, retention);
  daemon =
      std::make_unique<ChildProcess>(std::vector<std::string>{bin_path("inferq"), "run", "--config", config},
                                     std::map<std::string, std::string>{}, dir.file("daemon.log"));
  for (;;) {
    if (backlog_drained(c, "echo")) break;
    if (!daemon->running()) {
      std::cerr << "daemon exited:\n" << daemon->log();
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  Drain d;
  d.pruned = history_before - history(c);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(
      "SELECT count(*), extract(epoch FROM max(finished_at) - min(started_at))::float8"
      " FROM inferq.jobs WHERE id >= " +
      std::to_string(first));
  d.span = r[0][1].as<double>();
  d.jobs_per_second = static_cast<double>(r[0][0].as<long>()) / d.span;
  return d;
}

void stop(std::unique_ptr<ChildProcess>& daemon) {
  daemon->send_signal(SIGTERM);
  daemon->wait_exit(std::chrono::seconds(30));
  daemon.reset();
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : "0"); };
    if (a == "--finished") {
      o.finished = std::stol(next());
    } else if (a == "--backlog") {
      o.backlog = std::stol(next());
    } else if (a == "--max-jobs") {
      o.max_jobs = std::stoi(next());
    } else if (a == "--instances") {
      o.instances = std::stoi(next());
    } else if (a == "--rounds" && (o.rounds = std::stoi(next())) >= 1) {
    } else {
      std::cerr << "usage: inferq-bench-prune [--finished N] [--backlog B] [--max-jobs M] [--instances I]"
                   " [--rounds R]\n";
      return 2;
    }
  }
  // bench_queue's server settings.
  PgCluster pg({"shared_buffers=2GB", "max_wal_size=8GB", "checkpoint_timeout=30min", "wal_buffers=64MB"},
               PgCluster::Wal::kDefaultSegments);
  pg.start();
  const std::string url = pg.socket_url(PgCluster::database_name(pg.create_database()));
  ChildProcess migrate({bin_path("inferq"), "migrate"}, {{"INFERQ_DATABASE_URL", url}});
  migrate.wait_exit(std::chrono::seconds(60));
  pqxx::connection c(url);
  std::printf(
      "inferq retention benchmark: %u cores; %ld finished jobs 2 days old, drains of %ld echo jobs, "
      "max_jobs %d, instances %d\n",
      std::thread::hardware_concurrency(), o.finished, o.backlog, o.max_jobs, o.instances);
  {
    const auto t0 = Clock::now();
    pqxx::work tx(c);
    // As enqueue and a completion leave them: payload and result alike.
    tx.exec(
        "INSERT INTO inferq.jobs (queue, payload, state, attempts, max_attempts, result, created_at, "
        "started_at,"
        " finished_at)"
        " SELECT 'echo', p, 'succeeded', 1, 5, p, t, t, t"
        "   FROM (SELECT jsonb_build_object('i', g, 'text', 'hello world') p,"
        "                now() - interval '2 days' + g * interval '1 ms' t"
        "           FROM generate_series(1, " +
        std::to_string(o.finished) + ") g) x");
    tx.commit();
    pqxx::nontransaction nt(c);
    nt.exec("VACUUM ANALYZE inferq.jobs");
    nt.exec("CHECKPOINT");
    std::printf("history of %ld finished jobs written in %.1f s\n", o.finished, seconds_since(t0));
  }
  print_sizes(c, "with the history:");

  TempDir dir("inferq-bench-prune");
  std::unique_ptr<ChildProcess> daemon;
  double kept_sum = 0, pruning_sum = 0;
  auto prune_started = Clock::now();
  long left = o.finished;  // the history when the last pruning daemon started
  for (int round = 1; round <= o.rounds; ++round) {
    const Drain kept = drain(o, c, url, dir, "{succeeded: 0, cancelled: 0, dead: 0}", daemon);
    stop(daemon);
    std::printf("round %d: drain, history kept (retention 0):     %8.0f jobs/s (%.2f s)\n", round,
                kept.jobs_per_second, kept.span);
    left = history(c);
    prune_started = Clock::now();
    const Drain pruning = drain(o, c, url, dir, "{succeeded: 1d, cancelled: 1d, dead: 7d}", daemon);
    if (round < o.rounds) stop(daemon);
    std::printf(
        "round %d: drain, while the janitor prunes (1d):  %8.0f jobs/s (%.2f s), %ld of the history pruned "
        "meanwhile; ratio %.2f\n",
        round, pruning.jobs_per_second, pruning.span, pruning.pruned,
        pruning.jobs_per_second / kept.jobs_per_second);
    kept_sum += kept.jobs_per_second;
    pruning_sum += pruning.jobs_per_second;
  }
  std::printf("mean of %d rounds: kept %.0f jobs/s, while pruning %.0f jobs/s: pruning / kept = %.2f\n",
              o.rounds, kept_sum / o.rounds, pruning_sum / o.rounds, pruning_sum / kept_sum);
  while (history(c) > 0) {
    if (!daemon->running()) {
      std::cerr << "daemon exited:\n" << daemon->log();
      return 1;
    }
    std::this_thread::sleep_for(std::chrono::seconds(1));
  }
  const double prune_s = seconds_since(prune_started);
  std::printf(
      "pruned the rest of the %ld finished jobs in %.1f s from the last pruning daemon's start (%.0f "
      "jobs/s)\n",
      left, prune_s, static_cast<double>(left) / prune_s);
  stop(daemon);
  print_sizes(c, "after pruning:");
  {
    pqxx::nontransaction nt(c);
    nt.exec("VACUUM inferq.jobs");
  }
  print_sizes(c, "after a VACUUM:");
  std::printf(
      "  (VACUUM makes the space reusable; the files keep their size: VACUUM FULL would shrink them)\n");
  return 0;
}
