// Queue-overhead benchmark: builtin:echo throughput of one daemon on a
// backlog, the claim's cost against backlog size, and enqueue-to-start
// latency on an idle daemon. Starts its own PostgreSQL (the test harness's
// PgCluster) and the real binaries; prints figures, asserts nothing.
//
//   inferq-bench-queue [--jobs N[,N...]] [--max-jobs M] [--instances I] [--vacuum-dead-rows N]
//                      [--repeat R] [--latency-samples K] [--skip-throughput] [--skip-claim]
//                      [--skip-latency] [--tcp] [--small-wal]
#include <pqxx/pqxx>

#include <csignal>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/child_process.hpp"
#include "support/drain.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

using namespace inferq::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  std::vector<long> backlogs = {100000, 1000000};
  int max_jobs = 512;
  int instances = 2;
  int vacuum_dead_rows = -1;  // -1: the daemon's default
  int latency_samples = 1000;
  int repeat = 1;  // drains per backlog size; the median is the figure
  bool throughput = true;
  bool latency = true;
  bool claim = true;
  bool tcp = false;        // loopback TCP instead of the unix socket
  bool small_wal = false;  // the tests' 1 MB WAL segments instead of 16 MB
};

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string write_config(const TempDir& dir, const std::string& url, int instances, int max_jobs,
                         int vacuum_dead_rows) {
  const std::string path = dir.file("bench.yaml");
  std::ofstream f(path);
  f << "database: {url: \"" << url << "\"}\n"
    << "worker: {poll_interval: 1s, heartbeat_interval: 2s, stale_after: 15s, shutdown_grace: 5s"
    << (vacuum_dead_rows >= 0 ? ", vacuum_dead_rows: " + std::to_string(vacuum_dead_rows) : std::string())
    << "}\n"
    << "metrics: {listen: \"127.0.0.1:0\"}\n"
    << "logging: {level: debug}\n"  // the janitor's VACUUMs, for the report
    << "queues:\n"
    << "  - name: echo\n    handler: builtin:echo\n    instances: " << instances << "\n"
    << "    batch: {max_jobs: " << max_jobs << "}\n    deadline: 30s\n";
  return path;
}

void fill_backlog(const std::string& url, long n) {
  pqxx::connection c(url);
  fill_echo_backlog(c, n);
}

void reset(const std::string& url) {
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  tx.exec("TRUNCATE inferq.jobs, inferq.active_sessions");
  tx.exec("VACUUM ANALYZE inferq.jobs");
}

// Claim cost against backlog size: mean time of a 16-job claim + release on
// a backlog of `n` jobs, from inside the database (no daemon running).
void claim_cost(const std::string& url, long n) {
  reset(url);
  fill_backlog(url, n);
  pqxx::connection c(url);
  pqxx::nontransaction tx(c);
  tx.exec("INSERT INTO inferq.workers (name, host, pid, version) VALUES ('bench', 'bench', 0, 'bench')");
  const auto worker = tx.exec("SELECT max(id) FROM inferq.workers")[0][0].as<long>();
  // Fewer claims than the smaller backlog holds, so every claim finds jobs.
  const int rounds = 50;
  std::vector<double> us;
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = Clock::now();
    const auto r =
        tx.exec("SELECT lease_id FROM inferq.claim('echo', " + std::to_string(worker) + ", 16, 5)");
    us.push_back(seconds_since(t0) * 1e6);
    if (r.size() != 16) throw std::runtime_error("claim found no jobs");
  }
  std::sort(us.begin(), us.end());
  std::printf(
      "claim of 16 jobs (client round trip), backlog %8ld: median %6.0f us, p90 %6.0f us (%d claims)\n", n,
      us[rounds / 2], us[rounds * 9 / 10], rounds);
}

// The janitor's VACUUMs in a daemon's (debug) log: how many, and their time
// in all; each line too on stderr with INFERQ_BENCH_VACUUMS set.
void report_vacuums(const std::string& daemon_log) {
  std::istringstream log(daemon_log);
  int vacuums = 0;
  long vacuum_ms = 0;
  for (std::string line; std::getline(log, line);) {
    const auto at = line.find("janitor: vacuumed");
    const auto in = line.rfind(" in ");
    if (at == std::string::npos || in == std::string::npos || in < at) continue;
    ++vacuums;
    vacuum_ms += std::stol(line.substr(in + 4));
    if (std::getenv("INFERQ_BENCH_VACUUMS")) std::fprintf(stderr, "%s\n", line.c_str());
  }
  std::printf("  janitor: %d VACUUM(s), %.2f s in all\n", vacuums, vacuum_ms / 1000.0);
}

