// A real Prometheus (Debian's `prometheus` package) scrapes a real daemon
// that processes jobs, on loopback, and the values come back through
// Prometheus's HTTP API; `promtool check metrics` accepts the exposition.
// Without the prometheus package this test fails: it is a dependency
// (scripts/install-deps.sh), not an option.
#include <doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "support/child_process.hpp"
#include "support/daemon.hpp"
#include "support/http_get.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

constexpr const char* kPrometheus = "/usr/bin/prometheus";
constexpr const char* kPromtool = "/usr/bin/promtool";

// A loopback port free right now (Prometheus has no "port 0" it would report).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
  ::close(fd);
  return ntohs(a.sin_port);
}

std::string url_encode(const std::string& s) {
  std::string out;
  char buf[4];
  for (const unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

// The value of an instant query that returns one series; nullopt when it
// returns none (or Prometheus does not answer yet).
std::optional<double> query_one(const std::string& prometheus, const std::string& promql) {
  const auto r = http_get(prometheus, "/api/v1/query?query=" + url_encode(promql), 5s);
  if (!r || r->status != 200) return std::nullopt;
  // {"status":"success","data":{"resultType":"vector","result":[{"metric":{...},"value":[t,"v"]}]}}
  const auto at = r->body.find("\"value\":[");
  if (at == std::string::npos) return std::nullopt;
  const auto quote = r->body.find('"', r->body.find(',', at));
  if (quote == std::string::npos) return std::nullopt;
  return std::strtod(r->body.c_str() + quote + 1, nullptr);
}

bool wait_query(const std::string& prometheus, const std::string& promql, double want) {
  return wait_until([&] { return query_one(prometheus, promql) == want; }, 40s, 250ms);
}

}  // namespace

TEST_CASE("Prometheus scrapes a daemon at work and reads the values back; promtool accepts the exposition") {
  REQUIRE_MESSAGE(::access(kPrometheus, X_OK) == 0,
                  "the Debian package prometheus is missing: run scripts/install-deps.sh");
  REQUIRE_MESSAGE(::access(kPromtool, X_OK) == 0, "promtool (package prometheus) is missing");

  const std::string url = fresh_inferq_database();
  Daemon d(daemon_config(url, {test_queue("echo", "builtin:echo", 2, 4)}));
  INFO("daemon log:\n", d.log());
  REQUIRE(d.wait_ready());
  const auto target = d.metrics_address();
  REQUIRE(target);

  TempDir dir("inferq-prometheus");
  {
    std::ofstream config(dir.file("prometheus.yml"));
    config << "global:\n"
           << "  scrape_interval: 1s\n"
           << "  scrape_timeout: 1s\n"
           << "scrape_configs:\n"
           << "  - job_name: inferq\n"
           << "    static_configs:\n"
           << "      - targets: ['" << *target << "']\n";
  }
  const std::string listen = "127.0.0.1:" + std::to_string(free_port());
  ChildProcess prometheus(
      {kPrometheus, "--config.file=" + dir.file("prometheus.yml"), "--storage.tsdb.path=" + dir.file("data"),
       "--web.listen-address=" + listen, "--log.level=warn"},
      {}, dir.file("prometheus.log"));
  INFO("prometheus log:\n", prometheus.log());

  std::vector<std::string> payloads(25, R"({"n": 1})");
  enqueue_many(url, "echo", payloads);
  REQUIRE(wait_all_final(url, 30s));

  CHECK(wait_query(listen, R"(up{job="inferq"})", 1));
  CHECK(wait_query(listen, R"(inferq_jobs_finished_total{queue="echo",outcome="succeeded"})", 25));
  CHECK(wait_query(listen, R"(inferq_jobs_claimed_total{queue="echo"})", 25));
  CHECK(wait_query(listen, R"(inferq_jobs_finished_total{queue="echo",outcome="dead"})", 0));
  CHECK(wait_query(listen, R"(inferq_db_up)", 1));
  CHECK(wait_query(listen, R"(sum(inferq_slots{queue="echo"}))", 2));
  CHECK(wait_query(listen, R"(inferq_job_wait_seconds_count{queue="echo"})", 25));
  CHECK(wait_query(listen, R"(count(inferq_build_info))", 1));
  CHECK(wait_query(listen, R"(count(process_start_time_seconds{job="inferq"}))", 1));
  // A histogram Prometheus can take quantiles of.
  CHECK(query_one(listen, R"(histogram_quantile(0.5, inferq_unit_run_seconds_bucket{queue="echo"}))")
            .has_value());
  // No NVML here: the GPU series do not exist at all.
  CHECK_FALSE(query_one(listen, R"(count({__name__=~"inferq_gpu_.*"}))").has_value());

  // promtool's lint of the exposition as served.
  const auto exposition = http_get(*target, "/metrics");
  REQUIRE(exposition);
  {
    std::ofstream out(dir.file("metrics.txt"));
    out << exposition->body;
  }
  const std::string cmd = std::string(kPromtool) + " check metrics < " + dir.file("metrics.txt") + " > " +
                          dir.file("promtool.log") + " 2>&1";
  const int rc = std::system(cmd.c_str());
  std::ifstream lint(dir.file("promtool.log"));
  const std::string lint_text((std::istreambuf_iterator<char>(lint)), std::istreambuf_iterator<char>());
  INFO("promtool check metrics:\n", lint_text);
  CHECK(WIFEXITED(rc));
  CHECK(WEXITSTATUS(rc) == 0);
  CHECK(lint_text.empty());
}
