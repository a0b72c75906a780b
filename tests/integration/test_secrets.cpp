// Issue 13 item 5: the database password reaches neither the logs nor the
// executors. The real daemon, the real executors, a real PostgreSQL.
#include <doctest.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/child_process.hpp"
#include "support/daemon.hpp"
#include "support/pg_cluster.hpp"
#include "support/test_env.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

bool has_entry(const std::vector<std::string>& env, const std::string& prefix) {
  for (const auto& e : env)
    if (e.rfind(prefix, 0) == 0) return true;
  return false;
}

}  // namespace

TEST_CASE("executors inherit neither INFERQ_DATABASE_URL nor libpq's PG* variables") {
  const std::string url = fresh_inferq_database();
  // PGAPPNAME is harmless to the daemon's own connections (application_name
  // is set explicitly) and shows that PG* variables are filtered by name.
  ::setenv("PGAPPNAME", "secret-app-name", 1);
  Daemon daemon(daemon_config(url, {test_queue("echo", "builtin:echo", 2, 4)}));
  ::unsetenv("PGAPPNAME");
  REQUIRE(daemon.wait_ready());
  const auto daemon_env = environment_of(daemon.pid());
  REQUIRE(has_entry(daemon_env, "INFERQ_DATABASE_URL="));  // the harness gives it the DSN this way
  REQUIRE(has_entry(daemon_env, "PGAPPNAME="));
  const auto pids = daemon.executor_pids();
  REQUIRE(pids.size() == 2);
  for (const pid_t pid : pids) {
    const auto env = environment_of(pid);
    REQUIRE(!env.empty());
    CHECK(has_entry(env, "OPENBLAS_NUM_THREADS="));  // what the supervisor does set is there
    CHECK_FALSE(has_entry(env, "INFERQ_DATABASE_URL="));
    CHECK_FALSE(has_entry(env, "PG"));
  }
  // And they still serve.
  const auto id = enqueue(url, "echo", R"({"x": 1})");
  REQUIRE(wait_all_final(url, 20s));
  CHECK(job(url, id)->state == "succeeded");
}

TEST_CASE("a malformed password in the URL is not echoed into the daemon's log") {
  // libpq's "invalid percent-encoded token" error quotes the token itself.
  const std::string port = std::to_string(PgCluster::shared().port());
  DaemonConfig config = daemon_config("postgresql://inferq:S3cr%zzet@127.0.0.1:" + port + "/inferq_none",
                                      {test_queue("echo", "builtin:echo", 1, 4)});
  Daemon daemon(config);
  // Whether it retries or gives up, the first failure is logged.
  daemon.process().wait_log("cannot connect", 20s);
  const std::string log = daemon.log();
  CAPTURE(log);
  CHECK(log.find("cannot connect") != std::string::npos);
  CHECK(log.find("S3cr") == std::string::npos);
  CHECK(log.find("zzet") == std::string::npos);
}

TEST_CASE("a wrong password is refused without the password in the log") {
  const std::string port = std::to_string(PgCluster::shared().port());
  DaemonConfig config = daemon_config(
      "host=127.0.0.1 port=" + port + " dbname=inferq_none user=nosuchuser password = 'Hunter 2\\' x'",
      {test_queue("echo", "builtin:echo", 1, 4)});
  Daemon daemon(config);
  // Whether it retries or gives up, the first failure is logged.
  daemon.process().wait_log("cannot connect", 20s);
  const std::string log = daemon.log();
  CAPTURE(log);
  CHECK(log.find("cannot connect") != std::string::npos);
  CHECK(log.find("Hunter") == std::string::npos);
}

TEST_CASE("a model executor reads a config without the database section, and serves") {
  TempDir models("inferq-models");
  ChildProcess make({bin_path("inferq-executor"), "make-models", models.path()});
  const auto made = make.wait_exit(120s);
  REQUIRE((made && exited_with(*made, 0)));
  // A password in the URL (the harness's trust authentication ignores it):
  // what must never reach an executor.
  std::string url = fresh_inferq_database();
  const auto at = url.find('@');
  REQUIRE(at != std::string::npos);
  url.insert(at, ":S3cretPass");
  TestQueue queue;
  queue.name = "encoder";
  queue.model = models.file("encoder.pt");
  queue.max_jobs = 4;
  queue.extra_yaml =
      "threads: 1\n"
      "inputs: [{name: input_ids, datatype: INT64, shape: [-1], pad: 0}]\n"
      "outputs: [{name: embedding}]\n";
  Daemon daemon(daemon_config(url, {queue}));
  INFO("daemon log:\n", daemon.log());
  REQUIRE(daemon.wait_ready());
  const auto pids = daemon.executor_pids();
  REQUIRE(pids.size() == 1);

  // The executor's --config argument, and what that file holds.
  std::ifstream cmdline_file("/proc/" + std::to_string(pids[0]) + "/cmdline", std::ios::binary);
  std::vector<std::string> args;
  for (std::string a; std::getline(cmdline_file, a, '\0');) args.push_back(a);
  const auto flag = std::find(args.begin(), args.end(), "--config");
  REQUIRE(flag != args.end());
  REQUIRE(flag + 1 != args.end());
  std::ifstream config_file(*(flag + 1));
  std::stringstream config;
  config << config_file.rdbuf();
  CAPTURE(config.str());
  REQUIRE(config.str().find("encoder.pt") != std::string::npos);
  CHECK(config.str().find("S3cretPass") == std::string::npos);
  CHECK(config.str().find("database") == std::string::npos);
  CHECK(config.str().find("url") == std::string::npos);

  const auto id =
      enqueue(url, "encoder",
              R"({"inputs": [{"name": "input_ids", "datatype": "INT64", "shape": [3], "data": [5, 6, 7]}]})");
  REQUIRE(wait_all_final(url, 30s));
  CHECK(job(url, id)->state == "succeeded");
  CHECK(daemon.log().find("S3cretPass") == std::string::npos);
}
