// Issue 13 item 2: units are bounded by bytes (batch.max_bytes). Past the
// bound the rest of a unit goes back unrun; a job bigger than it fails alone;
// the daemon never dies of it. The real daemon and executors.
#include <doctest.h>

#include <chrono>
#include <string>
#include <vector>

#include "support/daemon.hpp"

namespace {

using namespace inferq::test;
using namespace std::chrono_literals;

std::string payload_of(std::size_t bytes, int n) {
  const std::string head = "{\"n\": " + std::to_string(n) + ", \"pad\": \"";
  return head + std::string(bytes - head.size() - 2, 'x') + "\"}";
}

}  // namespace

TEST_CASE(
    "a unit over batch.max_bytes runs what fits, sends the rest back unrun, and fails an oversized job "
    "alone") {
  const std::string url = fresh_inferq_database();
  TestQueue queue = test_queue("echo", "builtin:echo", 1, 8);
  queue.max_bytes = 4096;
  std::vector<std::string> payloads;
  for (int i = 0; i < 6; ++i) payloads.push_back(payload_of(1500, i));
  // Enqueued before the daemon starts: its first claim takes all 7 in one unit.
  const auto small = enqueue_many(url, "echo", payloads);
  const auto big = enqueue(url, "echo", payload_of(5000, 99));
  Daemon daemon(daemon_config(url, {queue}));
  REQUIRE(daemon.wait_ready());
  REQUIRE(wait_all_final(url, 30s));
  for (const auto id : small) {
    const auto row = job(url, id);
    REQUIRE(row);
    CHECK(row->state == "succeeded");
    CHECK(row->attempts == 1);  // a job sent back unrun is not charged an attempt
  }
  const auto row = job(url, big);
  REQUIRE(row);
  CHECK(row->state == "dead");
  REQUIRE(row->last_error);
  CHECK(row->last_error->find("is over batch.max_bytes (4096)") != std::string::npos);
  CHECK(daemon.log().find("not sent (batch.max_bytes 4096)") != std::string::npos);
  // No unit carried more than two of the 1.5 KB jobs.
  CHECK(scalar(url, "SELECT count(DISTINCT started_at) FROM inferq.jobs WHERE state = 'succeeded'") >= 3);
  CHECK(daemon.process().running());
}
