// /metrics latency under the worst load the issue names: every executor slot
// hung in builtin:sleep (a sleep longer than the run), then, in a second
// phase, PostgreSQL stopped as well. Starts its own PostgreSQL (the test
// harness's PgCluster) and the real binaries; each request is a fresh
// HTTP/1.0 connection on loopback, one at a time. Prints figures, asserts
// nothing.
//
//   inferq-bench-metrics [--requests N] [--instances I] [--skip-db-down]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/http_get.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

using namespace inferq::test;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int requests = 2000;
  int instances = 4;
  bool db_down = true;
};

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  const auto i = static_cast<std::size_t>(p * static_cast<double>(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// Scrapes `n` times; prints p50/p90/p99/max in milliseconds. Returns false
// when a scrape failed.
bool measure(const char* phase, const std::string& address, int n) {
  std::vector<double> ms;
  ms.reserve(static_cast<std::size_t>(n));
  std::size_t bytes = 0;
  int failures = 0;
  for (int i = 0; i < n; ++i) {
    const auto t = Clock::now();
    const auto r = http_get(address, "/metrics", std::chrono::seconds(10));
    const double elapsed = std::chrono::duration<double, std::milli>(Clock::now() - t).count();
    if (!r || r->status != 200) {
      ++failures;
      continue;
    }
    bytes = r->body.size();
    ms.push_back(elapsed);
  }
  if (ms.empty()) {
    std::printf("%-36s every one of %d scrapes failed\n", phase, n);
    return false;
  }
  std::printf("%-36s n=%zu  p50 %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms  (%zu bytes, %d failed)\n",
              phase, ms.size(), percentile(ms, 0.50), percentile(ms, 0.90), percentile(ms, 0.99),
              *std::max_element(ms.begin(), ms.end()), bytes, failures);
  std::fflush(stdout);
  return failures == 0;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--requests" && i + 1 < argc) {
      o.requests = std::atoi(argv[++i]);
    } else if (a == "--instances" && i + 1 < argc) {
      o.instances = std::atoi(argv[++i]);
    } else if (a == "--skip-db-down") {
      o.db_down = false;
    } else {
      std::fprintf(stderr, "usage: %s [--requests N] [--instances I] [--skip-db-down]\n", argv[0]);
      return 2;
    }
  }
  if (o.requests < 1 || o.instances < 1) {
    std::fprintf(stderr, "--requests and --instances must be at least 1\n");
    return 2;
  }

  PgCluster pg;
  pg.start();
  const std::string url = pg.create_database();
  migrate_with_cli(url);
  auto config = daemon_config(url, {test_queue("sleep", "builtin:sleep", o.instances, 1, "1h")});
  config.poll_interval = "1s";
  config.heartbeat_interval = "2s";
  config.stale_after = "15s";
  config.log_level = "info";
  Daemon daemon(config, "bench");
  if (!daemon.wait_ready(std::chrono::seconds(60))) {
    std::fprintf(stderr, "the daemon did not start:\n%s\n", daemon.log().c_str());
    return 1;
  }
  const auto address = daemon.metrics_address();
  if (!address) {
    std::fprintf(stderr, "no metrics address in the log:\n%s\n", daemon.log().c_str());
    return 1;
  }
  // One job per slot, each sleeping far longer than the run, plus a backlog.
  std::vector<std::string> sleeps(static_cast<std::size_t>(o.instances) + 10, R"({"seconds": 36000})");
  enqueue_many(url, "sleep", sleeps);
  const std::string busy = "inferq_slots{queue=\"sleep\",state=\"busy\"}";
  const bool all_busy = wait_until(
      [&] {
        const auto r = http_get(*address, "/metrics");
        return r && metric_value(r->body, busy) == o.instances;
      },
      std::chrono::seconds(60), std::chrono::milliseconds(50));
  if (!all_busy) {
    std::fprintf(stderr, "the slots did not all become busy:\n%s\n", daemon.log().c_str());
    return 1;
  }
  std::printf("inferq-bench-metrics: %d slot(s) hung in builtin:sleep, %d requests per phase, %s\n",
              o.instances, o.requests, address->c_str());
  bool ok = measure("every slot hung", *address, o.requests);
  if (o.db_down) {
    pg.stop();
    wait_until(
        [&] {
          const auto r = http_get(*address, "/metrics");
          return r && metric_value(r->body, "inferq_db_up") == 0;
        },
        std::chrono::seconds(30), std::chrono::milliseconds(50));
    ok = measure("every slot hung, PostgreSQL stopped", *address, o.requests) && ok;
  }
  return ok ? 0 : 1;
}
