// Bad input to the real `inferq` binary, and a database that is not there
// (yet) or not ready: each must end with the documented exit code and a
// message that says what is wrong and where, and never half-work (a job
// inserted from a rejected command, a daemon that runs without a schema).
#include <doctest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

struct CliResult {
  int status = -1;  // raw wait status
  std::string out;
  std::string err;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  REQUIRE(out.good());
}

// Runs `inferq args...` to completion with stdout and stderr kept apart (a
// shell redirects stderr to a file and execs the binary).
CliResult run_inferq(const std::vector<std::string>& args,
                     const std::map<std::string, std::string>& env = {}) {
  TempDir dir("inferq-cli");
  std::vector<std::string> argv = {"/bin/sh", "-c", "exec \"$0\" \"$@\" 2>\"$INFERQ_TEST_STDERR\"",
                                   bin_path("inferq")};
  argv.insert(argv.end(), args.begin(), args.end());
  auto full_env = env;
  full_env["INFERQ_TEST_STDERR"] = dir.file("stderr");
  ChildProcess p(argv, full_env, dir.file("stdout"));
  const auto status = p.wait_exit(30s);
  REQUIRE_MESSAGE(status.has_value(), "inferq did not exit: ", p.log());
  return {*status, read_file(dir.file("stdout")), read_file(dir.file("stderr"))};
}

bool contains(const std::string& text, const std::string& needle) {
  return text.find(needle) != std::string::npos;
}

// A TCP port on 127.0.0.1 that nothing listens on (bound, then released).
int unused_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
  socklen_t len = sizeof addr;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// The queues section of a minimal valid configuration.
constexpr const char* kQueues =
    "queues:\n"
    "  - name: echo\n"
    "    handler: builtin:echo\n";

// The delays of "retrying in D (attempt N)" lines, in milliseconds, in order.
std::vector<double> retry_delays_ms(const std::string& log) {
  std::vector<double> out;
  const std::string marker = "retrying in ";
  for (auto pos = log.find(marker); pos != std::string::npos; pos = log.find(marker, pos + 1)) {
    const auto start = pos + marker.size();
    const auto end = log.find(' ', start);
    const std::string d = log.substr(start, end - start);
    if (d.size() > 2 && d.compare(d.size() - 2, 2, "ms") == 0) {
      out.push_back(std::stod(d.substr(0, d.size() - 2)));
    } else if (!d.empty() && d.back() == 's') {
      out.push_back(1000 * std::stod(d.substr(0, d.size() - 1)));
    }
  }
  return out;
}

}  // namespace

TEST_CASE("inferq enqueue rejects bad jobs with exit code 1, a clear message and nothing inserted") {
  const std::string url = fresh_inferq_database();
  const std::map<std::string, std::string> env = {{"INFERQ_DATABASE_URL", url}};

  struct Case {
    std::vector<std::string> args;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{"enqueue", "echo", "[1, 2]"}, "payload must be a JSON object, got array"},
      {{"enqueue", "echo", "\"text\""}, "payload must be a JSON object, got string"},
      {{"enqueue", "echo", "{\"a\": "},
       "the JSON argument (the payload) is not valid JSON: invalid input syntax"},
      {{"enqueue", "echo", "not json"},
       "the JSON argument (the payload) is not valid JSON: invalid input syntax"},
      {{"enqueue", "", "{}"}, "queue must be a non-empty name"},
      {{"enqueue", "no spaces allowed", "{}"}, "queue name \"no spaces allowed\" is invalid"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.args[1]);
    CAPTURE(c.args[2]);
    const auto r = run_inferq(c.args, env);
    CHECK_MESSAGE(exited_with(r.status, 1), describe_wait_status(r.status), "\nstderr: ", r.err);
    CHECK_MESSAGE(contains(r.err, c.message), "stderr: ", r.err);
    CHECK(contains(r.err, "inferq: "));
    CHECK_MESSAGE(r.out.empty(), "stdout: ", r.out);  // no job id printed
  }
  // Usage errors never reach the database: exit code 2.
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"enqueue", "echo", "{}", "--key", ""},
                                             {"enqueue", "echo", "{}", "--max-attempts", "0"},
                                             {"enqueue", "echo"}}) {
    const auto r = run_inferq(args, env);
    CHECK_MESSAGE(exited_with(r.status, 2), describe_wait_status(r.status), "\nstderr: ", r.err);
    CHECK(contains(r.err, "Usage: inferq enqueue"));
  }
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs") == 0);

  // The same database and command line accept a good job.
  const auto ok = run_inferq({"enqueue", "echo", R"({"fine": true})"}, env);
  REQUIRE_MESSAGE(exited_with(ok.status, 0), describe_wait_status(ok.status), "\nstderr: ", ok.err);
  CHECK(ok.out == std::to_string(scalar(url, "SELECT max(id) FROM inferq.jobs")) + "\n");
  CHECK(scalar(url, "SELECT count(*) FROM inferq.jobs") == 1);
}

