#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "db/session.hpp"
#include "util/stop_signal.hpp"

namespace inferq::supervisor {

// Whether a VACUUM is due: `dead` rows now, of which `left` (at most `dead`)
// were already there after the last VACUUM, which could not remove them.
bool vacuum_due(std::int64_t dead, std::int64_t left, std::int64_t threshold);

// The janitor thread: every `interval`, reads how many dead rows inferq.jobs
// holds and VACUUMs it once they reach `dead_rows`, so the claim's index scan
// does not slow down as claimed jobs pile up behind the head of the queue
// (autovacuum wakes once a minute; at tens of thousands of jobs a second the
// claim would walk over millions of dead entries). Among several daemons one
// vacuums at a time. When the role may not vacuum, it says so once and stops.
//
// The rows are counted from what the last VACUUM left behind: dead rows a
// transaction still may see cannot be removed, and vacuuming again before
// that transaction ends would only burn a backend scanning every index.
class Janitor {
 public:
  Janitor(std::string db_url, int dead_rows, std::chrono::milliseconds interval);
  ~Janitor();
  Janitor(const Janitor&) = delete;
  Janitor& operator=(const Janitor&) = delete;

  // Starts the thread unless dead_rows is 0.
  void start();
  void stop() noexcept;  // idempotent; waits for a VACUUM in progress to end

 private:
  void loop();

  db::Session session_;
  int dead_rows_;
  std::chrono::milliseconds interval_;
  util::StopSignal stop_;
  std::thread thread_;
};

}  // namespace inferq::supervisor
