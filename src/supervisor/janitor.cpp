#include "supervisor/janitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "db/error.hpp"
#include "db/maintenance_ops.hpp"

namespace inferq::supervisor {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_of(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

// A count reads every finished job's index entry (millions, in a big
// history): at most 1/(1+k) of one backend, whatever the history.
constexpr int kCountDutyFactor = 20;

}  // namespace

bool vacuum_due(std::int64_t dead, std::int64_t left, std::int64_t threshold) {
  return dead - left >= threshold;
}

std::vector<PruneTarget> prune_targets(const std::vector<config::QueueSettings>& queues) {
  std::vector<PruneTarget> targets;
  for (const auto& q : queues) {
    const std::pair<metrics::FinalState, std::chrono::milliseconds> kept[] = {
        {metrics::FinalState::kSucceeded, q.retention.succeeded},
        {metrics::FinalState::kCancelled, q.retention.cancelled},
        {metrics::FinalState::kDead, q.retention.dead},
    };
    for (const auto& [state, older_than] : kept) {
      if (older_than.count() > 0) targets.push_back({q.name, state, older_than});
    }
  }
  return targets;
}

// A VACUUM of a table of millions of rows takes seconds; the bound only
// stops a pathological one from holding the thread (and shutdown) forever.
Janitor::Janitor(std::string db_url, int dead_rows, std::chrono::milliseconds interval, Pruning pruning)
    : session_(std::move(db_url), "inferq janitor", std::chrono::minutes(10)),
      dead_rows_(dead_rows),
      interval_(interval),
      pruning_(std::move(pruning)) {}

Janitor::~Janitor() { stop(); }

void Janitor::start() {
  // Even with nothing to do yet: a reload may bring pruning targets.
  thread_ = std::thread([this] { loop(); });
}

void Janitor::set_targets(std::vector<PruneTarget> targets) {
  const std::lock_guard lock(targets_mu_);
  new_targets_ = std::move(targets);
}

void Janitor::take_new_targets() {
  const std::lock_guard lock(targets_mu_);
  if (!new_targets_) return;
  pruning_.targets = std::move(*new_targets_);
  new_targets_.reset();
  next_target_ = 0;
}

void Janitor::stop() noexcept {
  stop_.stop();
  if (thread_.joinable()) thread_.join();
}

bool Janitor::prune_round(Clock::time_point until, bool& more) {
  more = false;
  const std::size_t n = pruning_.targets.size();
  for (std::size_t k = 0; k < n; ++k) {
    // Round-robin from where the last round stopped, so one queue's big
    // history does not starve the others.
    const std::size_t i = (next_target_ + k) % n;
    const PruneTarget& t = pruning_.targets[i];
    for (;;) {
      const auto started = Clock::now();
      const int rows =
          db::prune_jobs(session_, t.queue, metrics::to_string(t.state), t.older_than, kPruneBatch);
      const auto took = Clock::now() - started;
      if (pruning_.metrics != nullptr)
        pruning_.metrics->jobs_pruned(t.queue, t.state, rows, seconds_of(took));
      if (rows < kPruneBatch) break;
      // A full batch: more may be due. Rest first.
      const int rest = !pruning_.busy || pruning_.busy() ? kPruneRestWhileBusy : kPruneRestWhileIdle;
      if (stop_.wait_until(Clock::now() + rest * took)) return false;
      if (Clock::now() >= until) {
        next_target_ = i;
        more = true;
        return true;
      }
    }
  }
  next_target_ = 0;
  return true;
}

void Janitor::count_finished() {
  std::vector<std::string> queues;
  for (const auto& t : pruning_.targets) {
    if (std::find(queues.begin(), queues.end(), t.queue) == queues.end()) queues.push_back(t.queue);
  }
  const auto counts = db::count_finished_jobs(session_, queues);
  if (pruning_.metrics == nullptr) return;
  for (const auto& q : queues) {
    for (const auto state :
         {metrics::FinalState::kSucceeded, metrics::FinalState::kDead, metrics::FinalState::kCancelled}) {
      std::int64_t jobs = 0;  // absent: none
      for (const auto& c : counts) {
        if (c.queue == q && c.state == metrics::to_string(state)) jobs = c.jobs;
      }
      pruning_.metrics->set_finished_jobs(q, state, jobs);
    }
  }
}

void Janitor::loop() {
  bool vacuum = dead_rows_ > 0;
  bool may_prune = true;  // false once the role was refused
  bool checked_privilege = false;
  std::int64_t left = 0;  // dead rows the last VACUUM left
  bool was_failing = false;
  bool more = false;  // the last prune round stopped with jobs still due
  auto next_count = Clock::now();
  for (;;) {
    // With jobs still due, straight on (each batch already rested).
    if (!more && stop_.wait_until(Clock::now() + interval_)) return;
    if (stop_.stopped()) return;
    take_new_targets();
    const bool prune = may_prune && !pruning_.targets.empty();
    more = false;
    try {
      if (prune) {
        if (!prune_round(Clock::now() + std::chrono::seconds(1), more)) return;
        if (Clock::now() >= next_count) {
          const auto started = Clock::now();
          count_finished();
          const auto took = Clock::now() - started;
          next_count =
              Clock::now() + std::max<Clock::duration>(pruning_.count_every, kCountDutyFactor * took);
        }
      }
      if (vacuum && !checked_privilege) {
        if (!db::may_vacuum_jobs(session_)) {
          spdlog::warn(
              "janitor: this database role may not VACUUM inferq.jobs (it does not own it); claims slow down "
              "as finished jobs pile up unless autovacuum keeps up (see worker.vacuum_dead_rows)");
          vacuum = false;
        }
        checked_privilege = true;
      }
      if (vacuum) {
        const auto dead = db::dead_job_rows(session_);
        // Fewer than the last VACUUM left: something else (autovacuum)
        // vacuumed, so count from here.
        left = std::min(left, dead);
        if (vacuum_due(dead, left, dead_rows_)) {
          const auto started = Clock::now();
          if (db::vacuum_jobs(session_)) {
            const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started);
            left = db::dead_job_rows(session_);
            spdlog::debug("janitor: vacuumed inferq.jobs ({} dead rows, {} left) in {} ms", dead, left,
                          took.count());
          }
        }
      }
      if (was_failing) spdlog::info("janitor: database reachable again");
      was_failing = false;
    } catch (const db::DbError& e) {
      if (prune && e.sqlstate() == "42501") {
        spdlog::warn(
            "janitor: this database role may not prune inferq.jobs ({}); finished jobs stay until "
            "deleted by hand (retention is not applied)",
            e.what());
        may_prune = false;
      } else {
        if (!was_failing) spdlog::warn("janitor: {}", e.what());
        was_failing = true;
      }
    }
  }
}

}  // namespace inferq::supervisor