TEST_CASE("inferq run refuses a bad configuration with exit code 2, naming the file, line and key") {
  TempDir dir("inferq-badcfg");
  struct Case {
    std::string name;
    std::string yaml;
    int line;
    std::string key;
    std::string what;
  };
  const std::vector<Case> cases = {
      {"unknown-key", "worker:\n  poll_interval: 200ms\n  polll_interval: 1s\n" + std::string(kQueues), 3,
       "worker.polll_interval", "unknown key"},
      {"bad-duration", "worker:\n  stale_after: 5 parsecs\n" + std::string(kQueues), 2, "worker.stale_after",
       "expected a duration like 250ms, 30s or 5m, got \"5 parsecs\""},
      {"wrong-type", "queues:\n  - name: echo\n    handler: builtin:echo\n    instances: two\n", 4,
       "queues[0].instances", "expected an integer, got \"two\""},
      {"not-a-map", "database: postgresql:///x\n" + std::string(kQueues), 1, "database", "expected a map"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.name);
    const std::string path = dir.file(c.name + ".yaml");
    write_file(path, c.yaml);
    const auto r = run_inferq({"run", "--config", path});
    CHECK_MESSAGE(exited_with(r.status, 2), describe_wait_status(r.status), "\nstderr: ", r.err);
    const std::string where = path + ":" + std::to_string(c.line) + ": " + c.key + ": ";
    CHECK_MESSAGE(contains(r.err, where), "expected \"", where, "\" in stderr: ", r.err);
    CHECK_MESSAGE(contains(r.err, c.what), "stderr: ", r.err);
  }
}

TEST_CASE("inferq run: a missing config file, an executor that cannot run, no queues -> exit code 2") {
  TempDir dir("inferq-badcfg");
  {
    const std::string path = dir.file("does-not-exist.yaml");
    const auto r = run_inferq({"run", "--config", path});
    CHECK_MESSAGE(exited_with(r.status, 2), describe_wait_status(r.status), "\nstderr: ", r.err);
    CHECK_MESSAGE(contains(r.err, path + ": cannot read: No such file or directory"), "stderr: ", r.err);
  }
  {
    const std::string exe = dir.file("not-executable");
    write_file(exe, "#!/bin/sh\n");
    ::chmod(exe.c_str(), 0644);
    for (const std::string& bad : {exe, dir.file("missing-executor")}) {
      const std::string path = dir.file("exe.yaml");
      write_file(path, "worker:\n  executor_path: \"" + bad + "\"\n" + std::string(kQueues));
      const auto r = run_inferq({"run", "--config", path});
      CHECK_MESSAGE(exited_with(r.status, 2), describe_wait_status(r.status), "\nstderr: ", r.err);
      CHECK_MESSAGE(contains(r.err, path + ": worker.executor_path: " + bad + " is not an executable file"),
                    "stderr: ", r.err);
    }
  }
  {
    const std::string path = dir.file("no-queues.yaml");
    write_file(path, "worker:\n  poll_interval: 1s\n");
    const auto r = run_inferq({"run", "--config", path});
    CHECK_MESSAGE(exited_with(r.status, 2), describe_wait_status(r.status), "\nstderr: ", r.err);
    CHECK_MESSAGE(contains(r.err, path + ": no queues configured"), "stderr: ", r.err);
  }
}

