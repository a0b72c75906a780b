// The tick LISTENs on its own connection: an idle daemon starts a job when
// its enqueue commits, not at the next poll, and it LISTENs again as soon as
// that connection comes back after being cut. The poll interval here is a
// minute, so a job started within seconds was woken by its notification.
#include <doctest.h>

#include <chrono>
#include <string>
#include <thread>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

void each_starts_at_once(const std::string& url, Daemon& d, int jobs) {
  for (int i = 0; i < jobs; ++i) {
    const auto id = enqueue(url, "echo", R"({"n": 1})");
    CHECK_MESSAGE(wait_until([&] { return job(url, id)->state == "succeeded"; }, 5s), d.log());
  }
}

}  // namespace

TEST_CASE("an idle daemon starts a job on its notification, and LISTENs again after its connection is cut") {
  const std::string url = fresh_inferq_database();
  DaemonConfig cfg = daemon_config(url, {test_queue("echo", "builtin:echo", 1, 16)});
  cfg.poll_interval = "60s";
  Daemon d(cfg, "wake");
  REQUIRE_MESSAGE(d.wait_ready(), d.log());
  // The start-up ticks are over once the daemon is ready; let its first
  // wait begin, so no job below is found by a tick that ran anyway.
  std::this_thread::sleep_for(300ms);
  each_starts_at_once(url, d, 3);

  const auto tick_backend = [&] {
    return scalar(url,
                  "SELECT coalesce(max(pid), 0) FROM pg_stat_activity"
                  " WHERE application_name = 'inferq tick' AND datname = current_database()");
  };
  const auto before = tick_backend();
  REQUIRE(before != 0);
  REQUIRE(scalar(url,
                 "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 10000)) FROM pg_stat_activity"
                 " WHERE pid = " +
                     std::to_string(before)) == 1);
  // The cut wakes the tick (its socket closes), which reconnects at once.
  REQUIRE_MESSAGE(wait_until([&] { return tick_backend() != 0 && tick_backend() != before; }, 10s), d.log());
  std::this_thread::sleep_for(300ms);
  each_starts_at_once(url, d, 3);
  CHECK(d.process().running());
}
