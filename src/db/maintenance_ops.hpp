#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "db/session.hpp"

// Upkeep of inferq.jobs that a queue table needs and that stock autovacuum
// does too rarely (it wakes once a minute by default): every claim turns an
// entry of the claim index into a dead one, and until a VACUUM removes them a
// claim walks over all of them. Each call blocks on the database and throws
// DbError on failure.
namespace inferq::db {

// Dead row versions in inferq.jobs, as PostgreSQL's statistics count them
// (they lag by up to about a second).
std::int64_t dead_job_rows(Session& s);

// Whether the connected role may VACUUM inferq.jobs (owner or superuser).
bool may_vacuum_jobs(Session& s);

// VACUUMs inferq.jobs unless another daemon is doing so (a session advisory
// lock decides); returns false when it left it to that daemon. Blocks for the
// length of the VACUUM; other statements on the table are not blocked.
bool vacuum_jobs(Session& s);

// Retention (migration 0014): deletes at most `max_rows` jobs of `queue` in
// `state` (succeeded, dead or cancelled) that finished more than
// `older_than` ago, oldest first, in one statement of its own. While another
// daemon prunes the queue (it holds the queue's advisory lock) the batch is
// left to it and 0 is returned. Returns how many it deleted.
int prune_jobs(Session& s, const std::string& queue, const std::string& state,
               std::chrono::milliseconds older_than, int max_rows);

// Finished jobs of `queues` by state, read through the finished-jobs index
// (never the live ones); a state with none is absent.
struct FinishedCount {
  std::string queue;
  std::string state;  // succeeded, dead or cancelled
  std::int64_t jobs = 0;
};
std::vector<FinishedCount> count_finished_jobs(Session& s, const std::vector<std::string>& queues);

// Whether `url` goes through a pooler in transaction mode. One connection
// reads its backend's pid, a second connection holds a transaction open,
// and the first reads its pid again: PostgreSQL itself and session pooling
// keep a connection on one backend, while a transaction pooler lends the
// first connection's idle backend to the second (PgBouncer reuses the last
// one freed) and runs the next read elsewhere. Returns the first
// connection's two backend pids when they differ, nullopt when they agree
// (a transaction pooler that happens to hand the same backend back passes
// unnoticed). Opens two connections; blocks on them. Throws DbError.
std::optional<std::pair<int, int>> detect_transaction_pooling(const std::string& url);

}  // namespace inferq::db