// One drain of a fresh backlog of `n`; returns its jobs/s.
double throughput(const Options& o, const std::string& url, long n) {
  reset(url);
  const auto fill0 = Clock::now();
  fill_backlog(url, n);
  std::printf("backlog of %ld echo jobs enqueued in %.1f s\n", n, seconds_since(fill0));
  TempDir dir("inferq-bench");
  const auto config = write_config(dir, url, o.instances, o.max_jobs, o.vacuum_dead_rows);
  const auto t0 = Clock::now();
  ChildProcess daemon({bin_path("inferq"), "run", "--config", config}, {}, dir.file("daemon.log"));
  pqxx::connection c(url);
  for (;;) {
    if (backlog_drained(c, "echo")) break;
    if (!daemon.running()) {
      std::cerr << "daemon exited:\n" << daemon.log();
      std::exit(1);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const double wall = seconds_since(t0);
  pqxx::nontransaction tx(c);
  const auto r = tx.exec(
      "SELECT count(*) FILTER (WHERE state = 'succeeded'), count(*),"
      " extract(epoch FROM max(finished_at) - min(started_at))::float8 FROM inferq.jobs");
  const long ok = r[0][0].as<long>();
  const double span = r[0][2].as<double>();
  // The rate through each tenth of the drain, in finishing order: if it
  // rises as the backlog shrinks, a cost grows with the backlog.
  const auto tenths = tx.exec(
      "SELECT t, count(*), extract(epoch FROM max(finished_at) - min(finished_at))::float8"
      "  FROM (SELECT finished_at, ntile(10) OVER (ORDER BY finished_at) t FROM inferq.jobs) x"
      " GROUP BY t ORDER BY t");
  std::string by_tenth;
  for (const auto& row : tenths)
    by_tenth +=
        " " + std::to_string(static_cast<long>(row[1].as<double>() / std::max(1e-6, row[2].as<double>())));
  daemon.send_signal(SIGTERM);
  daemon.wait_exit(std::chrono::seconds(20));
  std::printf("  jobs/s by tenth of the drain:%s\n", by_tenth.c_str());
  report_vacuums(daemon.log());
  std::printf(
      "throughput, backlog %8ld, max_jobs %d, instances %d: %ld/%ld succeeded; "
      "%.0f jobs/s (first start to last finish %.2f s; wall incl. daemon start %.2f s)\n",
      n, o.max_jobs, o.instances, ok, r[0][1].as<long>(), static_cast<double>(n) / span, span, wall);
  return static_cast<double>(n) / span;
}

void latency(const Options& o, const std::string& url) {
  reset(url);
  TempDir dir("inferq-bench");
  const auto config = write_config(dir, url, o.instances, 16, o.vacuum_dead_rows);
  ChildProcess daemon({bin_path("inferq"), "run", "--config", config}, {}, dir.file("daemon.log"));
  daemon.wait_log("executor slot(s)", std::chrono::seconds(20));
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // executors ready
  pqxx::connection c(url);
  struct Sent {
    long id;
    std::string xid;  // the enqueue's transaction, for its commit timestamp
    double before;    // client wall time (epoch s) just before the enqueue
    double after;     // and once it returned (committed)
  };
  std::vector<Sent> sent;
  const auto wall = [] {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  };
  for (int i = 0; i < o.latency_samples; ++i) {
    pqxx::nontransaction tx(c);
    const double before = wall();
    const auto r = tx.exec("SELECT inferq.enqueue('echo', '{\"x\":1}'), pg_current_xact_id()::text");
    sent.push_back({r[0][0].as<long>(), r[0][1].c_str(), before, wall()});
    // Idle daemon: let each job finish before the next.
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(500));
  std::vector<double> total, enqueue, after_commit, recorded, from_commit;
  pqxx::nontransaction tx(c);
  for (const auto& s : sent) {
    const auto r = tx.exec(
        "SELECT extract(epoch FROM started_at)::float8, extract(epoch FROM started_at - created_at)::float8,"
        "       extract(epoch FROM started_at - pg_xact_commit_timestamp('" +
        s.xid + "'::xid))::float8 FROM inferq.jobs WHERE id = " + std::to_string(s.id));
    if (r.empty() || r[0][0].is_null()) continue;
    const double started = r[0][0].as<double>();
    total.push_back((started - s.before) * 1000.0);
    enqueue.push_back((s.after - s.before) * 1000.0);
    after_commit.push_back((started - s.after) * 1000.0);
    recorded.push_back(r[0][1].as<double>() * 1000.0);
    from_commit.push_back(r[0][2].as<double>() * 1000.0);
  }
  const auto report = [](const char* what, std::vector<double> v) {
    std::sort(v.begin(), v.end());
    const auto pct = [&](double p) {
      return v[std::min(v.size() - 1, static_cast<std::size_t>(p * v.size()))];
    };
    std::printf("  %-34s p50 %6.2f ms, p90 %6.2f ms, p99 %6.2f ms, max %6.2f ms\n", what, pct(0.50),
                pct(0.90), pct(0.99), v.back());
  };
  std::printf("enqueue-to-start latency, idle daemon, %zu jobs:\n", total.size());
  report("enqueue call to start (the figure)", total);
  report("of which the enqueue call", enqueue);
  report("its return to start", after_commit);
  // What a user sees in SQL: from the enqueue statement's start on the
  // server (created_at, now()) to started_at; the round trip's two transits
  // are left out, the enqueue's commit is in.
  report("created_at to started_at", recorded);
  // From the moment the server commits the enqueue (the timestamp it
  // records for the commit, before flushing it to disk) to the start: what
  // a job waits once it exists for any daemon; the producer's flush, its
  // NOTIFY and the daemon's wake-up and claim are in.
  report("enqueue's commit to started_at", from_commit);
  daemon.send_signal(SIGTERM);
  daemon.wait_exit(std::chrono::seconds(20));
}

}  // namespace

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // figures as they come
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto next = [&] { return std::string(i + 1 < argc ? argv[++i] : ""); };
    if (a == "--jobs") {
      o.backlogs.clear();
      std::stringstream ss(next());
      for (std::string x; std::getline(ss, x, ',');) o.backlogs.push_back(std::stol(x));
    } else if (a == "--max-jobs") {
      o.max_jobs = std::stoi(next());
    } else if (a == "--instances") {
      o.instances = std::stoi(next());
    } else if (a == "--vacuum-dead-rows") {
      o.vacuum_dead_rows = std::stoi(next());
    } else if (a == "--repeat") {
      o.repeat = std::max(1, std::stoi(next()));
    } else if (a == "--latency-samples") {
      o.latency_samples = std::stoi(next());
    } else if (a == "--skip-throughput") {
      o.throughput = false;
    } else if (a == "--skip-claim") {
      o.claim = false;
    } else if (a == "--tcp") {
      o.tcp = true;
    } else if (a == "--small-wal") {
      o.small_wal = true;
    } else if (a == "--skip-latency") {
      o.latency = false;
    } else {
      std::cerr
          << "usage: inferq-bench-queue [--jobs N,N] [--max-jobs M] [--instances I] [--vacuum-dead-rows N] "
             "[--repeat R] [--latency-samples K] [--skip-throughput] [--skip-claim] [--skip-latency] "
             "[--tcp] [--small-wal]\n";
      return 2;
    }
  }
  // Production-like server settings for a queue (still durable: fsync and
  // synchronous_commit stay on), on PostgreSQL's default 16 MB WAL segments.
  // track_commit_timestamp only dates the enqueues' commits for the latency
  // figures.
  PgCluster pg({"shared_buffers=2GB", "max_wal_size=8GB", "checkpoint_timeout=30min", "wal_buffers=64MB",
                "track_commit_timestamp=on"},
               o.small_wal ? PgCluster::Wal::kSmallSegments : PgCluster::Wal::kDefaultSegments);
  pg.start();
  // Through the unix socket, as the default database.url (postgresql:///inferq)
  // reaches a PostgreSQL on the same machine; loopback TCP costs this 2-core
  // machine about a third of the throughput.
  const std::string tcp_url = pg.create_database();
  const std::string url = o.tcp ? tcp_url : pg.socket_url(PgCluster::database_name(tcp_url));
  ChildProcess migrate({bin_path("inferq"), "migrate"}, {{"INFERQ_DATABASE_URL", url}});
  migrate.wait_exit(std::chrono::seconds(60));
  std::printf("inferq queue benchmark: %u cores, PostgreSQL on this machine\n",
              std::thread::hardware_concurrency());
  if (o.throughput) {
    std::vector<std::pair<long, double>> medians;
    for (long n : o.backlogs) {
      std::vector<double> rates;
      for (int i = 0; i < o.repeat; ++i) rates.push_back(throughput(o, url, n));
      std::sort(rates.begin(), rates.end());
      medians.emplace_back(n, rates[rates.size() / 2]);
    }
    for (const auto& [n, rate] : medians)
      std::printf("throughput, backlog %8ld: median of %d drain(s) %.0f jobs/s = %.0f%% of backlog %ld's\n",
                  n, o.repeat, rate, 100.0 * rate / medians.front().second, medians.front().first);
  }
  if (o.claim)
    for (long n : {1000L, 1000000L}) claim_cost(url, n);
  if (o.latency) latency(o, url);
  return 0;
}
