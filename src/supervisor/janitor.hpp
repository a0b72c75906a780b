#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "config/settings.hpp"
#include "db/session.hpp"
#include "metrics/metrics.hpp"
#include "util/stop_signal.hpp"

namespace inferq::supervisor {

// Whether a VACUUM is due: `dead` rows now, of which `left` (at most `dead`)
// were already there after the last VACUUM, which could not remove them.
bool vacuum_due(std::int64_t dead, std::int64_t left, std::int64_t threshold);

// One queue's finished jobs in one state that retention deletes once they
// have been finished for `older_than`.
struct PruneTarget {
  std::string queue;
  metrics::FinalState state = metrics::FinalState::kSucceeded;
  std::chrono::milliseconds older_than{0};
};

// The targets of `queues`' retention: one per queue and state kept for a
// limited time (a retention of 0 keeps those jobs for ever: no target).
std::vector<PruneTarget> prune_targets(const std::vector<config::QueueSettings>& queues);

// What the janitor deletes, and where it reports it.
struct Pruning {
  std::vector<PruneTarget> targets;     // none: no pruning
  metrics::Metrics* metrics = nullptr;  // may be null (tests)
  // How often to count the finished jobs by state (inferq_queue_finished_jobs).
  std::chrono::milliseconds count_every{60000};
  // Thread-safe: whether the daemon is running units now (it then rests
  // kPruneRestWhileBusy, else kPruneRestWhileIdle). Empty: always busy.
  std::function<bool()> busy;
};

// Jobs one pruning statement deletes at most: its locks and its WAL stay
// small, and the drain's statements never wait long behind it.
constexpr int kPruneBatch = 1000;
// After each full batch pruning rests k times as long as the batch took, so
// it takes at most 1/(1+k) of one backend. While the daemon runs units it
// yields: on the 2-core machine a rest of 1x cost a draining queue 28% of
// its rate and 2x-4x 17-33% (BENCHMARKS.md, retention); idle, it catches up
// at the full rate of one backend's half.
constexpr int kPruneRestWhileBusy = 8;
constexpr int kPruneRestWhileIdle = 1;

// The janitor thread, on a connection of its own, never in the tick's path.
//
// Every `interval` it reads how many dead rows inferq.jobs holds and VACUUMs
// it once they reach `dead_rows`, so the claim's index scan does not slow
// down as claimed jobs pile up behind the head of the queue (autovacuum
// wakes once a minute; at tens of thousands of jobs a second the claim would
// walk over millions of dead entries). Among several daemons one vacuums at
// a time. When the role may not vacuum, it says so once and stops vacuuming.
// The rows are counted from what the last VACUUM left behind: dead rows a
// transaction still may see cannot be removed, and vacuuming again before
// that transaction ends would only burn a backend scanning every index.
//
// With pruning targets it also deletes the finished jobs past their
// retention, kPruneBatch per statement, each its own short transaction,
// resting kPruneRestWhileBusy (or, idle, kPruneRestWhileIdle) times as long
// as each full batch took and returning to the VACUUM check at least every
// second. One daemon at a time prunes a queue. A sink runs in the transaction
// that makes its job succeeded, so pruning never takes a job whose sink has
// not run.
class Janitor {
 public:
  Janitor(std::string db_url, int dead_rows, std::chrono::milliseconds interval, Pruning pruning = {});
  ~Janitor();
  Janitor(const Janitor&) = delete;
  Janitor& operator=(const Janitor&) = delete;

  void start();
  // Thread-safe: prunes `targets` from its next round on (a reload).
  void set_targets(std::vector<PruneTarget> targets);
  void stop() noexcept;  // idempotent; waits for a statement in progress to end

 private:
  void loop();
  // Prunes until every target is done, or `until` with `more` set (jobs
  // still due); false when stopped.
  bool prune_round(std::chrono::steady_clock::time_point until, bool& more);
  void count_finished();
  // Makes the targets of the last set_targets() current; the thread's own.
  void take_new_targets();

  db::Session session_;
  int dead_rows_;
  std::chrono::milliseconds interval_;
  Pruning pruning_;
  std::size_t next_target_ = 0;  // where the next prune round starts
  std::mutex targets_mu_;
  std::optional<std::vector<PruneTarget>> new_targets_;  // guarded by targets_mu_
  util::StopSignal stop_;
  std::thread thread_;
};

}  // namespace inferq::supervisor
