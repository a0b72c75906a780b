#include "supervisor/janitor.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "db/error.hpp"
#include "db/maintenance_ops.hpp"

namespace inferq::supervisor {

bool vacuum_due(std::int64_t dead, std::int64_t left, std::int64_t threshold) {
  return dead - left >= threshold;
}

// A VACUUM of a table of millions of rows takes seconds; the bound only
// stops a pathological one from holding the thread (and shutdown) forever.
Janitor::Janitor(std::string db_url, int dead_rows, std::chrono::milliseconds interval)
    : session_(std::move(db_url), "inferq janitor", std::chrono::minutes(10)),
      dead_rows_(dead_rows),
      interval_(interval) {}

Janitor::~Janitor() { stop(); }

void Janitor::start() {
  if (dead_rows_ > 0) thread_ = std::thread([this] { loop(); });
}

void Janitor::stop() noexcept {
  stop_.stop();
  if (thread_.joinable()) thread_.join();
}

void Janitor::loop() {
  bool checked_privilege = false;
  std::int64_t left = 0;  // dead rows the last VACUUM left
  bool was_failing = false;
  for (;;) {
    if (stop_.wait_until(std::chrono::steady_clock::now() + interval_)) return;
    try {
      if (!checked_privilege) {
        if (!db::may_vacuum_jobs(session_)) {
          spdlog::warn(
              "janitor: this database role may not VACUUM inferq.jobs (it does not own it); claims slow down "
              "as finished jobs pile up unless autovacuum keeps up (see worker.vacuum_dead_rows)");
          return;
        }
        checked_privilege = true;
      }
      const auto dead = db::dead_job_rows(session_);
      // Fewer than the last VACUUM left: something else (autovacuum)
      // vacuumed, so count from here.
      left = std::min(left, dead);
      if (vacuum_due(dead, left, dead_rows_)) {
        const auto started = std::chrono::steady_clock::now();
        if (db::vacuum_jobs(session_)) {
          const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(
              std::chrono::steady_clock::now() - started);
          left = db::dead_job_rows(session_);
          spdlog::debug("janitor: vacuumed inferq.jobs ({} dead rows, {} left) in {} ms", dead, left,
                        took.count());
        }
      }
      if (was_failing) spdlog::info("janitor: database reachable again");
      was_failing = false;
    } catch (const db::DbError& e) {
      if (!was_failing) spdlog::warn("janitor: {}", e.what());
      was_failing = true;
    }
  }
}

}  // namespace inferq::supervisor
