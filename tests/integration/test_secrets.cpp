// Issue 13 item 5: the database password reaches neither the logs nor the
// executors. The real daemon, the real executors, a real PostgreSQL.
#include <doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/daemon.hpp"
#include "support/pg_cluster.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

// NUL-separated NAME=value entries of /proc/PID/environ.
std::vector<std::string> environment_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/environ", std::ios::binary);
  std::vector<std::string> out;
  std::string entry;
  while (std::getline(in, entry, '\0')) out.push_back(entry);
  return out;
}

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