TEST_CASE("database unreachable at start-up: the daemon retries with backoff, says so, exits 0 on SIGTERM") {
  const int port = unused_port();
  DaemonConfig cfg;
  cfg.database_url = "postgresql://inferq@127.0.0.1:" + std::to_string(port) + "/inferq";
  cfg.queues = {TestQueue{}};
  Daemon d(cfg, "unreachable");
  // Three tries: 250-500 ms, then 500 ms-1 s before the third.
  REQUIRE_MESSAGE(d.process().wait_log("(attempt 3)", 10s), d.log());
  const std::string log = d.log();
  CHECK(contains(
      log, "database unreachable (cannot connect to postgresql://inferq@127.0.0.1:" + std::to_string(port)));
  CHECK(contains(log, "Connection refused"));
  const auto delays = retry_delays_ms(log);
  REQUIRE(delays.size() >= 3);
  CHECK(delays[1] >= delays[0]);  // backing off, not hammering
  CHECK(delays[2] >= delays[1]);
  CHECK(delays[2] > delays[0]);
  CHECK(d.process().running());
  CHECK_FALSE(contains(log, "started as worker"));

  const auto t = Clock::now();
  const auto status = d.terminate(5s);
  REQUIRE_MESSAGE(status.has_value(), d.log());
  CHECK_MESSAGE(exited_with(*status, 0), describe_wait_status(*status));
  CHECK(std::chrono::duration<double>(Clock::now() - t).count() < 1.0);  // not after the backoff
  CHECK(contains(d.log(), "signal received while waiting for the database; exiting"));
}

TEST_CASE("a database that comes up after the daemon: it connects and works") {
  PgCluster pg;
  pg.start();  // the port is fixed at the first start
  const std::string url = pg.create_database();
  migrate_with_cli(url);
  pg.stop();

  DaemonConfig cfg;
  cfg.database_url = url;
  cfg.queues = {TestQueue{}};
  Daemon d(cfg, "late-db");
  REQUIRE_MESSAGE(d.process().wait_log("database unreachable", 10s), d.log());
  const auto t = Clock::now();
  pg.start();
  REQUIRE_MESSAGE(d.wait_ready(30s), d.log());
  MESSAGE("the daemon was ready " << std::chrono::duration<double>(Clock::now() - t).count()
                                  << " s after PostgreSQL started");
  const auto id = enqueue(url, "echo", R"({"late": true})");
  REQUIRE_MESSAGE(wait_until([&] { return job(url, id)->state == "succeeded"; }, 10s), d.log());
  CHECK(job(url, id)->result == std::optional<std::string>(R"({"late": true})"));
  const auto status = d.terminate(10s);
  REQUIRE(status.has_value());
  CHECK(exited_with(*status, 0));
}

TEST_CASE("a database without the schema: the daemon exits 1 and says to run inferq migrate") {
  const std::string url = PgCluster::shared().create_database();  // not migrated
  DaemonConfig cfg;
  cfg.database_url = url;
  cfg.queues = {TestQueue{}};
  Daemon d(cfg, "unmigrated");
  const auto status = d.process().wait_exit(10s);
  REQUIRE_MESSAGE(status.has_value(), d.log());
  CHECK_MESSAGE(exited_with(*status, 1), describe_wait_status(*status), "\n", d.log());
  CHECK_MESSAGE(contains(d.log(), "the database schema is at version 0"), d.log());
  CHECK_MESSAGE(contains(d.log(), "run `inferq migrate`"), d.log());
  CHECK_FALSE(contains(d.log(), "started as worker"));
}
